package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/examples/internal/cli"
	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/examples/niah"
	"github.com/compresskv/compresskv/kvcache"
)

// quality runs one of the two measurements of what bounding the cache while
// it runs costs (docs/RESULTS.md, "Bounded memory"):
//
//   - needle: on the project's model, needle accuracy when the prompt is
//     prefilled in chunks with eviction between them (then compressed to the
//     budget once more with the question's window) against one-shot
//     compression after the whole prefill, at the same final budget;
//   - decode: on a model such as stories260K, a long greedy generation with
//     the cache compressed again during decoding against the full cache:
//     agreement of the free-running greedy continuation, and over the full
//     cache's continuation fed back (teacher forcing) the mean KL(full ||
//     bounded) of the next-token distributions and their top-1 agreement.
//
// Runs are serial, one prompt at a time.
func quality(kind string, args []string, stdout io.Writer) error {
	if kind != "needle" && kind != "decode" {
		return fmt.Errorf("generate quality %q: want needle or decode", kind)
	}
	fs := flag.NewFlagSet("generate quality "+kind, flag.ContinueOnError)
	mf := cli.AddModelFlags(fs)
	hayPath := fs.String("haystack", "testdata/haystack/eval.txt", "needle: evaluation text")
	lengths := cli.Ints(fs, "lengths", "512,1024", "needle: prompt lengths")
	budgets := cli.Ints(fs, "budgets", "32,64,128", "budgets per layer (tokens, window included)")
	chunks := cli.Ints(fs, "chunks", "128,256,512", "needle: prefill chunks of the streaming runs")
	methods := cli.Methods(fs, "policies", "compresskv,snapkv,adakv", "policies")
	prompts := fs.Int("prompts", 40, "needle: prompts per length; decode: prompts")
	steps := fs.Int("steps", 400, "decode: generated tokens")
	chunk := fs.Int("chunk", 1, "decode: prefill chunk (and the Stream's Chunk)")
	slack := fs.Int("slack", 0, "Stream slack (0: the window; negative: none)")
	seed := fs.Uint64("seed", 23, "needle seed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	m, err := mf.Open()
	if err != nil {
		return err
	}
	defer m.Close()
	g, err := mf.Grid(m, *methods, *budgets)
	if err != nil {
		return err
	}
	if kind == "decode" {
		return decodeQuality(stdout, m, g, *prompts, *steps, *chunk, *slack)
	}
	hay, err := niah.LoadHaystack(cli.Path(*hayPath))
	if err != nil {
		return err
	}
	return needleQuality(stdout, m, hay, *lengths, *chunks, g, *prompts, *slack, *seed)
}

// needleQuality prints needle accuracy, one-shot against streaming with
// each chunk, per policy, length and budget.
func needleQuality(w io.Writer, m *cli.Model, hay string, lengths, chunks []int, g *cli.Grid, prompts, slack int, seed uint64) error {
	start := time.Now()
	modes := []string{"one-shot"}
	for _, c := range chunks {
		modes = append(modes, fmt.Sprintf("chunk %d", c))
	}
	// ok[method][length][budget][mode]
	ok := map[compresskv.Method][][][]int{}
	for _, meth := range g.Methods {
		ok[meth] = make([][][]int, len(lengths))
		for li := range lengths {
			ok[meth][li] = make([][]int, len(g.Budgets))
			for bi := range g.Budgets {
				ok[meth][li][bi] = make([]int, len(modes))
			}
		}
	}
	needles := niah.Needles(niah.EvalWords, len(lengths)*prompts, seed)
	depths := niah.Depths(11)
	for li, L := range lengths {
		for i := 0; i < prompts; i++ {
			j := li*prompts + i
			p, err := m.Needle(hay, (j*7919)%len(hay), L, depths[i%len(depths)], needles[j])
			if err != nil {
				return err
			}
			pre, err := cli.Prefill(m.Model, kvcache.Float32, p.Tokens)
			if err != nil {
				return err
			}
			right := func(s *llama.Session, logits []float32) (bool, error) {
				return m.Answer(s, logits, p)
			}
			err = g.Each(func(meth compresskv.Method, bi int, pol *compresskv.Policy) error {
				cs, _, err := pre.Compress(context.Background(), pol)
				if err != nil {
					return err
				}
				counts := ok[meth][li][bi]
				if r, err := right(cs, pre.Logits); err != nil {
					return err
				} else if r {
					counts[0]++
				}
				for ci, c := range chunks {
					ss, st, lg, err := streamPrefill(m.Model, pol, p.Tokens, c, slack)
					if err != nil {
						return err
					}
					for l := 0; l < m.Layers; l++ {
						if err := st.Compress(context.Background(), l); err != nil {
							return err
						}
					}
					if r, err := right(ss, lg); err != nil {
						return err
					} else if r {
						counts[1+ci]++
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	fmt.Fprintf(w, "needle accuracy, one-shot compression after the prefill against eviction between prefill chunks (then once more with the question's window), %d prompts per length (depths 0..100%%), %.0fs\n",
		prompts, time.Since(start).Seconds())
	tw := cli.NewTable(w, []string{"policy", "length", "budget"}, modes)
	for _, meth := range g.Methods {
		for li, L := range lengths {
			for bi, b := range g.Budgets {
				fmt.Fprintf(tw, "%s\t%d\t%d\t", meth, L, b)
				for mi := range modes {
					fmt.Fprintf(tw, "%.0f%%\t", 100*float64(ok[meth][li][bi][mi])/float64(prompts))
				}
				fmt.Fprintln(tw)
			}
		}
	}
	return tw.Flush()
}

// storyPrompts open the decode runs (the stories260K vocabulary).
var storyPrompts = []string{
	"Once upon a time, there was a little girl named Lily. She loved to play outside",
	"One day, a boy named Tim went to the park with his mom.",
	"There was a big dog who lived in a small house.",
	"Sue had a red ball. She liked to throw it",
	"A little bird wanted to fly high in the sky.",
	"Tom and his friend Ben found a box in the garden.",
	"The sun was hot and the cat was sleepy.",
	"Mia wanted to bake a cake for her dad.",
}

// decodeQuality prints, per policy and budget, how a decode whose cache is
// compressed while it runs follows the full cache's.
func decodeQuality(w io.Writer, m *cli.Model, g *cli.Grid, prompts, steps, chunk, slack int) error {
	start := time.Now()
	type acc struct{ agree, prefix, kl, top1 float64 }
	res := map[compresskv.Method][]acc{}
	for _, meth := range g.Methods {
		res[meth] = make([]acc, len(g.Budgets))
	}
	var promptLen int
	for i := 0; i < prompts; i++ {
		ids, err := m.Tok.Encode(storyPrompts[i%len(storyPrompts)], true, false)
		if err != nil {
			return err
		}
		promptLen += len(ids)
		cache, err := m.NewCache(kvcache.Float32)
		if err != nil {
			return err
		}
		s, _ := m.NewSession(cache, nil)
		logits, err := prefill(s, ids, chunk)
		if err != nil {
			return err
		}
		ref, refLogits, err := greedyRun(s, logits, steps, nil)
		if err != nil {
			return err
		}
		err = g.Each(func(meth compresskv.Method, bi int, pol *compresskv.Policy) error {
			// Free-running greedy over the bounded cache.
			got, _, err := boundedRun(m.Model, pol, ids, chunk, slack, steps, nil)
			if err != nil {
				return err
			}
			a := &res[meth][bi]
			same, prefix := 0, -1
			for t := range ref {
				if got[t] == ref[t] {
					same++
				} else if prefix < 0 {
					prefix = t
				}
			}
			if prefix < 0 {
				prefix = len(ref)
			}
			a.agree += float64(same) / float64(len(ref)*prompts)
			a.prefix += float64(prefix) / float64(prompts)
			// Teacher forcing: the full cache's continuation fed back.
			_, forcedLogits, err := boundedRun(m.Model, pol, ids, chunk, slack, steps, ref)
			if err != nil {
				return err
			}
			for t := range ref {
				a.kl += llama.KL(refLogits[t], forcedLogits[t]) / float64(len(ref)*prompts)
				if llama.Argmax(forcedLogits[t]) == ref[t] {
					a.top1 += 1 / float64(len(ref)*prompts)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "decode over a bounded cache against the full cache: %d prompts of %.1f tokens on average, %d generated tokens, prefill chunk %d, %.0fs\n",
		prompts, float64(promptLen)/float64(prompts), steps, chunk, time.Since(start).Seconds())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "policy\tbudget\tgreedy agreement\tfirst divergence\tforced top-1\tmean KL\t\n")
	for _, meth := range g.Methods {
		for bi, b := range g.Budgets {
			a := res[meth][bi]
			fmt.Fprintf(tw, "%s\t%d\t%.1f%%\t%.0f\t%.1f%%\t%.4f\t\n", meth, b, 100*a.agree, a.prefix, 100*a.top1, a.kl)
		}
	}
	return tw.Flush()
}

// boundedRun prefills prompt over a cache that a Stream with policy p
// bounds (streamPrefill) and decodes steps tokens from it as greedyRun
// does.
func boundedRun(m *llama.Model, p *compresskv.Policy, prompt []int, chunk, slack, steps int, forced []int) ([]int, [][]float32, error) {
	s, _, logits, err := streamPrefill(m, p, prompt, chunk, slack)
	if err != nil {
		return nil, nil, err
	}
	return greedyRun(s, logits, steps, forced)
}

// greedyRun decodes steps tokens from logits: the argmax each step, or
// forced[t] when forced is given. It returns the tokens chosen or fed and
// the logits each was chosen from.
func greedyRun(s *llama.Session, logits []float32, steps int, forced []int) ([]int, [][]float32, error) {
	out := make([]int, 0, steps)
	lg := make([][]float32, 0, steps)
	for t := 0; t < steps; t++ {
		next := llama.Argmax(logits)
		if forced != nil {
			next = forced[t]
		}
		out, lg = append(out, next), append(lg, logits)
		var err error
		if logits, err = s.Forward([]int{next}); err != nil {
			return nil, nil, err
		}
	}
	return out, lg, nil
}
