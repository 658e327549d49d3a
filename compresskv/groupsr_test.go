package compresskv

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/compresskv/compresskv/alloc"
	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/internal/reftest"
	"github.com/compresskv/compresskv/kvcache"
)

// refGroupHeads is the float64 reference's choice of SR heads per KV head:
// walk the layer's ranking and give each head to its group while the group
// has fewer than ceil(k/G) (at most H/G).
func refGroupHeads(rank []int, k, H, G int) [][]int {
	per := H / G
	n := min(max((k+G-1)/G, 1), per)
	out := make([][]int, G)
	for _, h := range rank {
		if g := h / per; len(out[g]) < n {
			out[g] = append(out[g], h)
		}
	}
	return out
}

// refGroupScores is the float64 reference of Ada-CompressKV's scores for one
// layer: per KV head, each of its group's SR heads' window sums over the
// prefix, pooled, then their mean.
func refGroupScores(c *kvcache.Host, l int, q []float32, H int, cfg Config) [][]float64 {
	s := c.Shape()
	L := c.Len(l, 0)
	var out [][]float64
	for _, hs := range refGroupHeads(cfg.Profile.HeadRanking[l], cfg.SRHeads, H, s.KVHeads) {
		var rows [][]float64
		for _, h := range hs {
			r := reftest.WindowSums(c, l, q, cfg.Window, H, h)[:L-cfg.Window]
			if cfg.Kernel > 1 {
				r = reftest.Pool(r, cfg.Kernel, cfg.Pooling == backend.AvgPool)
			}
			rows = append(rows, r)
		}
		out = append(out, reftest.Mean(rows))
	}
	return out
}

// refAdaCaps returns the range of Ada-KV's per-head capacities that
// float64 scores allow: one top-k of k = G*c over all heads gives head g n_g
// winners and the capacity round(n_g(1-f) + floor(c f)), clipped to the
// prefix. Scores within a relative rel of the k-th best may fall either
// side of the cut in float32: of those near the cut, as many win as the
// clear winners leave, so n_g lies between its clear winners plus the
// fewest and the most of its near ones that can be among them.
func refAdaCaps(scores [][]float64, c int, f, rel float64) (lo, hi []int) {
	var all []float64
	for _, row := range scores {
		all = append(all, row...)
	}
	slices.Sort(all)
	slices.Reverse(all)
	k := min(len(scores)*c, len(all))
	cut := all[k-1]
	tol := rel*math.Abs(cut) + 1e-12
	above, near := make([]int, len(scores)), make([]int, len(scores))
	need, nearAll := k, 0
	for g, row := range scores {
		for _, v := range row {
			switch {
			case v > cut+tol:
				above[g]++
				need--
			case v >= cut-tol:
				near[g]++
				nearAll++
			}
		}
	}
	capOf := func(n int) int { return min(refAdaCapacity(n, c, f), len(scores[0])) }
	for g := range scores {
		lo = append(lo, capOf(above[g]+max(0, need-(nearAll-near[g]))))
		hi = append(hi, capOf(above[g]+min(near[g], need)))
	}
	return lo, hi
}

