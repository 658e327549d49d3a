// Command streaming measures what bounding the cache while a prompt runs
// costs in answers, and which rule keeps a needle before the question
// arrives (docs/RESULTS.md, "Bounded memory that still answers").
//
// On the project's model, on material nothing was tuned on (the haystack
// testdata/haystack/river.txt, the key words Words, seed 4409, needle depths
// and haystack offsets drawn at random), every prompt is prefilled once with
// the full cache, answered with it, and compressed one-shot to each budget
// with CompressKV and the question's window (the reference). It is then
// streamed: for each prefill chunk and each scorer of the rows while the
// prompt runs, a compresskv.Stream holds a reserve of R = ratio x budget
// rows per KV head (ratio 1: no reserve, the budget itself) and at most one
// chunk more; once the question is in, every layer is compressed to the
// budget with CompressKV and the question's window, and the answer is
// decoded. One streamed prefill serves every budget whose layer reserves are
// the same. The peaks are the Stream's own measurements after every call
// (Bytes and Reserved), not computed. Per cell it prints the accuracy with
// its count, one-shot's at the same budget, and an exact two-sided sign
// test (McNemar's) on the prompts where the two differ; it writes one CSV
// line per prompt and cell, and the frontier plot (accuracy against peak
// bytes, one line per scorer).
//
//	go run ./examples/streaming -prompts 200 -out out/streaming
//	go run ./examples/streaming -stories -model ../shared/models/stories260K/stories260K.bin \
//	    -tokenizer ../shared/models/stories260K/tok512.bin -profile out/stories260K.profile.json
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/examples/internal/cli"
	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/examples/niah"
	"github.com/compresskv/compresskv/internal/par"
	"github.com/compresskv/compresskv/kvcache"
)

// Words are the key words of this measurement's needles: no other list of
// the project uses them, and no haystack contains them.
var Words = strings.Fields(`abacus armadillo bagpipe banjo bonsai burrito catamaran chameleon
	crossbow didgeridoo dynamo emu escalator flannel gondola gumdrop harmonica hedgehog
	hologram jellybean kangaroo kiwi lasso marimba meerkat mongoose noodle okapi pagoda
	paprika pinwheel platypus pretzel puffin quasar radish sombrero spatula tambourine
	toucan trombone tuxedo unicycle vortex wombat xylophone zebra anchovy baobab cobra
	dumpling tapir pistachio kazoo marmot narwhal chinchilla accordion`)

func main() {
	log.SetFlags(0)
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		log.Fatal(err)
	}
}

type options struct {
	mf                                     *cli.ModelFlags
	haystack, out                          string
	lengths, chunks, budgets, ratios       []int
	scorers                                []string
	prompts, kernel, workers               int
	seed                                   uint64
	limit                                  time.Duration
	stories, resume                        bool
	storyPer, klLength, klSteps, klSamples int
}

