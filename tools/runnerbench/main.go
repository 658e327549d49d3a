// Command runnerbench times the GGUF runner (examples/llama) against
// llama.cpp's llama-bench on the same model files, the same number of
// threads, interleaved, and prints the table of docs/RESULTS.md:
//
//	runnerbench -llama-bench PATH/llama-bench [-rounds 3] [-threads 2] FILE.gguf ...
//
// For each round and file it runs, alternating which goes first: prompt
// processing of each -pp length from an empty cache (chunks of -chunk
// tokens, as llama-bench's ubatch), and the generation of -tg tokens after
// a prompt of -depth tokens (decoding at that context); then llama-bench
// with the same tests (-p, -n, -d, one repetition, no warm-up, F16 KV cache
// on both sides). Each cell gives the minimum and the median tokens/s over
// the rounds; the ratio is of the medians. The last column divides by the
// processor time instead (medians of tokens per processor-second, all
// threads): on a shared machine the wall-clock figures measure the
// scheduler's share as much as the code, this one less so (llama.cpp's
// threads spin while they wait, which it counts).
//
// Beside the speeds: decoding as the bytes of weights it reads (each
// generated token reads every weight once) per second, against the
// bandwidth probe of backend/cpu on as many goroutines, read at the start
// of each round (the best of five reads; the median over the rounds of
// each round's ratio); and
// prompt processing per processor-second (so that the share of the cores
// other processes take does not enter) as FLOP of the weight products (2
// per weight per token) against one core's FMA peak (the probe of
// fma_amd64.s, the best of the rounds). The load average is recorded at
// each round: the machines the project measures on are shared.
//
// With -e2e it measures instead what compressing the cache buys at decode
// time after a long prompt (e2e.go).
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/examples/llama/gguf"
	"github.com/compresskv/compresskv/examples/llama/quant"
	"github.com/compresskv/compresskv/kvcache"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "runnerbench:", err)
		os.Exit(1)
	}
}

type options struct {
	llamaBench string
	rounds     int
	threads    int
	pp         []int
	depth, tg  int
	chunk      int
	files      []string
}

// test is one measurement: prompt processing of pp tokens, or generation
// of tg tokens at depth.
type test struct{ pp, tg, depth int }

func (t test) String() string {
	if t.pp > 0 {
		return fmt.Sprintf("pp%d", t.pp)
	}
	return fmt.Sprintf("tg%d@d%d", t.tg, t.depth)
}

// cell holds one file's measurements of one test.
type cell struct {
	ours, ref       []float64 // tokens/s per round
	oursCPU, refCPU []float64 // tokens per processor-second per round
}

// result is one side's measurement of one test: tokens per second of
// wall-clock time and per second of processor time (all threads; 0 where
// it cannot be told apart from other work).
type result struct{ tps, cpu float64 }

