package llama

import (
	"math"
	"slices"
	"testing"

	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/internal/reftest"
	"github.com/compresskv/compresskv/kvcache"
)

// TestAttendLikeGGML: for every cache type, the attention llama.cpp
// computes — queries and probabilities rounded to the cache's type — held
// against a float64 pass with the same two roundings; hidden rows are
// never seen; with a float32 cache it is the backend's float32 attention
// to rounding, with a 16-bit one it is not.
func TestAttendLikeGGML(t *testing.T) {
	r, _ := reftest.Rand(t)
	const H, G, d, L = 4, 2, 64, 37
	m := &Model{Config: Config{Dim: H * d, Hidden: 1, Layers: 1, Heads: H, KVHeads: G, Vocab: 1, SeqLen: 64}}
	for _, dt := range []kvcache.DType{kvcache.Float32, kvcache.Float16, kvcache.BFloat16} {
		c, err := kvcache.NewHost(m.CacheShape(), dt)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Append(0, reftest.Normal(r, L*G*d, 1), reftest.Normal(r, L*G*d, 1)); err != nil {
			t.Fatal(err)
		}
		q := reftest.Normal(r, H*d, 1)
		for _, hide := range []int{0, 5} {
			got := make([]float32, H*d)
			if err := m.attendLikeGGML(c, 0, q, hide, got, &attnScratch{}); err != nil {
				t.Fatal(err)
			}
			round := func(x float64) float64 {
				switch dt {
				case kvcache.Float16:
					return float64(kvcache.F16ToF32(kvcache.F32ToF16(float32(x))))
				case kvcache.BFloat16:
					return float64(kvcache.BF16ToF32(kvcache.F32ToBF16(float32(x))))
				}
				return x
			}
			unit := map[kvcache.DType]float64{kvcache.Float32: 0x1p-24, kvcache.Float16: 0x1p-11, kvcache.BFloat16: 0x1p-8}[dt]
			for h := 0; h < H; h++ {
				k, v := reftest.Decoded(c, 0, h/(H/G))
				k, v = k[:L-hide], v[:L-hide]
				qh := make([]float64, d)
				for i := range qh {
					qh[i] = round(float64(q[h*d+i]))
				}
				p := make([]float64, len(k))
				mx := math.Inf(-1)
				for j := range k {
					for i := range qh {
						p[j] += qh[i] * k[j][i]
					}
					p[j] /= math.Sqrt(d)
					mx = math.Max(mx, p[j])
				}
				z := 0.0
				for j := range p {
					p[j] = math.Exp(p[j] - mx)
					z += p[j]
				}
				for e := 0; e < d; e++ {
					want, mag := 0.0, 0.0
					for j := range p {
						w := round(p[j] / z)
						want += w * v[j][e]
						mag += math.Abs(w * v[j][e])
					}
					// float32 sums, and a probability within float32 rounding
					// of a conversion boundary rounding the other way.
					if diff := math.Abs(float64(got[h*d+e]) - want); diff > 1e-5*mag+2*unit*mag/float64(len(p)) {
						t.Fatalf("%v, %d hidden: head %d value %d: %v, reference %v", dt, hide, h, e, got[h*d+e], want)
					}
				}
			}
		}
		// Against the backend's float32 attention.
		got, want := make([]float32, H*d), make([]float32, H*d)
		if err := m.attendLikeGGML(c, 0, q, 0, got, &attnScratch{}); err != nil {
			t.Fatal(err)
		}
		if err := cpu.New().Attend(c, 0, q, H, want); err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for i := range got {
			worst = max(worst, math.Abs(float64(got[i]-want[i])))
		}
		if (dt == kvcache.Float32) != (worst < 1e-5) {
			t.Fatalf("%v: %.3g from the backend's float32 attention", dt, worst)
		}
		t.Logf("%v: %.2g from the backend's float32 attention", dt, worst)
	}
}

// TestLikeLlamaCppSession: a session computing as llama.cpp does gives the
// same logits, bit for bit, whether the prompt runs in one chunk, in
// several or token by token, for every architecture; with a float32
// cache it stays within float32 rounding of the float64 reference.
func TestLikeLlamaCppSession(t *testing.T) {
	r, _ := reftest.Rand(t)
	tokens := []int{1, 17, 5, 66, 3, 42, 8, 9, 30, 2, 61}
	for _, tc := range archCases() {
		s := newSynth(r, tc.cfg, tc.f)
		m := loadSynth(t, s)
		want := s.reference(tokens)
		for _, dt := range []kvcache.DType{kvcache.Float32, kvcache.Float16} {
			var first []float32
			for _, chunk := range []int{len(tokens), 4, 1} {
				c, _ := m.NewCache(dt)
				ses, _ := m.NewSession(c, nil)
				ses.LikeLlamaCpp = true
				logits, _, err := ses.Prefill(tokens, chunk)
				if err != nil {
					t.Fatal(err)
				}
				if first == nil {
					first = logits
				} else if !slices.Equal(first, logits) {
					t.Fatalf("%s %v: chunks of %d give other logits than one chunk", tc.name, dt, chunk)
				}
			}
			if dev := deviation(first, want[len(tokens)-1]); dt == kvcache.Float32 && dev > 1e-5 || dev > 1e-2 {
				t.Fatalf("%s %v: %.3g standard deviations from the reference", tc.name, dt, dev)
			}
		}
	}
}
