package compresskv

import (
	"fmt"
	"math"

	"github.com/compresskv/compresskv/alloc"
	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/kvcache"
)

// Layer is what a Scorer sees of one layer at compression time.
type Layer struct {
	Backend backend.Backend // the compute to score with
	Cache   kvcache.KVCache // the prefilled cache
	Index   int             // layer index
	Queries []float32       // the last NQ prompt queries, [NQ][QHeads][HeadDim]
	NQ      int             // query rows in Queries
	QHeads  int             // query heads H
	Len     int             // rows stored per KV head: the prompt length L
	Window  int             // observation window W
}

// Prefix returns the number of positions eligible for eviction, L - W.
func (in *Layer) Prefix() int { return in.Len - in.Window }

// windowSums returns, for each query head of heads, the attention of the
// last nq queries summed over those queries, restricted to the prefix.
func (in *Layer) windowSums(heads []int, nq int) ([][]float32, error) {
	if nq > in.NQ {
		return nil, fmt.Errorf("layer %d: %d query rows given, %d needed", in.Index, in.NQ, nq)
	}
	d := in.Cache.Shape().HeadDim
	q := in.Queries[(in.NQ-nq)*in.QHeads*d:]
	out := make([][]float32, len(heads))
	for i := range out {
		out[i] = make([]float32, in.Len)
	}
	if err := in.Backend.WindowScores(in.Cache, in.Index, q, nq, in.QHeads, heads, out); err != nil {
		return nil, fmt.Errorf("layer %d: %w", in.Index, err)
	}
	for i := range out {
		out[i] = out[i][:in.Prefix()]
	}
	return out, nil
}

// pool pools every row in place (kernel 1 leaves rows as they are).
func pool(b backend.Backend, rows [][]float32, kernel int, kind backend.Pooling) error {
	if kernel == 1 {
		return nil
	}
	tmp := make([]float32, 0)
	for _, r := range rows {
		tmp = append(tmp[:0], r...)
		if err := b.Pool(r, tmp, kernel, kind); err != nil {
			return err
		}
	}
	return nil
}

// meanRows returns the element-wise mean of rows, in float32 like the reference.
func meanRows(rows [][]float32) []float32 {
	out := make([]float32, len(rows[0]))
	for _, r := range rows {
		for j, v := range r {
			out[j] += v
		}
	}
	inv := 1 / float32(len(rows))
	for j := range out {
		out[j] *= inv
	}
	return out
}

// groupMeans averages per-query-head rows (all H heads, in order) over the
// contiguous groups of H/G heads that share a KV head: one row per KV head.
func groupMeans(rows [][]float32, kvHeads int) [][]float32 {
	per := len(rows) / kvHeads
	out := make([][]float32, kvHeads)
	for g := range out {
		out[g] = meanRows(rows[g*per : (g+1)*per])
	}
	return out
}

func allHeads(n int) []int {
	h := make([]int, n)
	for i := range h {
		h[i] = i
	}
	return h
}

// Scorer scores the prefix positions [0, L-W) of one layer.
type Scorer interface {
	// Name identifies the scorer in results and errors.
	Name() string
	// Score returns one row of L-W scores for each KV head, or a single row
	// that every KV head of the layer shares, or nil for a selector that
	// needs no scores.
	Score(in *Layer) ([][]float32, error)
}

// SnapKVScorer scores each KV head with the pooled window attention of its
// own query heads, averaged over the group (SnapKV, PyramidKV, Ada-KV).
type SnapKVScorer struct {
	Kernel  int             // odd pooling kernel; 1 disables pooling
	Pooling backend.Pooling // average or max pooling
}

// Name implements Scorer.
func (s SnapKVScorer) Name() string { return "snapkv" }

// Score implements Scorer. Cost: O(W * L * d) per query head.
func (s SnapKVScorer) Score(in *Layer) ([][]float32, error) {
	rows, err := in.windowSums(allHeads(in.QHeads), in.Window)
	if err != nil {
		return nil, err
	}
	if err := pool(in.Backend, rows, s.Kernel, s.Pooling); err != nil {
		return nil, err
	}
	return groupMeans(rows, in.Cache.Shape().KVHeads), nil
}

// SRScorer scores a layer with the pooled window attention of its semantic
// retrieval heads, averaged into one row that every KV head shares
// (CompressKV, docs/DESIGN.md ("Token selection")).
type SRScorer struct {
	Profile *Profile        // ranks the query heads of each layer
	K       int             // SR heads per layer: the first K of the ranking
	Kernel  int             // odd pooling kernel; 1 disables pooling
	Pooling backend.Pooling // average or max pooling
}

// Name implements Scorer.
func (s SRScorer) Name() string { return "sr-heads" }

