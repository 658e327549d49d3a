package compresskv

// The query-agnostic scorers (key norms, expected attention, accumulated
// attention) against float64 references written plainly from their doc
// comments, on random caches of odd sizes, one-shot and as Tracks followed
// through chunks and compactions.

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/internal/reftest"
	"github.com/compresskv/compresskv/kvcache"
)

// closeRows fails unless every score is within tol of the reference,
// relative to the row's largest magnitude.
func closeRows(t *testing.T, what string, got [][]float32, want [][]float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d rows, want %d", what, len(got), len(want))
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("%s: row %d has %d scores, want %d", what, i, len(got[i]), len(want[i]))
		}
		scale := 1e-30
		for _, v := range want[i] {
			scale = math.Max(scale, math.Abs(v))
		}
		for j, v := range want[i] {
			if d := math.Abs(float64(got[i][j]) - v); d > tol*scale || math.IsNaN(float64(got[i][j])) {
				t.Fatalf("%s: row %d score %d is %g, reference %g (row scale %g, tol %g)", what, i, j, got[i][j], v, scale, tol)
			}
		}
	}
}

// refCombine is combine in float64: SR heads pooled then averaged into one
// row, or every head averaged per KV head group then pooled.
func refCombine(rows [][]float64, shared bool, G, kernel int, avg bool) [][]float64 {
	if shared {
		for i := range rows {
			if kernel > 1 {
				rows[i] = reftest.Pool(rows[i], kernel, avg)
			}
		}
		return [][]float64{reftest.Mean(rows)}
	}
	per := len(rows) / G
	var out [][]float64
	for g := 0; g < G; g++ {
		m := reftest.Mean(rows[g*per : (g+1)*per])
		if kernel > 1 {
			m = reftest.Pool(m, kernel, avg)
		}
		out = append(out, m)
	}
	return out
}

// randomRotary returns a rotary embedding for heads of d values with random
// frequencies and layout.
func randomRotary(rng *rand.Rand, d int) *Rotary {
	r, err := NewRotary(math.Exp(2+8*rng.Float64()), d, rng.IntN(2) == 0)
	if err != nil {
		panic(err)
	}
	return r
}

// partialRotary returns a rotary embedding that turns only the first
// values of each head (as some models' partial RoPE does).
func partialRotary(rng *rand.Rand, d int) *Rotary {
	dims := 2 * (1 + rng.IntN(d/2-1))
	r, err := NewRotary(math.Exp(2+8*rng.Float64()), dims, rng.IntN(2) == 0)
	if err != nil {
		panic(err)
	}
	r.Dims = dims
	return r
}

// rotation returns the d x d matrix that turns a head by pos positions
// (the identity for a model without rotary embeddings).
func rotation(r *Rotary, d int, pos float64) [][]float64 {
	m := make([][]float64, d)
	for i := range m {
		m[i] = make([]float64, d)
	}
	for i := range m {
		m[i][i] = 1 // values a partial rotary embedding leaves as they are
	}
	if r == nil {
		return m
	}
	for j, f := range r.Freqs {
		a, b := j*2, j*2+1
		if !r.Interleaved {
			a, b = j, j+len(r.Freqs)
		}
		c, s := math.Cos(pos*f), math.Sin(pos*f)
		m[a][a], m[a][b], m[b][a], m[b][b] = c, -s, s, c
	}
	return m
}

func matVec(m [][]float64, x []float64) []float64 {
	out := make([]float64, len(m))
	for i, row := range m {
		for j, v := range row {
			out[i] += v * x[j]
		}
	}
	return out
}

func matMul(a, b [][]float64) [][]float64 {
	out := make([][]float64, len(a))
	for i := range a {
		out[i] = make([]float64, len(b[0]))
		for k := range b {
			for j := range b[0] {
				out[i][j] += a[i][k] * b[k][j]
			}
		}
	}
	return out
}

func transpose(a [][]float64) [][]float64 {
	out := make([][]float64, len(a[0]))
	for j := range out {
		out[j] = make([]float64, len(a))
		for i := range a {
			out[j][i] = a[i][j]
		}
	}
	return out
}

