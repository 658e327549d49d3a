// Command needle is the needle-in-a-haystack benchmark: context lengths x
// needle depths x policies x budgets over one model. Each prompt is prefilled
// once with full attention; every policy then compresses its own copy of the
// stored cache and the answer is decoded greedily over it. It prints accuracy
// per policy and budget with the share of the full cache kept, and writes one
// heatmap PNG per budget (length x depth, a panel per policy). A policy that
// answers no prompt at a budget gets one line computed from its plans: each
// layer's budget, and how often the layer that lost it most kept the
// needle's value.
//
//	go run ./examples/needle -quick          # the README's main command: 15 prompts, about 10 s of CPU
//	go run ./examples/needle                 # the full grid: 132 prompts
//	go run ./examples/needle -ablate 4,8,16  # mask top SR vs top classic retrieval heads
//	go run ./examples/needle -diagnose -lengths 256 -budgets 128 -policies snapkv,compresskv
//	                                         # which layers and heads keep the needle and the first token
//	go run ./examples/needle -model qwen2.5-1.5b-instruct-q8_0.gguf -quick -policies full -show-prompt
//	                                         # a GGUF model: its first prompt, and whether it answers at all
//
// Needles and haystack (testdata/haystack/eval.txt, niah.EvalWords) are
// disjoint from calibration's. The project's byte-level model gets prompts
// of exactly the lengths asked and its answers are read digit by digit; any
// other model's prompts are built in its own tokens, as close below the
// lengths as its tokenizer allows (a chat model's as a user turn and the
// assistant's opening, -chat), and its answers are decoded and judged as
// calibration judges them, decoding stopped at its end-of-generation tokens.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/examples/internal/cli"
	"github.com/compresskv/compresskv/examples/niah"
	"github.com/compresskv/compresskv/internal/par"
	"github.com/compresskv/compresskv/kvcache"
)

func main() {
	log.SetFlags(0)
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) { // -h prints the flags and succeeds
		log.Fatal(err)
	}
}

type options struct {
	mf               *cli.ModelFlags
	haystack, outDir string
	lengths, budgets []int
	ablate           []int
	depths, needles  int
	diagnose         bool
	showPrompt       bool
	methods          []compresskv.Method
	dtype            kvcache.DType
	kernel           int // the pooling kernel in effect, set once the model is open
	seed             uint64
}

