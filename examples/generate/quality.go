package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/compresskv/compresskv/compresskv"
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
	fs := flag.NewFlagSet("generate -quality "+kind, flag.ContinueOnError)
	modelPath := fs.String("model", llama.DefaultModel, "llama2.c checkpoint")
	tokPath := fs.String("tokenizer", "", "llama2.c tokenizer (empty: byte-level)")
	profPath := fs.String("profile", llama.DefaultProfile, "CompressKV profile")
	hayPath := fs.String("haystack", "testdata/haystack/eval.txt", "needle: evaluation text")
	lengthList := fs.String("lengths", "512,1024", "needle: prompt lengths")
	budgetList := fs.String("budgets", "32,64,128", "budgets per layer (tokens, window included)")
	chunkList := fs.String("chunks", "128,256,512", "needle: prefill chunks of the streaming runs")
	policyList := fs.String("policies", "compresskv,snapkv,adakv", "policies")
	prompts := fs.Int("prompts", 40, "needle: prompts per length; decode: prompts")
	kernel := fs.Int("kernel", llama.DefaultKernel, "pooling kernel")
	steps := fs.Int("steps", 400, "decode: generated tokens")
	chunk := fs.Int("chunk", 1, "decode: prefill chunk (and the Stream's Chunk)")
	slack := fs.Int("slack", 0, "Stream slack (0: the window; negative: none)")
	seed := fs.Uint64("seed", 23, "needle seed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	m, tok, err := llama.Open(*modelPath, *tokPath)
	if err != nil {
		return err
	}
	budgets, err := niah.ParseInts(*budgetList)
	if err != nil {
		return fmt.Errorf("budgets: %w", err)
	}
	var methods []compresskv.Method
	var prof *compresskv.Profile
	for _, f := range strings.Split(*policyList, ",") {
		meth, err := compresskv.ParseMethod(strings.TrimSpace(f))
		if err != nil {
			return err
		}
		if meth == compresskv.CompressKV && prof == nil {
			if prof, err = compresskv.LoadProfile(*profPath); err != nil {
				return fmt.Errorf("compresskv needs a profile: %w", err)
			}
		}
		methods = append(methods, meth)
	}
	policy := func(meth compresskv.Method, b int) (*compresskv.Policy, error) {
		return compresskv.New(meth, compresskv.Config{Budget: b, Kernel: *kernel, Profile: prof})
	}
	switch kind {
	case "needle":
		lengths, err := niah.ParseInts(*lengthList)
		if err != nil {
			return fmt.Errorf("lengths: %w", err)
		}
		chunks, err := niah.ParseInts(*chunkList)
		if err != nil {
			return fmt.Errorf("chunks: %w", err)
		}
		hay, err := niah.LoadHaystack(*hayPath)
		if err != nil {
			return err
		}
		return needleQuality(stdout, m, tok, hay, lengths, budgets, chunks, methods, policy, *prompts, *slack, *seed)
	case "decode":
		return decodeQuality(stdout, m, tok, budgets, methods, policy, *prompts, *steps, *chunk, *slack)
	}
	return fmt.Errorf("-quality %q: want needle or decode", kind)
}