// eaRef is the expected-attention reference: the statistics of the queries
// qs (one per observed token, [H][d] each, at positions pos) of the scoring
// heads, turned by the mean rotation matrix of positions [seen,
// seen+future), scored over the stored rows of c.
type eaRef struct {
	s      ExpectedAttentionScorer
	heads  []int
	qs     [][]float32
	pos    []int
	H, W   int
	future int
	centre [][]float64 // with Centre: per KV head, the mean of every key seen past the sink
}

func (e eaRef) scores(c *kvcache.Host, layer int) [][]float64 {
	sh := c.Shape()
	d := sh.HeadDim
	seen := c.Seen(layer)
	rbar := make([][]float64, d)
	for i := range rbar {
		rbar[i] = make([]float64, d)
	}
	for t := 0; t < e.future; t++ {
		m := rotation(e.s.Rotary, d, float64(seen+t))
		for i := range m {
			for j := range m[i] {
				rbar[i][j] += m[i][j] / float64(e.future)
			}
		}
	}
	group := e.H / sh.KVHeads
	var rows [][]float64
	for _, h := range e.heads {
		// Queries with their rotation undone (R^T is R's inverse).
		var xs [][]float64
		for i, q := range e.qs {
			if e.pos[i] < e.s.Sink {
				continue
			}
			xs = append(xs, matVec(transpose(rotation(e.s.Rotary, d, float64(e.pos[i]))), reftest.F64(q[h*d:(h+1)*d])))
		}
		mu := make([]float64, d)
		cov := make([][]float64, d)
		for i := range cov {
			cov[i] = make([]float64, d)
		}
		for _, x := range xs {
			for a := range mu {
				mu[a] += x[a] / float64(len(xs))
			}
		}
		for _, x := range xs {
			for a := 0; a < d; a++ {
				for b := 0; b < d; b++ {
					cov[a][b] += (x[a] - mu[a]) * (x[b] - mu[b]) / float64(len(xs))
				}
			}
		}
		mu = matVec(rbar, mu)
		cov = matMul(matMul(rbar, cov), transpose(rbar))
		g := h / group
		k, v := reftest.Decoded(c, layer, g)
		pos := c.Positions(layer, g, nil)
		z := make([]float64, len(k))
		top := math.Inf(-1)
		for j := range k {
			if int(pos[j]) < e.s.Sink {
				continue
			}
			kj := slices.Clone(k[j])
			if e.s.Centre {
				for a := range kj {
					kj[a] -= e.centre[g][a]
				}
			}
			for a := 0; a < d; a++ {
				z[j] += mu[a] * kj[a] / math.Sqrt(float64(d))
				if !e.s.MeanOnly {
					for b := 0; b < d; b++ {
						z[j] += kj[a] * cov[a][b] * kj[b] / float64(2*d)
					}
				}
			}
			top = math.Max(top, z[j])
		}
		var sum float64
		for j := range z {
			if int(pos[j]) >= e.s.Sink {
				z[j] = math.Exp(z[j] - top)
				sum += z[j]
			}
		}
		row := make([]float64, len(k)-e.W)
		for j := range row {
			if int(pos[j]) < e.s.Sink {
				continue
			}
			row[j] = z[j] / sum
			if !e.s.NoValueNorm {
				var ss float64
				for _, x := range v[j] {
					ss += x * x
				}
				row[j] *= math.Sqrt(ss)
			}
		}
		rows = append(rows, row)
	}
	out := refCombine(rows, e.s.Profile != nil, sh.KVHeads, e.s.Kernel, e.s.Pooling == backend.AvgPool)
	for i, r := range out {
		g := i
		if len(out) == 1 {
			g = e.heads[0] / group
		}
		pos := c.Positions(layer, g, nil)
		top := math.Inf(-1)
		for j, x := range r {
			if int(pos[j]) >= e.s.Sink {
				top = math.Max(top, x)
			}
		}
		for j := range r {
			if int(pos[j]) < e.s.Sink && !math.IsInf(top, -1) {
				r[j] = top
			}
		}
	}
	return out
}

// queryRows splits q ([n][H][d]) into one slice per token.
func queryRows(q []float32, H, d int) [][]float32 {
	var out [][]float32
	for i := 0; i+H*d <= len(q); i += H * d {
		out = append(out, q[i:i+H*d])
	}
	return out
}

