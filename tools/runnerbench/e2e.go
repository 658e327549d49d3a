package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/examples/llama/quant"
	"github.com/compresskv/compresskv/kvcache"
)

// The end-to-end measurement (-e2e): one long prompt, then decoding, with
// the full cache and with the cache compressed to a budget.
//
//	runnerbench -e2e [-prompt 16384] [-budget 1024] [-policy snapkv] [-tg 64] [-reps 3] FILE.gguf
//
// Two processes, each with its own peak resident memory. "compare"
// prefills the prompt with the full cache, copies the cache, compresses
// one of the two once with the policy (CompressKV needs a profile of the
// model, so a random-weight model gets SnapKV: the same selection
// machinery, every head scored), and then decodes -reps runs of -tg tokens
// with each, alternating, so that both meet the same load. "stream"
// bounds the cache from the first chunk (compresskv.Stream, -budget rows
// per layer after each compression) and decodes -reps runs. Each reports
// tokens/s, the caches' bytes, and its resident memory (VmRSS) and peak
// (VmHWM): "compare" as they stood after the prefill, before the copy (the
// one-shot compression's peak is the full cache's: the prefill holds it
// whole), "stream" while decoding.

// e2eCache is one cache's measurements.
type e2eCache struct {
	Name      string    `json:"name"`
	DecodeTPS []float64 `json:"decode_tps"`
	Bytes     int64     `json:"bytes"`
	Reserved  int64     `json:"reserved"`
	Rows      int       `json:"rows"` // rows per KV head, averaged over the layers
}

// e2eResult is one process's measurements.
type e2eResult struct {
	Mode        string     `json:"mode"`
	Prompt      int        `json:"prompt"`
	PrefillTPS  float64    `json:"prefill_tps"`
	CompressSec float64    `json:"compress_s"`
	Caches      []e2eCache `json:"caches"`
	RSS         int64      `json:"rss"`
	PeakRSS     int64      `json:"peak_rss"`
	Policy      string     `json:"policy"`
}

type e2eOptions struct {
	prompt, budget, tg, reps, chunk, threads int
	policy                                   string
}

func e2eFlags(fs *flag.FlagSet, o *e2eOptions) {
	fs.IntVar(&o.prompt, "prompt", 16384, "-e2e: prompt tokens")
	fs.IntVar(&o.budget, "budget", 1024, "-e2e: tokens kept per layer")
	fs.StringVar(&o.policy, "policy", "snapkv", "-e2e: compression policy (compresskv.ParseMethod)")
	fs.IntVar(&o.reps, "reps", 3, "-e2e: decode runs of -tg tokens per cache")
}