// fileInfo is what the table needs of a model file.
type fileInfo struct {
	name        string
	types       string // the weight types, most bytes first
	layerBytes  int64  // bytes of the layers' weight matrices
	outBytes    int64  // bytes of the output matrix
	layerParams int64  // weights of the layers' matrices
	outParams   int64  // weights of the output matrix
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("runnerbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var pp string
	fs.StringVar(&o.llamaBench, "llama-bench", "", "llama.cpp's llama-bench, run on the same files (empty: ours alone)")
	fs.IntVar(&o.rounds, "rounds", 3, "interleaved rounds")
	fs.IntVar(&o.threads, "threads", 2, "threads on both sides (GOMAXPROCS, llama-bench -t)")
	fs.StringVar(&pp, "pp", "512,4096", "prompt lengths, comma-separated")
	fs.IntVar(&o.depth, "depth", 4096, "context before the generated tokens")
	fs.IntVar(&o.tg, "tg", 64, "generated tokens (0: no generation test)")
	fs.IntVar(&o.chunk, "chunk", 512, "prompt tokens per forward pass (llama-bench's ubatch)")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (ours and the waits for llama-bench) to this file")
	e2e := fs.Bool("e2e", false, "instead: the end-to-end compression run on one file (see e2e.go)")
	e2eMode := fs.String("e2e-run", "", "internal: one mode of -e2e, in this process")
	var eo e2eOptions
	e2eFlags(fs, &eo)
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.files = fs.Args()
	eo.tg, eo.chunk, eo.threads = o.tg, o.chunk, o.threads
	if *e2eMode != "" || *e2e {
		if len(o.files) != 1 || eo.prompt < 1 || eo.budget < 1 || eo.tg < 1 || eo.reps < 1 {
			return fmt.Errorf("-e2e: one model file, and positive -prompt, -budget, -tg and -reps")
		}
		if *e2eMode != "" {
			return e2eRun(*e2eMode, o.files[0], eo, stdout)
		}
		return runE2E(o.files[0], eo, stdout, stderr)
	}
	if len(o.files) == 0 || o.rounds < 1 || o.threads < 1 || o.chunk < 1 {
		return fmt.Errorf("usage: runnerbench [flags] FILE.gguf ... (-h for the flags)")
	}
	for _, s := range strings.Split(pp, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return fmt.Errorf("-pp: %q is not a prompt length", s)
		}
		o.pp = append(o.pp, n)
	}
	runtime.GOMAXPROCS(o.threads)
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var tests []test
	for _, n := range o.pp {
		tests = append(tests, test{pp: n})
	}
	if o.tg > 0 {
		tests = append(tests, test{tg: o.tg, depth: o.depth})
	}

	infos := make([]fileInfo, len(o.files))
	for i, f := range o.files {
		var err error
		if infos[i], err = inspect(f); err != nil {
			return err
		}
	}
	cells := make([][]cell, len(o.files))
	for i := range cells {
		cells[i] = make([]cell, len(tests))
	}
	probe, err := cpu.NewProbe(0)
	if err != nil {
		return err
	}
	var bw, peak []float64
	var loads []string
	start := time.Now()
	for r := range o.rounds {
		loads = append(loads, loadAverage())
		// The best of five reads: a single read at the start of a round
		// came out at a third of the rate decoding then sustained on the
		// shared machine (10.5 against 30.4 GB/s an hour apart).
		g := 0.0
		for range 5 {
			v, _ := probe.Read(o.threads)
			g = max(g, v)
		}
		bw = append(bw, g)
		peak = append(peak, fmaPeak())
		fmt.Fprintf(stderr, "round %d: load %s, bandwidth probe %.1f GB/s, FMA peak %.0f GFLOP per processor-second\n", r+1, loads[r], bw[r], peak[r])
		for i, f := range o.files {
			sides := []func() error{
				func() error {
					v, err := ours(f, tests, o)
					for j := range tests {
						if err == nil {
							cells[i][j].ours = append(cells[i][j].ours, v[j].tps)
							cells[i][j].oursCPU = append(cells[i][j].oursCPU, v[j].cpu)
						}
					}
					return err
				},
				func() error {
					if o.llamaBench == "" {
						return nil
					}
					v, err := reference(o.llamaBench, f, tests, o)
					for j := range tests {
						if err == nil {
							cells[i][j].ref = append(cells[i][j].ref, v[j].tps)
							if v[j].cpu > 0 {
								cells[i][j].refCPU = append(cells[i][j].refCPU, v[j].cpu)
							}
						}
					}
					return err
				},
			}
			if r%2 == 1 {
				sides[0], sides[1] = sides[1], sides[0]
			}
			for _, side := range sides {
				if err := side(); err != nil {
					return err
				}
			}
			fmt.Fprintf(stderr, "  %s done (%s):", infos[i].name, time.Since(start).Round(time.Second))
			for j, t := range tests {
				c := cells[i][j]
				fmt.Fprintf(stderr, " %v ours %.2f", t, c.ours[len(c.ours)-1])
				if len(c.ref) > 0 {
					fmt.Fprintf(stderr, " llama.cpp %.2f", c.ref[len(c.ref)-1])
				}
				fmt.Fprint(stderr, ";")
			}
			fmt.Fprintln(stderr)
		}
	}
	loads = append(loads, loadAverage())
	printTable(stdout, o, tests, infos, cells, bw, peak, loads)
	return nil
}

// inspect reads a file's weight types and sizes: the layers' matrices
// (blk.*, two or more dimensions) and the output matrix (output.weight, or
// the token embeddings when the file has none).
func inspect(path string) (fileInfo, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return fileInfo{}, err
	}
	defer f.Close()
	fi := fileInfo{name: strings.TrimSuffix(filepath.Base(path), ".gguf")}
	byType := map[quant.Type]int64{}
	var embd gguf.TensorInfo
	hasOutput := false
	for _, t := range f.Tensors {
		switch {
		case t.Name == "token_embd.weight":
			embd = t
		case t.Name == "output.weight":
			hasOutput = true
			fi.outBytes, fi.outParams = t.Size, t.Elements()
			byType[t.Type] += t.Size
		case strings.HasPrefix(t.Name, "blk.") && len(t.Dims) >= 2:
			fi.layerBytes += t.Size
			fi.layerParams += t.Elements()
			byType[t.Type] += t.Size
		}
	}
	if !hasOutput {
		fi.outBytes, fi.outParams = embd.Size, embd.Elements()
		byType[embd.Type] += embd.Size
	}
	var ts []quant.Type
	for t := range byType {
		ts = append(ts, t)
	}
	slices.SortFunc(ts, func(a, b quant.Type) int { return int(byType[b] - byType[a]) })
	var names []string
	for _, t := range ts {
		names = append(names, t.String())
	}
	fi.types = strings.Join(names, "+")
	return fi, nil
}

