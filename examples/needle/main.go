// Command needle is the needle-in-a-haystack benchmark: context lengths x
// needle depths x policies x budgets over one model. Each prompt is prefilled
// once with full attention; every policy then compresses its own copy of the
// stored cache and the answer is decoded greedily over it. It prints accuracy
// per policy and budget with the share of the full cache kept, and writes one
// heatmap PNG per budget (length x depth, a panel per policy).
//
//	go run ./examples/needle -quick          # the README's main command, under two minutes on 2 cores
//	go run ./examples/needle                 # the full grid
//	go run ./examples/needle -ablate 4,8,16  # mask top SR vs top classic retrieval heads
//
// Needles and haystack (testdata/haystack/eval.txt, niah.EvalWords) are
// disjoint from calibration's.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/examples/niah"
	"github.com/compresskv/compresskv/kvcache"
)

func main() {
	log.SetFlags(0)
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		log.Fatal(err)
	}
}

type options struct {
	model, profile, haystack, outDir string
	lengths, budgets, ablate         []int
	depths, needles                  int
	methods                          []compresskv.Method
	dtype                            kvcache.DType
	kernel                           int
	seed                             uint64
}

func parse(args []string) (*options, error) {
	fs := flag.NewFlagSet("needle", flag.ContinueOnError)
	o := &options{}
	fs.StringVar(&o.model, "model", llama.DefaultModel, "llama2.c checkpoint of a byte-level model")
	fs.StringVar(&o.profile, "profile", llama.DefaultProfile, "CompressKV profile of the model")
	fs.StringVar(&o.haystack, "haystack", "testdata/haystack/eval.txt", "evaluation text")
	fs.StringVar(&o.outDir, "out", "out/needle", "folder for the heatmap PNGs (empty: none)")
	lengths := fs.String("lengths", "256,512,768,1024", "context lengths in tokens (the project's model is trained up to 1,024)")
	budgets := fs.String("budgets", "16,32,64,128", "average budgets per layer (tokens, window included)")
	ablate := fs.String("ablate", "", "instead of the grid: mask the top k SR heads, then the top k classic retrieval heads, for each k listed")
	methods := fs.String("policies", "full,streamingllm,h2o,snapkv,pyramidkv,adakv,compresskv", "policies to compare")
	fs.IntVar(&o.depths, "depths", 11, "needle depths per length, evenly from 0 to 100%")
	fs.IntVar(&o.needles, "needles", 3, "needles per length and depth")
	dtype := fs.String("dtype", "f32", "cache storage: f32, f16, bf16")
	fs.IntVar(&o.kernel, "kernel", llama.DefaultKernel, "pooling kernel of SnapKV, PyramidKV, Ada-KV and CompressKV")
	fs.Uint64Var(&o.seed, "seed", 11, "needle seed")
	quick := fs.Bool("quick", false, "lengths 256,512,1024; 1 needle per cell (the README's main command)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *quick {
		*lengths, o.needles = "256,512,1024", 1
	}
	var err error
	if o.lengths, err = niah.ParseInts(*lengths); err != nil {
		return nil, err
	}
	if o.budgets, err = niah.ParseInts(*budgets); err != nil {
		return nil, err
	}
	if o.ablate, err = niah.ParseInts(*ablate); err != nil {
		return nil, err
	}
	for _, f := range strings.Split(*methods, ",") {
		m, err := compresskv.ParseMethod(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		o.methods = append(o.methods, m)
	}
	if o.dtype, err = kvcache.ParseDType(*dtype); err != nil {
		return nil, err
	}
	return o, nil
}

// cell accumulates one (policy, budget, length, depth) cell.
type cell struct{ ok, n int }

// tally is the benchmark's state, shared by the workers.
type tally struct {
	sync.Mutex
	acc  map[string]map[int][][]cell // policy -> budget -> [length][depth]
	kept map[string]map[int]float64  // policy -> budget -> summed kept share
	runs map[string]map[int]int
}

func (t *tally) add(policy string, budget, li, di int, ok bool, kept float64) {
	t.Lock()
	defer t.Unlock()
	c := &t.acc[policy][budget][li][di]
	c.n++
	if ok {
		c.ok++
	}
	t.kept[policy][budget] += kept
	t.runs[policy][budget]++
}

func run(args []string, stdout, progress io.Writer) error {
	o, err := parse(args)
	if err != nil {
		return err
	}
	m, err := llama.Load(o.model)
	if err != nil {
		return err
	}
	hay, err := niah.LoadHaystack(o.haystack)
	if err != nil {
		return err
	}
	var prof *compresskv.Profile
	if p, err := compresskv.LoadProfile(o.profile); err == nil {
		prof = p
	} else if needsProfile(o) {
		return fmt.Errorf("CompressKV and the ablation need the model's profile: %w", err)
	}
	if len(o.ablate) > 0 {
		return ablation(m, prof, hay, o, stdout, progress)
	}
	policies := map[string]map[int]*compresskv.Policy{}
	t := &tally{acc: map[string]map[int][][]cell{}, kept: map[string]map[int]float64{}, runs: map[string]map[int]int{}}
	for _, meth := range o.methods {
		name := string(meth)
		policies[name], t.acc[name], t.kept[name], t.runs[name] = map[int]*compresskv.Policy{}, map[int][][]cell{}, map[int]float64{}, map[int]int{}
		for _, b := range o.budgets {
			if meth == compresskv.Full && b != o.budgets[0] {
				continue
			}
			p, err := compresskv.New(meth, compresskv.Config{Budget: b, Kernel: o.kernel, Profile: prof})
			if err != nil {
				return err
			}
			policies[name][b] = p
			grid := make([][]cell, len(o.lengths))
			for i := range grid {
				grid[i] = make([]cell, o.depths)
			}
			t.acc[name][b] = grid
		}
	}
	type job struct {
		li, di int
		p      niah.Prompt
	}
	var jobs []job
	tok := llama.ByteTokenizer()
	needles := niah.Needles(niah.EvalWords, len(o.lengths)*o.depths*o.needles, o.seed)
	i := 0
	for li, L := range o.lengths {
		for di, depth := range niah.Depths(o.depths) {
			for k := 0; k < o.needles; k++ {
				p, err := niah.Build(tok, hay, (i*7919)%len(hay), L, depth, needles[i])
				if err != nil {
					return err
				}
				jobs = append(jobs, job{li, di, p})
				i++
			}
		}
	}
	start := time.Now()
	var done int
	var mu sync.Mutex
	errs := make(chan error, len(jobs))
	work := make(chan job)
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				if err := evaluate(m, o, j.p, policies, func(pol string, b int, ok bool, kept float64) {
					t.add(pol, b, j.li, j.di, ok, kept)
				}); err != nil {
					errs <- err
					continue
				}
				mu.Lock()
				done++
				if done%10 == 0 || done == len(jobs) {
					fmt.Fprintf(progress, "needle: %d/%d prompts, %.0fs\n", done, len(jobs), time.Since(start).Seconds())
				}
				mu.Unlock()
			}
		}()
	}
	for _, j := range jobs {
		work <- j
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	report(stdout, o, t, time.Since(start))
	if o.outDir != "" {
		return heatmaps(o, t, stdout)
	}
	return nil
}