// agnosticScorers returns the scorers under test for a shape, with random
// settings, and the float64 reference of each for a one-shot compression of
// a prefilled layer (nil for the scorers whose reference is built apart).
func agnosticScorers(rng *rand.Rand, s kvcache.Shape, H int) []Scorer {
	prof := randomProfile(rng, s, H, true)
	k := 1 + rng.IntN(min(3, H))
	rot := randomRotary(rng, s.HeadDim)
	kernel := []int{1, 3, 5}[rng.IntN(3)]
	pooling := []backend.Pooling{backend.AvgPool, backend.MaxPool}[rng.IntN(2)]
	return []Scorer{
		KNormScorer{},
		ExpectedAttentionScorer{Rotary: rot, Sink: rng.IntN(5), Future: 1 + rng.IntN(40), Kernel: kernel, Pooling: pooling},
		ExpectedAttentionScorer{Profile: prof, K: k, Rotary: rot, Sink: 4, Kernel: kernel, Pooling: pooling},
		ExpectedAttentionScorer{Rotary: rot, MeanOnly: true, NoValueNorm: true, Kernel: 1},
		ExpectedAttentionScorer{Sink: 1, Kernel: 1}, // no rotary embedding
		ExpectedAttentionScorer{Rotary: partialRotary(rng, s.HeadDim), Sink: 2, Kernel: 1},
		ExpectedAttentionScorer{Rotary: rot, Sink: rng.IntN(5), Centre: true, Kernel: kernel, Pooling: pooling},
		ExpectedAttentionScorer{Profile: prof, K: k, Rotary: rot, Sink: 4, Centre: true, Kernel: 1},
		AccumulatedScorer{Kernel: kernel, Pooling: pooling},
		AccumulatedScorer{Profile: prof, K: k, Average: true, Kernel: kernel, Pooling: pooling},
		AccumulatedScorer{Average: true, Kernel: 1},
		SharedMax(KNormScorer{}),
		SharedMax(ExpectedAttentionScorer{Rotary: rot, Sink: 4, Kernel: kernel, Pooling: pooling}),
		SharedMax(AccumulatedScorer{Average: true, Kernel: kernel, Pooling: pooling}),
	}
}

// refAgnostic returns the float64 reference scores of a one-shot
// compression of layer by sc, q holding the queries of every prompt row.
func refAgnostic(sc Scorer, c *kvcache.Host, layer int, q []float32, H, W int) [][]float64 {
	sh := c.Shape()
	d, L := sh.HeadDim, c.Len(layer, 0)
	switch s := sc.(type) {
	case KNormScorer:
		var out [][]float64
		for g := 0; g < sh.KVHeads; g++ {
			k, _ := reftest.Decoded(c, layer, g)
			row := make([]float64, L-W)
			for j := range row {
				var ss float64
				for _, x := range k[j] {
					ss += x * x
				}
				row[j] = -math.Sqrt(ss)
			}
			out = append(out, row)
		}
		return out
	case ExpectedAttentionScorer:
		heads := allHeads(H)
		if s.Profile != nil {
			heads = s.Profile.HeadRanking[layer][:s.K]
		}
		pos := make([]int, L)
		for i := range pos {
			pos[i] = i
		}
		var centre [][]float64
		for g := 0; g < sh.KVHeads; g++ {
			k, _ := reftest.Decoded(c, layer, g)
			centre = append(centre, meanKeys(k[min(s.Sink, L):]))
		}
		return eaRef{s: s, heads: heads, qs: queryRows(q, H, d), pos: pos, H: H, W: W, future: s.future(), centre: centre}.scores(c, layer)
	case AccumulatedScorer:
		heads := allHeads(H)
		if s.Profile != nil {
			heads = s.Profile.HeadRanking[layer][:s.K]
		}
		var rows [][]float64
		for _, h := range heads {
			r := reftest.WindowSums(c, layer, q, L, H, h)[:L-W]
			if s.Average {
				for j := range r {
					r[j] /= float64(L - j) // the queries at or after row j
				}
			}
			rows = append(rows, r)
		}
		return refCombine(rows, s.Profile != nil, sh.KVHeads, s.Kernel, s.Pooling == backend.AvgPool)
	case sharedMax:
		return maxRows(refAgnostic(s.inner, c, layer, q, H, W))
	case sharedTracker:
		return maxRows(refAgnostic(s.inner, c, layer, q, H, W))
	}
	panic(fmt.Sprintf("no reference for %T", sc))
}

