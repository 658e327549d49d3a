// Command kernelguard checks, on the machine it runs on, that the kernels
// backend/cpu chose by measurement are as fast as their rivals: for each hot
// path (decode attention, SnapKV's and CompressKV's window scores at the
// Llama-3.1-8B layer shape) and storage type it lets the backend choose,
// then times the backend as chosen against every candidate kernel run alone
// (WithKernel), in interleaved rounds on the same data, each round beside a
// read of the bandwidth probe.
//
// It prints, per candidate, the per-round ratio chosen/candidate (median,
// min and max) and the candidate's share of the probe read in the same
// round, and judges each ratio against -limit (1.15) with a sign test over
// the rounds: FAIL when significantly more rounds than half (one-sided,
// 5%) have the chosen kernel above the limit, ok when significantly more
// have it at or below, else it adds rounds (up to -max-reps) and, still
// undecided, warns that the machine is too noisy to decide. A wall-clock
// limit is never used: a slow or loaded machine slows both sides of a
// ratio. The exit status is 1 when any check fails.
//
//	go run ./tools/kernelguard
//	go run ./tools/kernelguard -lengths 4096,32768 -reps 15
package main

import (
	"flag"
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/klauspost/cpuid/v2"

	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/kvcache"
	"github.com/compresskv/compresskv/tools/internal/paired"
)

const (
	H, G, d, W = 32, 8, 128, 8
)

var srHeads = []int{0, 9, 18, 27} // CompressKV's SR heads: one per KV head group

// hotPath is one call the guard times.
type hotPath struct {
	name   string
	L      int    // default length: long enough to stream from memory, short enough for CI
	op     string // Plan's Op
	group  int    // Plan's Group
	window int
	bytes  func(L int, dt kvcache.DType) float64 // what one call must read (backend/cpu's test for streaming too)
	call   func(b *cpu.Backend, c *kvcache.Host, q []float32, out [][]float32) error
	outs   func(L int) [][]float32
}

var hotPaths = []hotPath{
	{
		name: "decode", op: "attend", group: H / G, L: 16384,
		bytes: func(L int, dt kvcache.DType) float64 { return float64(2*G*L*d) * float64(dt.Size()) },
		outs:  func(int) [][]float32 { return [][]float32{make([]float32, H*d)} },
		call: func(b *cpu.Backend, c *kvcache.Host, q []float32, out [][]float32) error {
			return b.Attend(c, 0, q[:H*d], H, out[0])
		},
	},
	{
		name: "snapkv-scores", op: "window", group: H / G, window: W, L: 4096,
		bytes: func(L int, dt kvcache.DType) float64 { return float64(G*L*d) * float64(dt.Size()) },
		outs:  func(L int) [][]float32 { return rows(H, L) },
		call: func(b *cpu.Backend, c *kvcache.Host, q []float32, out [][]float32) error {
			return b.WindowScores(c, 0, q, W, H, allHeads, out)
		},
	},
	{
		name: "compresskv-scores", op: "window", group: 1, window: W, L: 8192,
		bytes: func(L int, dt kvcache.DType) float64 { return float64(len(srHeads)*L*d) * float64(dt.Size()) },
		outs:  func(L int) [][]float32 { return rows(len(srHeads), L) },
		call: func(b *cpu.Backend, c *kvcache.Host, q []float32, out [][]float32) error {
			return b.WindowScores(c, 0, q, W, H, srHeads, out)
		},
	},
}

var allHeads = func() []int {
	h := make([]int, H)
	for i := range h {
		h[i] = i
	}
	return h
}()

func rows(n, L int) [][]float32 {
	o := make([][]float32, n)
	for i := range o {
		o[i] = make([]float32, L)
	}
	return o
}

func main() {
	lengths := flag.String("lengths", "", "comma-separated cache lengths (default: 16384 for decode, 8192 for CompressKV's scores, 4096 for SnapKV's)")
	types := flag.String("dtypes", "float32,float16,bfloat16", "storage types")
	paths := flag.String("paths", "decode,snapkv-scores,compresskv-scores", "hot paths")
	reps := flag.Int("reps", 9, "interleaved rounds to start with (at least 5)")
	maxReps := flag.Int("max-reps", 25, "rounds at most, when the first ones do not decide")
	limit := flag.Float64("limit", 1.15, "the chosen kernel may take at most this times the best candidate's time")
	flag.Parse()
	log.SetFlags(0)
	*reps = max(5, *reps)
	probe, err := cpu.NewProbe(0)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("kernelguard: GOMAXPROCS %d, load %s, COMPRESSKV_CPU=%q, limit %.2fx\n",
		runtime.GOMAXPROCS(0), load(), os.Getenv("COMPRESSKV_CPU"), *limit)
	failed, noisy := 0, 0
	for _, pname := range strings.Split(*paths, ",") {
		var hp *hotPath
		for i := range hotPaths {
			if hotPaths[i].name == pname {
				hp = &hotPaths[i]
			}
		}
		if hp == nil {
			log.Fatalf("kernelguard: unknown path %q", pname)
		}
		ls := *lengths
		if ls == "" {
			ls = strconv.Itoa(hp.L)
		}
		for _, ls := range strings.Split(ls, ",") {
			L, err := strconv.Atoi(strings.TrimSpace(ls))
			if err != nil || L < W {
				log.Fatalf("kernelguard: bad length %q", ls)
			}
			for _, ts := range strings.Split(*types, ",") {
				dt, err := kvcache.ParseDType(strings.TrimSpace(ts))
				if err != nil {
					log.Fatal(err)
				}
				f, n := guard(probe, hp, L, dt, *reps, *maxReps, *limit)
				failed += f
				noisy += n
			}
		}
	}
	fmt.Printf("kernelguard: load %s; %d failed, %d too noisy to decide\n", load(), failed, noisy)
	if failed > 0 {
		os.Exit(1)
	}
}