func needsProfile(o *options) bool {
	if len(o.ablate) > 0 {
		return true
	}
	for _, m := range o.methods {
		if m == compresskv.CompressKV {
			return true
		}
	}
	return false
}

// evaluate prefills one prompt and decodes its answer under every policy and
// budget, each over its own copy of the prefilled cache.
func evaluate(m *llama.Model, o *options, p niah.Prompt, policies map[string]map[int]*compresskv.Policy, record func(string, int, bool, float64)) error {
	cache, err := m.NewCache(o.dtype)
	if err != nil {
		return err
	}
	s, _ := m.NewSession(cache, nil)
	logits, q, err := s.Prefill(p.Tokens, 256)
	if err != nil {
		return err
	}
	for name, byBudget := range policies {
		for b, pol := range byBudget {
			c := cache.Clone()
			cs, _ := m.NewSession(c, nil)
			res, err := cs.Compress(pol, q)
			if err != nil {
				return fmt.Errorf("%s at budget %d: %w", name, b, err)
			}
			ans, err := niah.Greedy(cs, logits, len(p.Needle.Value)+1, nil)
			if err != nil {
				return err
			}
			record(name, b, niah.Correct(ans, p.Needle), float64(res.BytesAfter)/float64(res.BytesBefore))
		}
	}
	return nil
}

