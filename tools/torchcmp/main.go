// Command torchcmp runs one layer of a Llama-3.1-8B-shaped cache through
// compresskv and through a plain PyTorch implementation of the same steps
// (torchcmp.py, Debian's python3-torch), in one run, and prints each step
// against the memory wall and against PyTorch.
//
// Every compresskv step is timed in rounds; each round first reads the
// bandwidth probe of backend/cpu (a vectorised sum of 256 MiB on two
// goroutines), so that the step's floor, the bytes it must read divided by
// the bandwidth measured beside it, moves with the machine's other load.
// It reports, per step, length and storage type: min and median
// milliseconds, the median ratio to the floor ("x floor", 1.0 is the wall),
// the probe's min / median / max over the step's rounds, and PyTorch's time
// on the same storage (bfloat16 for float16, which PyTorch's CPU matmul does
// not take).
//
// Steps: CompressKV's layer (scoring its 4 SR heads, selection, compaction;
// floor: the SR heads' KV-head keys once plus the kept rows' keys and
// values), its selection alone (Plan) and its compaction alone (Apply);
// SnapKV's layer (all 32 heads score: every key once, plus the kept rows);
// decode attention of one token (every key and value once).
//
//	OMP_NUM_THREADS=2 go run ./tools/torchcmp -python /usr/bin/python3
//
// It is a tool, not a test: the figures depend on the machine and on what
// else runs on it; compare ratios from one run.
package main

import (
	"context"
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
	"time"

	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/kvcache"
)

const (
	H, G, d, W, budget = 32, 8, 128, 8, 1024
)

var srHeads = []int{0, 9, 18, 27} // one per KV head group, as torchcmp.py's default

// stat is one step's measurement: milliseconds (min, median) and the
// median of the per-round ratios of its time to its floor.
type stat struct {
	min, med, xFloor float64
	bw               [3]float64 // probe bandwidth of its rounds, GB/s: min, median, max
}

func main() {
	lengths := flag.String("lengths", "4096,16384,32768", "comma-separated prompt lengths")
	reps := flag.Int("reps", 5, "timed rounds per step (at least 3)")
	python := flag.String("python", "python3", "Python with torch; empty skips the PyTorch side")
	script := flag.String("script", "", "path of torchcmp.py (default: beside this source, tools/torchcmp)")
	types := flag.String("dtypes", "float32,float16,bfloat16", "storage types")
	decodeOnly := flag.Bool("decode-only", false, "time decode attention alone, on both sides")
	flag.Parse()
	log.SetFlags(0)
	*reps = max(3, *reps)
	var Ls []int
	for _, s := range strings.Split(*lengths, ",") {
		L, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || L <= budget {
			log.Fatalf("torchcmp: bad length %q (want > %d)", s, budget)
		}
		Ls = append(Ls, L)
	}
	var dts []kvcache.DType
	for _, s := range strings.Split(*types, ",") {
		dt, err := kvcache.ParseDType(strings.TrimSpace(s))
		if err != nil {
			log.Fatalf("torchcmp: %v", err)
		}
		dts = append(dts, dt)
	}
	probe, err := cpu.NewProbe(0)
	if err != nil {
		log.Fatal(err)
	}

	fmt.Printf("GOMAXPROCS %d, %s, %s, load average %s\n", runtime.GOMAXPROCS(0), runtime.GOARCH,
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), loadAvg())
	var bw1, bw2 []float64
	for range *reps {
		g1, _ := probe.Read(1)
		g2, _ := probe.Read(2)
		bw1, bw2 = append(bw1, g1), append(bw2, g2)
	}
	fmt.Printf("memory read bandwidth (probe, %d MiB): 1 goroutine %s GB/s, 2 goroutines %s GB/s (min/median/max of %d)\n",
		probe.Bytes()>>20, spread(bw1), spread(bw2), *reps)

	goMs := map[string]stat{}
	for _, L := range Ls {
		for _, dt := range dts {
			base, q := fill(L, dt)
			size := float64(dt.Size())
			kept := float64(2*G*budget*d) * size // keys and values of the kept rows
			srKeys := float64(len(srHeads)*L*d) * size
			key := fmt.Sprintf("%d/%v", L, dt)
			if !*decodeOnly {
				ck := policy(compresskv.CompressKV)
				goMs["compresskv/"+key] = measure(probe, *reps, srKeys+kept, compressRun(ck, base, q))
				goMs["select/"+key] = measure(probe, *reps, srKeys, func() func() {
					return func() {
						if _, err := ck.Plan(context.Background(), base, q, H); err != nil {
							log.Fatal(err)
						}
					}
				})
				plan, err := ck.Plan(context.Background(), base, q, H)
				if err != nil {
					log.Fatal(err)
				}
				goMs["compact/"+key] = measure(probe, *reps, kept, func() func() {
					c := base.Clone()
					return func() {
						if err := ck.Apply(c, plan); err != nil {
							log.Fatal(err)
						}
					}
				})
				goMs["snapkv/"+key] = measure(probe, *reps, float64(G*L*d)*size+kept, compressRun(policy(compresskv.SnapKV), base, q))
			}
			goMs["decode/"+key] = measure(probe, *reps, float64(2*G*L*d)*size, attendRun(base))
		}
	}

	var torch struct {
		Torch   string                `json:"torch"`
		Threads int                   `json:"threads"`
		Ms      map[string][2]float64 `json:"ms"`
	}
	if *python != "" {
		path := *script
		if path == "" {
			path = filepath.Join("tools", "torchcmp", "torchcmp.py")
		}
		var tt []string
		for _, dt := range dts {
			if dt == kvcache.Float32 && !slices.Contains(tt, "float32") {
				tt = append(tt, "float32")
			} else if dt != kvcache.Float32 && !slices.Contains(tt, "bfloat16") {
				tt = append(tt, "bfloat16")
			}
		}
		args := []string{path, "--lengths", *lengths, "--reps", strconv.Itoa(*reps),
			"--dtypes", strings.Join(tt, ","),
			"--sr-heads", strings.Trim(strings.Join(strings.Fields(fmt.Sprint(srHeads)), ","), "[]")}
		if *decodeOnly {
			args = append(args, "--decode-only")
		}
		cmd := exec.Command(*python, args...)
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

	fmt.Printf("\n%-30s %-9s %17s %8s %7s %18s %17s %8s\n", "step, one layer", "storage", "compresskv ms", "x floor", "% bw", "probe GB/s", "PyTorch ms", "PyTorch/")
	fmt.Printf("%-30s %-9s %17s %8s %7s %18s %17s %8s\n", "", "", "min / median", "median", "median", "min / med / max", "min / median", "ours")
	steps := []struct{ name, key, torchKey string }{
		{"CompressKV (select+compact)", "compresskv", "compresskv"},
		{"  selection alone", "select", ""},
		{"  compaction alone", "compact", ""},
		{"  vs PyTorch scoring all 32", "compresskv", "compresskv-all-heads"},
		{"SnapKV (32 heads score)", "snapkv", "snapkv"},
		{"decode attention", "decode", "decode"},
	}
	for _, L := range Ls {
		fmt.Printf("L = %d\n", L)
		for _, s := range steps {
			if *decodeOnly && s.key != "decode" {
				continue
			}
			for _, dt := range dts {
				g := goMs[fmt.Sprintf("%s/%d/%v", s.key, L, dt)]
				tdt := "float32"
				if dt != kvcache.Float32 {
					tdt = "bfloat16"
				}
				line := fmt.Sprintf("%-30s %-9v %7.2f / %7.2f %7.2fx %6.0f%% %5.1f/%5.1f/%5.1f", s.name, dt, g.min, g.med, g.xFloor, 100/g.xFloor,
					g.bw[0], g.bw[1], g.bw[2])
				if t, ok := torch.Ms[fmt.Sprintf("%s/%d/%s", s.torchKey, L, tdt)]; ok && s.torchKey != "" {
					line += fmt.Sprintf(" %7.2f / %7.2f %7.2fx", t[0], t[1], t[1]/g.med)
					if tdt != dt.String() {
						line += " (" + tdt + ")"
					}
				}
				fmt.Println(line)
			}
		}
	}
	fmt.Printf("\nload average after: %s\nkernels (backend/cpu Plan):\n", loadAvg())
	for _, c := range cpu.New().Plan() {
		fmt.Println(" ", c)
	}
}