// guard checks one hot path at one length and storage type; it returns
// the number of candidates that failed and that stayed undecided.
func guard(probe *cpu.Probe, hp *hotPath, L int, dt kvcache.DType, reps, maxReps int, limit float64) (failed, noisy int) {
	c, q := fill(L, dt)
	out := hp.outs(L)
	chosen := cpu.New()
	var choice *cpu.Choice
	for range 100 {
		probe.Read(2) // as before each round: the rows are not in cache
		if err := hp.call(chosen, c, q, out); err != nil {
			log.Fatal(err)
		}
		if choice = find(chosen.Plan(), hp, dt, L); choice != nil && choice.Kernel != "" {
			break
		}
	}
	if choice == nil || choice.Kernel == "" {
		fmt.Printf("%s %v L %d: FAIL: no kernel chosen after 100 calls\n", hp.name, dt, L)
		return 1, 0
	}
	base := func() {
		if err := hp.call(chosen, c, q, out); err != nil {
			log.Fatal(err)
		}
	}
	var others []func()
	for _, cd := range choice.Candidates {
		b, err := cpu.New().WithKernel(cd.Kernel)
		if err != nil {
			log.Fatal(err)
		}
		o := hp.outs(L)
		others = append(others, func() {
			if err := hp.call(b, c, q, o); err != nil {
				log.Fatal(err)
			}
		})
	}
	fmt.Printf("%s %v L %d: chosen %s (%s)\n", hp.name, dt, L, choice.Kernel, choice.Reason)
	var ps paired.Pairs
	verdicts := make([]string, len(choice.Candidates))
	for n := reps; ; n = min(maxReps, n+8) {
		ps.Append(paired.RunPairs(probe, n-len(ps.Probe), base, others...))
		undecided := false
		for i := range choice.Candidates {
			verdicts[i] = verdict(ps.Ratio(i), limit)
			undecided = undecided || verdicts[i] == "noisy"
		}
		if !undecided || n >= maxReps {
			break
		}
	}
	bytes := hp.bytes(L, dt)
	var all []float64
	for _, b := range ps.Base {
		all = append(all, b...)
	}
	fmt.Printf("  probe %s GB/s (min / median / max of %d rounds); chosen as run: %s ms\n",
		paired.Of(ps.Probe), len(ps.Probe), paired.Of(all).Scaled(1e3))
	fmt.Printf("  %-16s %26s %8s %9s  %s\n", "candidate", "chosen/candidate med [min, max]", "ms med", "% probe", "verdict")
	for i, cd := range choice.Candidates {
		r := paired.Of(ps.Ratio(i))
		v := verdicts[i]
		switch v {
		case "FAIL":
			failed++
		case "noisy":
			noisy++
			v = fmt.Sprintf("WARN: too noisy to decide (%d rounds)", len(ps.Probe))
		}
		fmt.Printf("  %-16s %8.3f [%6.3f, %6.3f] %8.2f %8.0f%%  %s\n", cd.Kernel, r.Med, r.Min, r.Max,
			paired.Of(ps.Other[i]).Med*1e3, paired.Of(ps.ShareOf(ps.Other[i], bytes)).Med, v)
	}
	return failed, noisy
}

// verdict judges the per-round ratios chosen/candidate against limit: FAIL
// when the rounds above it are significantly more than half (one-sided
// sign test, 5%), ok when the rounds at or below it are, else noisy.
func verdict(ratios []float64, limit float64) string {
	above := 0
	for _, r := range ratios {
		if r > limit {
			above++
		}
	}
	n := len(ratios)
	switch {
	case signP(above, n) <= 0.05:
		return "FAIL"
	case signP(n-above, n) <= 0.05:
		return "ok"
	}
	return "noisy"
}

// signP is the probability of k or more heads in n fair coin tosses.
func signP(k, n int) float64 {
	p := 0.0
	for i := k; i <= n; i++ {
		p += math.Exp(lchoose(n, i) - float64(n)*math.Ln2)
	}
	return p
}

func lchoose(n, k int) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return a - b - c
}

// find returns the Plan entry of hot path hp: its shape, and whether a
// call reads more than the last-level cache holds (the test backend/cpu
// makes, with the same size).
func find(plan []cpu.Choice, hp *hotPath, dt kvcache.DType, L int) *cpu.Choice {
	llc := int64(cpuid.CPU.Cache.L3)
	if llc <= 0 {
		llc = 32 << 20
	}
	streams := int64(hp.bytes(L, dt)) > llc
	for i, c := range plan {
		if c.Op == hp.op && c.DType == dt && c.Group == hp.group && c.Window == hp.window && c.HeadDim == d &&
			c.Long == (L >= 1024) && c.Streams == streams {
			return &plan[i]
		}
	}
	return nil
}

// fill returns a one-layer cache of L random tokens and W window queries
// of all H heads.
func fill(L int, dt kvcache.DType) (*kvcache.Host, []float32) {
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
	return c, q
}

func load() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