func parse(args []string) (*options, error) {
	fs := flag.NewFlagSet("streaming", flag.ContinueOnError)
	o := &options{}
	o.mf = cli.AddModelFlags(fs)
	fs.StringVar(&o.haystack, "haystack", "testdata/haystack/river.txt", "needle: haystack text; stories: the text of the KL measurement")
	fs.StringVar(&o.out, "out", "out/streaming", "folder for the CSV and the frontier plot (empty: none)")
	lengths := cli.Ints(fs, "lengths", "1024,2048", "needle: prompt lengths in tokens")
	chunks := cli.Ints(fs, "chunks", "128,512", "prefill chunks")
	budgets := cli.Ints(fs, "budgets", "64,128", "average budgets per layer")
	ratios := cli.Ints(fs, "ratios", "1,2,4,8", "reserve while the prompt runs, in budgets (1: no reserve)")
	scorers := fs.String("scorers", "window,knorm,expected,averaged,window-or-knorm", "scorers of the rows while the prompt runs: "+strings.Join(scorerNames(), ", "))
	fs.IntVar(&o.prompts, "prompts", 200, "needle: prompts per length")
	fs.IntVar(&o.workers, "workers", runtime.GOMAXPROCS(0), "prompts run at once")
	fs.Uint64Var(&o.seed, "seed", 4409, "seed of the needles, depths and haystack offsets (stories: of the probes)")
	fs.DurationVar(&o.limit, "time", 0, "start no prompt after this long (0: no limit); prompts alternate between lengths, so cells stay balanced")
	fs.BoolVar(&o.stories, "stories", false, "measure a story model instead: character-name recall and KL with streaming")
	fs.BoolVar(&o.resume, "resume", false, "needle: keep the prompts that -out's needles.csv already holds (same flags) and run the others")
	fs.IntVar(&o.storyPer, "per", 32, "stories: probes per lead and sentence count")
	fs.IntVar(&o.klLength, "kl-length", 384, "stories: prompt tokens of the KL measurement")
	fs.IntVar(&o.klSteps, "kl-steps", 32, "stories: teacher-forced tokens after each KL prompt")
	fs.IntVar(&o.klSamples, "kl-samples", 16, "stories: KL prompts")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.lengths, o.chunks, o.budgets, o.ratios = *lengths, *chunks, *budgets, *ratios
	for _, s := range strings.Split(*scorers, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if _, ok := lookupScorer(s); !ok {
			return nil, fmt.Errorf("unknown scorer %q (want one of %s)", s, strings.Join(scorerNames(), ", "))
		}
		o.scorers = append(o.scorers, s)
	}
	if len(o.scorers) == 0 || o.prompts < 1 || o.workers < 1 {
		return nil, fmt.Errorf("need scorers, prompts and workers")
	}
	return o, nil
}

// scorerEntry is a rule for ranking the rows while the prompt runs.
type scorerEntry struct {
	name, label string
	// build returns the scorer (nil: the policy's own window scorer).
	build func(env *env) (compresskv.Scorer, error)
}

// env is what the scorers are built from.
type env struct {
	prof   *compresskv.Profile
	rot    *compresskv.Rotary
	kernel int
}

// fromMethod returns the scorer of a method of the library's table.
func fromMethod(m compresskv.Method, e *env) (compresskv.Scorer, error) {
	p, err := compresskv.New(m, compresskv.Config{Budget: 64, Kernel: e.kernel, Rotary: e.rot, Profile: e.prof})
	if err != nil {
		return nil, err
	}
	return p.Scorer(), nil
}

var scorerTable = []scorerEntry{
	{"window", "window of each chunk", func(e *env) (compresskv.Scorer, error) { return fromMethod(compresskv.CompressKV, e) }},
	{"knorm", "key norms (best KV head)", func(e *env) (compresskv.Scorer, error) {
		s, err := fromMethod(compresskv.KNorm, e)
		return compresskv.SharedMax(s), err
	}},
	{"expected", "expected attention (best KV head; default)", func(e *env) (compresskv.Scorer, error) {
		s, err := fromMethod(compresskv.ExpectedAttention, e)
		return compresskv.SharedMax(s), err
	}},
	{"expected-centred", "expected attention, centred, max", func(e *env) (compresskv.Scorer, error) {
		return compresskv.SharedMax(compresskv.ExpectedAttentionScorer{Rotary: e.rot, Sink: compresskv.DefaultSink, Centre: true, Kernel: e.kernel}), nil
	}},
	{"sr-expected-centred", "expected attention of SR heads, centred", func(e *env) (compresskv.Scorer, error) {
		return compresskv.ExpectedAttentionScorer{Profile: e.prof, K: compresskv.DefaultSRHeads, Rotary: e.rot, Sink: compresskv.DefaultSink, Centre: true, Kernel: e.kernel}, nil
	}},
	{"sr-expected", "expected attention of SR heads", func(e *env) (compresskv.Scorer, error) {
		return compresskv.ExpectedAttentionScorer{Profile: e.prof, K: compresskv.DefaultSRHeads, Rotary: e.rot, Sink: compresskv.DefaultSink, Kernel: e.kernel}, nil
	}},
	{"averaged", "attention averaged over queries (best head)", func(e *env) (compresskv.Scorer, error) {
		return compresskv.SharedMax(compresskv.AccumulatedScorer{Average: true, Kernel: e.kernel}), nil
	}},
	{"sr-averaged", "attention of SR heads averaged over every query", func(e *env) (compresskv.Scorer, error) {
		return compresskv.AccumulatedScorer{Profile: e.prof, K: compresskv.DefaultSRHeads, Average: true, Kernel: e.kernel}, nil
	}},
	{"h2o", "attention summed over queries, H2O (best head)", func(e *env) (compresskv.Scorer, error) {
		s, err := fromMethod(compresskv.H2O, e)
		return compresskv.SharedMax(s), err
	}},
	{"window-or-knorm", "window or key norms", func(e *env) (compresskv.Scorer, error) {
		w, err := fromMethod(compresskv.CompressKV, e)
		return compresskv.Either(w, compresskv.SharedMax(compresskv.KNormScorer{})), err
	}},
	{"window-or-expected", "window or expected attention", func(e *env) (compresskv.Scorer, error) {
		w, err := fromMethod(compresskv.CompressKV, e)
		if err != nil {
			return nil, err
		}
		x, err := fromMethod(compresskv.ExpectedAttention, e)
		return compresskv.Either(w, compresskv.SharedMax(x)), err
	}},
	{"default", "the Stream's default", func(*env) (compresskv.Scorer, error) { return defaultRule, nil }},
}

