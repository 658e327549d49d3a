package alloc

import (
	"errors"
	"fmt"
	"math"
	"sort"
)

// ErrInfeasible is returned, wrapped, by [ErrorAware] when the budgets cannot
// sum to the requested total within the per-layer bounds [lo, hi], that is when
// total < lo*n or total > hi*n. Test for it with errors.Is.
var ErrInfeasible = errors.New("alloc: total budget cannot be met within the per-layer bounds")

// Uniform returns n budgets of b tokens each. It costs one allocation of n ints.
// It returns an error if n <= 0 or b < 0.
func Uniform(n, b int) ([]int, error) {
	if n <= 0 {
		return nil, fmt.Errorf("alloc: uniform: %d layers: must be positive", n)
	}
	if b < 0 {
		return nil, fmt.Errorf("alloc: uniform: budget %d: must not be negative", b)
	}
	out := make([]int, n)
	for i := range out {
		out[i] = b
	}
	return out, nil
}

// Pyramid returns PyramidKV's per-layer budgets, in tokens with the window
// included, for n layers, an average budget b per layer (window included), an
// observation window of w tokens, a prompt of L tokens and the ratio beta (20
// in PyramidKV). It costs O(n).
//
// It follows docs/DESIGN.md ("Baselines") and the reference code exactly, with
// c = b - w selectable tokens per layer on average:
//
//	lo = c / beta;  hi = 2c - lo
//	if hi >= L - w { hi = L - w; lo = 2c - hi }
//	step = (hi - lo) / (n - 1)
//	budget[l] = hi - l*step + w
//
// All divisions are floor divisions, as Python's //; they differ from Go's
// truncating division only when the prompt is so short that hi < lo, in which
// case the budgets rise from the first layer to the last.
//
// Because step is rounded down, the budgets do not sum exactly to n*b in
// general: the sum is n*b plus at most (n-1)*n/2 tokens more or less (for
// example n=4, b=72, w=8, L=1000 gives 133, 93, 53, 13, which sum to 292, not
// 288). Budgets are never negative; they may exceed L, and callers keep
// min(budget, L) tokens.
//
// With n == 1 there is no slope: the single layer gets c + w = b tokens.
//
// It returns an error if n <= 0, w < 0, b < w, beta <= 0 or L < 0.
func Pyramid(n, b, w, L, beta int) ([]int, error) {
	switch {
	case n <= 0:
		return nil, fmt.Errorf("alloc: pyramid: %d layers: must be positive", n)
	case w < 0:
		return nil, fmt.Errorf("alloc: pyramid: window %d: must not be negative", w)
	case b < w:
		return nil, fmt.Errorf("alloc: pyramid: budget %d is smaller than the window %d", b, w)
	case beta <= 0:
		return nil, fmt.Errorf("alloc: pyramid: beta %d: must be positive", beta)
	case L < 0:
		return nil, fmt.Errorf("alloc: pyramid: prompt length %d: must not be negative", L)
	}
	c := b - w
	if n == 1 {
		return []int{c + w}, nil
	}
	lo := floorDiv(c, beta)
	hi := 2*c - lo
	if hi >= L-w {
		hi = L - w
		lo = 2*c - hi
	}
	step := floorDiv(hi-lo, n-1)
	out := make([]int, n)
	for l := range out {
		out[l] = hi - l*step + w
	}
	return out, nil
}

