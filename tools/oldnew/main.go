//go:build oldnew

// Command oldnew compares backend/cpu before the four-head kernels (OLD,
// commit 16a5a79) with the working tree (NEW) in one binary: run.sh writes
// OLD into tools/oldnew/old and builds this file with the oldnew tag.
//
// Every step runs OLD and NEW alternately, round by round, on the same data
// (a one-layer cache of the Llama-3.1-8B shape: 32 query heads, 8 KV heads,
// HeadDim 128); each round first reads the bandwidth probe on two
// goroutines. It prints, per step, length and storage type: OLD's and NEW's
// min / median milliseconds, the median and min of the per-round ratios
// NEW/OLD, each side's bytes per second as a share of the probe read in the
// same round (median), and the probe's min / median / max over the step's
// rounds. Set COMPRESSKV_CPU=avx2 to run both without their AVX-512 paths.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/kvcache"
	"github.com/compresskv/compresskv/tools/internal/paired"
	"github.com/compresskv/compresskv/tools/oldnew/old"
)

const (
	H, G, d, W, budget = 32, 8, 128, 8, 1024
)

var srHeads = []int{0, 9, 18, 27}

func main() {
	lengths := flag.String("lengths", "4096,32768,131072", "comma-separated lengths")
	reps := flag.Int("reps", 7, "interleaved rounds per step (at least 5)")
	types := flag.String("dtypes", "float32,float16,bfloat16", "storage types")
	steps := flag.String("steps", "decode,snapkv-scores,compresskv-scores,snapkv,compresskv", "steps to run")
	kernel := flag.String("new-kernel", "", "run NEW with this kernel wherever it is a candidate (cpu.Backend.WithKernel); empty: NEW's own choice")
	flag.Parse()
	log.SetFlags(0)
	*reps = max(5, *reps)
	var Ls []int
	for _, s := range strings.Split(*lengths, ",") {
		L, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || L <= budget {
			log.Fatalf("oldnew: bad length %q (want > %d)", s, budget)
		}
		Ls = append(Ls, L)
	}
	var dts []kvcache.DType
	for _, s := range strings.Split(*types, ",") {
		dt, err := kvcache.ParseDType(strings.TrimSpace(s))
		if err != nil {
			log.Fatalf("oldnew: %v", err)
		}
		dts = append(dts, dt)
	}
	probe, err := cpu.NewProbe(0)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s, GOMAXPROCS %d, %s, COMPRESSKV_CPU=%q\n", cpuModel(), runtime.GOMAXPROCS(0),
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), os.Getenv("COMPRESSKV_CPU"))
	fmt.Printf("load before: %s\n", load())
	fmt.Printf("%d rounds a step, OLD and NEW alternating\n\n", *reps)
	fmt.Printf("%-18s %-8s %7s %17s %17s %15s %6s %6s %6s %18s\n", "step", "storage", "L",
		"OLD ms", "NEW ms", "NEW/OLD", "OLD", "NEW", "NEW", "probe GB/s")
	fmt.Printf("%-18s %-8s %7s %17s %17s %15s %6s %6s %6s %18s\n", "", "", "",
		"min / median", "min / median", "median (min)", "%bw", "%bw", "xfloor", "min / med / max")
	oldB, newB := old.New(), cpu.New()
	if *kernel != "" {
		if newB, err = newB.WithKernel(*kernel); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("NEW runs %s wherever it is a candidate\n", *kernel)
	}
	for _, step := range strings.Split(*steps, ",") {
		for _, L := range Ls {
			for _, dt := range dts {
				c, q := fill(L, dt)
				size := float64(dt.Size())
				kept := float64(2*G*budget*d) * size
				var bytes float64
				var prepare func(i int)
				var fo, fn func()
				switch step {
				case "decode":
					bytes = float64(2*G*L*d) * size
					qd, oo, on := q[:H*d], make([]float32, H*d), make([]float32, H*d)
					fo = func() { must(oldB.Attend(c, 0, qd, H, oo)) }
					fn = func() { must(newB.Attend(c, 0, qd, H, on)) }
				case "snapkv-scores", "compresskv-scores":
					heads := srHeads
					bytes = float64(len(heads)*L*d) * size
					if step == "snapkv-scores" {
						heads = make([]int, H)
						for h := range heads {
							heads[h] = h
						}
						bytes = float64(G*L*d) * size
					}
					oo, on := outs(len(heads), L), outs(len(heads), L)
					fo = func() { must(oldB.WindowScores(c, 0, q, W, H, heads, oo)) }
					fn = func() { must(newB.WindowScores(c, 0, q, W, H, heads, on)) }
				case "pool-topk":
					// SnapKV's selection tail: average-pool 8 rows of L
					// scores (kernel 5), then the top budget-W of each.
					bytes = float64(G*L) * 4
					r := rand.New(rand.NewPCG(uint64(L), 7))
					src := make([][]float32, G)
					for i := range src {
						src[i] = make([]float32, L)
						for k := range src[i] {
							src[i][k] = r.Float32()
						}
					}
					dst := make([]float32, L)
					var keep []int
					run := func(b backend.Backend) {
						for i := range src {
							must(b.Pool(dst, src[i], 5, backend.AvgPool))
							var err error
							keep, err = b.TopK(keep[:0], dst, budget-W)
							must(err)
						}
					}
					fo = func() { run(oldB) }
					fn = func() { run(newB) }
				case "snapkv", "compresskv":
					m, floor := compresskv.SnapKV, float64(G*L*d)*size+kept
					if step == "compresskv" {
						m, floor = compresskv.CompressKV, float64(len(srHeads)*L*d)*size+kept
					}
					bytes = floor
					po, pn := policy(m, oldB), policy(m, newB)
					var work *kvcache.Host
					prepare = func(int) { work = c.Clone(); runtime.GC() }
					fo = func() { _, err := po.Compress(context.Background(), work, [][]float32{q}, H); must(err) }
					fn = func() { _, err := pn.Compress(context.Background(), work, [][]float32{q}, H); must(err) }
				default:
					log.Fatalf("oldnew: unknown step %q", step)
				}
				// NEW's first calls measure its candidates (backend/cpu's
				// plan); warm it until it has chosen, as a decode loop is
				// after its first token, each call after a read of the
				// probe as in the timed rounds (and as in a model, whose
				// other layers run between two calls on one layer's rows).
				for range 100 {
					if prepare != nil {
						prepare(1)
					}
					probe.Read(2)
					fn()
					if decided(newB) {
						break
					}
				}
				rs := paired.Run(probe, *reps, prepare, fo, fn)
				so, sn := paired.Of(rs.Sec[0]).Scaled(1e3), paired.Of(rs.Sec[1]).Scaled(1e3)
				ratio := paired.Of(rs.Ratio(1, 0))
				bwO, bwN := paired.Of(rs.Share(0, bytes)), paired.Of(rs.Share(1, bytes))
				fmt.Printf("%-18s %-8v %7d %7.2f / %7.2f %7.2f / %7.2f %6.3f (%5.3f) %5.0f%% %5.0f%% %5.2fx %18s\n",
					step, dt, L, so.Min, so.Med, sn.Min, sn.Med, ratio.Med, ratio.Min, bwO.Med, bwN.Med,
					100/bwN.Med, paired.Of(rs.Probe))
			}
		}
	}
	fmt.Printf("\nload after: %s\n", load())
	fmt.Println("\nNEW's kernels (Plan):")
	for _, c := range newB.Plan() {
		fmt.Println(" ", c)
	}
}

