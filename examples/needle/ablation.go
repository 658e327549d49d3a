package main

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/examples/internal/cli"
	"github.com/compresskv/compresskv/examples/niah"
)

// head is one query head of one layer.
type head struct{ layer, h int }

// topHeads returns the k heads with the highest scores over all layers,
// ties toward the lower layer, then the lower head.
func topHeads(scores [][]float64, k int) []head {
	var all []head
	for l, row := range scores {
		for h := range row {
			all = append(all, head{l, h})
		}
	}
	sort.SliceStable(all, func(i, j int) bool {
		return scores[all[i].layer][all[i].h] > scores[all[j].layer][all[j].h]
	})
	return all[:min(k, len(all))]
}

// ablation measures needle accuracy with the full cache when the top k
// semantic retrieval heads, or the top k classic retrieval heads, have their
// queries zeroed at every decode step (the paper's masking ablation).
func ablation(m *cli.Model, prof *compresskv.Profile, hay string, o *options, w io.Writer, progress io.Writer) error {
	if prof.HeadScores == nil || prof.RetrievalScores == nil {
		return fmt.Errorf("the profile has no SR and retrieval scores to rank heads by")
	}
	type variant struct {
		name  string
		heads []head
	}
	variants := []variant{{name: "none"}}
	for _, k := range o.ablate {
		variants = append(variants,
			variant{fmt.Sprintf("top %d SR heads", k), topHeads(prof.HeadScores, k)},
			variant{fmt.Sprintf("top %d retrieval heads", k), topHeads(prof.RetrievalScores, k)})
	}
	ok := make([]int, len(variants))
	n := 0
	needles := niah.Needles(niah.EvalWords, len(o.lengths)*o.depths*o.needles, o.seed)
	per := m.HeadDim()
	i := 0
	for _, L := range o.lengths {
		for _, depth := range niah.Depths(o.depths) {
			for k := 0; k < o.needles; k++ {
				p, err := m.Needle(hay, (i*7919)%len(hay), L, depth, needles[i])
				i++
				if err != nil {
					return err
				}
				pre, err := cli.Prefill(m.Model, o.dtype, p.Tokens)
				if err != nil {
					return err
				}
				for vi, v := range variants {
					cs := pre.Full()
					masked := v.heads
					cs.Hooks.Query = func(layer, _ int, q []float32) {
						for _, hd := range masked {
							if hd.layer == layer {
								clear(q[hd.h*per : (hd.h+1)*per])
							}
						}
					}
					right, err := m.Answer(cs, pre.Logits, p)
					if err != nil {
						return err
					}
					if right {
						ok[vi]++
					}
				}
				n++
			}
		}
		fmt.Fprintf(progress, "ablation: %d tokens done\n", L)
	}
	fmt.Fprintf(w, "masking ablation: lengths %v, %d depths, %d needle(s) per cell, full cache; queries zeroed at decode steps\n", o.lengths, o.depths, o.needles)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "masked\taccuracy\theads (layer.head)\t")
	for vi, v := range variants {
		desc := ""
		for j, hd := range v.heads {
			if j > 0 {
				desc += " "
			}
			desc += fmt.Sprintf("%d.%d", hd.layer, hd.h)
		}
		fmt.Fprintf(tw, "%s\t%.1f%%\t%s\t\n", v.name, 100*float64(ok[vi])/float64(max(1, n)), desc)
	}
	return tw.Flush()
}