// floorDiv returns floor(a / b) for b > 0, as Python's a // b.
func floorDiv(a, b int) int {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// ErrorAware returns CompressKV's error-aware layer budgets, exactly as
// docs/DESIGN.md ("Error-aware layer budgets") specifies them, for n = len(weights) layers with an
// average budget b per layer, a floor lo and a cap hi per layer:
//
//	total = b*n;  rest = total - lo*n
//	B_l = clip(lo + round_half_even(w_l*rest), lo, hi)
//
// then, while the sum differs from total by diff, walk the layers one token at
// a time: if diff > 0, the layers with B_l < hi by weight descending, +1 each;
// if diff < 0, the layers with B_l > lo by weight ascending, -1 each; repeat
// the walk until diff == 0. Layers of equal weight are walked in ascending
// layer order in both directions. The result sums exactly to total.
//
// The weights need not sum to 1: they are normalised first (see [Normalize]),
// so any non-negative per-layer error sums can be passed as they are. The
// paper's defaults are lo = 32 and hi = 3*b.
//
// It costs O(n log n) for the sort plus O(n) per distinct distance to the
// bound among the moving layers, independent of the size of the total (whole
// walks are applied at once when every moving layer can take them).
//
// It returns an error wrapping [ErrInfeasible], naming the total, lo, hi and
// n, when total < lo*n or total > hi*n (that is, when b is outside [lo, hi]).
// It returns another error for invalid arguments: weights empty, negative,
// non-finite or all zero, b <= 0, lo < 0, hi < lo, or a total b*n above 2^53.
func ErrorAware(weights []float64, b, lo, hi int) ([]int, error) {
	w, err := Normalize(weights)
	if err != nil {
		return nil, fmt.Errorf("alloc: error-aware: weights: %w", err)
	}
	switch {
	case b <= 0:
		return nil, fmt.Errorf("alloc: error-aware: budget %d: must be positive", b)
	case lo < 0:
		return nil, fmt.Errorf("alloc: error-aware: floor %d: must not be negative", lo)
	case hi < lo:
		return nil, fmt.Errorf("alloc: error-aware: cap %d is below the floor %d", hi, lo)
	}
	n := len(w)
	if b > maxTotal/n {
		return nil, fmt.Errorf("alloc: error-aware: total %d*%d exceeds 2^53", b, n)
	}
	total := b * n
	// lo*n <= total <= hi*n, with total = b*n, is lo <= b <= hi. The walk
	// below would reach the same verdict, one token at a time.
	if lo > b || hi < b {
		return nil, infeasible(total, lo, hi, n)
	}
	rest := total - lo*n

	out := make([]int, n)
	sum := 0
	for l, wl := range w {
		v := lo + int(math.RoundToEven(wl*float64(rest)))
		out[l] = min(max(v, lo), hi)
		sum += out[l]
	}
	diff := total - sum
	if diff == 0 {
		return out, nil
	}

	// Walk order: by weight descending (diff > 0) or ascending (diff < 0),
	// ties by layer ascending. The set of layers that can move only shrinks.
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	if diff > 0 {
		sort.SliceStable(order, func(i, j int) bool { return w[order[i]] > w[order[j]] })
	} else {
		sort.SliceStable(order, func(i, j int) bool { return w[order[i]] < w[order[j]] })
	}
	dir, bound := 1, hi
	if diff < 0 {
		dir, bound, diff = -1, lo, -diff
	}
	room := func(l int) int { return (bound - out[l]) * dir }
	moving := order[:0:0]
	for diff > 0 {
		moving = moving[:0]
		minRoom := math.MaxInt
		for _, l := range order {
			if r := room(l); r > 0 {
				moving = append(moving, l)
				minRoom = min(minRoom, r)
			}
		}
		m := len(moving)
		if m == 0 {
			return nil, infeasible(total, lo, hi, n) // unreachable after the check above
		}
		if k := min(diff/m, minRoom); k > 0 {
			// k whole walks at once: every moving layer takes k tokens and
			// none passes its bound.
			for _, l := range moving {
				out[l] += dir * k
			}
			diff -= k * m
			continue
		}
		// diff < m: one partial walk ends it.
		for _, l := range moving[:diff] {
			out[l] += dir
		}
		diff = 0
	}
	return out, nil
}

// maxTotal bounds the total of ErrorAware so that it and every intermediate
// sum are exact in float64 and far from overflowing int.
const maxTotal = 1 << 53

func infeasible(total, lo, hi, n int) error {
	return fmt.Errorf("alloc: error-aware: total %d cannot be met by n=%d layers of lo=%d to hi=%d tokens each: %w",
		total, n, lo, hi, ErrInfeasible)
}

// Normalize returns x / sum(x) in a new slice. It costs O(len(x)).
// It returns an error if x is empty, if any value is negative, NaN or
// infinite, or if the sum is zero. A sum that overflows float64 is handled by
// scaling by the largest value first.
func Normalize(x []float64) ([]float64, error) {
	if len(x) == 0 {
		return nil, errors.New("alloc: normalize: no values")
	}
	var sum, mx float64
	for i, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("alloc: normalize: value %d is %v: must be finite", i, v)
		}
		if v < 0 {
			return nil, fmt.Errorf("alloc: normalize: value %d is %v: must not be negative", i, v)
		}
		sum += v
		mx = max(mx, v)
	}
	if sum == 0 {
		return nil, errors.New("alloc: normalize: values sum to zero")
	}
	out := make([]float64, len(x))
	if math.IsInf(sum, 0) {
		sum = 0
		for i, v := range x {
			out[i] = v / mx
			sum += out[i]
		}
		for i := range out {
			out[i] /= sum
		}
		return out, nil
	}
	for i, v := range x {
		out[i] = v / sum
	}
	return out, nil
}

// Average returns per-layer weights from per-data-set error sums, as
// docs/DESIGN.md ("Error-aware layer budgets") combines them: each data set's values are normalised
// to sum 1, the results are averaged over data sets, and the average is
// normalised again. It costs O(datasets * layers).
//
// It returns an error if there are no data sets, if the data sets do not all
// have the same number of layers, or if any data set is empty or holds a
// negative, non-finite or all-zero set of values.
func Average(perDataset [][]float64) ([]float64, error) {
	if len(perDataset) == 0 {
		return nil, errors.New("alloc: average: no data sets")
	}
	n := len(perDataset[0])
	acc := make([]float64, n)
	for d, x := range perDataset {
		if len(x) != n {
			return nil, fmt.Errorf("alloc: average: data set %d has %d layers, data set 0 has %d", d, len(x), n)
		}
		w, err := Normalize(x)
		if err != nil {
			return nil, fmt.Errorf("alloc: average: data set %d: %w", d, err)
		}
		for i, v := range w {
			acc[i] += v
		}
	}
	for i := range acc {
		acc[i] /= float64(len(perDataset))
	}
	out, err := Normalize(acc)
	if err != nil {
		return nil, fmt.Errorf("alloc: average: %w", err)
	}
	return out, nil
}
