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
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/kvcache"
)

// The end-to-end measurement (-e2e): one long prompt, then decoding, with
// the full cache and with the cache compressed to a budget, each in a
// process of its own so that each has its own peak resident memory.
//
//	runnerbench -e2e [-prompt 16384] [-budget 1024] [-policy snapkv] [-tg 64] FILE.gguf
//
// Three runs: "full" keeps every row; "once" compresses the cache once,
// after the prefill, with the policy (CompressKV needs a profile of the
// model, so a random-weight model gets SnapKV: same selection machinery,
// every head scored); "stream" bounds the cache from the first chunk
// (compresskv.Stream, -budget rows per layer after each compression). Each
// prints prefill and decode tokens/s (decode: the best and the median of
// -reps runs of -tg tokens, continuing the same session), the cache's bytes
// and reserved bytes during decoding, the process's resident memory then
// (VmRSS) and its peak (VmHWM).

// e2eResult is one run's measurements.
type e2eResult struct {
	Mode          string    `json:"mode"`
	Prompt        int       `json:"prompt"`
	PrefillTPS    float64   `json:"prefill_tps"`
	PrefillSec    float64   `json:"prefill_s"`
	CompressSec   float64   `json:"compress_s"`
	DecodeTPS     []float64 `json:"decode_tps"`
	CacheBytes    int64     `json:"cache_bytes"`
	CacheReserved int64     `json:"cache_reserved"`
	CacheRows     int       `json:"cache_rows"` // rows per KV head, averaged over the layers
	RSS           int64     `json:"rss"`
	PeakRSS       int64     `json:"peak_rss"`
	Policy        string    `json:"policy"`
}

type e2eOptions struct {
	prompt, budget, tg, reps, chunk, threads int
	policy                                   string
}

func e2eFlags(fs *flag.FlagSet, o *e2eOptions) {
	fs.IntVar(&o.prompt, "prompt", 16384, "-e2e: prompt tokens")
	fs.IntVar(&o.budget, "budget", 1024, "-e2e: tokens kept per layer")
	fs.StringVar(&o.policy, "policy", "snapkv", "-e2e: compression policy (compresskv.ParseMethod)")
	fs.IntVar(&o.reps, "reps", 3, "-e2e: decode runs of -tg tokens")
}

// runE2E runs the three modes in child processes and prints their table.
func runE2E(path string, o e2eOptions, stdout, stderr io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var res []e2eResult
	for _, mode := range []string{"full", "once", "stream"} {
		load := loadAverage()
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
		fmt.Fprintf(stderr, "%s done (load %s before it)\n", mode, load)
	}
	fmt.Fprintf(stdout, "%s, %s, %d threads, kernels %s; %s, %d-token prompt (chunks of %d), %d decoded tokens x %d runs; load average at the end %s\n\n",
		time.Now().UTC().Format("2006-01-02"), cpuModel(), o.threads, quantLevel(), strings.TrimSuffix(baseName(path), ".gguf"),
		o.prompt, o.chunk, o.tg, o.reps, loadAverage())
	fmt.Fprintln(stdout, "| cache | prefill t/s | decode t/s (best / median) | decode vs full | KV rows per head | KV bytes | KV reserved | RSS while decoding | peak RSS |")
	fmt.Fprintln(stdout, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	_, fullMed := minMed(res[0].DecodeTPS)
	for _, r := range res {
		_, med := minMed(r.DecodeTPS)
		best := slices.Max(r.DecodeTPS)
		name := map[string]string{"full": "full", "once": fmt.Sprintf("%s, budget %d after the prefill", r.Policy, o.budget),
			"stream": fmt.Sprintf("%s, bounded to %d from the start (Stream)", r.Policy, o.budget)}[r.Mode]
		fmt.Fprintf(stdout, "| %s | %.1f | %.2f / %.2f | %.2fx | %d | %s | %s | %s | %s |\n", name, r.PrefillTPS, best, med, med/fullMed,
			r.CacheRows, mib(r.CacheBytes), mib(r.CacheReserved), mib(r.RSS), mib(r.PeakRSS))
	}
	return nil
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// e2eRun is one mode's run, in its own process; it prints an e2eResult.
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
	var stream *compresskv.Stream
	// The queries the one-shot compression reads: each layer's last
	// policy.QueryRows(prompt) rows (the session's Prefill would keep all).
	need := policy.QueryRows(o.prompt)
	perQ := m.Heads * m.HeadDim()
	qs := make([][]float32, m.Layers)
	switch mode {
	case "full", "once":
		if s, err = m.NewSession(cache, be); err != nil {
			return err
		}
		if mode == "once" {
			s.Hooks.Query = func(layer, _ int, q []float32) {
				qs[layer] = append(qs[layer], q...)
				if extra := len(qs[layer])/perQ - need; extra > 0 {
					qs[layer] = append(qs[layer][:0], qs[layer][extra*perQ:]...)
				}
			}
		}
	case "stream":
		st, err := compresskv.NewStream(policy, cache, compresskv.StreamConfig{QHeads: m.Heads, Chunk: o.chunk})
		if err != nil {
			return err
		}
		stream = st
		sc := &streamCache{HostReader: cache, stream: st, ctx: context.Background(), q: make([][]float32, m.Layers)}
		if s, err = m.NewSession(sc, be); err != nil {
			return err
		}
		s.Hooks.Query = func(layer, _ int, q []float32) { sc.q[layer] = q }
	default:
		return fmt.Errorf("-e2e-run %q: want full, once or stream", mode)
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
	res.PrefillSec = time.Since(t0).Seconds()
	res.PrefillTPS = float64(len(prompt)) / res.PrefillSec
	if mode == "once" {
		s.Hooks.Query = nil
		t1 := time.Now()
		if _, err := s.Compress(context.Background(), policy, qs); err != nil {
			return err
		}
		res.CompressSec = time.Since(t1).Seconds()
		qs = nil
	}
	_ = stream
	runtime.GC()
	debug.FreeOSMemory()
	next := llama.Argmax(logits)
	if err := warm(s, r, m.Vocab); err != nil {
		return err
	}
	for range o.reps {
		t1 := time.Now()
		for range o.tg {
			if logits, err = s.Forward([]int{next}); err != nil {
				return err
			}
			next = llama.Argmax(logits)
		}
		res.DecodeTPS = append(res.DecodeTPS, float64(o.tg)/time.Since(t1).Seconds())
	}
	res.CacheBytes, res.CacheReserved = cache.Bytes(), cache.Reserved()
	rows := 0
	for l := range m.Layers {
		for g := range m.KVHeads {
			rows += cache.Len(l, g)
		}
	}
	res.CacheRows = rows / (m.Layers * m.KVHeads)
	res.RSS, res.PeakRSS = memStatus()
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
