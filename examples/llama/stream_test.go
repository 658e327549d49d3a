package llama

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/kvcache"
)

// TestStreamSession: a chunked prefill through a Stream whose budget covers
// the prompt gives the plain session's logits bit for bit, and one with a
// small budget and a reserve stays within the Stream's bound after every
// chunk, its prefill scorer (a Tracker) seeing every token's query.
func TestStreamSession(t *testing.T) {
	m, err := Load("../../" + DefaultModel)
	if err != nil {
		t.Fatal(err)
	}
	tok := ByteTokenizer()
	prompt := tok.Encode("And the men of the valley went up unto the hill country, and took with them seven baskets of figs. ", true, false)
	for len(prompt) < 300 {
		prompt = append(prompt, prompt[1:]...)
	}
	prompt = prompt[:300]
	plain, _ := m.NewCache(kvcache.Float32)
	ps, _ := m.NewSession(plain, nil)
	want, _, err := ps.Prefill(prompt, 64)
	if err != nil {
		t.Fatal(err)
	}
	wide, _ := compresskv.New(compresskv.SnapKV, compresskv.Config{Budget: 400})
	s, st, err := m.StreamSession(context.Background(), wide, kvcache.Float32, compresskv.StreamConfig{Chunk: 64})
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := s.Prefill(prompt, 64)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) || st.Stats().Compressions != 0 {
		t.Fatalf("a stream within its budget changed the logits (%d compressions)", st.Stats().Compressions)
	}
	small, _ := compresskv.New(compresskv.SnapKV, compresskv.Config{Budget: 32})
	s, st, err = m.StreamSession(context.Background(), small, kvcache.Float16, compresskv.StreamConfig{Chunk: 48, Reserve: 64,
		Prefill: compresskv.ExpectedAttentionScorer{Rotary: m.Rotary(), Sink: 4, Kernel: 1}})
	if err != nil {
		t.Fatal(err)
	}
	for a := 0; a < len(prompt); a += 48 {
		if _, err := s.Forward(prompt[a:min(len(prompt), a+48)]); err != nil {
			t.Fatal(err)
		}
		for l := 0; l < m.Layers; l++ {
			for g := 0; g < m.KVHeads; g++ {
				if n := st.Cache().Len(l, g); n > st.Bound(l) {
					t.Fatalf("after %d tokens layer %d head %d holds %d rows, bound %d", a+48, l, g, n, st.Bound(l))
				}
			}
		}
	}
	if st.Stats().Compressions == 0 || st.Stats().PeakTrackBytes == 0 {
		t.Fatalf("300 tokens over a reserve of 64: %+v", st.Stats())
	}
	if s.Pos() != len(prompt) {
		t.Fatalf("position %d after %d tokens", s.Pos(), len(prompt))
	}
}

// TestRotaryIsTheForwardPass: the library's description of a model's rotary
// embedding (pair j of the rotated values turned by pos*Freqs[j], the pairs
// interleaved or split in halves) turns a vector as the forward pass does,
// for the project's model and for a neox-style rope that rotates half of
// each head, with another base, a linear scale and frequency factors.
func TestRotaryIsTheForwardPass(t *testing.T) {
	own, err := Load("../../" + DefaultModel)
	if err != nil {
		t.Fatal(err)
	}
	neox := &Model{Config: Config{Dim: 64, Heads: 4, Rope: RopeNeox, RopeDims: 8, RopeBase: 1e6, RopeScale: 0.5},
		ropeFactors: []float32{1, 1.5, 2, 4}}
	for _, m := range []*Model{own, neox} {
		r := m.Rotary()
		d, nd := m.HeadDim(), m.RotaryDims()
		if len(r.Freqs) != nd/2 || r.Interleaved != (m.Rope != RopeNeox) || r.Dims != nd {
			t.Fatalf("rotary of %d pairs over %d values, interleaved %v, for rope %v over %d of %d", len(r.Freqs), r.Dims, r.Interleaved, m.Rope, nd, d)
		}
		x := make([]float32, 2*d) // two heads
		for i := range x {
			x[i] = float32(i%5) - 1.5
		}
		cs := make([]float32, nd)
		for _, pos := range []int{0, 1, 17, 1023, 2047} {
			y := slices.Clone(x)
			m.ropeAngles(pos, cs)
			m.rotate(y, cs)
			want := slices.Clone(y)
			for h := 0; h < len(x); h += d {
				copy(want[h:h+d], x[h:h+d])
				for j, f := range r.Freqs {
					a, b := h+2*j, h+2*j+1
					if !r.Interleaved {
						a, b = h+j, h+j+nd/2
					}
					c, s := math.Cos(float64(pos)*f), math.Sin(float64(pos)*f)
					xa, xb := float64(x[a]), float64(x[b])
					want[a], want[b] = float32(xa*c-xb*s), float32(xa*s+xb*c)
				}
			}
			for i := range y {
				if math.Abs(float64(y[i]-want[i])) > 2e-3 {
					t.Fatalf("rope %v, position %d, value %d: forward pass %v, the description %v", m.Rope, pos, i, y[i], want[i])
				}
			}
		}
	}
}
