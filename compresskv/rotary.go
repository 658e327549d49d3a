package compresskv

import (
	"fmt"
	"math"
)

// Rotary describes a model's rotary position embedding (RoPE): how a query
// or key of one head is turned at each position. The expected-attention
// scorer needs it to undo the rotation of the queries it has seen and to
// turn their statistics to the positions still to come; the cache itself
// never needs it (keys are stored rotated). A nil *Rotary is a model
// without rotary embeddings: nothing is turned.
type Rotary struct {
	// Freqs holds, for each rotated pair j of a head (Dims/2 of them), the
	// angle per position: pair j of a vector at position p turns by
	// p*Freqs[j] radians.
	Freqs []float64
	// Interleaved pairs the dimensions (2j, 2j+1), as llama2.c and
	// llama.cpp's default rope do; otherwise (j, j+Dims/2), as Hugging
	// Face's Llama (rotate_half) and llama.cpp's neox rope.
	Interleaved bool
	// Dims is how many values at the start of each head are rotated (0: the
	// whole head, 2*len(Freqs)); the rest are left as they are.
	Dims int
}

// NewRotary returns the standard rotary embedding of base theta (10000 for
// Llama 2, 500000 for Llama 3 without its frequency scaling) over heads of
// headDim values: Freqs[j] = theta^(-2j/headDim).
func NewRotary(theta float64, headDim int, interleaved bool) (*Rotary, error) {
	if headDim < 2 || headDim%2 != 0 {
		return nil, fmt.Errorf("compresskv: rotary: head dimension %d must be even and positive: %w", headDim, ErrConfig)
	}
	if !(theta > 1) || math.IsInf(theta, 0) {
		return nil, fmt.Errorf("compresskv: rotary: base %v must be finite and above 1: %w", theta, ErrConfig)
	}
	r := &Rotary{Freqs: make([]float64, headDim/2), Interleaved: interleaved}
	for j := range r.Freqs {
		r.Freqs[j] = math.Pow(theta, -2*float64(j)/float64(headDim))
	}
	return r, nil
}

// dims returns the rotated values of each head.
func (r *Rotary) dims() int {
	if r.Dims > 0 {
		return r.Dims
	}
	return 2 * len(r.Freqs)
}

// check returns an error unless r fits heads of headDim values (nil, no
// rotary embedding, fits any).
func (r *Rotary) check(headDim int) error {
	if r == nil {
		return nil
	}
	if r.Dims < 0 || 2*len(r.Freqs) != r.dims() || r.dims() > headDim || (r.Dims == 0 && r.dims() != headDim) {
		return fmt.Errorf("rotary embedding of %d pairs over %d values for heads of %d values: %w", len(r.Freqs), r.Dims, headDim, ErrConfig)
	}
	for j, f := range r.Freqs {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("rotary frequency %d is %v: %w", j, f, ErrConfig)
		}
	}
	return nil
}

// pair returns the indices of the two dimensions of pair j of a head.
func (r *Rotary) pair(j int) (a, b int) {
	if r.Interleaved {
		return 2 * j, 2*j + 1
	}
	return j, j + r.dims()/2
}

// turn rotates x (one head) in place by angle pos*Freqs[j] for each pair:
// (a, b) -> (a cos - b sin, a sin + b cos). A negative pos undoes the
// rotation of position -pos.
func (r *Rotary) turn(x []float64, pos float64) {
	if r == nil {
		return
	}
	for j, f := range r.Freqs {
		s, c := math.Sincos(pos * f)
		a, b := r.pair(j)
		x[a], x[b] = x[a]*c-x[b]*s, x[a]*s+x[b]*c
	}
}

// mean returns, for each pair, the mean cosine and sine of the angles of
// positions [from, from+n): the average rotation over those positions, a
// rotation scaled down by how much the angles spread.
func (r *Rotary) mean(from, n int) (cos, sin []float64) {
	if r == nil {
		return nil, nil
	}
	cos, sin = make([]float64, len(r.Freqs)), make([]float64, len(r.Freqs))
	for j, f := range r.Freqs {
		var c, s float64
		for t := 0; t < n; t++ {
			st, ct := math.Sincos(float64(from+t) * f)
			c += ct
			s += st
		}
		cos[j], sin[j] = c/float64(n), s/float64(n)
	}
	return cos, sin
}

// apply applies the scaled rotation of mean's (cos, sin) to x in place.
func (r *Rotary) apply(x, cos, sin []float64) {
	if r == nil {
		return
	}
	for j := range r.Freqs {
		a, b := r.pair(j)
		x[a], x[b] = x[a]*cos[j]-x[b]*sin[j], x[a]*sin[j]+x[b]*cos[j]
	}
}
