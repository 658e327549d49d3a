package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/examples/internal/cli"
	"github.com/compresskv/compresskv/examples/niah"
	"github.com/compresskv/compresskv/kvcache"
)

// retrieval runs the character-name probes of niah.StoryProbes built from
// the evaluation names and filler (disjoint from calibration's) under every
// policy and budget: each probe is prefilled once, and each policy decodes
// greedily over its own compressed copy of the cache. A cell counts the
// probes answered right, among those the full cache answers; a second table
// splits the counts by probe group.
func retrieval(w io.Writer, m *cli.Model, grid *cli.Grid, leads, sentences []int, per int, seed uint64) error {
	pt := m.ProbeTokenizer()
	probes, err := niah.StoryProbes(pt, niah.StoryEvalNames, niah.StoryEvalFill, leads, sentences, per, seed)
	if terr := pt.Err(); terr != nil {
		return fmt.Errorf("%s: the story probes cannot be tokenized: %w", m.Path, terr)
	}
	if err != nil {
		return err
	}
	type cell struct {
		meth   compresskv.Method
		bi, gr int
	}
	var groups []string
	gi := map[string]int{}
	right := map[cell]int{}   // (method, budget, group) -> count
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
		pre, err := cli.Prefill(m.Model, kvcache.Float32, p.Prompt)
		if err != nil {
			return err
		}
		tokens += len(p.Prompt)
		if ok, err := m.AnswerProbe(pre.Full(), pre.Logits, &p); err != nil || !ok {
			if err != nil {
				return err
			}
			continue
		}
		answered[g]++
		total++
		err = grid.Each(func(meth compresskv.Method, bi int, pol *compresskv.Policy) error {
			cs, _, err := pre.Compress(context.Background(), pol)
			if err != nil {
				return err
			}
			ok, err := m.AnswerProbe(cs, pre.Logits, &p)
			if ok {
				right[cell{meth, bi, g}]++
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "character-name retrieval: %d probes (leads %v x %v sentences after x %d, seed %d, %.0f tokens on average), %d answered with the full cache; pooling kernel %d, %.0fs\n",
		len(probes), leads, sentences, per, seed, float64(tokens)/float64(len(probes)), total, grid.Kernel, time.Since(start).Seconds())
	fmt.Fprintf(w, "probes answered right, of the %d the full cache answers, per average budget per layer:\n", total)
	err = grid.Table(w, nil, func(meth compresskv.Method, bi int) string {
		n := 0
		for g := range groups {
			n += right[cell{meth, bi, g}]
		}
		return fmt.Sprintf("%d/%d", n, total)
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "per group (answered right / answered with the full cache):")
	tw := cli.NewTable(w, []string{"policy", "budget"}, groups)
	for _, meth := range grid.Methods {
		if meth == compresskv.Full {
			continue
		}
		for bi, b := range grid.Budgets {
			fmt.Fprintf(tw, "%s\t%d\t", meth, b)
			for g := range groups {
				fmt.Fprintf(tw, "%d/%d\t", right[cell{meth, bi, g}], answered[g])
			}
			fmt.Fprintln(tw)
		}
	}
	return tw.Flush()
}