// decided reports whether backend/cpu has chosen a kernel for every shape
// class met so far.
func decided() bool {
	for _, c := range cpu.New().Plan() {
		if c.Kernel == "" {
			return false
		}
	}
	return true
}

// loadAvg returns the three load averages of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// spread formats the min, median and max of x.
func spread(x []float64) string {
	s := slices.Sorted(slices.Values(x))
	return fmt.Sprintf("%.1f / %.1f / %.1f", s[0], s[len(s)/2], s[len(s)-1])
}

func policy(m compresskv.Method) *compresskv.Policy {
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
	return p
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

// compressRun prepares Compress of a fresh clone of base.
func compressRun(p *compresskv.Policy, base *kvcache.Host, q [][]float32) func() func() {
	return func() func() {
		c := base.Clone()
		return func() {
			if _, err := p.Compress(context.Background(), c, q, H); err != nil {
				log.Fatal(err)
			}
		}
	}
}

func attendRun(c *kvcache.Host) func() func() {
	r := rand.New(rand.NewPCG(4, 5))
	q := make([]float32, H*d)
	for i := range q {
		q[i] = float32(r.NormFloat64())
	}
	out := make([]float32, H*d)
	b := cpu.New()
	return func() func() {
		return func() {
			if err := b.Attend(c, 0, q, H, out); err != nil {
				log.Fatal(err)
			}
		}
	}
}

// measure runs prepare (untimed) and the function it returns (timed) in
// reps rounds after one warm run; each round reads the probe first. bytes
// is what the step must read at least: its floor in a round is bytes over
// the probe's bandwidth in that round.
func measure(p *cpu.Probe, reps int, bytes float64, prepare func() func()) stat {
	// The first calls of a shape class measure backend/cpu's candidate
	// kernels; warm until every class met is chosen, as a decode loop is
	// after its first token, each call after a read of the probe as in the
	// timed rounds.
	for range 100 {
		f := prepare()
		p.Read(2)
		f()
		if decided() {
			break
		}
	}
	var ms, x, bw []float64
	for range reps {
		f := prepare()
		runtime.GC()
		g, _ := p.Read(2)
		t0 := time.Now()
		f()
		sec := time.Since(t0).Seconds()
		ms = append(ms, sec*1e3)
		x = append(x, sec/(bytes/(g*1e9)))
		bw = append(bw, g)
	}
	slices.Sort(ms)
	slices.Sort(x)
	slices.Sort(bw)
	return stat{min: ms[0], med: ms[len(ms)/2], xFloor: x[len(x)/2], bw: [3]float64{bw[0], bw[len(bw)/2], bw[len(bw)-1]}}
}