// maxRows is the element-wise maximum of the rows, as one row.
func maxRows(rows [][]float64) [][]float64 {
	out := slices.Clone(rows[0])
	for _, r := range rows[1:] {
		for j, v := range r {
			out[j] = math.Max(out[j], v)
		}
	}
	return [][]float64{out}
}

// meanKeys is the mean of the rows (zeros for none).
func meanKeys(k [][]float64) []float64 {
	if len(k) == 0 {
		return nil
	}
	out := make([]float64, len(k[0]))
	for _, row := range k {
		for a, v := range row {
			out[a] += v / float64(len(k))
		}
	}
	return out
}

// TestAgnosticScorersMatchReference: each query-agnostic scorer, run
// one-shot on a prefilled layer (every prompt query given), gives the
// float64 reference's scores, and a policy made of it with the top-k
// selector keeps a top set of the reference, on MHA, GQA and MQA shapes,
// every storage type, odd head dimensions and prompt lengths.
func TestAgnosticScorersMatchReference(t *testing.T) {
	rng, seed := newRNG(t)
	for _, sh := range shapes {
		for _, dt := range dtypes {
			s := kvcache.Shape{Layers: 2, KVHeads: sh.G, HeadDim: []int{6, 10, 14}[rng.IntN(3)]}
			L := 23 + rng.IntN(60)
			c, q := fillCache(t, rng, s, dt, L, sh.H, L)
			const W = 5
			for _, sc := range agnosticScorers(rng, s, sh.H) {
				name := fmt.Sprintf("%s/%v/%s L=%d d=%d (seed %d)", sh.name, dt, sc.Name(), L, s.HeadDim, seed)
				nq := sc.QueryRows(L, W)
				for l := 0; l < s.Layers; l++ {
					ql := q[l][(L-nq)*sh.H*s.HeadDim:]
					in := &ScoreInput{Backend: cpu.New(), Cache: c, Layer: l, Queries: ql, NQ: nq, QHeads: sh.H, Len: L, Window: W}
					got, err := sc.Score(context.Background(), in)
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					want := refAgnostic(sc, c, l, q[l], sh.H, W)
					closeRows(t, fmt.Sprintf("%s layer %d", name, l), got, want, 2e-5)
				}
				B := W + 1 + rng.IntN(L-W-2)
				p, err := Compose("t", Config{Budget: B, Window: W}, sc, TopKSelector{}, nil)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				qs := make([][]float32, s.Layers)
				for l := range qs {
					qs[l] = q[l][(L-nq)*sh.H*s.HeadDim:]
				}
				plan, err := p.Plan(context.Background(), c, qs, sh.H)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				for l := 0; l < s.Layers; l++ {
					want := refAgnostic(sc, c, l, q[l], sh.H, W)
					for g := 0; g < s.KVHeads; g++ {
						row := want[min(g, len(want)-1)]
						kept := plan.Keep[l][g]
						checkTop(t, fmt.Sprintf("%s layer %d head %d B=%d", name, l, g, B), row, kept[:len(kept)-W], B-W, 1e-5)
					}
				}
			}
		}
	}
}