// defaultRule leaves StreamConfig.Prefill unset: the Stream's own default
// (compresskv.DefaultPrefill).
var defaultRule compresskv.Scorer

func lookupScorer(name string) (scorerEntry, bool) {
	for _, e := range scorerTable {
		if e.name == name {
			return e, true
		}
	}
	return scorerEntry{}, false
}

func scorerNames() []string {
	var out []string
	for _, e := range scorerTable {
		out = append(out, e.name)
	}
	return out
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
	if !o.stories && !m.ByteLevel {
		return fmt.Errorf("the needle measurement builds its prompts byte by byte: it needs a byte-level model (the project's); -stories measures another")
	}
	prof, err := o.mf.LoadProfile(m, "CompressKV, the reference and the end of every streamed prompt,")
	if err != nil {
		return err
	}
	o.kernel = m.Kernel(o.mf.Kernel)
	e := &env{prof: prof, rot: m.Rotary(), kernel: o.kernel}
	if o.stories {
		return stories(o, m, e, stdout, progress)
	}
	hay, err := niah.LoadHaystack(cli.Path(o.haystack))
	if err != nil {
		return err
	}
	return needles(o, m.Model, llama.ByteTokenizer(), hay, e, stdout, progress)
}

// cell names one streamed configuration of a prompt.
type cell struct {
	chunk, ratio, budget int
	scorer               string
}

// group is one streamed prefill: a chunk, a scorer, the policy of a
// budget and the reserve of each layer, and the cell it measures.
type group struct {
	chunk    int
	scorer   string
	policy   *compresskv.Policy
	reserve  int // StreamConfig.Reserve (0: none)
	reserves []int
	cells    []cell
}

// outcome is one prompt in one cell.
type outcome struct {
	ok                             bool
	peakBytes, peakReserved, track int64
}

// needleRun holds every prompt's outcomes.
type needleRun struct {
	o        *options
	m        *llama.Model
	prompts  []niah.Prompt
	lenIdx   []int
	policies map[int]*compresskv.Policy // per budget
	scorers  map[string]compresskv.Scorer
	groups   []group
	full     []bool
	oneShot  []map[int]bool // per prompt: per budget
	fullRows []int64        // per prompt: the full cache's bytes
	streamed []map[cell]outcome
	csv      io.Writer // each prompt's lines as it finishes (nil: none)
}