// decided reports whether every shape class b's plan has met is chosen.
func decided(b *cpu.Backend) bool {
	for _, c := range b.Plan() {
		if c.Kernel == "" {
			return false
		}
	}
	return true
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func outs(n, L int) [][]float32 {
	o := make([][]float32, n)
	for i := range o {
		o[i] = make([]float32, L)
	}
	return o
}

func policy(m compresskv.Method, b backend.Backend) *compresskv.Policy {
	ranking := append([]int(nil), srHeads...)
	for h := range H {
		if !contains(ranking, h) {
			ranking = append(ranking, h)
		}
	}
	prof := &compresskv.Profile{
		Version:     compresskv.ProfileVersion,
		Model:       compresskv.ModelInfo{Name: "oldnew", Layers: 1, QueryHeads: H, KVHeads: G, HeadDim: d},
		HeadRanking: [][]int{ranking},
	}
	p, err := compresskv.New(m, compresskv.Config{Budget: budget, Window: W, Profile: prof, Backend: b})
	if err != nil {
		log.Fatal(err)
	}
	return p
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// fill returns a one-layer cache of L random tokens and W window queries
// of all H heads (the same data for every run of one length).
func fill(L int, dt kvcache.DType) (*kvcache.Host, []float32) {
	r := rand.New(rand.NewPCG(uint64(L), 1))
	c, err := kvcache.NewHost(kvcache.Shape{Layers: 1, KVHeads: G, HeadDim: d}, dt)
	must(err)
	must(c.Reserve(L))
	const step = 1024
	k, v := make([]float32, step*G*d), make([]float32, step*G*d)
	for done := 0; done < L; done += step {
		n := min(step, L-done)
		for i := range k[:n*G*d] {
			k[i], v[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
		}
		must(c.Append(0, k[:n*G*d], v[:n*G*d]))
	}
	q := make([]float32, W*H*d)
	for i := range q {
		q[i] = float32(r.NormFloat64() * 1.5)
	}
	return c, q
}

func cpuModel() string {
	out, err := exec.Command("sh", "-c", "lscpu | grep 'Model name' | sed 's/.*: *//'").Output()
	if err != nil {
		return "unknown processor"
	}
	return strings.TrimSpace(string(out))
}

func load() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}
