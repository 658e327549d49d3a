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

// TestRotaryIsTheForwardPass: the library's description of the model's
// rotary embedding (pairs (2j, 2j+1) turned by pos*Freqs[j]) turns a vector
// as the forward pass does.
func TestRotaryIsTheForwardPass(t *testing.T) {
	m, err := Load("../../" + DefaultModel)
	if err != nil {
		t.Fatal(err)
	}
	r := m.Rotary()
	d := m.HeadDim()
	if len(r.Freqs) != d/2 || !r.Interleaved {
		t.Fatalf("rotary of %d pairs, interleaved %v; want %d, true", len(r.Freqs), r.Interleaved, d/2)
	}
	x := make([]float32, 2*d) // two heads
	for i := range x {
		x[i] = float32(i%5) - 1.5
	}
	for _, pos := range []int{0, 1, 17, 1023, 2047} {
		y := slices.Clone(x)
		m.rotate(y, pos)
		for i := 0; i < len(x); i += 2 {
			f := float64(pos) * r.Freqs[(i%d)/2]
			c, s := math.Cos(f), math.Sin(f)
			a, b := float64(x[i]), float64(x[i+1])
			if math.Abs(float64(y[i])-(a*c-b*s)) > 1e-5 || math.Abs(float64(y[i+1])-(a*s+b*c)) > 1e-5 {
				t.Fatalf("position %d pair %d: forward pass gives (%v, %v), the description (%v, %v)", pos, i/2, y[i], y[i+1], a*c-b*s, a*s+b*c)
			}
		}
	}
}