func needles(o *options, m *llama.Model, tok *llama.Tokenizer, hay string, e *env, stdout, progress io.Writer) error {
	r := &needleRun{o: o, m: m, policies: map[int]*compresskv.Policy{}, scorers: map[string]compresskv.Scorer{}}
	for _, b := range o.budgets {
		p, err := compresskv.New(compresskv.CompressKV, compresskv.Config{Budget: b, Kernel: o.kernel, Profile: e.prof, Rotary: e.rot})
		if err != nil {
			return err
		}
		r.policies[b] = p
	}
	for _, name := range o.scorers {
		ent, _ := lookupScorer(name)
		s, err := ent.build(e)
		if err != nil {
			return fmt.Errorf("scorer %s: %w", name, err)
		}
		r.scorers[name] = s
	}
	if err := r.makeGroups(); err != nil {
		return err
	}
	if err := r.makePrompts(hay, tok); err != nil {
		return err
	}
	n := len(r.prompts)
	r.full, r.oneShot, r.fullRows, r.streamed = make([]bool, n), make([]map[int]bool, n), make([]int64, n), make([]map[cell]outcome, n)
	var todo []int
	if o.out != "" {
		if err := os.MkdirAll(o.out, 0o755); err != nil {
			return err
		}
		path := filepath.Join(o.out, "needles.csv")
		if o.resume {
			if err := r.readCSV(path); err != nil {
				return err
			}
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.Size() == 0 {
			fmt.Fprintln(f, csvHeader)
		} else if !o.resume {
			return fmt.Errorf("%s exists: pass -resume to go on with it, or another -out", path)
		}
		r.csv = f
	}
	for i := range r.prompts {
		if !r.complete(i) {
			todo = append(todo, i)
		}
	}
	if kept := n - len(todo); kept > 0 {
		fmt.Fprintf(progress, "streaming: %d prompts kept from %s, %d to run\n", kept, filepath.Join(o.out, "needles.csv"), len(todo))
	}
	start := time.Now()
	var mu sync.Mutex
	done, stopped := 0, 0
	var firstErr error
	par.Pull(len(todo), o.workers, func(next func() (int, bool)) {
		for j, ok := next(); ok; j, ok = next() {
			i := todo[j]
			mu.Lock()
			failed := firstErr != nil
			mu.Unlock()
			if failed {
				continue // the first error ends the run
			}
			if o.limit > 0 && time.Since(start) > o.limit {
				mu.Lock()
				stopped++
				mu.Unlock()
				continue
			}
			err := r.evaluate(i)
			mu.Lock()
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("prompt %d: %w", i, err)
			}
			if err == nil && r.csv != nil {
				r.writeLines(r.csv, i)
			}
			done++
			if done%10 == 0 || done == len(todo) {
				el := time.Since(start)
				fmt.Fprintf(progress, "streaming: %d/%d prompts, %.0fs, about %.0fs to go\n", done, len(todo), el.Seconds(), el.Seconds()/float64(done)*float64(len(todo)-done))
			}
			mu.Unlock()
		}
	})
	if firstErr != nil {
		return firstErr
	}
	if stopped > 0 {
		fmt.Fprintf(progress, "streaming: stopped after %s; %d prompts not run\n", o.limit, stopped)
	}
	return r.report(stdout, time.Since(start))
}

// makeGroups plans the streamed prefills: one per chunk, scorer, budget
// and reserve, each ending with the Stream's own Compress.
func (r *needleRun) makeGroups() error {
	for _, c := range r.o.chunks {
		for _, name := range r.o.scorers {
			for _, b := range r.o.budgets {
				for _, ratio := range r.o.ratios {
					reserve := 0
					if ratio > 1 {
						reserve = ratio * b
					}
					c0, _ := r.m.NewCache(kvcache.Float32)
					st, err := compresskv.NewStream(r.policies[b], c0, r.streamConfig(c, reserve, name))
					if err != nil {
						return fmt.Errorf("chunk %d, scorer %s, budget %d, ratio %d: %w", c, name, b, ratio, err)
					}
					r.groups = append(r.groups, group{chunk: c, scorer: name, policy: r.policies[b], reserve: reserve,
						reserves: st.Reserves(), cells: []cell{{c, ratio, b, name}}})
				}
			}
		}
	}
	return nil
}

// streamConfig is the Stream of one prefill: no slack (a chunked prefill
// never needs it, and the bound is then reserve + chunk exactly).
func (r *needleRun) streamConfig(chunk, reserve int, scorer string) compresskv.StreamConfig {
	return compresskv.StreamConfig{QHeads: r.m.Heads, Chunk: chunk, Slack: -1, Reserve: reserve, Prefill: r.scorers[scorer]}
}

