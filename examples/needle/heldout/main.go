// Command heldout measures the policies on needle prompts made of material
// the methods were not tuned on: the project's generated haystack
// (testdata/haystack/heldout.txt, not the training, calibration or
// evaluation text), key words no other list uses, depths drawn at random
// instead of the benchmark's grid, and several needle seeds. Every prompt is
// prefilled once and decoded under every policy and budget, so the policies
// are compared on the same prompts: per cell (budget x length) it prints the
// accuracy with its count, the best baseline, and an exact two-sided sign
// test (McNemar's) of Ada-CompressKV against it on the discordant prompts.
//
//	go run ./examples/needle/heldout -prompts 100
//	go run ./examples/needle/heldout -write-haystack testdata/haystack/heldout.txt
//	go run ./examples/needle/heldout -model M.gguf -profile out/M.profile.json -lengths 512,1024
//
// A GGUF model's prompts are built in its own tokens, as the needle
// command builds them (examples/needle).
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
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/examples/internal/cli"
	"github.com/compresskv/compresskv/examples/niah"
	"github.com/compresskv/compresskv/kvcache"
)

// HeldoutWords are key words that neither the evaluation nor the
// calibration lists use, and that the training text does not contain.
var HeldoutWords = strings.Fields(`avocado biscuit cactus dolphin eclipse falafel gecko hammock
	iguana jigsaw kayak lobster mosaic nugget origami pelican quokka rhubarb sardine tulip
	ukulele vanilla walrus yogurt zucchini asteroid blizzard cashew domino espresso flamingo
	gazebo hamster igloo jaguar koala lemur macaw nebula octopus panda quiche raccoon scooter
	tofu umbrella violin waffle`)

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
	mf                      *cli.ModelFlags
	haystack, writeHay, csv string
	lengths, budgets        []int
	seeds                   []uint64
	prompts, hayBytes       int
	limit                   time.Duration
	policies                []string
	variant                 string
	kernel                  int // the pooling kernel in effect, set once the model is open
}

func parse(args []string) (*options, error) {
	fs := flag.NewFlagSet("heldout", flag.ContinueOnError)
	o := &options{}
	o.mf = cli.AddModelFlags(fs)
	fs.StringVar(&o.haystack, "haystack", "testdata/haystack/heldout.txt", "held-out haystack text")
	fs.StringVar(&o.writeHay, "write-haystack", "", "instead of measuring: write the generated haystack to this file")
	fs.IntVar(&o.hayBytes, "haystack-bytes", 200000, "size of the generated haystack")
	fs.StringVar(&o.csv, "csv", "", "write one line per prompt, policy and budget to this file")
	lengths := cli.Ints(fs, "lengths", "256,512,768,1024", "context lengths in tokens")
	budgets := cli.Ints(fs, "budgets", "16,32,64,128", "average budgets per layer")
	seeds := cli.Ints(fs, "seeds", "101,202", "needle seeds (words, values, depths, haystack offsets)")
	fs.IntVar(&o.prompts, "prompts", 50, "prompts per length and seed")
	fs.DurationVar(&o.limit, "time", 0, "start no prompt after this long (0: no limit); prompts are taken in turn from every length and seed, so the cells stay balanced")
	policies := fs.String("policies", strings.Join(baselines, ",")+",adacompresskv", "policies: methods ("+cli.MethodsUsage()+"), or the alternatives "+strings.Join(altNames(), ", "))
	fs.StringVar(&o.variant, "variant", "adacompresskv", "the policy tested against the best baseline of each cell")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.lengths, o.budgets = *lengths, *budgets
	for _, s := range *seeds {
		o.seeds = append(o.seeds, uint64(s))
	}
	for _, p := range strings.Split(*policies, ",") {
		if p = strings.TrimSpace(p); p != "" {
			o.policies = append(o.policies, p)
		}
	}
	if !slices.Contains(o.policies, o.variant) {
		o.policies = append(o.policies, o.variant)
	}
	return o, nil
}

// baselines are the methods the variant is compared with.
var baselines = []string{"streamingllm", "h2o", "snapkv", "pyramidkv", "adakv", "compresskv"}