// runE2E runs the two processes and prints their table.
func runE2E(path string, o e2eOptions, stdout, stderr io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var res []e2eResult
	var loads []string
	for _, mode := range []string{"compare", "stream"} {
		loads = append(loads, loadAverage())
		cmd := exec.Command(self, "-e2e-run", mode, "-prompt", strconv.Itoa(o.prompt), "-budget", strconv.Itoa(o.budget),
			"-policy", o.policy, "-tg", strconv.Itoa(o.tg), "-reps", strconv.Itoa(o.reps), "-chunk", strconv.Itoa(o.chunk),
			"-threads", strconv.Itoa(o.threads), path)
		cmd.Stderr = stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("%s run: %v", mode, err)
		}
		var r e2eResult
		if err := json.Unmarshal(out, &r); err != nil {
			return fmt.Errorf("%s run: %v", mode, err)
		}
		res = append(res, r)
	}
	loads = append(loads, loadAverage())
	fmt.Fprintf(stdout, "%s, %s, %d threads, kernels %s; %s, %d-token prompt (chunks of %d), %d runs of %d decoded tokens per cache; load average (1, 5, 15 min) before each process and at the end: %s\n\n",
		time.Now().UTC().Format("2006-01-02"), cpuModel(), o.threads, quant.KernelLevel(), strings.TrimSuffix(filepath.Base(path), ".gguf"),
		o.prompt, o.chunk, o.reps, o.tg, strings.Join(loads, "; "))
	fmt.Fprintln(stdout, "| cache | prefill t/s | decode t/s (best / median) | decode vs full (median) | KV rows per head | KV bytes | KV reserved | RSS | peak RSS |")
	fmt.Fprintln(stdout, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	cmp, st := res[0], res[1]
	_, fullMed := minMed(cmp.Caches[0].DecodeTPS)
	row := func(name string, prefill float64, c e2eCache, rss, peak string) {
		_, med := minMed(c.DecodeTPS)
		fmt.Fprintf(stdout, "| %s | %.1f | %.2f / %.2f | %.2fx | %d | %s | %s | %s | %s |\n", name, prefill, slices.Max(c.DecodeTPS), med, med/fullMed,
			c.Rows, mib(c.Bytes), mib(c.Reserved), rss, peak)
	}
	row("full", cmp.PrefillTPS, cmp.Caches[0], mib(cmp.RSS)+" (after the prefill)", mib(cmp.PeakRSS))
	row(fmt.Sprintf("%s, budget %d after the prefill (%.1f s)", cmp.Policy, o.budget, cmp.CompressSec), cmp.PrefillTPS, cmp.Caches[1],
		fmt.Sprintf("%s less the KV bytes released", mib(cmp.RSS)), mib(cmp.PeakRSS)+" (the prefill's)")
	row(fmt.Sprintf("%s, bounded to %d from the start (Stream)", st.Policy, o.budget), st.PrefillTPS, st.Caches[0], mib(st.RSS)+" (decoding)", mib(st.PeakRSS))
	return nil
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// e2eRun is one process's run; it prints an e2eResult.
func e2eRun(mode, path string, o e2eOptions, stdout io.Writer) error {
	runtime.GOMAXPROCS(o.threads)
	m, err := llama.LoadGGUF(path)
	if err != nil {
		return err
	}
	defer m.Close()
	meth, err := compresskv.ParseMethod(o.policy)
	if err != nil {
		return err
	}
	policy, err := compresskv.New(meth, compresskv.Config{Budget: o.budget})
	if err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(3, 4))
	prompt := tokens(r, m.Vocab, o.prompt)
	res := e2eResult{Mode: mode, Prompt: o.prompt, Policy: policy.Name()}
	be := backendFor(o.threads)
	cache, err := m.NewCache(kvcache.Float16)
	if err != nil {
		return err
	}
	var s *llama.Session
	// The queries the one-shot compression reads: each layer's last
	// policy.QueryRows(prompt) rows (the session's Prefill would keep all).
	need := policy.QueryRows(o.prompt)
	perQ := m.Heads * m.HeadDim()
	qs := make([][]float32, m.Layers)
	switch mode {
	case "compare":
		if s, err = m.NewSession(cache, be); err != nil {
			return err
		}
		s.Hooks.Query = func(layer, _ int, q []float32) {
			qs[layer] = append(qs[layer], q...)
			if extra := len(qs[layer])/perQ - need; extra > 0 {
				qs[layer] = append(qs[layer][:0], qs[layer][extra*perQ:]...)
			}
		}
	case "stream":
		st, err := compresskv.NewStream(policy, cache, compresskv.StreamConfig{QHeads: m.Heads, Chunk: o.chunk})
		if err != nil {
			return err
		}
		sc := &streamCache{HostReader: cache, stream: st, ctx: context.Background(), q: make([][]float32, m.Layers)}
		if s, err = m.NewSession(sc, be); err != nil {
			return err
		}
		s.Hooks.Query = func(layer, _ int, q []float32) { sc.q[layer] = q }
	default:
		return fmt.Errorf("-e2e-run %q: want compare or stream", mode)
	}
	t0 := time.Now()
	var logits []float32
	for i := 0; i < len(prompt); i += o.chunk {
		if logits, err = s.Forward(prompt[i:min(len(prompt), i+o.chunk)]); err != nil {
			return err
		}
		if i/o.chunk%8 == 7 {
			fmt.Fprintf(os.Stderr, "  %s: %d of %d prompt tokens, %.1f tokens/s\n", mode, i+o.chunk, len(prompt), float64(i+o.chunk)/time.Since(t0).Seconds())
		}
	}
	res.PrefillTPS = float64(len(prompt)) / time.Since(t0).Seconds()
	next := llama.Argmax(logits)
	sessions := []*llama.Session{s}
	caches := []*kvcache.Host{cache}
	res.Caches = []e2eCache{{Name: "full"}}
	if mode == "compare" {
		s.Hooks.Query = nil
		runtime.GC()
		debug.FreeOSMemory()
		res.RSS, res.PeakRSS = memStatus()
		full := cache.Clone()
		fs, err := m.NewSession(full, be)
		if err != nil {
			return err
		}
		t1 := time.Now()
		if _, err := s.Compress(context.Background(), policy, qs); err != nil {
			return err
		}
		res.CompressSec = time.Since(t1).Seconds()
		qs = nil
		sessions = []*llama.Session{fs, s}
		caches = []*kvcache.Host{full, cache}
		res.Caches = []e2eCache{{Name: "full"}, {Name: "once"}}
	} else {
		res.Caches[0].Name = "stream"
	}
	runtime.GC()
	debug.FreeOSMemory()
	nexts := make([]int, len(sessions))
	for i, ss := range sessions {
		if err := warm(ss, r, m.Vocab); err != nil {
			return err
		}
		nexts[i] = next
	}
	for range o.reps {
		for i, ss := range sessions {
			t1 := time.Now()
			for range o.tg {
				if logits, err = ss.Forward([]int{nexts[i]}); err != nil {
					return err
				}
				nexts[i] = llama.Argmax(logits)
			}
			res.Caches[i].DecodeTPS = append(res.Caches[i].DecodeTPS, float64(o.tg)/time.Since(t1).Seconds())
		}
	}
	for i, c := range caches {
		res.Caches[i].Bytes, res.Caches[i].Reserved = c.Bytes(), c.Reserved()
		rows := 0
		for l := range m.Layers {
			for g := range m.KVHeads {
				rows += c.Len(l, g)
			}
		}
		res.Caches[i].Rows = rows / (m.Layers * m.KVHeads)
	}
	if mode == "stream" {
		res.RSS, res.PeakRSS = memStatus()
	}
	return json.NewEncoder(stdout).Encode(res)
}

// memStatus returns the process's resident memory and its peak (VmRSS,
// VmHWM of /proc/self/status), in bytes.
func memStatus() (rss, peak int64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) < 1 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n << 10
		case "VmHWM":
			peak = n << 10
		}
	}
	return rss, peak
}

// streamCache lets a session run over a compresskv.Stream: the session
// appends each layer's keys and values as to any cache, and the Stream gets
// them with the same tokens' queries, which the Query hook recorded just
// before (as examples/generate does).
type streamCache struct {
	kvcache.HostReader
	stream *compresskv.Stream
	ctx    context.Context
	q      [][]float32
}

// Append implements kvcache.KVCache through the Stream, which may first
// compress the layer.
func (c *streamCache) Append(layer int, k, v []float32) error {
	return c.stream.Append(c.ctx, layer, k, v, c.q[layer])
}

// Compact implements kvcache.KVCache; the Stream compacts its own cache.
func (c *streamCache) Compact(int, [][]int) error {
	return fmt.Errorf("runnerbench: the stream compacts its cache itself")
}