func report(w io.Writer, o *options, t *tally, elapsed time.Duration) {
	fmt.Fprintf(w, "needle-in-a-haystack: lengths %v, %d depths, %d needle(s) per cell, %v cache, pooling kernel %d, %.0fs\n",
		o.lengths, o.depths, o.needles, o.dtype, o.kernel, elapsed.Seconds())
	fmt.Fprintln(w, "accuracy (share of the full cache kept) per average budget per layer:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "policy\t")
	for _, b := range o.budgets {
		fmt.Fprintf(tw, "%d\t", b)
	}
	fmt.Fprintln(tw)
	for _, meth := range o.methods {
		name := string(meth)
		fmt.Fprintf(tw, "%s\t", name)
		for _, b := range o.budgets {
			bb := b
			if meth == compresskv.Full {
				bb = o.budgets[0]
			}
			ok, n := 0, 0
			for _, row := range t.acc[name][bb] {
				for _, c := range row {
					ok, n = ok+c.ok, n+c.n
				}
			}
			fmt.Fprintf(tw, "%.1f%% (%.1f%%)\t", 100*float64(ok)/float64(max(1, n)), 100*t.kept[name][bb]/float64(max(1, t.runs[name][bb])))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintln(w, "accuracy per length (all depths) at each budget:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "policy\tbudget\t")
	for _, L := range o.lengths {
		fmt.Fprintf(tw, "%d\t", L)
	}
	fmt.Fprintln(tw)
	for _, meth := range o.methods {
		name := string(meth)
		bs := o.budgets
		if meth == compresskv.Full {
			bs = bs[:1]
		}
		for _, b := range bs {
			fmt.Fprintf(tw, "%s\t%d\t", name, b)
			for li := range o.lengths {
				ok, n := 0, 0
				for _, c := range t.acc[name][b][li] {
					ok, n = ok+c.ok, n+c.n
				}
				fmt.Fprintf(tw, "%.0f%%\t", 100*float64(ok)/float64(max(1, n)))
			}
			fmt.Fprintln(tw)
		}
	}
	tw.Flush()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// heatmaps writes one figure per budget: a panel per policy, accuracy by
// prompt length and needle depth.
func heatmaps(o *options, t *tally, w io.Writer) error {
	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		return err
	}
	rows := make([]string, len(o.lengths))
	for i, L := range o.lengths {
		rows[i] = strconv.Itoa(L)
	}
	cols := make([]string, o.depths)
	for i, d := range niah.Depths(o.depths) {
		cols[i] = strconv.Itoa(int(d*100 + 0.5))
	}
	var written []string
	for _, b := range o.budgets {
		fig := niah.Figure{
			Title: fmt.Sprintf("Needle retrieval, %s: average budget %d tokens per layer (window %d included)",
				o.model, b, compresskv.DefaultWindow),
			Subtitle: fmt.Sprintf("%s per cell, %v cache, pooling kernel %d. Panels: policy: accuracy, share of the cache kept",
				plural(o.needles, "needle"), o.dtype, o.kernel),
			RowTitle:  "prompt length",
			ColTitle:  "needle depth (%)",
			RowLabels: rows,
			ColLabels: cols,
		}
		for _, meth := range o.methods {
			bb := b
			if meth == compresskv.Full {
				bb = o.budgets[0]
			}
			grid := t.acc[string(meth)][bb]
			cells := make([][]niah.Cell, len(grid))
			ok, n := 0, 0
			for li, row := range grid {
				cells[li] = make([]niah.Cell, len(row))
				for di, c := range row {
					cells[li][di] = niah.Cell{OK: c.ok, N: c.n}
					ok, n = ok+c.ok, n+c.n
				}
			}
			title := fmt.Sprintf("%s: %.0f%%, %.0f%% kept", meth, 100*float64(ok)/float64(max(1, n)),
				100*t.kept[string(meth)][bb]/float64(max(1, t.runs[string(meth)][bb])))
			if meth == compresskv.Full {
				title = fmt.Sprintf("%s: %.0f%%, no compression", meth, 100*float64(ok)/float64(max(1, n)))
			}
			fig.Panels = append(fig.Panels, niah.Panel{Title: title, Cells: cells})
		}
		path := filepath.Join(o.outDir, fmt.Sprintf("needle_budget%d.png", b))
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := niah.WriteHeatmaps(f, fig); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		written = append(written, path)
	}
	fmt.Fprintf(w, "heatmaps (accuracy by prompt length and needle depth, one panel per policy): %s\n", strings.Join(written, ", "))
	return nil
}
