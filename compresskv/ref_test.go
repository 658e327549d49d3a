package compresskv

// Float64 reference scores for the policies, built from package reftest,
// and the helpers the tests share.

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/internal/reftest"
	"github.com/compresskv/compresskv/kvcache"
)

var newRNG = reftest.Rand

// fillCache appends L random tokens to every layer of a new cache and returns
// it with one query block per layer of nq rows ([nq][H][d]).
func fillCache(t testing.TB, rng *rand.Rand, s kvcache.Shape, dt kvcache.DType, L, H, nq int) (*kvcache.Host, [][]float32) {
	t.Helper()
	c, err := kvcache.NewHost(s, dt)
	if err != nil {
		t.Fatal(err)
	}
	n := L * s.KVHeads * s.HeadDim
	q := make([][]float32, s.Layers)
	for l := 0; l < s.Layers; l++ {
		k, v := make([]float32, n), make([]float32, n)
		for i := range k {
			k[i] = float32(rng.NormFloat64())
			v[i] = float32(rng.NormFloat64())
		}
		if err := c.Append(l, k, v); err != nil {
			t.Fatal(err)
		}
		q[l] = make([]float32, nq*H*s.HeadDim)
		for i := range q[l] {
			q[l][i] = float32(rng.NormFloat64() * 1.5)
		}
	}
	return c, q
}

// randomProfile returns a valid profile for the shape with random rankings
// and layer weights.
func randomProfile(rng *rand.Rand, s kvcache.Shape, H int, weights bool) *Profile {
	p := &Profile{Version: ProfileVersion, Model: ModelInfo{Name: "random", Layers: s.Layers, QueryHeads: H, KVHeads: s.KVHeads, HeadDim: s.HeadDim}}
	for l := 0; l < s.Layers; l++ {
		p.HeadRanking = append(p.HeadRanking, rng.Perm(H))
	}
	if weights {
		for l := 0; l < s.Layers; l++ {
			p.LayerWeights = append(p.LayerWeights, rng.Float64()+0.05)
		}
	}
	return p
}

// refScores returns the float64 reference scores of method m for one layer:
// one row per KV head, or one shared row.
func refScores(m Method, c *kvcache.Host, l int, q []float32, H int, cfg Config) [][]float64 {
	s := c.Shape()
	L := c.Len(l, 0)
	nq := len(q) / (H * s.HeadDim)
	per := H / s.KVHeads
	head := func(h, n int, pool bool) []float64 {
		r := reftest.WindowSums(c, l, q[(nq-n)*H*s.HeadDim:], n, H, h)[:L-cfg.Window]
		if pool && cfg.Kernel > 1 {
			r = reftest.Pool(r, cfg.Kernel, cfg.Pooling == backend.AvgPool)
		}
		return r
	}
	var out [][]float64
	switch m {
	case CompressKV:
		var rows [][]float64
		for _, h := range cfg.Profile.HeadRanking[l][:cfg.SRHeads] {
			rows = append(rows, head(h, cfg.Window, true))
		}
		out = append(out, reftest.Mean(rows))
	case SnapKV, PyramidKV, AdaKV, H2O:
		// ALGORITHM.md section 4: the group's window sums are averaged,
		// then the mean is pooled (H2O does not pool).
		for g := 0; g < s.KVHeads; g++ {
			var rows [][]float64
			for h := g * per; h < (g+1)*per; h++ {
				if m == H2O {
					rows = append(rows, head(h, L, false))
				} else {
					rows = append(rows, head(h, cfg.Window, false))
				}
			}
			mean := reftest.Mean(rows)
			if m != H2O && cfg.Kernel > 1 {
				mean = reftest.Pool(mean, cfg.Kernel, cfg.Pooling == backend.AvgPool)
			}
			out = append(out, mean)
		}
	}
	return out
}

// lastRows returns, per layer, the last p.QueryRows(L) rows of q (each
// [n][H][d] with n >= that), the exact query block the policy reads.
func lastRows(p *Policy, q [][]float32, L, H, d int) [][]float32 {
	n := p.QueryRows(L)
	out := make([][]float32, len(q))
	for l, ql := range q {
		out[l] = ql[len(ql)-n*H*d:]
	}
	return out
}

// checkTop verifies that kept (ascending, unique) is a top-k of x up to tol:
// every kept score is at least every dropped score minus tol.
func checkTop(t *testing.T, what string, x []float64, kept []int, k int, tol float64) {
	t.Helper()
	if len(kept) != k {
		t.Fatalf("%s: kept %d positions, want %d", what, len(kept), k)
	}
	for i, j := range kept {
		if j < 0 || j >= len(x) || (i > 0 && j <= kept[i-1]) {
			t.Fatalf("%s: kept positions not ascending and unique in [0,%d): %v", what, len(x), kept)
		}
	}
	minIn, maxOut := bounds(x, kept)
	if minIn < maxOut-tol {
		t.Fatalf("%s: kept a score of %g while dropping %g (tol %g)", what, minIn, maxOut, tol)
	}
}

// bounds returns the smallest kept score and the largest dropped one.
func bounds(x []float64, kept []int) (minIn, maxOut float64) {
	in := make([]bool, len(x))
	for _, j := range kept {
		in[j] = true
	}
	minIn, maxOut = math.Inf(1), math.Inf(-1)
	for j, v := range x {
		if in[j] {
			minIn = math.Min(minIn, v)
		} else {
			maxOut = math.Max(maxOut, v)
		}
	}
	return minIn, maxOut
}

// refAdaCapacity is Ada-KV's capacity as the reference computes it in
// PyTorch: floor(c*f) is Python arithmetic (float64); the winner count, an
// integer tensor, times the scalar 1-f is a float32 tensor, the floor is
// added in float32 and torch.round rounds half to even.
func refAdaCapacity(n, c int, f float64) int {
	prod := float32(n) * float32(1-f)
	sum := prod + float32(int(math.Floor(float64(c)*f)))
	return int(math.RoundToEven(float64(sum)))
}
