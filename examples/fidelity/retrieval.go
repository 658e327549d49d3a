package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/compresskv/compresskv/calibrate"
	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/examples/niah"
	"github.com/compresskv/compresskv/kvcache"
)

// retrieval runs the character-name probes of niah.StoryProbes built from
// the evaluation names and filler (disjoint from calibration's) under every
// policy and budget: each probe is prefilled once, and each policy decodes
// greedily over its own compressed copy of the cache. A cell counts the
// probes answered right, among those the full cache answers; a second table
// splits the counts by probe group.
func retrieval(w io.Writer, m *llama.Model, tok *llama.Tokenizer, methods []compresskv.Method, budgets []int, kernel int, prof *compresskv.Profile,
	leads, sentences []int, per int, seed uint64) error {
	pt := llama.ProbeTokenizer{Tokenizer: tok}
	probes, err := niah.StoryProbes(pt, niah.StoryEvalNames, niah.StoryEvalFill, leads, sentences, per, seed)
	if err != nil {
		return err
	}
	policies := make([][]*compresskv.Policy, len(methods))
	for i, meth := range methods {
		for _, b := range budgets {
			p, err := compresskv.New(meth, compresskv.Config{Budget: b, Kernel: kernel, Profile: prof})
			if err != nil {
				return err
			}
			policies[i] = append(policies[i], p)
		}
	}
	var groups []string
	gi := map[string]int{}
	right := map[[3]int]int{} // (method, budget, group) -> count
	answered := map[int]int{} // group -> probes the full cache answers
	total, tokens := 0, 0
	start := time.Now()
	for _, p := range probes {
		g, ok := gi[p.Group]
		if !ok {
			g = len(groups)
			gi[p.Group] = g
			groups = append(groups, p.Group)
		}
		cache, err := m.NewCache(kvcache.Float32)
		if err != nil {
			return err
		}
		s, _ := m.NewSession(cache, nil)
		logits, q, err := s.Prefill(p.Prompt, 256)
		if err != nil {
			return err
		}
		tokens += len(p.Prompt)
		prefilled := cache.Clone()
		if ok, err := answer(s, tok, &p, logits); err != nil || !ok {
			if err != nil {
				return err
			}
			continue
		}
		answered[g]++
		total++
		for i := range methods {
			for bi, pol := range policies[i] {
				cs, _ := m.NewSession(prefilled.Clone(), nil)
				if _, err := cs.Compress(context.Background(), pol, q); err != nil {
					return fmt.Errorf("%s at budget %d: %w", pol.Name(), budgets[bi], err)
				}
				ok, err := answer(cs, tok, &p, logits)
				if err != nil {
					return err
				}
				if ok {
					right[[3]int{i, bi, g}]++
				}
			}
		}
	}
	fmt.Fprintf(w, "character-name retrieval: %d probes (leads %v x %v sentences after x %d, seed %d, %.0f tokens on average), %d answered with the full cache; pooling kernel %d, %.0fs\n",
		len(probes), leads, sentences, per, seed, float64(tokens)/float64(len(probes)), total, kernel, time.Since(start).Seconds())
	fmt.Fprintf(w, "probes answered right, of the %d the full cache answers, per average budget per layer:\n", total)
	sum := func(i, bi int) int {
		n := 0
		for g := range groups {
			n += right[[3]int{i, bi, g}]
		}
		return n
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "policy\t")
	for _, b := range budgets {
		fmt.Fprintf(tw, "%d\t", b)
	}
	fmt.Fprintln(tw)
	for i, meth := range methods {
		fmt.Fprintf(tw, "%s\t", meth)
		for bi := range budgets {
			fmt.Fprintf(tw, "%d/%d\t", sum(i, bi), total)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "per group (answered right / answered with the full cache):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "policy\tbudget\t")
	for _, g := range groups {
		fmt.Fprintf(tw, "%s\t", g)
	}
	fmt.Fprintln(tw)
	for i, meth := range methods {
		if meth == compresskv.Full {
			continue
		}
		for bi, b := range budgets {
			fmt.Fprintf(tw, "%s\t%d\t", meth, b)
			for g := range groups {
				fmt.Fprintf(tw, "%d/%d\t", right[[3]int{i, bi, g}], answered[g])
			}
			fmt.Fprintln(tw)
		}
	}
	return tw.Flush()
}

// answer decodes greedily from logits (the prompt's last) and judges the
// continuation as calibration does.
func answer(s *llama.Session, tok *llama.Tokenizer, p *calibrate.Probe, logits []float32) (bool, error) {
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