// tokens returns n token ids drawn from the vocabulary (llama-bench's
// prompts are random tokens too).
func tokens(r *rand.Rand, vocab, n int) []int {
	t := make([]int, n)
	for i := range t {
		t[i] = r.IntN(vocab)
	}
	return t
}

// cpuTime returns the processor time this process has used.
func cpuTime() time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// ours runs the tests on the runner.
func ours(path string, tests []test, o options) ([]result, error) {
	m, err := llama.LoadGGUF(path)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	r := rand.New(rand.NewPCG(1, 2))
	be := backendFor(o.threads)
	prefill := func(s *llama.Session, toks []int) error {
		for i := 0; i < len(toks); i += o.chunk {
			if _, err := s.Forward(toks[i:min(len(toks), i+o.chunk)]); err != nil {
				return err
			}
		}
		return nil
	}
	out := make([]result, len(tests))
	// A prompt test's session, kept for a generation test at its length's
	// depth (its cache is what a prefill of depth tokens leaves).
	after := map[int]*llama.Session{}
	for j, t := range tests {
		if t.tg > 0 && after[t.depth] != nil {
			if out[j], err = generate(after[t.depth], r, m.Vocab, t.tg); err != nil {
				return nil, err
			}
			continue
		}
		c, err := m.NewCache(kvcache.Float16)
		if err != nil {
			return nil, err
		}
		s, err := m.NewSession(c, be)
		if err != nil {
			return nil, err
		}
		if t.pp > 0 {
			if t.pp == o.depth {
				after[t.pp] = s
			}
			toks := tokens(r, m.Vocab, t.pp)
			t0, c0 := time.Now(), cpuTime()
			if err := prefill(s, toks); err != nil {
				return nil, err
			}
			out[j] = result{float64(t.pp) / time.Since(t0).Seconds(), float64(t.pp) / (cpuTime() - c0).Seconds()}
			continue
		}
		if err := prefill(s, tokens(r, m.Vocab, t.depth)); err != nil {
			return nil, err
		}
		if out[j], err = generate(s, r, m.Vocab, t.tg); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// generate times tg single-token steps of s after warm's two untimed ones.
func generate(s *llama.Session, r *rand.Rand, vocab, tg int) (result, error) {
	if err := warm(s, r, vocab); err != nil {
		return result{}, err
	}
	toks := tokens(r, vocab, tg)
	t0, c0 := time.Now(), cpuTime()
	for _, tok := range toks {
		if _, err := s.Forward([]int{tok}); err != nil {
			return result{}, err
		}
	}
	return result{float64(tg) / time.Since(t0).Seconds(), float64(tg) / (cpuTime() - c0).Seconds()}, nil
}

var (
	backendMu sync.Mutex
	backends  = map[int]*cpu.Backend{}
)

// backendFor returns the process's one CPU backend for a number of
// workers: it measures its kernels at their first calls and keeps its
// choice (backend/cpu's plan), so that every test after the first runs
// with the choice made.
func backendFor(workers int) *cpu.Backend {
	backendMu.Lock()
	defer backendMu.Unlock()
	if backends[workers] == nil {
		backends[workers] = cpu.NewWithWorkers(workers)
	}
	return backends[workers]
}

// warm runs two generation steps untimed before a timed generation test,
// in which the backend makes its choice of attention kernels for the
// context's shape (llama-bench's generation test follows its untimed
// context-filling run too). The cache then holds two more tokens than the
// depth, out of thousands.
func warm(s *llama.Session, r *rand.Rand, vocab int) error {
	for _, tok := range tokens(r, vocab, 2) {
		if _, err := s.Forward([]int{tok}); err != nil {
			return err
		}
	}
	return nil
}

// benchResult is the part of llama-bench's JSON output read here.
type benchResult struct {
	NPrompt int     `json:"n_prompt"`
	NGen    int     `json:"n_gen"`
	NDepth  int     `json:"n_depth"`
	AvgTS   float64 `json:"avg_ts"`
}

// reference runs llama-bench once per test, so that the processor time of
// each run (user and system, all threads) is the test's: a prompt test's
// run is the prompt (and the model's loading); a generation test's run
// also fills the context first, whose processor time is taken to be that of
// the prompt test of the same length where there is one.
func reference(bin, path string, tests []test, o options) ([]result, error) {
	out := make([]result, len(tests))
	cpuOf := map[int]float64{} // prompt length: processor seconds
	common := []string{"-m", path, "-t", strconv.Itoa(o.threads), "-r", "1", "--no-warmup",
		"-ub", strconv.Itoa(o.chunk), "-ctk", "f16", "-ctv", "f16", "-o", "json"}
	for j, t := range tests {
		args := []string{"-p", strconv.Itoa(t.pp), "-n", "0"}
		if t.tg > 0 {
			args = []string{"-p", "0", "-n", strconv.Itoa(t.tg), "-d", strconv.Itoa(t.depth)}
		}
		cmd := exec.Command(bin, append(slices.Clone(common), args...)...)
		var so, se bytes.Buffer
		cmd.Stdout, cmd.Stderr = &so, &se
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("%s: %v\n%s", bin, err, se.String())
		}
		cpu := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
		var res []benchResult
		if err := json.Unmarshal(so.Bytes(), &res); err != nil {
			return nil, fmt.Errorf("%s: reading its JSON: %v", bin, err)
		}
		if len(res) != 1 || res[0].AvgTS <= 0 {
			return nil, fmt.Errorf("llama-bench gave %d results for %v", len(res), t)
		}
		out[j].tps = res[0].AvgTS
		if t.pp > 0 {
			cpuOf[t.pp] = cpu
			out[j].cpu = float64(t.pp) / cpu
		} else if pre, ok := cpuOf[t.depth]; ok && cpu > pre {
			out[j].cpu = float64(t.tg) / (cpu - pre)
		}
	}
	return out, nil
}

// loadAverage returns the 1-, 5- and 15-minute load averages.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func minMed(v []float64) (float64, float64) {
	if len(v) == 0 {
		return 0, 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[0], med
}

func printTable(w io.Writer, o options, tests []test, infos []fileInfo, cells [][]cell, bw, peak []float64, loads []string) {
	peakMax := slices.Max(peak)
	host, _ := os.Hostname()
	fmt.Fprintf(w, "%s, %s, %d threads (GOMAXPROCS and llama-bench -t), %d rounds interleaved; %s\n",
		time.Now().UTC().Format("2006-01-02"), cpuModel(), o.threads, o.rounds, host)
	fmt.Fprintf(w, "kernels %s; bandwidth probe (%d goroutines) at each round: %s GB/s; FMA peak of one core, the best of the rounds: %.0f GFLOP per processor-second\n",
		quant.KernelLevel(), o.threads, joinF(bw, "%.1f"), peakMax)
	fmt.Fprintf(w, "load average (1, 5, 15 min) at each round and at the end: %s\n\n", strings.Join(loads, "; "))
	fmt.Fprintln(w, "| model | weights | test | ours t/s (min / median) | llama.cpp t/s (min / median) | ours / llama.cpp | t/s per processor-second: ours / llama.cpp | ours: decoding against the probe, prompts per processor-second against the FMA peak |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---:|")
	for i, fi := range infos {
		for j, t := range tests {
			c := cells[i][j]
			omin, omed := minMed(c.ours)
			rmin, rmed := minMed(c.ref)
			ratio, ref := "–", "–"
			if rmed > 0 {
				ratio = fmt.Sprintf("%.2f", omed/rmed)
				ref = fmt.Sprintf("%.2f / %.2f", rmin, rmed)
			}
			_, ocpu := minMed(c.oursCPU)
			cpuRatio := "–"
			if _, rcpu := minMed(c.refCPU); rcpu > 0 {
				cpuRatio = fmt.Sprintf("%.2f / %.2f = %.2f", ocpu, rcpu, ocpu/rcpu)
			}
			var share string
			if t.pp > 0 {
				gf := 2 * float64(fi.layerParams) * ocpu / 1e9
				share = fmt.Sprintf("%.0f GFLOP, %.0f%% of FMA peak", gf, 100*gf/peakMax)
			} else {
				// Each round's decoding against the probe read at its
				// start: the same load on both.
				shares := make([]float64, len(c.ours))
				for r, tps := range c.ours {
					shares[r] = float64(fi.layerBytes+fi.outBytes) * tps / 1e9 / bw[r]
				}
				_, med := minMed(shares)
				share = fmt.Sprintf("%.2f GB/s of weights, %.0f%% of the probe", float64(fi.layerBytes+fi.outBytes)*omed/1e9, 100*med)
			}
			fmt.Fprintf(w, "| %s | %s | %v | %.2f / %.2f | %s | %s | %s | %s |\n", fi.name, fi.types, t, omin, omed, ref, ratio, cpuRatio, share)
		}
	}
}

func joinF(v []float64, format string) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(s, ", ")
}

// cpuModel returns the processor's name from /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}