// prompt is one held-out prompt.
type prompt struct {
	niah.Prompt
	li   int    // index of its length
	seed uint64 // its needle seed
}

// outcome is one prompt decoded under one policy at one budget.
type outcome struct {
	ok bool
	// spanKept holds, per layer and KV head, whether every token of the
	// needle's value was kept.
	spanKept []bool
	// rows holds, per layer and KV head, the rows kept (0: all).
	rows []int
}

func run(args []string, stdout, progress io.Writer) error {
	o, err := parse(args)
	if err != nil {
		return err
	}
	if o.writeHay != "" {
		return os.WriteFile(o.writeHay, []byte(newHaystackGen(1).text(o.hayBytes)), 0o644)
	}
	m, err := o.mf.Open()
	if err != nil {
		return err
	}
	defer m.Close()
	if s := m.Summary(); s != "" {
		fmt.Fprintln(stdout, s)
	}
	prof, err := o.mf.LoadProfile(m, "the Ada-CompressKV variants")
	if err != nil {
		return err
	}
	hay, err := niah.LoadHaystack(cli.Path(o.haystack))
	if err != nil {
		return err
	}
	o.kernel = m.Kernel(o.mf.Kernel)
	pols := map[string]map[int]*compresskv.Policy{}
	for _, name := range o.policies {
		pols[name] = map[int]*compresskv.Policy{}
		for _, b := range o.budgets {
			p, err := build(name, compresskv.Config{Budget: b, Kernel: o.kernel, Profile: prof})
			if err != nil {
				return err
			}
			pols[name][b] = p
		}
	}
	prompts, err := makePrompts(m, o, hay)
	if err != nil {
		return err
	}
	res := map[string]map[int][]outcome{}
	for name := range pols {
		res[name] = map[int][]outcome{}
		for _, b := range o.budgets {
			res[name][b] = make([]outcome, len(prompts))
		}
	}
	full := make([]bool, len(prompts))
	pr := cli.NewProgress(progress, "heldout", len(prompts), 20)
	start := time.Now()
	work := make(chan int)
	errc := make(chan error, len(prompts))
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := evaluate(m, prompts[i], i, pols, res, full); err != nil {
					errc <- err
					continue
				}
				pr.Done()
			}
		}()
	}
	started := 0
	for i := range prompts {
		if o.limit > 0 && time.Since(start) > o.limit {
			break
		}
		work <- i
		started++
	}
	close(work)
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	if started < len(prompts) {
		fmt.Fprintf(progress, "heldout: time limit %v: %d of %d prompts measured\n", o.limit, started, len(prompts))
		prompts, full = prompts[:started], full[:started]
		for _, byBudget := range res {
			for b := range byBudget {
				byBudget[b] = byBudget[b][:started]
			}
		}
	}
	if o.csv != "" {
		if err := writeCSV(o, prompts, res, full); err != nil {
			return err
		}
	}
	report(stdout, o, prompts, res, full, time.Since(start))
	return nil
}

// makePrompts draws o.prompts prompts per length and seed: needles from
// HeldoutWords, depths uniform in [0, 1], haystack offsets at random.
func makePrompts(m *cli.Model, o *options, hay string) ([]prompt, error) {
	// byCell[seed][length] holds that cell's prompts in order.
	byCell := make([][][]prompt, len(o.seeds))
	for si, seed := range o.seeds {
		needles := niah.Needles(HeldoutWords, len(o.lengths)*o.prompts, seed)
		rng := rand.New(rand.NewPCG(seed, 0x686f))
		byCell[si] = make([][]prompt, len(o.lengths))
		i := 0
		for li, L := range o.lengths {
			for k := 0; k < o.prompts; k++ {
				p, err := m.Needle(hay, rng.IntN(len(hay)), L, rng.Float64(), needles[i])
				if err != nil {
					return nil, err
				}
				byCell[si][li] = append(byCell[si][li], prompt{Prompt: p, li: li, seed: seed})
				i++
			}
		}
	}
	// In turn from every seed and length, so that a run cut short by -time
	// has (nearly) as many prompts in every cell.
	var out []prompt
	for k := 0; k < o.prompts; k++ {
		for si := range o.seeds {
			for li := range o.lengths {
				out = append(out, byCell[si][li][k])
			}
		}
	}
	return out, nil
}