// TestAccumulatedIsH2O: over every head, without pooling or averaging, the
// accumulated scorer keeps exactly what H2O keeps.
func TestAccumulatedIsH2O(t *testing.T) {
	rng, seed := newRNG(t)
	for _, sh := range shapes {
		s := kvcache.Shape{Layers: 2, KVHeads: sh.G, HeadDim: 8}
		L := 31 + rng.IntN(40)
		c, q := fillCache(t, rng, s, kvcache.Float32, L, sh.H, L)
		B := 9 + rng.IntN(L-12)
		h2o, err := New(H2O, Config{Budget: B})
		if err != nil {
			t.Fatal(err)
		}
		acc, err := Compose("acc", Config{Budget: B}, AccumulatedScorer{Kernel: 1}, TopKSelector{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		a, err := h2o.Plan(context.Background(), c, q, sh.H)
		if err != nil {
			t.Fatal(err)
		}
		b, err := acc.Plan(context.Background(), c, q, sh.H)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(a.Keep) != fmt.Sprint(b.Keep) {
			t.Fatalf("%s L=%d B=%d (seed %d): accumulated keeps %v, H2O %v", sh.name, L, B, seed, b.Keep, a.Keep)
		}
	}
}

// TestTracksFollowChunksAndCompactions: a Track fed chunk by chunk, with
// random compactions between chunks, scores the stored rows as a float64
// reference replaying the same history does: for the accumulated scorer,
// each query's attention over the rows stored when it ran, summed per row
// (and averaged over the queries that saw it); for expected attention, the
// statistics of every query seen.
func TestTracksFollowChunksAndCompactions(t *testing.T) {
	rng, seed := newRNG(t)
	for _, sh := range shapes {
		for _, dt := range []kvcache.DType{kvcache.Float32, kvcache.Float16} {
			s := kvcache.Shape{Layers: 2, KVHeads: sh.G, HeadDim: []int{6, 8, 10}[rng.IntN(3)]}
			const W = 4
			for _, sc := range agnosticScorers(rng, s, sh.H) {
				tk, ok := sc.(Tracker)
				if !ok {
					continue
				}
				name := fmt.Sprintf("%s/%v/%s d=%d (seed %d)", sh.name, dt, sc.Name(), s.HeadDim, seed)
				tr, err := tk.NewTrack(s, sh.H)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				c, _ := kvcache.NewHost(s, dt)
				n := 60 + rng.IntN(50)
				seq := newStreamSeq(rng, s, sh.H, n, dt)
				// The reference's history: per layer, head and position, the
				// attention summed and the queries that saw the row.
				sums := make([]map[[2]int]float64, s.Layers)
				seenBy := make([]map[[2]int]int, s.Layers)
				for l := range sums {
					sums[l], seenBy[l] = map[[2]int]float64{}, map[[2]int]int{}
				}
				var qs [][][]float32
				var qpos [][]int
				qs, qpos = make([][][]float32, s.Layers), make([][]int, s.Layers)
				// Every key appended past position 4 (the largest sink the
				// cases use is checked against each case's own below).
				keysSeen := make([][][][]float64, s.Layers)
				keyPos := make([][][]int, s.Layers)
				for l := range keysSeen {
					keysSeen[l], keyPos[l] = make([][][]float64, s.KVHeads), make([][]int, s.KVHeads)
				}
				checks := 0
				for a := 0; a < n; {
					b := min(n, a+1+rng.IntN(13))
					for l := 0; l < s.Layers; l++ {
						k, v, q := seq.tokens(l, a, b)
						if err := c.Append(l, k, v); err != nil {
							t.Fatal(err)
						}
						if err := tr.Observe(cpu.New(), c, l, a, q); err != nil {
							t.Fatalf("%s: %v", name, err)
						}
						for g := 0; g < s.KVHeads; g++ {
							keys, _ := reftest.Decoded(c, l, g)
							keysSeen[l][g] = append(keysSeen[l][g], keys[len(keys)-(b-a):]...)
							for i := a; i < b; i++ {
								keyPos[l][g] = append(keyPos[l][g], i)
							}
						}
						// Reference: each new query over the rows stored now,
						// causally.
						for i := a; i < b; i++ {
							qi := q[(i-a)*sh.H*s.HeadDim : (i-a+1)*sh.H*s.HeadDim]
							qs[l] = append(qs[l], qi)
							qpos[l] = append(qpos[l], i)
							for h := 0; h < sh.H; h++ {
								g := h / (sh.H / s.KVHeads)
								keys, _ := reftest.Decoded(c, l, g)
								vis := len(keys) - (b - 1 - i)
								p := reftest.Softmax(qi[h*s.HeadDim:(h+1)*s.HeadDim], keys, vis)
								pos := c.Positions(l, g, nil)
								for j := 0; j < vis; j++ {
									sums[l][[2]int{h, int(pos[j])}] += p[j]
									if h%(sh.H/s.KVHeads) == 0 {
										seenBy[l][[2]int{g, int(pos[j])}]++
									}
								}
							}
						}
					}
					a = b
					// Score and check, then maybe compact each layer.
					for l := 0; l < s.Layers; l++ {
						if c.Len(l, 0) <= W+2 {
							continue
						}
						in := &ScoreInput{Backend: cpu.New(), Cache: c, Layer: l, QHeads: sh.H, Len: c.Len(l, 0), Window: W, Track: tr}
						got, err := sc.Score(context.Background(), in)
						if err != nil {
							t.Fatalf("%s: %v", name, err)
						}
						var want [][]float64
						inner, shared := sc, false
						if sm, ok := sc.(sharedTracker); ok {
							inner, shared = sm.inner, true
						}
						switch x := inner.(type) {
						case ExpectedAttentionScorer:
							heads := allHeads(sh.H)
							if x.Profile != nil {
								heads = x.Profile.HeadRanking[l][:x.K]
							}
							var centre [][]float64
							for g := 0; g < s.KVHeads; g++ {
								var past [][]float64
								for i, at := range keyPos[l][g] {
									if at >= x.Sink {
										past = append(past, keysSeen[l][g][i])
									}
								}
								centre = append(centre, meanKeys(past))
							}
							want = eaRef{s: x, heads: heads, qs: qs[l], pos: qpos[l], H: sh.H, W: W, future: x.future(), centre: centre}.scores(c, l)
						case AccumulatedScorer:
							heads := allHeads(sh.H)
							if x.Profile != nil {
								heads = x.Profile.HeadRanking[l][:x.K]
							}
							var rows [][]float64
							for _, h := range heads {
								g := h / (sh.H / s.KVHeads)
								pos := c.Positions(l, g, nil)
								row := make([]float64, len(pos)-W)
								for j := range row {
									row[j] = sums[l][[2]int{h, int(pos[j])}]
									if x.Average {
										row[j] /= float64(seenBy[l][[2]int{g, int(pos[j])}])
									}
								}
								rows = append(rows, row)
							}
							want = refCombine(rows, x.Profile != nil, s.KVHeads, x.Kernel, x.Pooling == backend.AvgPool)
						}
						if shared {
							want = maxRows(want)
						}
						closeRows(t, fmt.Sprintf("%s layer %d after %d tokens", name, l, a), got, want, 2e-5)
						checks++
						if rng.IntN(2) == 0 {
							// Keep a random subset of the rows and the window,
							// the same for every head.
							L := c.Len(l, 0)
							keep := append(rng.Perm(L - W)[:rng.IntN(L-W)], seqInts(L-W, L)...)
							slices.Sort(keep)
							keeps := make([][]int, s.KVHeads)
							for g := range keeps {
								keeps[g] = keep
							}
							if err := c.Compact(l, keeps); err != nil {
								t.Fatal(err)
							}
							tr.Compact(l, keeps)
						}
					}
				}
				if checks < 5 {
					t.Fatalf("%s: only %d checks", name, checks)
				}
				if tr.Bytes() <= 0 {
					t.Fatalf("%s: a track that holds state reports %d bytes", name, tr.Bytes())
				}
				tr.Release(0)
				if _, err := sc.Score(context.Background(), &ScoreInput{Backend: cpu.New(), Cache: c, Layer: 0, QHeads: sh.H, Len: c.Len(0, 0), Window: W, Track: tr}); err == nil {
					t.Fatalf("%s: a released layer scored", name)
				}
			}
		}
	}
}

func seqInts(a, b int) []int {
	out := make([]int, 0, b-a)
	for i := a; i < b; i++ {
		out = append(out, i)
	}
	return out
}

// TestRotaryTurnsBack: turning by a position and back is the identity, and
// the pair layouts rotate the dimensions the rotation matrix names.
func TestRotaryTurnsBack(t *testing.T) {
	rng, seed := newRNG(t)
	for trial := 0; trial < 20; trial++ {
		d := 2 * (2 + rng.IntN(8))
		r := randomRotary(rng, d)
		if trial%2 == 1 {
			r = partialRotary(rng, d)
		}
		x := reftest.F64(reftest.Normal(rng, d, 1))
		pos := float64(rng.IntN(5000))
		y := slices.Clone(x)
		r.turn(y, pos)
		want := matVec(rotation(r, d, pos), x)
		for i := range y {
			if math.Abs(y[i]-want[i]) > 1e-9 {
				t.Fatalf("d=%d interleaved=%v (seed %d): turned %v, matrix gives %v", d, r.Interleaved, seed, y, want)
			}
		}
		r.turn(y, -pos)
		for i := range y {
			if math.Abs(y[i]-x[i]) > 1e-9 {
				t.Fatalf("d=%d (seed %d): turned back %v, started from %v", d, seed, y, x)
			}
		}
	}
	for _, bad := range []struct {
		theta float64
		d     int
	}{{10000, 7}, {10000, 0}, {1, 8}, {math.NaN(), 8}, {math.Inf(1), 8}} {
		if _, err := NewRotary(bad.theta, bad.d, true); err == nil {
			t.Fatalf("NewRotary(%v, %d) accepted", bad.theta, bad.d)
		}
	}
}

// refRanks returns each position's rank by score (0 the best, ties to the
// lower position) as a share of the positions.
func refRanks(x []float32) []float64 {
	idx := reftest.TopK(x, len(x)) // ascending positions; rank them by score
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case x[a] > x[b]:
			return -1
		case x[a] < x[b]:
			return 1
		}
		return a - b
	})
	out := make([]float64, len(x))
	for r, i := range idx {
		out[i] = float64(r) / float64(len(x))
	}
	return out
}