// TestAdaCompressKVMatchesReference compares Ada-CompressKV's layer budgets,
// per-head capacities and kept sets with a float64 reference on fresh random
// inputs: GQA, MHA and MQA shapes, every storage type, both poolings, odd
// kernels, 1..H SR heads, error-aware budgets with a floor below the budget
// so that layers differ.
func TestAdaCompressKVMatchesReference(t *testing.T) {
	rng, seed := newRNG(t)
	const d, W, layers = 16, 8, 3
	checked, tight := 0, 0
	for _, sh := range shapes {
		for _, dt := range dtypes {
			for _, pooling := range []backend.Pooling{backend.AvgPool, backend.MaxPool} {
				L := 60 + rng.IntN(140)
				s := kvcache.Shape{Layers: layers, KVHeads: sh.G, HeadDim: d}
				c, q := fillCache(t, rng, s, dt, L, sh.H, W)
				prof := randomProfile(rng, s, sh.H, true)
				B := W + 4 + rng.IntN(L/3)
				cfg := Config{Budget: B, Window: W, Profile: prof, SRHeads: 1 + rng.IntN(sh.H), Pooling: pooling,
					Kernel: []int{1, 3, 5, 9}[rng.IntN(4)], LayerFloor: W + 1, FloorRatio: []float64{0.2, 0.5, -1}[rng.IntN(3)]}
				name := fmt.Sprintf("seed %d %s/%v/%v/L=%d/B=%d/K=%d/k=%d/f=%v", seed, sh.name, dt, pooling, L, B, cfg.Kernel, cfg.SRHeads, cfg.FloorRatio)
				p, err := New(AdaCompressKV, cfg)
				if err != nil {
					t.Fatal(name, err)
				}
				cfg = p.Config()
				plan, err := p.Plan(context.Background(), c, q, sh.H)
				if err != nil {
					t.Fatal(name, err)
				}
				// Layer budgets: the error-aware allocation, summing to the total.
				want, err := alloc.ErrorAware(prof.LayerWeights, B, W+1, 3*B)
				if err != nil {
					t.Fatal(name, err)
				}
				if !slices.Equal(plan.Budgets, want) {
					t.Fatalf("%s: budgets %v, want %v", name, plan.Budgets, want)
				}
				sum := 0
				for _, b := range plan.Budgets {
					sum += b
				}
				if sum != layers*B {
					t.Fatalf("%s: budgets sum to %d, want %d", name, sum, layers*B)
				}
				for l := 0; l < layers; l++ {
					Bl := plan.Budgets[l]
					if L <= Bl {
						if plan.Keep[l] != nil {
							t.Fatalf("%s: layer %d: budget %d >= L but rows were selected", name, l, Bl)
						}
						continue
					}
					ref := refGroupScores(c, l, q[l], sh.H, cfg)
					lo, hi := refAdaCaps(ref, Bl-W, cfg.FloorRatio, 1e-4)
					if slices.Equal(lo, hi) {
						tight++
					}
					kept := 0
					for g := 0; g < sh.G; g++ {
						k := plan.Keep[l][g]
						n := len(k) - W
						if n < lo[g] || n > hi[g] {
							t.Fatalf("%s: layer %d head %d: capacity %d, reference allows %d..%d", name, l, g, n, lo[g], hi[g])
						}
						checkTop(t, fmt.Sprintf("%s layer %d head %d", name, l, g), ref[g], k[:n], n, 1e-5*W)
						kept += n
					}
					// Capacities sum to G*(B_l-W) up to each head's rounding.
					if c := sh.G * (Bl - W); kept < c-sh.G || kept > c+sh.G {
						t.Fatalf("%s: layer %d: heads keep %d selected rows, want %d +- %d", name, l, kept, c, sh.G)
					}
					checked++
				}
			}
		}
	}
	// Most cuts are not near ties: the capacities are then exact.
	if tight < checked/2 {
		t.Fatalf("seed %d: capacities exact in only %d of %d layers", seed, tight, checked)
	}
	t.Logf("seed %d: %d layers compared, capacities exact in %d", seed, checked, tight)
}

// TestGroupSRHeads: each KV head is scored by the best-ranked heads of its
// own group, ceil(k/G) of them, at most the group.
func TestGroupSRHeads(t *testing.T) {
	// The ranking of layer 0 of testdata/retrieval.profile.json.
	prof := &Profile{Version: ProfileVersion, Model: ModelInfo{Layers: 1, QueryHeads: 8, KVHeads: 2, HeadDim: 4},
		HeadRanking: [][]int{{7, 4, 0, 1, 3, 5, 6, 2}}}
	for _, tc := range []struct {
		k    int
		want [][]int
	}{
		{1, [][]int{{0}, {7}}},
		{2, [][]int{{0}, {7}}},
		{3, [][]int{{0, 1}, {7, 4}}},
		{4, [][]int{{0, 1}, {7, 4}}},
		{6, [][]int{{0, 1, 3}, {7, 4, 5}}},
		{8, [][]int{{0, 1, 3, 2}, {7, 4, 5, 6}}},
	} {
		got, err := GroupSRScorer{Profile: prof, K: tc.k}.GroupHeads(0, 8, 2)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("k=%d: group heads %v, want %v", tc.k, got, tc.want)
		}
		if ref := refGroupHeads(prof.HeadRanking[0], tc.k, 8, 2); fmt.Sprint(ref) != fmt.Sprint(got) {
			t.Errorf("k=%d: reference %v, scorer %v", tc.k, ref, got)
		}
	}
	if _, err := (GroupSRScorer{Profile: prof, K: 2}).GroupHeads(1, 8, 2); err == nil {
		t.Error("a layer the profile does not rank was accepted")
	}
}

