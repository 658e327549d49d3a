package llama

import "github.com/compresskv/compresskv/compresskv"

// Rotary returns the model's rotary position embedding as the library
// describes it: llama2.c's interleaved pairs, with the very frequencies the
// forward pass turns queries and keys by (float32 inverse frequencies of
// base 10000), so that a scorer undoing the rotation undoes exactly this
// one.
func (m *Model) Rotary() *compresskv.Rotary {
	r := &compresskv.Rotary{Freqs: make([]float64, len(m.rope)), Interleaved: true}
	for j, f := range m.rope {
		r.Freqs[j] = float64(f)
	}
	return r
}
