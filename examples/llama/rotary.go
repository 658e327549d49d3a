package llama

import (
	"math"

	"github.com/compresskv/compresskv/compresskv"
)

// Rotary returns the model's rotary position embedding as the library
// describes it: the first RotaryDims values of each head turned in pairs
// (interleaved for llama's rope, split in halves for qwen's neox rope),
// pair j by base^(-2j/RotaryDims) per position, divided by its frequency
// factor and multiplied by the linear scale, as ropeAngles computes them
// (there in float32, built by repeated multiplication; the description's
// angles are the exact ones those approximate).
func (m *Model) Rotary() *compresskv.Rotary {
	nd := m.RotaryDims()
	r := &compresskv.Rotary{Freqs: make([]float64, nd/2), Interleaved: m.Rope != RopeNeox, Dims: nd}
	base, scale := float64(m.ropeBase()), float64(m.ropeScale())
	for j := range r.Freqs {
		f := math.Pow(base, -2*float64(j)/float64(nd)) * scale
		if m.ropeFactors != nil {
			f /= float64(m.ropeFactors[j])
		}
		r.Freqs[j] = f
	}
	return r
}
