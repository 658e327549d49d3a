package compresskv

import (
	"fmt"
	"math"

	"github.com/compresskv/compresskv/backend"
)

// Selector turns scores into kept prefix positions for each KV head.
type Selector interface {
	// Name identifies the selector.
	Name() string
	// Select returns, for each of kvHeads heads, the kept prefix positions in
	// ascending order, from prefix candidates [0, prefix), given the
	// scorer's rows and c selectable tokens per head on average (c < prefix).
	Select(b backend.Backend, scores [][]float32, kvHeads, prefix, c int) ([][]int, error)
}

// TopKSelector keeps the c best-scored positions. With one shared score row
// every KV head keeps the same set; otherwise each keeps its own.
type TopKSelector struct{}

// Name implements Selector.
func (TopKSelector) Name() string { return "topk" }

// Select implements Selector. Cost: O(prefix) per score row.
func (TopKSelector) Select(b backend.Backend, scores [][]float32, kvHeads, prefix, c int) ([][]int, error) {
	if len(scores) != 1 && len(scores) != kvHeads {
		return nil, fmt.Errorf("topk: %d score rows for %d KV heads", len(scores), kvHeads)
	}
	keep := make([][]int, kvHeads)
	for i, row := range scores {
		if len(row) != prefix {
			return nil, fmt.Errorf("topk: score row %d has %d positions, want %d", i, len(row), prefix)
		}
		sel, err := b.TopK(nil, row, c)
		if err != nil {
			return nil, err
		}
		if len(scores) == 1 {
			for g := range keep {
				keep[g] = sel
			}
			break
		}
		keep[i] = sel
	}
	return keep, nil
}

// StreamingSelector keeps the first Sink positions and the most recent ones
// (StreamingLLM); it ignores scores.
type StreamingSelector struct {
	Sink int // first positions always kept
}

// Name implements Selector.
func (StreamingSelector) Name() string { return "streaming" }

// Validate implements Validator.
func (s StreamingSelector) Validate(_, _ int) error {
	if s.Sink < 0 {
		return fmt.Errorf("streaming: %d sink tokens: %w", s.Sink, ErrConfig)
	}
	return nil
}

// Select implements Selector: the first min(Sink, c) positions, then the last
// c - min(Sink, c) of the prefix; with the window these are the first Sink and
// the last B - Sink positions of the prompt.
func (s StreamingSelector) Select(_ backend.Backend, _ [][]float32, kvHeads, prefix, c int) ([][]int, error) {
	sink := min(max(s.Sink, 0), c)
	sel := make([]int, 0, c)
	for j := 0; j < sink; j++ {
		sel = append(sel, j)
	}
	for j := prefix - (c - sink); j < prefix; j++ {
		sel = append(sel, j)
	}
	keep := make([][]int, kvHeads)
	for g := range keep {
		keep[g] = sel
	}
	return keep, nil
}

// AdaKVSelector spreads a layer's budget over its KV heads (Ada-KV): one
// top-k of kvHeads*c over all heads' scores together gives head g its count
// n_g of winners; its capacity is round(n_g*(1-f) + floor(c*f)), in float32
// as the reference computes it, and it keeps its own top capacity positions. Ties go to the lower position, then the
// lower head.
type AdaKVSelector struct {
	FloorRatio float64 // share f of each head's average budget it is guaranteed, in [0, 1]
}

// Name implements Selector.
func (AdaKVSelector) Name() string { return "adakv" }

// Validate implements Validator.
func (s AdaKVSelector) Validate(_, _ int) error {
	if math.IsNaN(s.FloorRatio) || s.FloorRatio < 0 || s.FloorRatio > 1 {
		return fmt.Errorf("adakv: floor ratio %v must lie in [0, 1]: %w", s.FloorRatio, ErrConfig)
	}
	return nil
}

// Select implements Selector. Cost: O(kvHeads * prefix).
func (s AdaKVSelector) Select(b backend.Backend, scores [][]float32, kvHeads, prefix, c int) ([][]int, error) {
	if len(scores) != kvHeads {
		return nil, fmt.Errorf("adakv: %d score rows for %d KV heads (per-head scores required)", len(scores), kvHeads)
	}
	// Position-major flattening: index j*G+g, so ties favour lower positions.
	flat := make([]float32, kvHeads*prefix)
	for g, row := range scores {
		if len(row) != prefix {
			return nil, fmt.Errorf("adakv: score row %d has %d positions, want %d", g, len(row), prefix)
		}
		for j, v := range row {
			flat[j*kvHeads+g] = v
		}
	}
	win, err := b.TopK(nil, flat, kvHeads*c)
	if err != nil {
		return nil, err
	}
	counts := make([]int, kvHeads)
	for _, i := range win {
		counts[i%kvHeads]++
	}
	keep := make([][]int, kvHeads)
	for g := range keep {
		capacity := min(adaCapacity(counts[g], c, s.FloorRatio), prefix)
		if keep[g], err = b.TopK(nil, scores[g], capacity); err != nil {
			return nil, err
		}
	}
	return keep, nil
}

// adaCapacity returns the capacity of a head that won n of the layer-wide
// top-k with c selectable tokens per head on average and floor ratio f:
// round(n*(1-f) + floor(c*f)), evaluated as the reference evaluates it
// (docs/DESIGN.md, "Baselines"): floor(c*f) in float64 (Python
// arithmetic), the count times 1-f and the sum in float32 (an integer
// tensor times a float scalar), rounded half to even. In float64 some
// splits round the other way: n = 85, c = 14, f = 0.3 gives 64 in float32
// and 63 in float64. Never negative.
func adaCapacity(n, c int, f float64) int {
	floor := float32(math.Floor(float64(c) * f))
	scaled := float32(float32(n) * float32(1-f)) // the conversion keeps the product rounded, unfused
	return max(int(math.RoundToEven(float64(scaled+floor))), 0)
}