// needleQuality prints needle accuracy, one-shot against streaming with
// each chunk, per policy, length and budget.
func needleQuality(w io.Writer, m *llama.Model, tok *llama.Tokenizer, hay string, lengths, budgets, chunks []int, methods []compresskv.Method,
	policy func(compresskv.Method, int) (*compresskv.Policy, error), prompts, slack int, seed uint64) error {
	start := time.Now()
	modes := []string{"one-shot"}
	for _, c := range chunks {
		modes = append(modes, fmt.Sprintf("chunk %d", c))
	}
	// ok[method][length][budget][mode]
	ok := map[compresskv.Method][][][]int{}
	for _, meth := range methods {
		ok[meth] = make([][][]int, len(lengths))
		for li := range lengths {
			ok[meth][li] = make([][]int, len(budgets))
			for bi := range budgets {
				ok[meth][li][bi] = make([]int, len(modes))
			}
		}
	}
	needles := niah.Needles(niah.EvalWords, len(lengths)*prompts, seed)
	depths := niah.Depths(11)
	for li, L := range lengths {
		for i := 0; i < prompts; i++ {
			j := li*prompts + i
			p, err := niah.Build(tok, hay, (j*7919)%len(hay), L, depths[i%len(depths)], needles[j])
			if err != nil {
				return err
			}
			cache, err := m.NewCache(kvcache.Float32)
			if err != nil {
				return err
			}
			s, _ := m.NewSession(cache, nil)
			logits, q, err := s.Prefill(p.Tokens, 256)
			if err != nil {
				return err
			}
			for _, meth := range methods {
				for bi, b := range budgets {
					pol, err := policy(meth, b)
					if err != nil {
						return err
					}
					cs, _ := m.NewSession(cache.Clone(), nil)
					if _, err := cs.Compress(context.Background(), pol, q); err != nil {
						return err
					}
					ans, err := niah.Greedy(cs, logits, len(p.Needle.Value)+1, nil)
					if err != nil {
						return err
					}
					if niah.Correct(ans, p.Needle) {
						ok[meth][li][bi][0]++
					}
					for ci, c := range chunks {
						ss, st, err := newStreamSession(context.Background(), m, pol, kvcache.Float32, c, slack)
						if err != nil {
							return err
						}
						lg, err := prefill(ss, p.Tokens, c)
						if err != nil {
							return err
						}
						for l := 0; l < m.Layers; l++ {
							if err := st.Compress(context.Background(), l); err != nil {
								return err
							}
						}
						ans, err := niah.Greedy(ss, lg, len(p.Needle.Value)+1, nil)
						if err != nil {
							return err
						}
						if niah.Correct(ans, p.Needle) {
							ok[meth][li][bi][1+ci]++
						}
					}
				}
			}
		}
	}
	fmt.Fprintf(w, "needle accuracy, one-shot compression after the prefill against eviction between prefill chunks (then once more with the question's window), %d prompts per length (depths 0..100%%), %.0fs\n",
		prompts, time.Since(start).Seconds())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "policy\tlength\tbudget\t")
	for _, md := range modes {
		fmt.Fprintf(tw, "%s\t", md)
	}
	fmt.Fprintln(tw)
	for _, meth := range methods {
		for li, L := range lengths {
			for bi, b := range budgets {
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
func decodeQuality(w io.Writer, m *llama.Model, tok *llama.Tokenizer, budgets []int, methods []compresskv.Method,
	policy func(compresskv.Method, int) (*compresskv.Policy, error), prompts, steps, chunk, slack int) error {
	start := time.Now()
	type acc struct{ agree, prefix, kl, top1 float64 }
	res := map[compresskv.Method][]acc{}
	for _, meth := range methods {
		res[meth] = make([]acc, len(budgets))
	}
	var promptLen int
	for i := 0; i < prompts; i++ {
		ids := tok.Encode(storyPrompts[i%len(storyPrompts)], true, false)
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
		for _, meth := range methods {
			for bi, b := range budgets {
				pol, err := policy(meth, b)
				if err != nil {
					return err
				}
				// Free-running greedy over the bounded cache.
				ss, _, err := newStreamSession(context.Background(), m, pol, kvcache.Float32, chunk, slack)
				if err != nil {
					return err
				}
				lg, err := prefill(ss, ids, chunk)
				if err != nil {
					return err
				}
				got, _, err := greedyRun(ss, lg, steps, nil)
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
				ts, _, err := newStreamSession(context.Background(), m, pol, kvcache.Float32, chunk, slack)
				if err != nil {
					return err
				}
				lg, err = prefill(ts, ids, chunk)
				if err != nil {
					return err
				}
				_, forcedLogits, err := greedyRun(ts, lg, steps, ref)
				if err != nil {
					return err
				}
				for t := range ref {
					a.kl += llama.KL(refLogits[t], forcedLogits[t]) / float64(len(ref)*prompts)
					if llama.Argmax(forcedLogits[t]) == ref[t] {
						a.top1 += 1 / float64(len(ref)*prompts)
					}
				}
			}
		}
	}
	fmt.Fprintf(w, "decode over a bounded cache against the full cache: %d prompts of %.1f tokens on average, %d generated tokens, prefill chunk %d, %.0fs\n",
		prompts, float64(promptLen)/float64(prompts), steps, chunk, time.Since(start).Seconds())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "policy\tbudget\tgreedy agreement\tfirst divergence\tforced top-1\tmean KL\t\n")
	for _, meth := range methods {
		for bi, b := range budgets {
			a := res[meth][bi]
			fmt.Fprintf(tw, "%s\t%d\t%.1f%%\t%.0f\t%.1f%%\t%.4f\t\n", meth, b, 100*a.agree, a.prefix, 100*a.top1, a.kl)
		}
	}
	return tw.Flush()
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
