// Command calibrate runs the offline half of CompressKV on a model and
// writes its profile: the semantic retrieval heads of every layer, found from
// needle probes, and the layer weights of the error-aware budget allocation,
// measured as the shadow eviction error of each layer at a small uniform
// budget.
//
//	go run ./examples/calibrate                      # the project's model -> testdata/retrieval.profile.json
//	go run ./examples/calibrate -quick -out /tmp/p.json
//
// Probes and calibration text come from testdata/haystack/calib.txt with the
// calibration words of package niah: disjoint from the needle benchmark's.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"time"

	"github.com/compresskv/compresskv/alloc"
	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/examples/niah"
	"github.com/compresskv/compresskv/heads"
	"github.com/compresskv/compresskv/kvcache"
)

func main() {
	log.SetFlags(0)
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		log.Fatal(err)
	}
}

type options struct {
	model, haystack, out string
	lengths              []int
	depths, needles      int
	budget, steps        int
	textSamples          int
	indicator            bool
	kernel               int
	seed                 uint64
}

func parse(args []string) (*options, error) {
	fs := flag.NewFlagSet("calibrate", flag.ContinueOnError)
	o := &options{}
	fs.StringVar(&o.model, "model", llama.DefaultModel, "llama2.c checkpoint of a byte-level model")
	fs.StringVar(&o.haystack, "haystack", "testdata/haystack/calib.txt", "calibration text")
	fs.StringVar(&o.out, "out", llama.DefaultProfile, "profile to write")
	lengths := fs.String("lengths", "256,512,768,1024", "probe lengths in tokens")
	fs.IntVar(&o.depths, "depths", 11, "needle depths per length, evenly from 0 to 100%")
	fs.IntVar(&o.needles, "needles", 3, "needles per length and depth")
	fs.IntVar(&o.budget, "budget", 32, "uniform budget per layer of the shadow eviction")
	fs.IntVar(&o.steps, "steps", 32, "decode steps per text sample for the layer error")
	fs.IntVar(&o.textSamples, "text-samples", 24, "plain-text samples for the layer error")
	fs.BoolVar(&o.indicator, "indicator", false, "count an answer token once (the paper's Eq. 5) instead of once per occurrence")
	fs.Uint64Var(&o.seed, "seed", 7, "needle seed")
	fs.IntVar(&o.kernel, "kernel", llama.DefaultKernel, "pooling kernel of the shadow eviction")
	quick := fs.Bool("quick", false, "a small grid (lengths 256,512; 5 depths; 1 needle; 6 text samples)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *quick {
		*lengths, o.depths, o.needles, o.textSamples = "256,512", 5, 1, 6
	}
	var err error
	if o.lengths, err = niah.ParseInts(*lengths); err != nil {
		return nil, fmt.Errorf("lengths: %w", err)
	}
	return o, nil
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
	t0 := time.Now()
	rec, trials, err := probe(m, hay, o, progress)
	if err != nil {
		return err
	}
	counted, total := rec.Trials()
	if counted == 0 {
		return fmt.Errorf("no probe was answered correctly (%d trials): the model cannot retrieve, so it has no retrieval heads to find", total)
	}
	probeTime := time.Since(t0)
	info := compresskv.ModelInfo{Name: o.model, Layers: m.Layers, QueryHeads: m.Heads, KVHeads: m.KVHeads, HeadDim: m.HeadDim()}
	prof, err := compresskv.NewProfile(info, rec.SR(), rec.Retrieval(), nil)
	if err != nil {
		return err
	}
	t1 := time.Now()
	weights, perSet, err := layerWeights(m, prof, hay, o, progress)
	if err != nil {
		return err
	}
	prof.LayerWeights = weights
	errTime := time.Since(t1)
	mode := "multiplicity"
	if o.indicator {
		mode = "indicator"
	}
	prof.Notes = map[string]string{
		"probes":        fmt.Sprintf("%d trials (%d answered correctly, counted): lengths %v x %d depths x %d needles, %s", total, counted, o.lengths, o.depths, o.needles, mode),
		"probe_text":    o.haystack + " with niah.CalibWords",
		"layer_error":   fmt.Sprintf("shadow eviction at a uniform budget of %d, CompressKV token selection; data sets: %s", o.budget, strings.Join(perSet, "; ")),
		"cost":          fmt.Sprintf("probes %.1f s, layer error %.1f s on %s", probeTime.Seconds(), errTime.Seconds(), cpu.New().Name()),
		"probe_summary": trials,
	}
	if err := prof.Save(o.out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: %d of %d probes counted; probes %.1fs, layer error %.1fs\n", o.out, counted, total, probeTime.Seconds(), errTime.Seconds())
	for l := 0; l < m.Layers; l++ {
		fmt.Fprintf(stdout, "layer %d: weight %.3f, SR heads by rank %v\n", l, weights[l], prof.HeadRanking[l])
	}
	return nil
}

// probe runs the needle grid with full caches, recording every decode step.
func probe(m *llama.Model, hay string, o *options, progress io.Writer) (*heads.Recorder, string, error) {
	mode := heads.Multiplicity
	if o.indicator {
		mode = heads.Indicator
	}
	rec, err := heads.NewRecorder(m.Layers, m.Heads, heads.Options{Mode: mode})
	if err != nil {
		return nil, "", err
	}
	be := cpu.New()
	tok := llama.ByteTokenizer()
	per := m.Heads * m.HeadDim()
	needles := niah.Needles(niah.CalibWords, len(o.lengths)*o.depths*o.needles, o.seed)
	i := 0
	var summary []string
	for _, L := range o.lengths {
		ok := 0
		for _, depth := range niah.Depths(o.depths) {
			for k := 0; k < o.needles; k++ {
				n := needles[i]
				p, err := niah.Build(tok, hay, (i*7919)%len(hay), L, depth, n)
				i++
				if err != nil {
					return nil, "", err
				}
				cache, _ := m.NewCache(kvcache.Float32)
				s, _ := m.NewSession(cache, be)
				logits, q, err := s.Prefill(p.Tokens, 256)
				if err != nil {
					return nil, "", err
				}
				last := make([][]float32, m.Layers) // query of the last position run
				for l := range last {
					last[l] = q[l][len(q[l])-per:]
				}
				s.Hooks.Query = func(l, _ int, x []float32) { last[l] = append(last[l][:0:0], x...) }
				if err := rec.BeginTrial(p.Tokens, p.ValueStart, p.ValueEnd); err != nil {
					return nil, "", err
				}
				answer, err := niah.Greedy(s, logits, len(n.Value)+1, func(id int) error {
					return rec.StepFromCache(id, be, cache, last)
				})
				if err != nil {
					return nil, "", err
				}
				good := niah.Correct(answer, n)
				if good {
					ok++
				}
				if err := rec.EndTrial(good); err != nil {
					return nil, "", err
				}
			}
		}
		line := fmt.Sprintf("%d tokens: %d/%d correct", L, ok, o.depths*o.needles)
		summary = append(summary, line)
		fmt.Fprintf(progress, "probes: %s\n", line)
	}
	return rec, strings.Join(summary, ", "), nil
}

// layerWeights measures, per layer, the relative error of the attention
// output when that layer alone attends over a cache compressed at a small
// uniform budget, while the model keeps running on the full cache; two data
// sets (needle prompts, plain text) are normalised and averaged.
func layerWeights(m *llama.Model, prof *compresskv.Profile, hay string, o *options, progress io.Writer) ([]float64, []string, error) {
	policy, err := compresskv.New(compresskv.CompressKV, compresskv.Config{Budget: o.budget, Kernel: o.kernel, Profile: prof})
	if err != nil {
		return nil, nil, err
	}
	tok := llama.ByteTokenizer()
	var sums [][]float64
	var sets []string
	// Data set 1: needle prompts (different needles from the probes), the answer decoded.
	needles := niah.Needles(niah.CalibWords, o.textSamples, o.seed+1)
	acc, err := alloc.NewErrorAccumulator(m.Layers)
	if err != nil {
		return nil, nil, err
	}
	for i, n := range needles {
		L := o.lengths[i%len(o.lengths)]
		p, err := niah.Build(tok, hay, (i*104729)%len(hay), L, float64(i%11)/10, n)
		if err != nil {
			return nil, nil, err
		}
		if err := shadow(m, policy, p.Tokens, len(n.Value)+1, acc); err != nil {
			return nil, nil, err
		}
	}
	sums = append(sums, acc.Sums())
	sets = append(sets, fmt.Sprintf("needles (%d prompts)", len(needles)))
	fmt.Fprintf(progress, "layer error: needles done\n")
	// Data set 2: plain calibration text, continued greedily.
	acc, _ = alloc.NewErrorAccumulator(m.Layers)
	for i := 0; i < o.textSamples; i++ {
		L := o.lengths[i%len(o.lengths)]
		start := (i * 65537) % (len(hay) - L)
		ids := tok.Encode(hay[start:start+L-1], true, false)
		if err := shadow(m, policy, ids, o.steps, acc); err != nil {
			return nil, nil, err
		}
	}
	sums = append(sums, acc.Sums())
	sets = append(sets, fmt.Sprintf("text (%d samples x %d steps)", o.textSamples, o.steps))
	fmt.Fprintf(progress, "layer error: text done\n")
	w, err := alloc.Average(sums)
	return w, sets, err
}

// shadow prefills prompt, compresses a copy of the cache, then decodes steps
// tokens greedily on the full cache while each layer's attention output is
// also computed over the compressed copy; the relative errors go to acc.
func shadow(m *llama.Model, policy *compresskv.Policy, prompt []int, steps int, acc *alloc.ErrorAccumulator) error {
	cache, _ := m.NewCache(kvcache.Float32)
	s, _ := m.NewSession(cache, nil)
	logits, q, err := s.Prefill(prompt, 256)
	if err != nil {
		return err
	}
	comp := cache.Clone()
	shadowSess, _ := m.NewSession(comp, nil)
	if _, err := shadowSess.Compress(policy, q); err != nil {
		return err
	}
	queries := make([][]float32, m.Layers)
	comps := make([][]float32, m.Layers)
	var hookErr error
	s.Hooks = llama.Hooks{
		Query: func(l, _ int, x []float32) { queries[l] = append(queries[l][:0], x...) },
		KV: func(l, _ int, k, v []float32) {
			if hookErr != nil {
				return
			}
			if hookErr = comp.Append(l, k, v); hookErr == nil {
				comps[l], hookErr = s.AttentionOutput(comp, l, queries[l])
			}
		},
		AttnOut: func(l, _ int, full []float32) {
			if hookErr == nil {
				hookErr = acc.Add(l, comps[l], full)
			}
		},
	}
	for i := 0; i < steps; i++ {
		if logits, err = s.Forward([]int{llama.Argmax(logits)}); err != nil {
			return err
		}
		if hookErr != nil {
			return hookErr
		}
	}
	return nil
}