// makePrompts draws the prompts: lengths in turn, each with its own needle,
// a depth uniform in [0, 1] and a haystack offset, from the seed.
func (r *needleRun) makePrompts(hay string, tok *llama.Tokenizer) error {
	n := r.o.prompts * len(r.o.lengths)
	ns := niah.Needles(Words, n, r.o.seed)
	if ns == nil {
		return fmt.Errorf("no needles")
	}
	for i := 0; i < n; i++ {
		rng := rand.New(rand.NewPCG(r.o.seed, uint64(i)))
		li := i % len(r.o.lengths)
		p, err := niah.Build(tok, hay, rng.IntN(len(hay)), r.o.lengths[li], rng.Float64(), ns[i])
		if err != nil {
			return err
		}
		r.prompts = append(r.prompts, p)
		r.lenIdx = append(r.lenIdx, li)
	}
	return nil
}

// answer decodes the needle's answer over c from logits.
func (r *needleRun) answer(c kvcache.KVCache, logits []float32, p niah.Prompt) (bool, error) {
	s, err := r.m.NewSession(c, nil)
	if err != nil {
		return false, err
	}
	ans, err := niah.Greedy(s, logits, len(p.Needle.Value)+1, nil)
	if err != nil {
		return false, err
	}
	return niah.Correct(ans, p.Needle), nil
}

// evaluate runs prompt i: the full cache, one-shot compression at every
// budget, and every streamed prefill.
func (r *needleRun) evaluate(i int) error {
	ctx := context.Background()
	p := r.prompts[i]
	m := r.m
	cache, err := m.NewCache(kvcache.Float32)
	if err != nil {
		return err
	}
	s, _ := m.NewSession(cache, nil)
	logits, q, err := s.Prefill(p.Tokens, 256)
	if err != nil {
		return err
	}
	r.fullRows[i] = cache.Bytes()
	if r.full[i], err = r.answer(cache.Clone(), logits, p); err != nil {
		return err
	}
	r.oneShot[i] = map[int]bool{}
	for _, b := range r.o.budgets {
		c := cache.Clone()
		cs, _ := m.NewSession(c, nil)
		if _, err := cs.Compress(ctx, r.policies[b], q); err != nil {
			return err
		}
		if r.oneShot[i][b], err = r.answer(c, logits, p); err != nil {
			return err
		}
	}
	r.streamed[i] = map[cell]outcome{}
	for _, g := range r.groups {
		if slices.Index(r.o.chunks, g.chunk) < 0 {
			continue
		}
		ss, st, err := m.StreamSession(ctx, g.policy, kvcache.Float32, r.streamConfig(g.chunk, g.reserve, g.scorer))
		if err != nil {
			return err
		}
		var lg []float32
		for a := 0; a < len(p.Tokens); a += g.chunk {
			if lg, err = ss.Forward(p.Tokens[a:min(len(p.Tokens), a+g.chunk)]); err != nil {
				return err
			}
		}
		// The end of the prompt: every layer compressed to the budget with
		// the policy's scorer and the question's window, by the Stream.
		for l := 0; l < m.Layers; l++ {
			if err := st.Compress(ctx, l); err != nil {
				return err
			}
		}
		stats := st.Stats()
		ans, err := niah.Greedy(ss, lg, len(p.Needle.Value)+1, nil)
		if err != nil {
			return err
		}
		r.streamed[i][g.cells[0]] = outcome{ok: niah.Correct(ans, p.Needle), peakBytes: stats.PeakBytes, peakReserved: stats.PeakReserved, track: stats.PeakTrackBytes}
	}
	return nil
}

// summary is one cell over its prompts.
type summary struct {
	ok, one, n, b, c          int // right streamed, right one-shot, prompts, streamed-only, one-shot-only
	peak, peakReserved, track float64
}

func (r *needleRun) summarise(li int, c cell) summary {
	var s summary
	for i, p := range r.streamed {
		if p == nil || r.lenIdx[i] != li {
			continue
		}
		out, ok := p[c]
		if !ok {
			continue
		}
		s.n++
		one := r.oneShot[i][c.budget]
		if out.ok {
			s.ok++
		}
		if one {
			s.one++
		}
		if out.ok && !one {
			s.b++
		}
		if one && !out.ok {
			s.c++
		}
		s.peak += float64(out.peakBytes)
		s.peakReserved += float64(out.peakReserved)
		s.track += float64(out.track)
	}
	if s.n > 0 {
		s.peak /= float64(s.n)
		s.peakReserved /= float64(s.n)
		s.track /= float64(s.n)
	}
	return s
}

