package heads

import (
	"fmt"
	"math"
	"sort"
)

// Scores holds one score per query head, [layer][head].
type Scores [][]float64

// Ranking returns, for each layer, the head indices ordered by score,
// descending, ties toward the lower head index. NaN scores rank last.
// Cost: O(heads log heads) per layer.
func (s Scores) Ranking() [][]int {
	out := make([][]int, len(s))
	for l, row := range s {
		idx := make([]int, len(row))
		for h := range idx {
			idx[h] = h
		}
		sort.SliceStable(idx, func(a, b int) bool { return above(row[idx[a]], row[idx[b]]) })
		out[l] = idx
	}
	return out
}

// above orders scores descending with NaN below everything.
func above(x, y float64) bool {
	if math.IsNaN(x) {
		return false
	}
	if math.IsNaN(y) {
		return true
	}
	return x > y
}

// Top returns, for each layer, the first k heads of its Ranking (the layer's
// SR heads when s are SR scores), in rank order. k is clamped to the layer's
// head count; k <= 0 is an error.
func (s Scores) Top(k int) ([][]int, error) {
	if k <= 0 {
		return nil, fmt.Errorf("heads: top %d heads: k must be positive", k)
	}
	return TopOf(s.Ranking(), k)
}

// TopOf returns the first k heads of each layer of a ranking (as from
// Ranking or ReadReferenceRanking), k clamped to each layer's length; k <= 0
// is an error. The result does not alias ranking.
func TopOf(ranking [][]int, k int) ([][]int, error) {
	if k <= 0 {
		return nil, fmt.Errorf("heads: top %d heads: k must be positive", k)
	}
	out := make([][]int, len(ranking))
	for l, r := range ranking {
		out[l] = append([]int(nil), r[:min(k, len(r))]...)
	}
	return out, nil
}
