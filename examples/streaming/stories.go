package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/compresskv/calibrate"
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
		if pols[b], err = compresskv.New(compresskv.CompressKV, compresskv.Config{Budget: b, Kernel: o.kernel, Profile: e.prof}); err != nil {
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
	stream := func(b, chunk, ratio int, scorer string) (*llama.Session, *compresskv.Stream, error) {
		reserve := 0
		if ratio > 1 {
			reserve = ratio * b
		}
		return m.StreamSession(ctx, pols[b], kvcache.Float32, compresskv.StreamConfig{Chunk: chunk, Reserve: reserve, Prefill: scorers[scorer]})
	}
	endPrompt := func(st *compresskv.Stream) error {
		for l := 0; l < m.Layers; l++ {
			if err := st.Compress(ctx, l); err != nil {
				return err
			}
		}
		return nil
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
				ok, err := judge(s, tok, p, logits)
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
					if one[b], err = judge(cs, tok, p, logits); err != nil {
						return err
					}
				}
				for _, c := range o.chunks {
					for _, b := range o.budgets {
						for _, ratio := range o.ratios {
							for _, name := range o.scorers {
								ss, st, err := stream(b, c, ratio, name)
								if err != nil {
									return err
								}
								lg, _, err := ss.Prefill(p.Prompt, c)
								if err != nil {
									return err
								}
								if err := endPrompt(st); err != nil {
									return err
								}
								if local[key{c, b, ratio, name}], err = judge(ss, tok, p, lg); err != nil {
									return err
								}
							}
						}
					}
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
	for _, c := range o.chunks {
		for _, b := range o.budgets {
			for _, ratio := range o.ratios {
				for _, name := range o.scorers {
					fmt.Fprintf(tw, "%d\t%d\t%dx\t%s\t%d/%d\t%d/%d\t\n", c, b, ratio, name, right[key{c, b, ratio, name}], answered, oneRight[b], answered)
				}
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	// KL.
	text, err := niah.LoadHaystack(cli.Path(o.haystack))
	if err != nil {
		return err
	}
	need := o.klLength + o.klSteps
	var seqs [][]int
	for i := 0; i < o.klSamples; i++ {
		off := i * len(text) / o.klSamples
		for span := 2 * need; ; span *= 2 {
			ids := tok.Encode(text[off:min(len(text), off+span)], false, false)
			if len(ids) >= need-1 {
				seqs = append(seqs, append([]int{llama.BOS}, ids[:need-1]...))
				break
			}
			if off+span >= len(text) {
				return fmt.Errorf("%s is too short for %d samples of %d tokens", o.haystack, o.klSamples, need)
			}
		}
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
				ref, err := forced(s, rest)
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
					got, err := forced(cs, rest)
					if err != nil {
						return err
					}
					for t := range ref {
						one[b] += llama.KL(ref[t], got[t]) * w
					}
				}
				for _, c := range o.chunks {
					for _, b := range o.budgets {
						for _, ratio := range o.ratios {
							for _, name := range o.scorers {
								ss, st, err := stream(b, c, ratio, name)
								if err != nil {
									return err
								}
								if _, _, err := ss.Prefill(prompt, c); err != nil {
									return err
								}
								if err := endPrompt(st); err != nil {
									return err
								}
								got, err := forced(ss, rest)
								if err != nil {
									return err
								}
								k := key{c, b, ratio, name}
								for t := range ref {
									local[k] += llama.KL(ref[t], got[t]) * w
								}
							}
						}
					}
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
	for _, c := range o.chunks {
		for _, b := range o.budgets {
			for _, ratio := range o.ratios {
				for _, name := range o.scorers {
					fmt.Fprintf(tw, "%d\t%d\t%dx\t%s\t%.4f\t%.4f\t\n", c, b, ratio, name, klStream[key{c, b, ratio, name}], klOne[b])
				}
			}
		}
	}
	fmt.Fprintln(progress, "streaming: stories done")
	return tw.Flush()
}

// judge decodes greedily from logits and judges the continuation as the
// probe says.
func judge(s *llama.Session, tok cli.Tokenizer, p *calibrate.Probe, logits []float32) (bool, error) {
	var out []int
	prev := ""
	for {
		id := llama.Argmax(logits)
		out = append(out, id)
		text := tok.Decode(out)
		right, decided := p.Judge(text, text == prev || len(out) >= p.MaxNewTokens())
		if decided {
			return right, nil
		}
		prev = text
		var err error
		if logits, err = s.Forward([]int{id}); err != nil {
			return false, err
		}
	}
}

// forced feeds tokens one by one and returns the logits after each.
func forced(s *llama.Session, tokens []int) ([][]float32, error) {
	out := make([][]float32, len(tokens))
	for i, t := range tokens {
		lg, err := s.Forward([]int{t})
		if err != nil {
			return nil, err
		}
		out[i] = lg
	}
	return out, nil
}