// TestGroupSRReadsOnlyItsGroup: changing the queries of one group's heads
// changes that KV head's scores and leaves every other KV head's bit for bit.
func TestGroupSRReadsOnlyItsGroup(t *testing.T) {
	rng, seed := newRNG(t)
	const L, W, H, G, d = 90, 8, 8, 4, 16
	s := kvcache.Shape{Layers: 1, KVHeads: G, HeadDim: d}
	c, q := fillCache(t, rng, s, kvcache.Float32, L, H, W)
	prof := randomProfile(rng, s, H, false)
	sc := GroupSRScorer{Profile: prof, K: H, Kernel: 5, Pooling: backend.AvgPool}
	score := func(q []float32) [][]float32 {
		in := &ScoreInput{Backend: cpu.New(), Cache: c, Layer: 0, Queries: q, NQ: W, QHeads: H, Len: L, Window: W}
		out, err := sc.Score(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	base := score(q[0])
	for g := 0; g < G; g++ {
		q2 := slices.Clone(q[0])
		for i := 0; i < W; i++ {
			for h := g * H / G; h < (g+1)*H/G; h++ {
				for x := 0; x < d; x++ {
					q2[(i*H+h)*d+x] *= -2
				}
			}
		}
		got := score(q2)
		for o := 0; o < G; o++ {
			same := slices.Equal(got[o], base[o])
			if (o == g) == same {
				t.Fatalf("seed %d: queries of group %d changed; KV head %d's scores changed: %v", seed, g, o, !same)
			}
		}
	}
}

// TestAdaCompressKVWholeGroupIsAdaKV: with every head of each group as an SR
// head, average pooling and uniform budgets, the scores are SnapKV's (pool
// then mean equals mean then pool) and the kept sets are Ada-KV's.
func TestAdaCompressKVWholeGroupIsAdaKV(t *testing.T) {
	rng, seed := newRNG(t)
	const L, W, H, G, d, B = 150, 8, 8, 2, 16, 40
	s := kvcache.Shape{Layers: 2, KVHeads: G, HeadDim: d}
	c, q := fillCache(t, rng, s, kvcache.Float32, L, H, W)
	prof := randomProfile(rng, s, H, false) // no layer weights: uniform budgets
	ada, err := New(AdaKV, Config{Budget: B, Window: W, Kernel: 7})
	if err != nil {
		t.Fatal(err)
	}
	ours, err := New(AdaCompressKV, Config{Budget: B, Window: W, Kernel: 7, Profile: prof, SRHeads: H})
	if err != nil {
		t.Fatal(err)
	}
	a, err := ada.Plan(context.Background(), c, q, H)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ours.Plan(context.Background(), c, q, H)
	if err != nil {
		t.Fatal(err)
	}
	if b.Note == "" {
		t.Error("no note for a profile without layer weights")
	}
	if fmt.Sprint(a.Keep) != fmt.Sprint(b.Keep) {
		// Float32 sums in another order may swap near-ties only: both sets
		// must then be top sets of the same float64 scores.
		for l := range a.Keep {
			want := refScores(AdaKV, c, l, q[l], H, ada.Config())
			got := refGroupScores(c, l, q[l], H, ours.Config())
			for g := range want {
				for j := range want[g] {
					if math.Abs(want[g][j]-got[g][j]) > 1e-9 {
						t.Fatalf("seed %d: layer %d head %d position %d: reference scores differ: %g %g", seed, l, g, j, want[g][j], got[g][j])
					}
				}
				ka, kb := a.Keep[l][g], b.Keep[l][g]
				if len(ka) != len(kb) || !isTop(want[g], ka[:len(ka)-W], 1e-5) || !isTop(want[g], kb[:len(kb)-W], 1e-5) {
					t.Fatalf("seed %d: layer %d head %d: Ada-KV keeps %v, Ada-CompressKV %v", seed, l, g, ka, kb)
				}
			}
		}
		t.Logf("seed %d: kept sets differ at a near tie only", seed)
	}
}