// TestEither: Either scores each position by the better of its two ranks
// under its parts (whose own scores are checked against float64 references
// above), one-shot and with tracks; its top-k holds the top k/2 of each
// part; rows of different shapes are made one shared row first.
func TestEither(t *testing.T) {
	rng, seed := newRNG(t)
	for _, sh := range shapes {
		s := kvcache.Shape{Layers: 2, KVHeads: sh.G, HeadDim: 8}
		L := 40 + rng.IntN(40)
		const W = 4
		c, q := fillCache(t, rng, s, kvcache.Float16, L, sh.H, L)
		prof := randomProfile(rng, s, sh.H, false)
		rot := randomRotary(rng, s.HeadDim)
		for _, pair := range [][2]Scorer{
			{KNormScorer{}, AccumulatedScorer{Kernel: 3}},
			{SRScorer{Profile: prof, K: 1, Kernel: 3}, SharedMax(KNormScorer{})},
			{SnapKVScorer{Kernel: 1}, SharedMax(ExpectedAttentionScorer{Rotary: rot, Kernel: 1})},
		} {
			e := Either(pair[0], pair[1])
			name := fmt.Sprintf("%s/%s (seed %d)", sh.name, e.Name(), seed)
			nq := e.QueryRows(L, W)
			for l := 0; l < s.Layers; l++ {
				in := func(sc Scorer) *ScoreInput {
					n := sc.QueryRows(L, W)
					return &ScoreInput{Backend: cpu.New(), Cache: c, Layer: l, Queries: q[l][(L-n)*sh.H*s.HeadDim:], NQ: n, QHeads: sh.H, Len: L, Window: W}
				}
				got, err := e.Score(context.Background(), &ScoreInput{Backend: cpu.New(), Cache: c, Layer: l, Queries: q[l][(L-nq)*sh.H*s.HeadDim:], NQ: nq, QHeads: sh.H, Len: L, Window: W})
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				a, err := pair[0].Score(context.Background(), in(pair[0]))
				if err != nil {
					t.Fatal(err)
				}
				b, err := pair[1].Score(context.Background(), in(pair[1]))
				if err != nil {
					t.Fatal(err)
				}
				if len(a) != len(b) {
					a, b = maxRows32(a), maxRows32(b)
				}
				if len(got) != len(a) {
					t.Fatalf("%s: %d rows, want %d", name, len(got), len(a))
				}
				for i := range a {
					ra, rb := refRanks(a[i]), refRanks(b[i])
					for j := range ra {
						if want := -math.Min(ra[j], rb[j]); math.Abs(float64(got[i][j])-want) > 1e-6 {
							t.Fatalf("%s layer %d row %d position %d: %v, want %v", name, l, i, j, got[i][j], want)
						}
					}
					k := 2 + rng.IntN(len(ra)-2)
					top := reftest.TopK(got[i], k)
					for _, part := range [][]float32{a[i], b[i]} {
						for _, j := range reftest.TopK(part, k/2) {
							if !slices.Contains(top, j) {
								t.Fatalf("%s layer %d row %d: the top %d keeps %v, not position %d of a part's top %d", name, l, i, k, top, j, k/2)
							}
						}
					}
				}
			}
		}
	}
}

// maxRows32 makes rows one row by their element-wise maximum (a single row
// is left as it is).
func maxRows32(rows [][]float32) [][]float32 {
	out := slices.Clone(rows[0])
	for _, r := range rows[1:] {
		for j, v := range r {
			out[j] = max(out[j], v)
		}
	}
	return [][]float32{out}
}