// evaluate prefills one prompt and decodes its answer with the full cache
// and under every policy and budget, each over its own copy of the cache.
func evaluate(m *cli.Model, p prompt, i int, pols map[string]map[int]*compresskv.Policy, res map[string]map[int][]outcome, full []bool) error {
	pre, err := cli.Prefill(m.Model, kvcache.Float32, p.Tokens)
	if err != nil {
		return err
	}
	cache := pre.Cache
	if full[i], err = m.Answer(pre.Full(), pre.Logits, p.Prompt); err != nil {
		return err
	}
	for name, byBudget := range pols {
		for b, pol := range byBudget {
			cs, r, err := pre.Compress(context.Background(), pol)
			if err != nil {
				return err
			}
			ok, err := m.Answer(cs, pre.Logits, p.Prompt)
			if err != nil {
				return err
			}
			res[name][b][i] = outcome{ok: ok, spanKept: spanKept(r.Keep, p.Prompt, cache.Shape()), rows: keptRows(r.Keep, cache.Shape())}
		}
	}
	return nil
}

// spanKept reports, per layer and KV head, whether the plan kept every
// position of the needle's value (a layer the plan leaves whole keeps it).
func spanKept(keep [][][]int, p niah.Prompt, s kvcache.Shape) []bool {
	out := make([]bool, 0, s.Layers*s.KVHeads)
	for l := 0; l < s.Layers; l++ {
		for g := 0; g < s.KVHeads; g++ {
			if keep == nil || keep[l] == nil {
				out = append(out, true)
				continue
			}
			n := 0
			for _, j := range keep[l][g] {
				if j >= p.ValueStart && j < p.ValueEnd {
					n++
				}
			}
			out = append(out, n == p.ValueEnd-p.ValueStart)
		}
	}
	return out
}

// keptRows returns, per layer and KV head, the rows the plan keeps (0 for a
// layer it leaves whole).
func keptRows(keep [][][]int, s kvcache.Shape) []int {
	out := make([]int, 0, s.Layers*s.KVHeads)
	for l := 0; l < s.Layers; l++ {
		for g := 0; g < s.KVHeads; g++ {
			n := 0
			if keep != nil && keep[l] != nil {
				n = len(keep[l][g])
			}
			out = append(out, n)
		}
	}
	return out
}

func writeCSV(o *options, prompts []prompt, res map[string]map[int][]outcome, full []bool) error {
	f, err := os.Create(o.csv)
	if err != nil {
		return err
	}
	fmt.Fprintln(f, "seed,length,depth,word,policy,budget,full_ok,ok,value_kept_per_layer_head,rows_per_layer_head")
	for _, name := range o.policies {
		for _, b := range o.budgets {
			for i, p := range prompts {
				r := res[name][b][i]
				kept := make([]string, len(r.spanKept))
				for j, k := range r.spanKept {
					kept[j] = map[bool]string{true: "1", false: "0"}[k]
				}
				rows := make([]string, len(r.rows))
				for j, n := range r.rows {
					rows[j] = fmt.Sprint(n)
				}
				fmt.Fprintf(f, "%d,%d,%.4f,%s,%s,%d,%v,%v,%s,%s\n", p.seed, o.lengths[p.li], p.Depth, p.Needle.Word, name, b, full[i], r.ok, strings.Join(kept, ""), strings.Join(rows, " "))
			}
		}
	}
	return f.Close()
}

// halfWidth is the half-width of the 95% Wilson interval of k successes in n.
func halfWidth(k, n int) float64 {
	if n == 0 {
		return 0
	}
	const z = 1.959964
	p, nn := float64(k)/float64(n), float64(n)
	return z / (1 + z*z/nn) * math.Sqrt(p*(1-p)/nn+z*z/(4*nn*nn))
}