// Score implements Scorer. Cost: O(K * W * L * d).
func (s SRScorer) Score(in *Layer) ([][]float32, error) {
	heads, err := s.Profile.SRHeads(in.Index, s.K)
	if err != nil {
		return nil, err
	}
	rows, err := in.windowSums(heads, in.Window)
	if err != nil {
		return nil, err
	}
	if err := pool(in.Backend, rows, s.Kernel, s.Pooling); err != nil {
		return nil, err
	}
	return [][]float32{meanRows(rows)}, nil
}

// H2OScorer scores each KV head with the attention of all prompt queries,
// accumulated over the prompt and averaged over the group's query heads
// (H2O). It needs every prompt query: NQ must equal L.
type H2OScorer struct{}

// Name implements Scorer.
func (H2OScorer) Name() string { return "h2o" }

// Score implements Scorer. Cost: O(L * L * d) per query head.
func (H2OScorer) Score(in *Layer) ([][]float32, error) {
	if in.NQ != in.Len {
		return nil, fmt.Errorf("layer %d: H2O accumulates the attention of all %d prompt queries, %d given", in.Index, in.Len, in.NQ)
	}
	rows, err := in.windowSums(allHeads(in.QHeads), in.Len)
	if err != nil {
		return nil, err
	}
	return groupMeans(rows, in.Cache.Shape().KVHeads), nil
}

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

// Select implements Selector: the first min(Sink, c) positions, then the last
// c - min(Sink, c) of the prefix; with the window these are the first Sink and
// the last B - Sink positions of the prompt.
func (s StreamingSelector) Select(_ backend.Backend, _ [][]float32, kvHeads, prefix, c int) ([][]int, error) {
	sink := min(s.Sink, c)
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
// n_g of winners; its capacity is round(n_g*(1-f) + floor(c*f)) and it keeps
// its own top capacity positions. Ties go to the lower position, then the
// lower head.
type AdaKVSelector struct {
	FloorRatio float64 // share f of each head's average budget it is guaranteed, in [0, 1]
}

// Name implements Selector.
func (AdaKVSelector) Name() string { return "adakv" }

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
	floor := math.Floor(float64(c) * s.FloorRatio)
	keep := make([][]int, kvHeads)
	for g := range keep {
		capacity := int(math.RoundToEven(float64(counts[g])*(1-s.FloorRatio) + floor))
		capacity = min(max(capacity, 0), prefix)
		if keep[g], err = b.TopK(nil, scores[g], capacity); err != nil {
			return nil, err
		}
	}
	return keep, nil
}

// Allocator spreads the total budget over layers.
type Allocator interface {
	// Name identifies the allocator.
	Name() string
	// Budgets returns the budget (tokens, window included) of each of layers
	// layers for a prompt of promptLen tokens.
	Budgets(layers, promptLen int) ([]int, error)
}

// UniformAllocator gives every layer Budget tokens.
type UniformAllocator struct {
	Budget int // tokens per layer, window included
}

// Name implements Allocator.
func (UniformAllocator) Name() string { return "uniform" }

// Budgets implements Allocator.
func (a UniformAllocator) Budgets(layers, _ int) ([]int, error) {
	return alloc.Uniform(layers, a.Budget)
}

// PyramidAllocator gives budgets that fall linearly from the first layer to
// the last (PyramidKV, docs/DESIGN.md ("Baselines")).
type PyramidAllocator struct {
	Budget int // average tokens per layer, window included
	Window int // observation window, kept by every layer
	Beta   int // ratio of the average to the smallest selectable budget
}

// Name implements Allocator.
func (PyramidAllocator) Name() string { return "pyramid" }

// Budgets implements Allocator.
func (a PyramidAllocator) Budgets(layers, promptLen int) ([]int, error) {
	return alloc.Pyramid(layers, a.Budget, a.Window, promptLen, a.Beta)
}

// ErrorAwareAllocator spreads layers*Budget tokens in proportion to measured
// layer weights, between Floor and Cap per layer (docs/DESIGN.md ("Error-aware layer budgets")).
type ErrorAwareAllocator struct {
	Weights    []float64 // per-layer weights (normalised eviction errors)
	Budget     int       // average tokens per layer, window included
	Floor, Cap int       // bounds of each layer's budget
}

// Name implements Allocator.
func (ErrorAwareAllocator) Name() string { return "error-aware" }

// Budgets implements Allocator.
func (a ErrorAwareAllocator) Budgets(layers, _ int) ([]int, error) {
	if len(a.Weights) != layers {
		return nil, fmt.Errorf("error-aware: %d layer weights for %d layers", len(a.Weights), layers)
	}
	return alloc.ErrorAware(a.Weights, a.Budget, a.Floor, a.Cap)
}
