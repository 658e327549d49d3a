// Package reftest holds the float64 reference implementations that every
// backend and policy is tested against, written plainly from docs/DESIGN.md,
// and the seeded random source the tests share.
package reftest

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/compresskv/compresskv/kvcache"
)

// Rand returns a generator seeded from the clock, fresh for each run; the
// seed is logged so that a failure can be replayed.
func Rand(t testing.TB) (*rand.Rand, uint64) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), seed
}

// Normal returns n values drawn from N(0, sd^2).
func Normal(r *rand.Rand, n int, sd float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * sd)
	}
	return x
}

// F64 widens x to float64.
func F64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

// Decoded returns the stored keys and values of head g of layer as float64
// rows, after the storage type's rounding.
func Decoded(c kvcache.HostReader, layer, g int) (k, v [][]float64) {
	kr, vr := c.Rows(layer, g)
	var buf []float32
	for i := 0; i < kr.N; i++ {
		buf = kr.Row(i, buf)
		k = append(k, F64(buf))
		buf = vr.Row(i, buf)
		v = append(v, F64(buf))
	}
	return k, v
}

// Softmax returns the softmax of the logits q . k[j] / sqrt(d) over the rows
// [0, vis) of k, as a vector of len(k) with zeros beyond vis.
func Softmax(q []float32, k [][]float64, vis int) []float64 {
	scale := 1 / math.Sqrt(float64(len(q)))
	p := make([]float64, len(k))
	m := math.Inf(-1)
	for j := 0; j < vis; j++ {
		s := 0.0
		for x, qx := range q {
			s += float64(qx) * k[j][x]
		}
		p[j] = s * scale
		m = math.Max(m, p[j])
	}
	var z float64
	for j := 0; j < vis; j++ {
		p[j] = math.Exp(p[j] - m)
		z += p[j]
	}
	for j := 0; j < vis; j++ {
		p[j] /= z
	}
	return p
}

// WindowSums is token selection steps 1-4 for query head h: the attention of
// the w queries q ([w][H][d]) over all L rows of its KV head, causally masked
// inside the window (query i sees rows j <= L-w+i), summed over the queries.
// It returns all L sums; callers keep the prefix [0, L-w).
func WindowSums(c kvcache.HostReader, layer int, q []float32, w, H, h int) []float64 {
	d := c.Shape().HeadDim
	k, _ := Decoded(c, layer, h/(H/c.Shape().KVHeads))
	L := len(k)
	out := make([]float64, L)
	for i := 0; i < w; i++ {
		p := Softmax(q[(i*H+h)*d:(i*H+h+1)*d], k, L-w+i+1)
		for j := range out {
			out[j] += p[j]
		}
	}
	return out
}

// Attend is decode attention of one token, q [H][d], over every row of each
// query head's KV head: the outputs [H][d] and the attention rows [H][L_g].
func Attend(c kvcache.HostReader, layer int, q []float32, H int) ([]float64, [][]float64) {
	s := c.Shape()
	d := s.HeadDim
	out := make([]float64, H*d)
	var weights [][]float64
	for h := 0; h < H; h++ {
		k, v := Decoded(c, layer, h/(H/s.KVHeads))
		p := Softmax(q[h*d:(h+1)*d], k, len(k))
		weights = append(weights, p)
		for j, pj := range p {
			for i := 0; i < d; i++ {
				out[h*d+i] += pj * v[j][i]
			}
		}
	}
	return out, weights
}

// Pool is PyTorch's avg_pool1d with count_include_pad (avg) or max_pool1d,
// odd kernel, stride 1, padding kernel/2.
func Pool(src []float64, kernel int, avg bool) []float64 {
	n, r := len(src), kernel/2
	out := make([]float64, n)
	for i := range out {
		if avg {
			var s float64
			for j := max(0, i-r); j <= min(n-1, i+r); j++ {
				s += src[j]
			}
			out[i] = s / float64(kernel)
		} else {
			m := math.Inf(-1)
			for j := max(0, i-r); j <= min(n-1, i+r); j++ {
				m = math.Max(m, src[j])
			}
			out[i] = m
		}
	}
	return out
}

// TopK sorts all indices by (score descending, index ascending), takes the
// first k and returns them in ascending order.
func TopK[F float32 | float64](scores []F, k int) []int {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] > scores[idx[b]] })
	idx = idx[:max(0, min(k, len(idx)))]
	sort.Ints(idx)
	return idx
}

// Mean returns the element-wise mean of rows.
func Mean(rows [][]float64) []float64 {
	out := make([]float64, len(rows[0]))
	for _, r := range rows {
		for j, v := range r {
			out[j] += v / float64(len(rows))
		}
	}
	return out
}