func report(w io.Writer, o *options, prompts []prompt, res map[string]map[int][]outcome, full []bool, elapsed time.Duration) {
	fmt.Fprintf(w, "held-out needles: haystack %s, lengths %v, seeds %v, %d prompts per length and seed (%d in all), random depths, kernel %d, %.0fs\n",
		o.haystack, o.lengths, o.seeds, o.prompts, len(prompts), o.kernel, elapsed.Seconds())
	// Cells: every (budget, length), then every budget over all lengths.
	type cellKey struct{ b, li int } // li == -1: all lengths
	in := func(k cellKey, p prompt) bool { return k.li < 0 || p.li == k.li }
	count := func(name string, k cellKey) (ok, n int) {
		for i, p := range prompts {
			if in(k, p) {
				n++
				if res[name][k.b][i].ok {
					ok++
				}
			}
		}
		return ok, n
	}
	nf, okf := 0, 0
	for i := range prompts {
		nf++
		if full[i] {
			okf++
		}
	}
	fmt.Fprintf(w, "full cache: %.1f%% of %d\n", 100*float64(okf)/float64(nf), nf)
	lengthName := func(li int) string {
		if li < 0 {
			return "all"
		}
		return fmt.Sprint(o.lengths[li])
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "budget\tlength\tn\t+-95%\t")
	for _, name := range o.policies {
		fmt.Fprintf(tw, "%s\t", name)
	}
	fmt.Fprintln(tw, "best baseline\tvariant-best\twins\tlosses\tp (sign)\t")
	for _, b := range o.budgets {
		for _, li := range append(seq(len(o.lengths)), -1) {
			k := cellKey{b, li}
			vOK, n := count(o.variant, k)
			fmt.Fprintf(tw, "%d\t%s\t%d\t%.1f\t", b, lengthName(li), n, 100*halfWidth(vOK, n))
			for _, name := range o.policies {
				ok, n := count(name, k)
				fmt.Fprintf(tw, "%.1f\t", 100*float64(ok)/float64(max(1, n)))
			}
			best, bestOK := "", -1
			for _, name := range baselines {
				if _, has := res[name]; !has || name == o.variant {
					continue
				}
				if ok, _ := count(name, k); ok > bestOK {
					best, bestOK = name, ok
				}
			}
			wins, losses := 0, 0
			for i, p := range prompts {
				if !in(k, p) {
					continue
				}
				v, bb := res[o.variant][b][i].ok, res[best][b][i].ok
				if v && !bb {
					wins++
				}
				if bb && !v {
					losses++
				}
			}
			fmt.Fprintf(tw, "%s\t%+.1f\t%d\t%d\t%.3g\t\n", best, 100*float64(vOK-bestOK)/float64(max(1, n)), wins, losses, niah.SignTest(wins, losses))
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "(accuracy in %; +-95%: Wilson half-width of the variant's accuracy; wins/losses: prompts only the variant / only the best baseline answered)")
	// Where the variant loses to the best baseline: which layer's KV heads
	// dropped the needle's value.
	s := len(res[o.variant][o.budgets[0]][0].spanKept)
	fmt.Fprintln(w, "per slot = layer*KVHeads + KV head, all lengths: kept = % of prompts whose needle value that head kept whole; rows = mean rows it kept (0: the layer kept all)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "policy\tbudget\t")
	for j := 0; j < s; j++ {
		fmt.Fprintf(tw, "kept %d\t", j)
	}
	for j := 0; j < s; j++ {
		fmt.Fprintf(tw, "rows %d\t", j)
	}
	fmt.Fprintln(tw)
	for _, name := range o.policies {
		for _, b := range o.budgets {
			fmt.Fprintf(tw, "%s\t%d\t", name, b)
			for j := 0; j < s; j++ {
				n := 0
				for i := range prompts {
					if res[name][b][i].spanKept[j] {
						n++
					}
				}
				fmt.Fprintf(tw, "%.1f\t", 100*float64(n)/float64(len(prompts)))
			}
			for j := 0; j < s; j++ {
				n := 0
				for i := range prompts {
					n += res[name][b][i].rows[j]
				}
				fmt.Fprintf(tw, "%.1f\t", float64(n)/float64(len(prompts)))
			}
			fmt.Fprintln(tw)
		}
	}
	tw.Flush()
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}
