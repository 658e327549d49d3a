package compresskv

// Float64 references for the policies, written plainly from docs/DESIGN.md,
// and the helpers the tests share.

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/compresskv/compresskv/kvcache"
)

// newRNG returns a generator seeded afresh for each run; the seed is logged
// so that a failure can be replayed.
func newRNG(t testing.TB) (*rand.Rand, uint64) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, 0x5eed)), seed
}

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

// decoded returns the stored keys of one head as float64 rows.
func decoded(c *kvcache.Host, l, g int) [][]float64 {
	k, _ := c.Rows(l, g)
	out := make([][]float64, k.N)
	var row []float32
	for i := range out {
		row = k.Row(i, row)
		out[i] = make([]float64, k.D)
		for j, v := range row {
			out[i][j] = float64(v)
		}
	}
	return out
}

// refWindowSums is docs/DESIGN.md ("Token selection" steps 1-4) in float64 for query
// head h: the attention of the last nq queries over the L keys, causally
// masked inside the window, summed over the queries; the prefix [0, L-w).
func refWindowSums(keys [][]float64, q []float32, nq, H, h, w int) []float64 {
	L, d := len(keys), len(keys[0])
	scale := 1 / math.Sqrt(float64(d))
	sum := make([]float64, L)
	logit := make([]float64, L)
	for i := 0; i < nq; i++ {
		qi := q[(i*H+h)*d : (i*H+h+1)*d]
		visible := L - nq + i // last row query i may see
		mx := math.Inf(-1)
		for j := 0; j <= visible; j++ {
			s := 0.0
			for x := 0; x < d; x++ {
				s += float64(qi[x]) * keys[j][x]
			}
			logit[j] = s * scale
			mx = math.Max(mx, logit[j])
		}
		z := 0.0
		for j := 0; j <= visible; j++ {
			z += math.Exp(logit[j] - mx)
		}
		for j := 0; j <= visible; j++ {
			sum[j] += math.Exp(logit[j]-mx) / z
		}
	}
	return sum[:L-w]
}

// refPool is PyTorch's avg_pool1d (count_include_pad) or max_pool1d with
// stride 1 and padding k/2.
func refPool(x []float64, k int, maxPool bool) []float64 {
	out := make([]float64, len(x))
	for i := range x {
		acc := 0.0
		if maxPool {
			acc = math.Inf(-1)
		}
		for j := i - k/2; j <= i+k/2; j++ {
			if j < 0 || j >= len(x) {
				continue
			}
			if maxPool {
				acc = math.Max(acc, x[j])
			} else {
				acc += x[j]
			}
		}
		if !maxPool {
			acc /= float64(k)
		}
		out[i] = acc
	}
	return out
}

func refMean(rows [][]float64) []float64 {
	out := make([]float64, len(rows[0]))
	for _, r := range rows {
		for j, v := range r {
			out[j] += v / float64(len(rows))
		}
	}
	return out
}

// refScores returns the float64 reference scores of method m for one layer:
// one row per KV head, or one shared row.
func refScores(m Method, c *kvcache.Host, l int, q []float32, H int, cfg Config) [][]float64 {
	s := c.Shape()
	L := c.Len(l, 0)
	nq := len(q) / (H * s.HeadDim)
	per := H / s.KVHeads
	head := func(h, n int, pool bool) []float64 {
		r := refWindowSums(decoded(c, l, h/per), q[(nq-n)*H*s.HeadDim:], n, H, h, cfg.Window)
		if pool && cfg.Kernel > 1 {
			r = refPool(r, cfg.Kernel, cfg.Pooling == 1)
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
		out = append(out, refMean(rows))
	case SnapKV, PyramidKV, AdaKV, H2O:
		for g := 0; g < s.KVHeads; g++ {
			var rows [][]float64
			for h := g * per; h < (g+1)*per; h++ {
				if m == H2O {
					rows = append(rows, head(h, L, false))
				} else {
					rows = append(rows, head(h, cfg.Window, true))
				}
			}
			out = append(out, refMean(rows))
		}
	}
	return out
}

// refTop returns the indices of the k largest scores, ascending, ties to
// the lower index, by a full sort.
func refTop(x []float64, k int) []int {
	idx := make([]int, len(x))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return x[idx[a]] > x[idx[b]] })
	idx = idx[:min(k, len(x))]
	sort.Ints(idx)
	return idx
}

// checkTop verifies that kept (ascending, unique) is a top-k of x up to tol:
// every kept score is at least every dropped score minus tol.
func checkTop(t *testing.T, what string, x []float64, kept []int, k int, tol float64) {
	t.Helper()
	if len(kept) != k {
		t.Fatalf("%s: kept %d positions, want %d", what, len(kept), k)
	}
	in := make([]bool, len(x))
	for i, j := range kept {
		if j < 0 || j >= len(x) || (i > 0 && j <= kept[i-1]) {
			t.Fatalf("%s: kept positions not ascending and unique in [0,%d): %v", what, len(x), kept)
		}
		in[j] = true
	}
	minIn, maxOut := math.Inf(1), math.Inf(-1)
	for j, v := range x {
		if in[j] {
			minIn = math.Min(minIn, v)
		} else {
			maxOut = math.Max(maxOut, v)
		}
	}
	if minIn < maxOut-tol {
		t.Fatalf("%s: kept a score of %g while dropping %g (tol %g)", what, minIn, maxOut, tol)
	}
}
