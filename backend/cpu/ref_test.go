package cpu

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/compresskv/compresskv/kvcache"
)

// This file holds plain float64 reference implementations and test helpers.

// newRand returns a generator seeded from the clock, logging the seed.
func newRand(t testing.TB) (*rand.Rand, uint64) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), seed
}

func randVec(r *rand.Rand, n int, sd float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * sd)
	}
	return x
}

// newCache returns a cache of one or more layers whose layer 0 holds n
// random tokens.
func newCache(t testing.TB, r *rand.Rand, layers, G, d, n int, dt kvcache.DType) *kvcache.Host {
	t.Helper()
	c, err := kvcache.NewHost(kvcache.Shape{Layers: layers, KVHeads: G, HeadDim: d}, dt)
	if err != nil {
		t.Fatal(err)
	}
	if n > 0 {
		if err := c.Append(0, randVec(r, n*G*d, 1.5), randVec(r, n*G*d, 1)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// decoded returns the stored keys and values of head g of layer as float64.
func decoded(c kvcache.HostReader, layer, g int) (k, v [][]float64) {
	kr, vr := c.Rows(layer, g)
	var buf []float32
	for i := 0; i < kr.N; i++ {
		buf = kr.Row(i, buf)
		k = append(k, f64(buf))
		buf = vr.Row(i, buf)
		v = append(v, f64(buf))
	}
	return k, v
}

func f64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

func dot64(a []float32, b []float64) float64 {
	var s float64
	for i, x := range a {
		s += float64(x) * b[i]
	}
	return s
}

// refSoftmax returns the softmax of the logits of q over rows [0, vis) of
// k, scaled by 1/sqrt(d), as a vector of len(k) (zeros beyond vis).
func refSoftmax(q []float32, k [][]float64, vis int) []float64 {
	d := float64(len(q))
	p := make([]float64, len(k))
	m := math.Inf(-1)
	for j := 0; j < vis; j++ {
		p[j] = dot64(q, k[j]) / math.Sqrt(d)
		m = math.Max(m, p[j])
	}
	var s float64
	for j := 0; j < vis; j++ {
		p[j] = math.Exp(p[j] - m)
		s += p[j]
	}
	for j := 0; j < vis; j++ {
		p[j] /= s
	}
	return p
}

// refWindowScores is section 2, steps 1-4 (without dropping the window).
func refWindowScores(c kvcache.HostReader, layer int, q []float32, w, H int, h int) []float64 {
	d := c.Shape().HeadDim
	g := h / (H / c.Shape().KVHeads)
	k, _ := decoded(c, layer, g)
	L := len(k)
	out := make([]float64, L)
	for i := 0; i < w; i++ {
		p := refSoftmax(q[(i*H+h)*d:(i*H+h+1)*d], k, L-w+i+1)
		for j := range out {
			out[j] += p[j]
		}
	}
	return out
}

func refAttend(c kvcache.HostReader, layer int, q []float32, H int) ([]float64, [][]float64) {
	s := c.Shape()
	d := s.HeadDim
	out := make([]float64, H*d)
	var weights [][]float64
	for h := 0; h < H; h++ {
		k, v := decoded(c, layer, h/(H/s.KVHeads))
		p := refSoftmax(q[h*d:(h+1)*d], k, len(k))
		weights = append(weights, p)
		for j, pj := range p {
			for i := 0; i < d; i++ {
				out[h*d+i] += pj * v[j][i]
			}
		}
	}
	return out, weights
}

func refPool(src []float32, kernel int, avg bool) []float64 {
	n, r := len(src), kernel/2
	out := make([]float64, n)
	for i := range out {
		if avg {
			var s float64
			for j := i - r; j <= i+r; j++ {
				if j >= 0 && j < n {
					s += float64(src[j])
				}
			}
			out[i] = s / float64(kernel)
		} else {
			m := math.Inf(-1)
			for j := max(0, i-r); j <= min(n-1, i+r); j++ {
				m = math.Max(m, float64(src[j]))
			}
			out[i] = m
		}
	}
	return out
}

// refTopK sorts all indices by (score descending, index ascending), takes
// the first k and returns them in ascending order.
func refTopK(scores []float32, k int) []int {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] > scores[idx[b]] })
	k = max(0, min(k, len(idx)))
	idx = idx[:k]
	sort.Ints(idx)
	return idx
}

// closeTo reports the largest error of got against want, relative to
// max(|want|, floor).
func maxRelErr(got []float32, want []float64, floor float64) (float64, int) {
	worst, at := 0.0, -1
	for i := range want {
		e := math.Abs(float64(got[i])-want[i]) / math.Max(math.Abs(want[i]), floor)
		if e > worst || math.IsNaN(e) {
			worst, at = e, i
		}
	}
	return worst, at
}
