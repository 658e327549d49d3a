// Command torchcmp runs one layer of a Llama-3.1-8B-shaped cache through
// compresskv and through a plain PyTorch implementation of the same steps
// (torchcmp.py, Debian's python3-torch), in one run, and prints the times
// side by side as ratios.
//
// It measures: scoring + selection + compaction of one layer (CompressKV with
// 4 SR heads, SnapKV with all 32 heads, budget 1024), decode attention of one
// token over the whole layer, and the machine's memory read bandwidth on 1
// and 2 goroutines (so that decode can be stated as a share of it).
//
//	OMP_NUM_THREADS=2 go run ./tools/torchcmp -python /usr/bin/python3
//
// It is a tool, not a test: the figures depend on the machine and on what
// else runs on it; compare ratios from one run.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/kvcache"
)

const (
	H, G, d, W, budget = 32, 8, 128, 8, 1024
)

var srHeads = []int{0, 9, 18, 27} // one per KV head group, as torchcmp.py's default

func main() {
	lengths := flag.String("lengths", "4096,32768", "comma-separated prompt lengths")
	reps := flag.Int("reps", 5, "timed repetitions (median reported)")
	python := flag.String("python", "python3", "Python with torch; empty skips the PyTorch side")
	script := flag.String("script", "", "path of torchcmp.py (default: beside this source, tools/torchcmp)")
	flag.Parse()
	log.SetFlags(0)
	var Ls []int
	for _, s := range strings.Split(*lengths, ",") {
		L, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || L <= budget {
			log.Fatalf("torchcmp: bad length %q (want > %d)", s, budget)
		}
		Ls = append(Ls, L)
	}

	fmt.Printf("GOMAXPROCS %d, %s\n", runtime.GOMAXPROCS(0), runtime.GOARCH)
	bw1, bw2 := bandwidth(1, *reps), bandwidth(2, *reps)
	fmt.Printf("memory read bandwidth: %.1f GB/s (1 goroutine), %.1f GB/s (2 goroutines)\n", bw1, bw2)
	bwMax := max(bw1, bw2)

	goMs := map[string]float64{}
	for _, L := range Ls {
		for _, dt := range []kvcache.DType{kvcache.Float32, kvcache.Float16} {
			base, q := fill(L, dt)
			for _, m := range []compresskv.Method{compresskv.CompressKV, compresskv.SnapKV} {
				goMs[fmt.Sprintf("%s/%d/%v", m, L, dt)] = timeCompress(m, base, q, *reps)
			}
			ms := timeAttend(base, *reps)
			goMs[fmt.Sprintf("decode/%d/%v", L, dt)] = ms
			gb := float64(2*G*L*d*dt.Size()) / 1e9
			fmt.Printf("decode L=%d %v: %.2f ms, %.1f GB/s of K+V = %.0f%% of the measured bandwidth\n",
				L, dt, ms, gb/(ms/1e3), 100*gb/(ms/1e3)/bwMax)
		}
	}

	var torch struct {
		Torch   string             `json:"torch"`
		Threads int                `json:"threads"`
		Ms      map[string]float64 `json:"ms"`
	}
	if *python != "" {
		path := *script
		if path == "" {
			path = filepath.Join("tools", "torchcmp", "torchcmp.py")
		}
		cmd := exec.Command(*python, path, "--lengths", *lengths, "--reps", strconv.Itoa(*reps),
			"--sr-heads", strings.Trim(strings.Join(strings.Fields(fmt.Sprint(srHeads)), ","), "[]"))
		cmd.Stderr = os.Stderr
		if os.Getenv("OMP_NUM_THREADS") == "" {
			cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=2")
		}
		out, err := cmd.Output()
		if err != nil {
			log.Fatalf("torchcmp: %s %s: %v", *python, path, err)
		}
		if err := json.Unmarshal(out, &torch); err != nil {
			log.Fatalf("torchcmp: reading PyTorch output %q: %v", out, err)
		}
		fmt.Printf("PyTorch %s, %d threads\n", torch.Torch, torch.Threads)
	}

	fmt.Printf("\n%-34s %12s %12s %8s\n", "step (one layer, float32 unless said)", "compresskv", "PyTorch", "ratio")
	row := func(name, goKey, torchKey string) {
		g := goMs[goKey]
		t, ok := torch.Ms[torchKey]
		if !ok {
			fmt.Printf("%-34s %9.2f ms %12s %8s\n", name, g, "-", "-")
			return
		}
		fmt.Printf("%-34s %9.2f ms %9.2f ms %7.1fx\n", name, g, t, t/g)
	}
	for _, L := range Ls {
		row(fmt.Sprintf("CompressKV L=%d", L), fmt.Sprintf("compresskv/%d/float32", L), fmt.Sprintf("compresskv/%d", L))
		row(fmt.Sprintf("  vs torch scoring all 32 heads L=%d", L), fmt.Sprintf("compresskv/%d/float32", L), fmt.Sprintf("compresskv-all-heads/%d", L))
		row(fmt.Sprintf("  float16 storage L=%d", L), fmt.Sprintf("compresskv/%d/float16", L), fmt.Sprintf("compresskv/%d", L))
		row(fmt.Sprintf("SnapKV L=%d", L), fmt.Sprintf("snapkv/%d/float32", L), fmt.Sprintf("snapkv/%d", L))
		row(fmt.Sprintf("  float16 storage L=%d", L), fmt.Sprintf("snapkv/%d/float16", L), fmt.Sprintf("snapkv/%d", L))
		row(fmt.Sprintf("decode attention L=%d", L), fmt.Sprintf("decode/%d/float32", L), fmt.Sprintf("decode/%d", L))
		row(fmt.Sprintf("  float16 storage L=%d", L), fmt.Sprintf("decode/%d/float16", L), fmt.Sprintf("decode/%d", L))
	}
}