func (r *needleRun) report(w io.Writer, elapsed time.Duration) error {
	o := r.o
	fmt.Fprintf(w, "needles on %s, words of examples/streaming, seed %d, %d prompts per length (depths and offsets at random); %d prefill chunks, %d scorers; %.0fs\n",
		o.haystack, o.seed, o.prompts, len(o.chunks), len(o.scorers), elapsed.Seconds())
	for li, L := range o.lengths {
		full, fullBytes, n := 0, 0.0, 0
		one := map[int]int{}
		for i := range r.prompts {
			if r.lenIdx[i] != li || r.oneShot[i] == nil {
				continue
			}
			n++
			fullBytes += float64(r.fullRows[i])
			if r.full[i] {
				full++
			}
			for _, b := range o.budgets {
				if r.oneShot[i][b] {
					one[b]++
				}
			}
		}
		fmt.Fprintf(w, "\n%d tokens: full cache %d/%d (%.0f KiB); one-shot CompressKV", L, full, n, fullBytes/float64(max(n, 1))/1024)
		for _, b := range o.budgets {
			fmt.Fprintf(w, " at %d: %d/%d", b, one[b], n)
		}
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "chunk\tbudget\treserve\tscorer\tstreamed\tone-shot\tof one-shot\tonly streamed\tonly one-shot\tsign test p\tpeak KiB\treserved KiB\ttrack KiB\t")
		for _, c := range o.chunks {
			for _, b := range o.budgets {
				for _, ratio := range o.ratios {
					for _, name := range o.scorers {
						s := r.summarise(li, cell{c, ratio, b, name})
						if s.n == 0 {
							continue
						}
						rel := "-"
						if s.one > 0 {
							rel = fmt.Sprintf("%.0f%%", 100*float64(s.ok)/float64(s.one))
						}
						fmt.Fprintf(tw, "%d\t%d\t%dx\t%s\t%d/%d\t%d/%d\t%s\t%d\t%d\t%.3g\t%.1f\t%.1f\t%.1f\t\n", c, b, ratio, name, s.ok, s.n, s.one, s.n, rel, s.b, s.c,
							niah.SignTest(s.b, s.c), s.peak/1024, s.peakReserved/1024, s.track/1024)
					}
				}
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if o.out == "" {
		return nil
	}
	return r.writePlot(filepath.Join(o.out, "frontier.png"))
}

const csvHeader = "prompt,length,depth,word,full_ok,full_bytes,chunk,budget,ratio,scorer,streamed_ok,oneshot_ok,peak_bytes,peak_reserved,track_bytes"

// writeLines writes prompt i's lines: one per cell.
func (r *needleRun) writeLines(w io.Writer, i int) {
	p := r.prompts[i]
	for _, g := range r.groups {
		for _, c := range g.cells {
			out := r.streamed[i][c]
			fmt.Fprintf(w, "%d,%d,%.4f,%s,%t,%d,%d,%d,%d,%s,%t,%t,%d,%d,%d\n", i, r.o.lengths[r.lenIdx[i]], p.Depth, p.Needle.Word, r.full[i], r.fullRows[i],
				c.chunk, c.budget, c.ratio, c.scorer, out.ok, r.oneShot[i][c.budget], out.peakBytes, out.peakReserved, out.track)
		}
	}
}

// complete reports whether prompt i has an outcome in every cell.
func (r *needleRun) complete(i int) bool {
	if r.streamed[i] == nil {
		return false
	}
	for _, g := range r.groups {
		for _, c := range g.cells {
			if _, ok := r.streamed[i][c]; !ok {
				return false
			}
		}
	}
	return true
}

// readCSV loads the outcomes a previous run with the same flags wrote; a
// line that does not match this run's prompts (another length, word or
// depth) is an error, so that a resumed run measures one grid.
func (r *needleRun) readCSV(path string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) == 0 || lines[0] != csvHeader {
		return fmt.Errorf("%s: not a needles.csv of this command", path)
	}
	for k, line := range lines[1:] {
		f := strings.Split(line, ",")
		if len(f) != 15 {
			return fmt.Errorf("%s line %d: %d fields", path, k+2, len(f))
		}
		var i, L, chunk, budget, ratio int
		var depth float64
		var fullBytes, peak, reserved, track int64
		if _, err := fmt.Sscan(f[0], &i); err != nil || i < 0 || i >= len(r.prompts) {
			return fmt.Errorf("%s line %d: prompt %q is not one of this run's", path, k+2, f[0])
		}
		if _, err := fmt.Sscan(strings.Join([]string{f[1], f[2], f[5], f[6], f[7], f[8], f[12], f[13], f[14]}, " "),
			&L, &depth, &fullBytes, &chunk, &budget, &ratio, &peak, &reserved, &track); err != nil {
			return fmt.Errorf("%s line %d: %v", path, k+2, err)
		}
		p := r.prompts[i]
		if L != r.o.lengths[r.lenIdx[i]] || f[3] != p.Needle.Word || math.Abs(depth-p.Depth) > 1e-4 {
			return fmt.Errorf("%s line %d: prompt %d is not this run's (other flags?)", path, k+2, i)
		}
		if r.oneShot[i] == nil {
			r.oneShot[i], r.streamed[i] = map[int]bool{}, map[cell]outcome{}
		}
		r.full[i], r.fullRows[i] = f[4] == "true", fullBytes
		r.oneShot[i][budget] = f[11] == "true"
		r.streamed[i][cell{chunk, ratio, budget, f[9]}] = outcome{ok: f[10] == "true", peakBytes: peak, peakReserved: reserved, track: track}
	}
	return nil
}

// writePlot draws one panel per length, chunk and budget: each scorer's
// accuracy against its measured peak, the one-shot accuracy and 90% of it,
// and the target bound of 4 budgets plus a chunk.
func (r *needleRun) writePlot(path string) error {
	o := r.o
	fig := niah.LineFigure{
		Title:    "Needles answered against the peak cache while the prompt runs (project's model, " + filepath.Base(o.haystack) + ")",
		Subtitle: fmt.Sprintf("%d prompts per point; reserve 1, 2, 4, 8 budgets left to right; then CompressKV at the budget with the question's window", o.prompts),
		XTitle:   "peak cache while the prompt runs (KiB, measured)", YTitle: "needles answered",
	}
	for _, name := range o.scorers {
		ent, _ := lookupScorer(name)
		fig.Series = append(fig.Series, ent.label)
	}
	s := r.m.CacheShape()
	rowBytes := float64(2*s.HeadDim*4 + 4)
	for li, L := range o.lengths {
		for _, c := range o.chunks {
			for _, b := range o.budgets {
				panel := niah.LinePanel{Title: fmt.Sprintf("%d tokens, chunk %d, budget %d", L, c, b)}
				one, n := 0, 0
				for i := range r.prompts {
					if r.lenIdx[i] == li && r.oneShot[i] != nil {
						n++
						if r.oneShot[i][b] {
							one++
						}
					}
				}
				for _, name := range o.scorers {
					var line []niah.Point
					for _, ratio := range o.ratios {
						sm := r.summarise(li, cell{c, ratio, b, name})
						if sm.n > 0 {
							line = append(line, niah.Point{X: sm.peak / 1024, Y: float64(sm.ok) / float64(sm.n)})
						}
					}
					panel.Lines = append(panel.Lines, line)
				}
				if n > 0 {
					a := float64(one) / float64(n)
					panel.HRules = []niah.Rule{{At: a, Label: fmt.Sprintf("one-shot %.0f%%", 100*a)}, {At: 0.9 * a, Label: "90% of it"}}
				}
				bound := float64(s.Layers*s.KVHeads*(4*b+c)) * rowBytes / 1024
				panel.VRules = []niah.Rule{{At: bound, Label: "4B+chunk"}}
				fig.Panels = append(fig.Panels, panel)
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := niah.WriteLines(f, fig); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
