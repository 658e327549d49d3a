package alloc

import (
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/compresskv/compresskv/internal/finite"
)

// DefaultEps is the ε of the relative error when [ErrorAccumulator.Eps] is
// zero: the reference code's 1e-5 (the paper writes 1e-6).
const DefaultEps = 1e-5

// ErrorAccumulator sums, per layer, the relative L2 error of the attention
// block output over decode steps:
//
//	e_l += ||comp - full|| / (||full|| + Eps)
//
// where full is the layer's attention output (after W_O, before the residual
// add) over the full cache and comp the same over the compressed cache, for
// one step. Norms and sums are computed in float64.
//
// It is safe for concurrent use; set Eps before the first Add. The zero value
// has no layers; use [NewErrorAccumulator].
type ErrorAccumulator struct {
	// Eps is added to ||full|| in the denominator; zero means DefaultEps.
	// It must not be negative, NaN or infinite.
	Eps float64

	mu    sync.Mutex
	sums  []float64
	steps []int
}

// NewErrorAccumulator returns an accumulator for layers layers, all sums zero.
// It returns an error if layers <= 0.
func NewErrorAccumulator(layers int) (*ErrorAccumulator, error) {
	if layers <= 0 {
		return nil, fmt.Errorf("alloc: error accumulator: %d layers: must be positive", layers)
	}
	return &ErrorAccumulator{sums: make([]float64, layers), steps: make([]int, layers)}, nil
}

// Add adds one step's relative error ||comp - full|| / (||full|| + Eps) to
// layer's sum and counts the step. It costs O(len(full)) and holds the lock
// only to update the sums.
//
// It returns an error, leaving the accumulator unchanged, if layer is out of
// range, if comp and full differ in length or are empty, if any value is NaN
// or infinite, or if Eps is negative or not finite.
func (a *ErrorAccumulator) Add(layer int, comp, full []float32) error {
	// The number of layers is fixed at construction: no lock needed to read it.
	if layer < 0 || layer >= len(a.sums) {
		return fmt.Errorf("alloc: error accumulator: layer %d out of range [0, %d)", layer, len(a.sums))
	}
	if len(comp) != len(full) {
		return fmt.Errorf("alloc: error accumulator: layer %d: %d compressed values, %d full values", layer, len(comp), len(full))
	}
	if len(full) == 0 {
		return fmt.Errorf("alloc: error accumulator: layer %d: no values", layer)
	}
	i := finite.First(comp)
	if i < 0 {
		i = finite.First(full)
	}
	if i >= 0 {
		return fmt.Errorf("alloc: error accumulator: layer %d: value %d is not finite (compressed %v, full %v)", layer, i, comp[i], full[i])
	}
	var dd, ff float64
	for i, f := range full {
		d := float64(comp[i]) - float64(f)
		dd += d * d
		ff += float64(f) * float64(f)
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	eps := a.Eps
	if eps == 0 {
		eps = DefaultEps
	}
	if eps < 0 || math.IsNaN(eps) || math.IsInf(eps, 0) {
		return fmt.Errorf("alloc: error accumulator: Eps %v: must be positive and finite", a.Eps)
	}
	a.sums[layer] += math.Sqrt(dd) / (math.Sqrt(ff) + eps)
	a.steps[layer]++
	return nil
}

// Sums returns a copy of the per-layer error sums. It costs O(layers).
func (a *ErrorAccumulator) Sums() []float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]float64(nil), a.sums...)
}

// Steps returns a copy of the number of steps added to each layer.
// It costs O(layers).
func (a *ErrorAccumulator) Steps() []int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]int(nil), a.steps...)
}

// Weights returns the error sums normalised to sum 1: the layer weights of one
// data set (see [Normalize] and [Average]). It returns an error if the
// accumulator has no layers or every sum is zero, e.g. before any step.
func (a *ErrorAccumulator) Weights() ([]float64, error) {
	s := a.Sums()
	if len(s) == 0 {
		return nil, errors.New("alloc: error accumulator: no layers")
	}
	w, err := Normalize(s)
	if err != nil {
		return nil, fmt.Errorf("alloc: error accumulator: %w", err)
	}
	return w, nil
}
