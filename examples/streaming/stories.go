package main

import (
	"context"
	"fmt"
	"io"
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

// stories measures a story model (stories260K) with streaming, against
// one-shot CompressKV at the same budget:
//
//   - character-name recall: the evaluation probes of niah.StoryProbes
//     (names and filler disjoint from calibration's, this command's seed),
//     counted among those the full cache answers;
//   - KL: prompts of -kl-length tokens of -haystack, then -kl-steps tokens
//     of it fed one by one; the mean KL(full || bounded) of the next-token
//     distributions. The streamed cache ends the prompt with Compress and
//     stays bounded (budget + chunk + slack) while the tokens are fed.
func stories(o *options, cm *cli.Model, e *env, stdout, progress io.Writer) error {
	ctx := context.Background()
	m, tok := cm.Model, cm.Tok
	probes, err := niah.StoryProbes(cm.ProbeTokenizer(), niah.StoryEvalNames, niah.StoryEvalFill, []int{0, 4, 8}, []int{3, 6}, o.storyPer, o.seed)
	if err != nil {
		return err
	}
	pols := map[int]*compresskv.Policy{}
	for _, b := range o.budgets {
		if pols[b], err = compresskv.New(compresskv.CompressKV, compresskv.Config{Budget: b, Kernel: o.kernel, Profile: e.prof, Rotary: e.rot}); err != nil {
			return err
		}
	}
	scorers := map[string]compresskv.Scorer{}
	for _, name := range o.scorers {
		ent, _ := lookupScorer(name)
		if scorers[name], err = ent.build(e); err != nil {
			return err
		}
	}
	type key struct {
		chunk, budget, ratio int
		scorer               string
	}
	// each runs f over every streamed cell.
	each := func(f func(k key) error) error {
		for _, c := range o.chunks {
			for _, b := range o.budgets {
				for _, ratio := range o.ratios {
					for _, name := range o.scorers {
						if err := f(key{c, b, ratio, name}); err != nil {
							return err
						}
					}
				}
			}
		}
		return nil
	}
	// stream runs prompt through a Stream of cell k, in chunks, and ends the
	// prompt (every layer compressed to the budget): the session goes on
	// over the bounded cache from the returned logits.
	stream := func(k key, prompt []int) (*llama.Session, []float32, error) {
		reserve := 0
		if k.ratio > 1 {
			reserve = k.ratio * k.budget
		}
		ss, st, err := m.StreamSession(ctx, pols[k.budget], kvcache.Float32, compresskv.StreamConfig{Chunk: k.chunk, Reserve: reserve, Prefill: scorers[k.scorer]})
		if err != nil {
			return nil, nil, err
		}
		lg, _, err := ss.Prefill(prompt, k.chunk)
		if err != nil {
			return nil, nil, err
		}
		for l := 0; l < m.Layers; l++ {
			if err := st.Compress(ctx, l); err != nil {
				return nil, nil, err
			}
		}
		return ss, lg, nil
	}
	// Recall.
	start := time.Now()
	var mu sync.Mutex
	answered := 0
	oneRight := map[int]int{}
	right := map[key]int{}
	tokens := 0
	var firstErr error
	par.Pull(len(probes), o.workers, func(next func() (int, bool)) {
		for i, ok := next(); ok; i, ok = next() {
			p := &probes[i]
			err := func() error {
				cache, _ := m.NewCache(kvcache.Float32)
				s, _ := m.NewSession(cache, nil)
				logits, q, err := s.Prefill(p.Prompt, 256)
				if err != nil {
					return err
				}
				prefilled := cache.Clone()
				ok, err := cm.AnswerProbe(s, logits, p)
				if err != nil || !ok {
					return err
				}
				local := map[key]bool{}
				one := map[int]bool{}
				for _, b := range o.budgets {
					cs, _ := m.NewSession(prefilled.Clone(), nil)
					if _, err := cs.Compress(ctx, pols[b], q); err != nil {
						return err
					}
					if one[b], err = cm.AnswerProbe(cs, logits, p); err != nil {
						return err
					}
				}
				if err := each(func(k key) error {
					ss, lg, err := stream(k, p.Prompt)
					if err != nil {
						return err
					}
					local[k], err = cm.AnswerProbe(ss, lg, p)
					return err
				}); err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				answered++
				tokens += len(p.Prompt)
				for b, ok := range one {
					if ok {
						oneRight[b]++
					}
				}
				for k, ok := range local {
					if ok {
						right[k]++
					}
				}
				return nil
			}()
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}
	})
	if firstErr != nil {
		return firstErr
	}
	fmt.Fprintf(stdout, "character-name recall, %s: %d evaluation probes (seed %d), %d answered with the full cache (%.0f tokens on average); %.0fs\n",
		cm.Path, len(probes), o.seed, answered, float64(tokens)/float64(max(answered, 1)), time.Since(start).Seconds())
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "chunk\tbudget\treserve\tscorer\tstreamed\tone-shot\t")
	_ = each(func(k key) error {
		_, err := fmt.Fprintf(tw, "%d\t%d\t%dx\t%s\t%d/%d\t%d/%d\t\n", k.chunk, k.budget, k.ratio, k.scorer, right[k], answered, oneRight[k.budget], answered)
		return err
	})
	if err := tw.Flush(); err != nil {
		return err
	}

	// KL.
	text, err := niah.LoadHaystack(cli.Path(o.haystack))
	if err != nil {
		return err
	}
	seqs, err := niah.TextSamples(tok, cm.BOS(), text, o.klSamples, o.klLength+o.klSteps)
	if err != nil {
		return fmt.Errorf("%s: %w", o.haystack, err)
	}
	start = time.Now()
	klStream := map[key]float64{}
	klOne := map[int]float64{}
	firstErr = nil
	par.Pull(len(seqs), o.workers, func(next func() (int, bool)) {
		for i, ok := next(); ok; i, ok = next() {
			err := func() error {
				prompt, rest := seqs[i][:o.klLength], seqs[i][o.klLength:]
				cache, _ := m.NewCache(kvcache.Float32)
				s, _ := m.NewSession(cache, nil)
				_, q, err := s.Prefill(prompt, 256)
				if err != nil {
					return err
				}
				prefilled := cache.Clone()
				ref, err := s.Feed(rest)
				if err != nil {
					return err
				}
				w := 1 / float64(len(rest)*len(seqs))
				local := map[key]float64{}
				one := map[int]float64{}
				for _, b := range o.budgets {
					cs, _ := m.NewSession(prefilled.Clone(), nil)
					if _, err := cs.Compress(ctx, pols[b], q); err != nil {
						return err
					}
					got, err := cs.Feed(rest)
					if err != nil {
						return err
					}
					for t := range ref {
						one[b] += llama.KL(ref[t], got[t]) * w
					}
				}
				if err := each(func(k key) error {
					ss, _, err := stream(k, prompt)
					if err != nil {
						return err
					}
					got, err := ss.Feed(rest)
					for t := range got {
						local[k] += llama.KL(ref[t], got[t]) * w
					}
					return err
				}); err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				for k, v := range local {
					klStream[k] += v
				}
				for b, v := range one {
					klOne[b] += v
				}
				return nil
			}()
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}
	})
	if firstErr != nil {
		return firstErr
	}
	fmt.Fprintf(stdout, "\nmean KL(full || bounded) of next-token distributions: %d prompts of %d tokens of %s, %d tokens fed after each; %.0fs\n",
		len(seqs), o.klLength, o.haystack, o.klSteps, time.Since(start).Seconds())
	tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "chunk\tbudget\treserve\tscorer\tstreamed\tone-shot\t")
	_ = each(func(k key) error {
		_, err := fmt.Fprintf(tw, "%d\t%d\t%dx\t%s\t%.4f\t%.4f\t\n", k.chunk, k.budget, k.ratio, k.scorer, klStream[k], klOne[k.budget])
		return err
	})
	fmt.Fprintln(progress, "streaming: stories done")
	return tw.Flush()
}