// fill returns a one-layer cache of L random tokens and the window queries.
func fill(L int, dt kvcache.DType) (*kvcache.Host, [][]float32) {
	r := rand.New(rand.NewPCG(uint64(L), 1))
	c, err := kvcache.NewHost(kvcache.Shape{Layers: 1, KVHeads: G, HeadDim: d}, dt)
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Reserve(L); err != nil {
		log.Fatal(err)
	}
	const step = 1024
	k, v := make([]float32, step*G*d), make([]float32, step*G*d)
	for done := 0; done < L; done += step {
		n := min(step, L-done)
		for i := range k[:n*G*d] {
			k[i], v[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
		}
		if err := c.Append(0, k[:n*G*d], v[:n*G*d]); err != nil {
			log.Fatal(err)
		}
	}
	q := make([]float32, W*H*d)
	for i := range q {
		q[i] = float32(r.NormFloat64() * 1.5)
	}
	return c, [][]float32{q}
}

// timeCompress returns the median milliseconds of Compress on a fresh clone
// of base (cloned and collected outside the timing).
func timeCompress(m compresskv.Method, base *kvcache.Host, q [][]float32, reps int) float64 {
	ranking := append([]int(nil), srHeads...)
	for h := range H {
		if !slices.Contains(ranking, h) {
			ranking = append(ranking, h)
		}
	}
	prof := &compresskv.Profile{
		Version:     compresskv.ProfileVersion,
		Model:       compresskv.ModelInfo{Name: "torchcmp", Layers: 1, QueryHeads: H, KVHeads: G, HeadDim: d},
		HeadRanking: [][]int{ranking},
	}
	p, err := compresskv.New(m, compresskv.Config{Budget: budget, Window: W, Profile: prof})
	if err != nil {
		log.Fatal(err)
	}
	return median(reps, func() func() {
		c := base.Clone()
		return func() {
			if _, err := p.Compress(c, q, H); err != nil {
				log.Fatal(err)
			}
		}
	})
}

func timeAttend(c *kvcache.Host, reps int) float64 {
	r := rand.New(rand.NewPCG(4, 5))
	q := make([]float32, H*d)
	for i := range q {
		q[i] = float32(r.NormFloat64())
	}
	out := make([]float32, H*d)
	b := cpu.New()
	return median(reps, func() func() {
		return func() {
			if err := b.Attend(c, 0, q, H, out); err != nil {
				log.Fatal(err)
			}
		}
	})
}

// median runs prepare (untimed) and the function it returns (timed) reps
// times after one warm run, and returns the median in milliseconds.
func median(reps int, prepare func() func()) float64 {
	prepare()()
	var ms []float64
	for range reps {
		f := prepare()
		runtime.GC()
		t0 := time.Now()
		f()
		ms = append(ms, float64(time.Since(t0))/1e6)
	}
	slices.Sort(ms)
	return ms[len(ms)/2]
}

// bandwidth returns the read bandwidth in GB/s of summing a 512 MiB slice
// (beyond any cache) on the given number of goroutines, best of reps.
func bandwidth(workers, reps int) float64 {
	x := make([]uint64, 64<<20)
	for i := range x {
		x[i] = uint64(i)
	}
	best := 0.0
	var sink uint64
	for range reps + 1 {
		var wg sync.WaitGroup
		sums := make([]uint64, workers)
		part := len(x) / workers
		t0 := time.Now()
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sums[w] = sum(x[w*part : (w+1)*part])
			}()
		}
		wg.Wait()
		gb := float64(len(x)*8) / 1e9 / time.Since(t0).Seconds()
		best = max(best, gb)
		for _, s := range sums {
			sink += s
		}
	}
	if sink == 1 {
		fmt.Print("")
	}
	return best
}

// sum adds x with 8 independent accumulators, enough loads in flight for
// the memory, not the adds, to set the pace.
func sum(x []uint64) uint64 {
	var s [8]uint64
	for len(x) >= 8 {
		v := x[:8:8]
		s[0] += v[0]
		s[1] += v[1]
		s[2] += v[2]
		s[3] += v[3]
		s[4] += v[4]
		s[5] += v[5]
		s[6] += v[6]
		s[7] += v[7]
		x = x[8:]
	}
	for _, v := range x {
		s[0] += v
	}
	return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7]
}