func parse(args []string) (*options, error) {
	fs := flag.NewFlagSet("needle", flag.ContinueOnError)
	o := &options{}
	o.mf = cli.AddModelFlags(fs)
	fs.StringVar(&o.haystack, "haystack", "testdata/haystack/eval.txt", "evaluation text")
	fs.StringVar(&o.outDir, "out", "out/needle", "folder for the heatmap PNGs (empty: none)")
	grid := cli.AddNeedleGridFlags(fs)
	budgets := cli.Ints(fs, "budgets", "16,32,64,128", "average budgets per layer (tokens, window included)")
	ablate := cli.Ints(fs, "ablate", "", "instead of the grid: mask the top k SR heads, then the top k classic retrieval heads, for each k listed")
	methods := cli.Methods(fs, "policies", "full,streamingllm,h2o,snapkv,pyramidkv,adakv,compresskv", "policies to compare")
	dtype := fs.String("dtype", "f32", "cache storage: f32, f16, bf16")
	fs.Uint64Var(&o.seed, "seed", 11, "needle seed")
	fs.BoolVar(&o.showPrompt, "show-prompt", false, "print the grid's first prompt as the model reads it (special tokens as text, the needle's value in [[ ]]) before measuring")
	fs.BoolVar(&o.diagnose, "diagnose", false, "instead of the grid: per policy, budget and length, which layers and KV heads kept the needle's value and the first token, and the accuracy when the first token is put back")
	quick := fs.Bool("quick", false, "a small grid, about 10 s of CPU on 2 cores (the README's main command): lengths 256,512,1024, 5 depths, 1 needle per cell, budgets 32,64,128; flags given explicitly win")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range map[string]string{"lengths": "256,512,1024", "depths": "5", "needles": "1", "budgets": "32,64,128"} {
			if !set[name] {
				if err := fs.Set(name, v); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := grid.Check(); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.lengths, o.depths, o.needles = *grid.Lengths, grid.Depths, grid.Needles
	o.budgets, o.ablate, o.methods = *budgets, *ablate, *methods
	var err error
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
	// plans holds, per policy and budget, what the plans kept.
	plans map[string]map[int]*planStats
}

// planStats summarises a policy's plans at one budget over the prompts.
type planStats struct {
	budgets map[int][]int // prompt length -> the plan's budget of each layer
	// value[l] counts the prompts in which every KV head of layer l kept
	// the needle's whole value (a layer that kept everything counts).
	value []int
	n     int
}

// outcome is one prompt's result under one policy and budget.
type outcome struct {
	ok    bool
	kept  float64 // share of the full cache's bytes kept
	plan  compresskv.Plan
	value [2]int // the needle's value span [start, end) in the prompt
}

func (t *tally) add(policy string, budget, li, di, length int, r outcome) {
	t.Lock()
	defer t.Unlock()
	c := &t.acc[policy][budget][li][di]
	c.n++
	if r.ok {
		c.ok++
	}
	t.kept[policy][budget] += r.kept
	t.runs[policy][budget]++
	ps := t.plans[policy][budget]
	if ps == nil {
		ps = &planStats{budgets: map[int][]int{}, value: make([]int, len(r.plan.Keep))}
		t.plans[policy][budget] = ps
	}
	if r.plan.Budgets != nil {
		ps.budgets[length] = r.plan.Budgets
	}
	for l, heads := range r.plan.Keep {
		if keptWhole(heads, r.value[0], r.value[1]) {
			ps.value[l]++
		}
	}
	ps.n++
}

// keptWhole reports whether every KV head's kept rows (ascending; nil: the
// layer kept everything) include all of [start, end).
func keptWhole(heads [][]int, start, end int) bool {
	if end <= start {
		return true
	}
	for _, rows := range heads {
		i := sort.SearchInts(rows, start)
		if i+end-start > len(rows) || rows[i] != start || rows[i+end-start-1] != end-1 {
			return false
		}
	}
	return true
}

func run(args []string, stdout, progress io.Writer) error {
	o, err := parse(args)
	if err != nil {
		return err
	}
	m, err := o.mf.Open()
	if err != nil {
		return err
	}
	defer m.Close()
	hay, err := niah.LoadHaystack(cli.Path(o.haystack))
	if err != nil {
		return err
	}
	if len(o.ablate) > 0 {
		prof, err := o.mf.LoadProfile(m, "the ablation")
		if err != nil {
			return err
		}
		return ablation(m, prof, hay, o, stdout, progress)
	}
	prof, err := o.mf.ProfileFor(m, o.methods...)
	if err != nil {
		return err
	}
	o.kernel = m.Kernel(o.mf.Kernel)
	policies := map[string]map[int]*compresskv.Policy{}
	t := &tally{acc: map[string]map[int][][]cell{}, kept: map[string]map[int]float64{}, runs: map[string]map[int]int{}, plans: map[string]map[int]*planStats{}}
	for _, meth := range o.methods {
		name := string(meth)
		policies[name], t.acc[name], t.kept[name], t.runs[name], t.plans[name] = map[int]*compresskv.Policy{}, map[int][][]cell{}, map[int]float64{}, map[int]int{}, map[int]*planStats{}
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
	jobs, err := prompts(m, hay, o)
	if err != nil {
		return err
	}
	describe(stdout, m, o, jobs)
	if o.diagnose {
		return diagnose(m, o, jobs, policies, stdout, progress)
	}
	pr := cli.NewProgress(progress, "needle", len(jobs), 10)
	errs := make([]error, len(jobs))
	par.For(len(jobs), func(i int) {
		j := jobs[i]
		if errs[i] = evaluate(m, o, j.p, policies, func(pol string, b int, r outcome) {
			t.add(pol, b, j.li, j.di, o.lengths[j.li], r)
		}); errs[i] == nil {
			pr.Done()
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	report(stdout, o, t, pr.Elapsed())
	if o.outDir != "" {
		return heatmaps(o, t, stdout)
	}
	return nil
}

// job is one prompt of the grid: length index li, depth index di.
type job struct {
	li, di int
	p      niah.Prompt
}

// prompts builds the grid's prompts, length by length, depth by depth.
func prompts(m *cli.Model, hay string, o *options) ([]job, error) {
	var jobs []job
	needles := niah.Needles(niah.EvalWords, len(o.lengths)*o.depths*o.needles, o.seed)
	i := 0
	for li, L := range o.lengths {
		for di, depth := range niah.Depths(o.depths) {
			for k := 0; k < o.needles; k++ {
				p, err := m.Needle(hay, (i*7919)%len(hay), L, depth, needles[i])
				if err != nil {
					return nil, err
				}
				jobs = append(jobs, job{li, di, p})
				i++
			}
		}
	}
	return jobs, nil
}

// describe writes, for a GGUF model, what it is and, for a subword one,
// what its prompts are (their lengths in its tokens, the values' spans);
// with -show-prompt, the first prompt as the model reads it. The project's
// byte-level model gets none of it: its prompts are exact.
func describe(w io.Writer, m *cli.Model, o *options, jobs []job) {
	if s := m.Summary(); s != "" {
		fmt.Fprintln(w, s)
	}
	if !m.ByteLevel && len(jobs) > 0 {
		lo, hi, slo, shi := len(jobs[0].p.Tokens), 0, len(jobs[0].p.Tokens), 0
		for _, j := range jobs {
			n, span := len(j.p.Tokens), j.p.ValueEnd-j.p.ValueStart
			lo, hi, slo, shi = min(lo, n), max(hi, n), min(slo, span), max(shi, span)
		}
		fmt.Fprintf(w, "prompts: %d in the model's tokens, %d to %d tokens for lengths %v; values of %d digits, %d to %d tokens each\n",
			len(jobs), lo, hi, o.lengths, len(jobs[0].p.Needle.Value), slo, shi)
	}
	if o.showPrompt && len(jobs) > 0 {
		p := jobs[0].p
		fmt.Fprintf(w, "first prompt (%d tokens; the value %s at tokens %d to %d):\n%s[[%s]]%s\n", len(p.Tokens), p.Needle.Value, p.ValueStart, p.ValueEnd-1,
			m.Render(p.Tokens[:p.ValueStart]), m.Render(p.Tokens[p.ValueStart:p.ValueEnd]), m.Render(p.Tokens[p.ValueEnd:]))
	}
}

// evaluate prefills one prompt and decodes its answer under every policy and
// budget, each over its own copy of the prefilled cache.
func evaluate(m *cli.Model, o *options, p niah.Prompt, policies map[string]map[int]*compresskv.Policy, record func(string, int, outcome)) error {
	pre, err := cli.Prefill(m.Model, o.dtype, p.Tokens)
	if err != nil {
		return err
	}
	for name, byBudget := range policies {
		for b, pol := range byBudget {
			cs, res, err := pre.Compress(context.Background(), pol)
			if err != nil {
				return err
			}
			ok, err := m.Answer(cs, pre.Logits, p)
			if err != nil {
				return err
			}
			record(name, b, outcome{
				ok:    ok,
				kept:  float64(res.BytesAfter) / float64(res.BytesBefore),
				plan:  res.Plan,
				value: [2]int{p.ValueStart, p.ValueEnd},
			})
		}
	}
	return nil
}

func report(w io.Writer, o *options, t *tally, elapsed time.Duration) {
	fmt.Fprintf(w, "needle-in-a-haystack: lengths %v, %d depths, %d needle(s) per cell, %v cache, pooling kernel %d, %.0fs\n",
		o.lengths, o.depths, o.needles, o.dtype, o.kernel, elapsed.Seconds())
	fmt.Fprintln(w, "accuracy (share of the full cache kept) per average budget per layer:")
	tw := cli.NewTable(w, []string{"policy"}, o.budgets)
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
	tw = cli.NewTable(w, []string{"policy", "budget"}, o.lengths)
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
	for _, meth := range o.methods {
		if meth == compresskv.Full {
			// Its one budget is the whole cache: a model that answers
			// nothing with it answers nothing under any policy.
			if line := zeroNote(string(meth), o.budgets[0], 0, t.acc[string(meth)][o.budgets[0]], nil, o.lengths); line != "" {
				fmt.Fprintln(w, line)
			}
			continue
		}
		for _, b := range o.budgets {
			if line := zeroNote(string(meth), b, compresskv.DefaultWindow, t.acc[string(meth)][b], t.plans[string(meth)][b], o.lengths); line != "" {
				fmt.Fprintln(w, line)
			}
		}
	}
}

// zeroNote explains, in one line computed from the plans, a policy that
// answered no prompt at a budget: each layer's budget (window included) and
// the layer that most often lost part of the needle's value (ties: the one
// with the smaller budget). It returns "" when the policy answered some
// prompt.
func zeroNote(policy string, budget, window int, grid [][]cell, ps *planStats, lengths []int) string {
	ok, n := 0, 0
	for _, row := range grid {
		for _, c := range row {
			ok, n = ok+c.ok, n+c.n
		}
	}
	if ok > 0 || n == 0 {
		return ""
	}
	if policy == string(compresskv.Full) {
		return "full answers none: the model does not answer these prompts with its whole cache, so no policy can (-show-prompt prints the first prompt; -chat chooses how it is asked)"
	}
	if ps == nil || len(ps.value) == 0 {
		return ""
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s answers none at budget %d:", policy, budget)
	// Layer budgets, at the shortest and the longest prompt when they differ.
	var shown []string
	var last []int
	for _, L := range []int{slicesMin(lengths), slicesMax(lengths)} {
		bs, found := ps.budgets[L]
		if !found {
			continue
		}
		txt := andList(bs)
		if len(shown) > 0 && shown[len(shown)-1] == txt {
			continue
		}
		if len(shown) > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, " its layers keep %s tokens at %d", txt, L)
		shown, last = append(shown, txt), bs
	}
	worst := 0
	for l, v := range ps.value {
		if v < ps.value[worst] || v == ps.value[worst] && last != nil && l < len(last) && last[l] < last[worst] {
			worst = l
		}
	}
	if last != nil && worst < len(last) {
		fmt.Fprintf(&sb, "; layer %d, left with the %d-token window and %d more,", worst, window, last[worst]-window)
	} else {
		fmt.Fprintf(&sb, "; layer %d", worst)
	}
	fmt.Fprintf(&sb, " kept the needle's whole value in %d of %d prompts", ps.value[worst], ps.n)
	return sb.String()
}

// andList writes 1, 2 and 3.
func andList(x []int) string {
	var sb strings.Builder
	for i, v := range x {
		switch {
		case i == 0:
		case i == len(x)-1:
			sb.WriteString(" and ")
		default:
			sb.WriteString(", ")
		}
		sb.WriteString(strconv.Itoa(v))
	}
	return sb.String()
}

func slicesMin(x []int) int {
	m := x[0]
	for _, v := range x {
		m = min(m, v)
	}
	return m
}

func slicesMax(x []int) int {
	m := x[0]
	for _, v := range x {
		m = max(m, v)
	}
	return m
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
				o.mf.Model, b, compresskv.DefaultWindow),
			Subtitle: fmt.Sprintf("%s per cell, %v cache, pooling kernel %d. Panels: policy: accuracy, share of the cache kept",
				plural(o.needles, "needle"), o.dtype, o.kernel),
			RowTitle:  "prompt length",
			ColTitle:  "needle depth (%)",
			RowLabels: rows,
			ColLabels: cols,
		}
		if len(o.methods) == 1 && o.methods[0] == compresskv.Full {
			fig.Title = fmt.Sprintf("Needle retrieval, %s: the full cache", o.mf.Model)
			fig.Subtitle = fmt.Sprintf("%s per cell, %v cache, no compression", plural(o.needles, "needle"), o.dtype)
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
