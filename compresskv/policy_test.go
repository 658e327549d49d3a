package compresskv

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/alloc"
	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/internal/reftest"
	"github.com/compresskv/compresskv/kvcache"
)

type shapeCase struct {
	name string
	G, H int
}

var shapes = []shapeCase{{"MHA", 4, 4}, {"GQA", 2, 8}, {"MQA", 1, 4}}

var dtypes = []kvcache.DType{kvcache.Float32, kvcache.Float16, kvcache.BFloat16}

// snapshot copies every head's positions and decoded rows.
type snapshot struct {
	pos  [][][]int32
	k, v [][][]float32
	seen []int
}

func snap(c *kvcache.Host) snapshot {
	s := c.Shape()
	var out snapshot
	for l := 0; l < s.Layers; l++ {
		var pl [][]int32
		var kl, vl [][]float32
		for g := 0; g < s.KVHeads; g++ {
			pl = append(pl, c.Positions(l, g, nil))
			k, v := c.Rows(l, g)
			kk := make([]float32, 0, k.N*k.D)
			vv := make([]float32, 0, k.N*k.D)
			var row []float32
			for i := 0; i < k.N; i++ {
				kk = append(kk, k.Row(i, row)...)
				vv = append(vv, v.Row(i, row)...)
			}
			kl, vl = append(kl, kk), append(vl, vv)
		}
		out.pos, out.k, out.v = append(out.pos, pl), append(out.k, kl), append(out.v, vl)
		out.seen = append(out.seen, c.Seen(l))
	}
	return out
}

func sameSnapshot(a, b snapshot) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

// TestPolicyInvariants runs every method over MHA, GQA and MQA shapes, every
// storage type and budgets from the window to beyond the prompt, and checks
// the invariants of docs/DESIGN.md ("Invariants the tests check") on every
// output.
func TestPolicyInvariants(t *testing.T) {
	rng, seed := newRNG(t)
	const layers, d, L, W = 3, 16, 40, 8
	for _, sh := range shapes {
		for _, dt := range dtypes {
			s := kvcache.Shape{Layers: layers, KVHeads: sh.G, HeadDim: d}
			base, q := fillCache(t, rng, s, dt, L, sh.H, L)
			prof := randomProfile(rng, s, sh.H, true)
			for _, m := range Methods {
				for _, B := range []int{W, 9, 12, 20, 39, 40, 41, 64} {
					name := fmt.Sprintf("%s/%v/%s/B=%d", sh.name, dt, m, B)
					cfg := Config{Budget: B, Window: W, Profile: prof, SRHeads: min(4, sh.H)}
					p, err := New(m, cfg)
					if err != nil {
						t.Fatalf("%s: seed %d: %v", name, seed, err)
					}
					c := base.Clone()
					before := snap(c)
					res, err := p.Compress(context.Background(), c, lastRows(p, q, L, sh.H, d), sh.H)
					if err != nil {
						t.Fatalf("%s: seed %d: %v", name, seed, err)
					}
					checkInvariants(t, name, m, p, res, before, c, L)
				}
			}
		}
	}
}

func checkInvariants(t *testing.T, name string, m Method, p *Policy, res *Result, before snapshot, c *kvcache.Host, L int) {
	t.Helper()
	s := c.Shape()
	W := p.Config().Window
	B := p.Config().Budget
	after := snap(c)
	if m == Full || L <= minBudget(res.Budgets, B) {
		if !sameSnapshot(before, after) {
			t.Fatalf("%s: a budget >= the prompt must keep everything byte for byte", name)
		}
	}
	_, headwise := p.selector.(AdaKVSelector) // Ada-KV, Ada-CompressKV
	total := 0
	for l := 0; l < s.Layers; l++ {
		Bl := B
		if res.Budgets != nil {
			Bl = res.Budgets[l]
		}
		layerKept := 0
		for g := 0; g < s.KVHeads; g++ {
			pos := after.pos[l][g]
			layerKept += len(pos)
			// Sorted, unique, inside the prompt; the window is kept.
			for i, x := range pos {
				if x < 0 || int(x) >= L || (i > 0 && x <= pos[i-1]) {
					t.Fatalf("%s: layer %d head %d: positions not sorted, unique, in the prompt: %v", name, l, g, pos)
				}
			}
			if len(pos) < W || !slices.Equal(pos[len(pos)-W:], window(L, W)) {
				t.Fatalf("%s: layer %d head %d: window not kept: %v", name, l, g, pos)
			}
			// Gathered rows equal the original rows at those positions.
			d := s.HeadDim
			for i, x := range pos {
				if !slices.Equal(after.k[l][g][i*d:(i+1)*d], before.k[l][g][int(x)*d:(int(x)+1)*d]) ||
					!slices.Equal(after.v[l][g][i*d:(i+1)*d], before.v[l][g][int(x)*d:(int(x)+1)*d]) {
					t.Fatalf("%s: layer %d head %d: row %d is not the original row of position %d", name, l, g, i, x)
				}
			}
			if !headwise && m != Full && len(pos) != min(Bl, L) {
				t.Fatalf("%s: layer %d head %d keeps %d rows, budget %d", name, l, g, len(pos), Bl)
			}
			if m == CompressKV || m == StreamingLLM {
				if !slices.Equal(pos, after.pos[l][0]) {
					t.Fatalf("%s: layer %d: KV heads keep different positions", name, l)
				}
			}
		}
		if headwise && L > Bl {
			// Head-wise budgets: capacities sum to about G*(B_l-W) selected
			// tokens (rounding of each head's capacity).
			if sel := layerKept - s.KVHeads*W; sel > s.KVHeads*(Bl-W)+s.KVHeads || sel < s.KVHeads*(Bl-W)-2*s.KVHeads {
				t.Fatalf("%s: layer %d: %s keeps %d selected rows, want about %d", name, l, m, sel, s.KVHeads*(Bl-W))
			}
		}
		total += layerKept / s.KVHeads
		// Decode after compression continues positions from L.
		if c.Seen(l) != L {
			t.Fatalf("%s: layer %d: Seen %d, want %d", name, l, c.Seen(l), L)
		}
	}
	if (m == CompressKV || m == SnapKV || m == H2O || m == StreamingLLM) && L > maxBudget(res.Budgets) && total != s.Layers*B {
		t.Fatalf("%s: kept %d tokens over layers, want the total budget %d", name, total, s.Layers*B)
	}
	if res.BytesAfter != c.Bytes() || res.BytesAfter > res.BytesBefore {
		t.Fatalf("%s: bytes before %d after %d (cache %d)", name, res.BytesBefore, res.BytesAfter, c.Bytes())
	}
}

func minBudget(b []int, def int) int {
	if len(b) == 0 {
		return def
	}
	return slices.Min(b)
}

func maxBudget(b []int) int {
	if len(b) == 0 {
		return math.MaxInt
	}
	return slices.Max(b)
}

func window(L, W int) []int32 {
	w := make([]int32, W)
	for i := range w {
		w[i] = int32(L - W + i)
	}
	return w
}

// TestPoliciesMatchReference compares each scoring method's kept positions
// with a float64 reference on fresh random inputs, for every shape and type.
func TestPoliciesMatchReference(t *testing.T) {
	rng, seed := newRNG(t)
	const layers, d, W = 2, 32, 8
	for _, sh := range shapes {
		for _, dt := range dtypes {
			for _, pooling := range []backend.Pooling{backend.AvgPool, backend.MaxPool} {
				L := 50 + rng.IntN(150)
				s := kvcache.Shape{Layers: layers, KVHeads: sh.G, HeadDim: d}
				base, q := fillCache(t, rng, s, dt, L, sh.H, L)
				prof := randomProfile(rng, s, sh.H, false)
				for _, m := range []Method{CompressKV, SnapKV, H2O, PyramidKV} {
					B := W + 1 + rng.IntN(L/2)
					cfg := Config{Budget: B, Window: W, Profile: prof, SRHeads: 1 + rng.IntN(sh.H), Pooling: pooling, Kernel: []int{1, 3, 5, 7}[rng.IntN(4)]}
					name := fmt.Sprintf("%s/%v/%s/%v/L=%d/B=%d/K=%d/k=%d seed %d", sh.name, dt, m, pooling, L, B, cfg.Kernel, cfg.SRHeads, seed)
					p, err := New(m, cfg)
					if err != nil {
						t.Fatal(name, err)
					}
					plan, err := p.Plan(context.Background(), base, lastRows(p, q, L, sh.H, d), sh.H)
					if err != nil {
						t.Fatal(name, err)
					}
					cfg = p.Config()
					for l := 0; l < layers; l++ {
						ref := refScores(m, base, l, q[l], sh.H, cfg)
						Bl := plan.Budgets[l]
						if L <= Bl {
							if plan.Keep[l] != nil {
								t.Fatalf("%s: layer %d: budget %d >= L but rows were selected", name, l, Bl)
							}
							continue
						}
						for g := 0; g < sh.G; g++ {
							row := ref[0]
							if len(ref) > 1 {
								row = ref[g]
							}
							kept := plan.Keep[l][g]
							checkTop(t, fmt.Sprintf("%s layer %d head %d", name, l, g), row, kept[:len(kept)-W], Bl-W, 1e-5*float64(W))
						}
					}
				}
			}
		}
	}
}

// TestAdaKVMatchesReference checks Ada-KV's head capacities and selections
// against a float64 reference where the layer-wide cut is not a near tie.
func TestAdaKVMatchesReference(t *testing.T) {
	rng, seed := newRNG(t)
	const d, W = 16, 4
	checked := 0
	for trial := 0; trial < 30; trial++ {
		sh := shapes[trial%len(shapes)]
		L := 30 + rng.IntN(100)
		s := kvcache.Shape{Layers: 1, KVHeads: sh.G, HeadDim: d}
		c, q := fillCache(t, rng, s, kvcache.Float32, L, sh.H, W)
		B := W + 1 + rng.IntN(L-W-1)
		p, err := New(AdaKV, Config{Budget: B, Window: W})
		if err != nil {
			t.Fatal(err)
		}
		plan, err := p.Plan(context.Background(), c, [][]float32{q[0]}, sh.H)
		if err != nil {
			t.Fatal(err)
		}
		ref := refScores(AdaKV, c, 0, q[0], sh.H, p.Config())
		P, cSel, G := L-W, B-W, sh.G
		type item struct {
			v    float64
			j, g int
		}
		var all []item
		for g := 0; g < G; g++ {
			for j := 0; j < P; j++ {
				all = append(all, item{ref[g][j], j, g})
			}
		}
		slices.SortStableFunc(all, func(a, b item) int {
			if a.v != b.v {
				if a.v > b.v {
					return -1
				}
				return 1
			}
			if a.j != b.j {
				return a.j - b.j
			}
			return a.g - b.g
		})
		k := G * cSel
		if k < len(all) && all[k-1].v-all[k].v < 1e-5 {
			t.Logf("trial %d: near tie at the layer-wide cut, capacities not compared", trial)
			continue
		}
		counts := make([]int, G)
		for _, it := range all[:min(k, len(all))] {
			counts[it.g]++
		}
		for g := 0; g < G; g++ {
			capacity := refAdaCapacity(counts[g], cSel, 0.2)
			kept := plan.Keep[0][g]
			checkTop(t, fmt.Sprintf("seed %d trial %d head %d", seed, trial, g), ref[g], kept[:len(kept)-W], min(capacity, P), 1e-5*W)
		}
		checked++
	}
	if checked < 15 {
		t.Fatalf("seed %d: only %d of 30 trials compared", seed, checked)
	}
}

// TestAdaKVFloor: a head that wins nothing still keeps floor(c*f) positions.
func TestAdaKVFloor(t *testing.T) {
	b := cpu.New()
	const P, c = 10, 5
	hi, lo := make([]float32, P), make([]float32, P)
	for j := range hi {
		hi[j] = 10 + float32(j)
		lo[j] = float32(j) / 100
	}
	keep, err := AdaKVSelector{FloorRatio: 0.2}.Select(b, [][]float32{hi, lo}, 2, P, c)
	if err != nil {
		t.Fatal(err)
	}
	// Head 0 wins all 10 = 2*5 slots: round(10*0.8 + floor(5*0.2)) = 9,
	// head 1 wins none: round(0 + 1) = 1, its best position (9).
	if !slices.Equal(keep[0], []int{1, 2, 3, 4, 5, 6, 7, 8, 9}) || !slices.Equal(keep[1], []int{9}) {
		t.Fatalf("Ada-KV floor: got %v", keep)
	}
	// Without a floor the loser keeps nothing and the winner keeps all.
	keep, err = AdaKVSelector{FloorRatio: 0}.Select(b, [][]float32{hi, lo}, 2, P, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(keep[0]) != 10 || len(keep[1]) != 0 {
		t.Fatalf("Ada-KV without floor: got %v", keep)
	}
}

// TestAdaKVCapacityFloat32: the capacities are the reference's, float32
// arithmetic and half-to-even rounding: a head that wins 85 of 7 x 14 slots
// with floor ratio 0.3 keeps round(85*0.7 + 4) = round(63.5) = 64 in float32
// (63.49999999999999 in float64 would round to 63); over every split of
// small sizes and floor ratios the selector agrees with the reference.
func TestAdaKVCapacityFloat32(t *testing.T) {
	if got := adaCapacity(85, 14, 0.3); got != 64 {
		t.Fatalf("capacity of 85 winners, c = 14, f = 0.3: %d, want 64 (float32, half to even)", got)
	}
	n, cs, f := 85.0, 14.0, 0.3 // variables: Go's constant arithmetic is exact
	if f64 := int(math.RoundToEven(n*(1-f) + math.Floor(cs*f))); f64 != 63 {
		t.Fatalf("the float64 evaluation gives %d: the case no longer tells the two apart", f64)
	}
	// The selector end to end: head 0 wins 85 slots, head 1 the other 13,
	// heads 2..6 none.
	const G, c, P = 7, 14, 100
	scores := make([][]float32, G)
	for g := range scores {
		scores[g] = make([]float32, P)
	}
	for j := 0; j < 85; j++ {
		scores[0][j] = 100 + float32(j)
	}
	for j := 0; j < 13; j++ {
		scores[1][j] = 50 + float32(j)
	}
	keep, err := AdaKVSelector{FloorRatio: 0.3}.Select(cpu.New(), scores, G, P, c)
	if err != nil {
		t.Fatal(err)
	}
	want := []int{64, 13, 4, 4, 4, 4, 4} // round(13*0.7 + 4) = round(13.1); round(0 + 4)
	for g, k := range keep {
		if len(k) != want[g] {
			t.Errorf("head %d keeps %d positions, want %d", g, len(k), want[g])
		}
	}
	if !slices.Equal(keep[0], slices.Collect(func(yield func(int) bool) {
		for j := 85 - 64; j < 85; j++ {
			if !yield(j) {
				return
			}
		}
	})) {
		t.Errorf("head 0 keeps %v, want its 64 best positions 21..84", keep[0])
	}
	// Every count, c and floor ratio on a grid: the library's capacity is
	// the reference's; count how many differ from float64.
	differ := 0
	for _, f := range []float64{0, 0.1, 0.2, 0.25, 0.3, 0.5, 0.7, 0.9, 1} {
		for c := 1; c <= 64; c++ {
			for n := 0; n <= 8*c; n++ {
				got, ref := adaCapacity(n, c, f), refAdaCapacity(n, c, f)
				if got != ref {
					t.Fatalf("n = %d, c = %d, f = %v: capacity %d, the reference's %d", n, c, f, got, ref)
				}
				if got != int(math.RoundToEven(float64(n)*(1-f)+math.Floor(float64(c)*f))) {
					differ++
				}
			}
		}
	}
	t.Logf("%d splits of the grid round differently in float64", differ)
}

// TestStreamingLLM: the first Sink positions and the last B-Sink.
func TestStreamingLLM(t *testing.T) {
	rng, _ := newRNG(t)
	s := kvcache.Shape{Layers: 2, KVHeads: 2, HeadDim: 4}
	c, _ := fillCache(t, rng, s, kvcache.Float16, 20, 2, 0)
	p, err := New(StreamingLLM, Config{Budget: 10, Window: 4, Sink: 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Compress(context.Background(), c, nil, 2); err != nil {
		t.Fatal(err)
	}
	want := []int32{0, 1, 2, 3, 14, 15, 16, 17, 18, 19}
	for l := 0; l < 2; l++ {
		for g := 0; g < 2; g++ {
			if got := c.Positions(l, g, nil); !slices.Equal(got, want) {
				t.Fatalf("layer %d head %d: kept %v, want %v", l, g, got, want)
			}
		}
	}
}

// TestPyramidClampShortPrompt: when the prompt is short, PyramidKV's top
// budget is clamped to L-W and the first layer keeps everything.
func TestPyramidClampShortPrompt(t *testing.T) {
	rng, _ := newRNG(t)
	const W, L, B, layers = 4, 30, 20, 4
	s := kvcache.Shape{Layers: layers, KVHeads: 2, HeadDim: 8}
	c, q := fillCache(t, rng, s, kvcache.Float32, L, 4, W)
	p, err := New(PyramidKV, Config{Budget: B, Window: W})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Compress(context.Background(), c, q, 4)
	if err != nil {
		t.Fatal(err)
	}
	// c = 16; lo = 16/20 = 0; hi = 32 >= L-W = 26, so hi = 26, lo = 32-26 = 6;
	// step = (26-6)/3 = 6: selected 26, 20, 14, 8 plus the window.
	want := []int{30, 24, 18, 12}
	if !slices.Equal(res.Budgets, want) {
		t.Fatalf("budgets %v, want %v", res.Budgets, want)
	}
	for l, b := range want {
		if n := c.Len(l, 0); n != min(b, L) {
			t.Fatalf("layer %d keeps %d rows, want %d", l, n, b)
		}
	}
}

// TestCompressKVUsesLayerWeights: budgets follow the error-aware allocator
// and sum exactly to layers*Budget; without weights they are uniform.
func TestCompressKVUsesLayerWeights(t *testing.T) {
	rng, seed := newRNG(t)
	const W, L, B = 8, 300, 40
	s := kvcache.Shape{Layers: 6, KVHeads: 2, HeadDim: 8}
	c, q := fillCache(t, rng, s, kvcache.BFloat16, L, 8, W)
	prof := randomProfile(rng, s, 8, true)
	p, err := New(CompressKV, Config{Budget: B, Window: W, Profile: prof})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Compress(context.Background(), c.Clone(), q, 8)
	if err != nil {
		t.Fatal(err)
	}
	want, err := alloc.ErrorAware(prof.LayerWeights, B, 32, 3*B)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Budgets, want) {
		t.Fatalf("seed %d: budgets %v, want %v", seed, res.Budgets, want)
	}
	sum := 0
	for _, b := range res.Budgets {
		sum += b
	}
	if sum != s.Layers*B {
		t.Fatalf("seed %d: budgets sum to %d, want %d", seed, sum, s.Layers*B)
	}
	prof.LayerWeights = nil
	p, err = New(CompressKV, Config{Budget: B, Window: W, Profile: prof})
	if err != nil {
		t.Fatal(err)
	}
	res, err = p.Compress(context.Background(), c.Clone(), q, 8)
	if err != nil {
		t.Fatal(err)
	}
	if res.Note == "" || slices.Min(res.Budgets) != B || slices.Max(res.Budgets) != B {
		t.Fatalf("without weights: budgets %v note %q, want uniform %d with a note", res.Budgets, res.Note, B)
	}
}

// TestDecodeContinuesPositions: after compression the next token's position
// is the prompt length, not the compressed length.
func TestDecodeContinuesPositions(t *testing.T) {
	rng, _ := newRNG(t)
	s := kvcache.Shape{Layers: 2, KVHeads: 2, HeadDim: 8}
	c, q := fillCache(t, rng, s, kvcache.Float32, 50, 4, 8)
	p, err := New(SnapKV, Config{Budget: 16})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Compress(context.Background(), c, q, 4); err != nil {
		t.Fatal(err)
	}
	row := make([]float32, 2*8)
	for l := 0; l < 2; l++ {
		if err := c.Append(l, row, row); err != nil {
			t.Fatal(err)
		}
		pos := c.Positions(l, 1, nil)
		if len(pos) != 17 || pos[16] != 50 {
			t.Fatalf("layer %d: after one decode step positions end %v, want 17 rows ending at 50", l, pos[len(pos)-3:])
		}
	}
}

// TestBadInputLeavesCacheUnchanged feeds wrong shapes, NaN queries and a
// mismatched profile; every call fails with a clear error and the cache is
// untouched.
func TestBadInputLeavesCacheUnchanged(t *testing.T) {
	rng, _ := newRNG(t)
	s := kvcache.Shape{Layers: 2, KVHeads: 2, HeadDim: 8}
	c, q := fillCache(t, rng, s, kvcache.Float16, 40, 4, 8)
	before := snap(c)
	prof := randomProfile(rng, s, 4, true)
	nan := [][]float32{slices.Clone(q[0]), slices.Clone(q[1])}
	nan[1][5] = float32(math.NaN())
	other := randomProfile(rng, kvcache.Shape{Layers: 3, KVHeads: 2, HeadDim: 8}, 4, false)
	// 8 window rows of 8 query heads: read as 4 heads it would be 16 rows.
	q8 := make([]float32, 8*8*8)
	cases := []struct {
		name   string
		m      Method
		cfg    Config
		q      [][]float32
		qHeads int
		want   string
	}{
		{"short queries", SnapKV, Config{Budget: 16}, [][]float32{q[0][:10], q[1]}, 4, "query values"},
		{"too few layers", SnapKV, Config{Budget: 16}, q[:1], 4, "queries for 1 layers"},
		{"heads not a multiple", SnapKV, Config{Budget: 16}, q, 3, "not a positive multiple"},
		{"window larger than queries", SnapKV, Config{Budget: 16, Window: 12}, q, 4, "the last 12 prompt positions (the window)"},
		{"more queries than the window", SnapKV, Config{Budget: 16, Window: 4}, q, 4, "the last 4 prompt positions (the window)"},
		{"query heads miscounted", SnapKV, Config{Budget: 16}, [][]float32{q8, q8}, 4, "want 256: the queries of the last 8 prompt positions (the window) x 4 query heads"},
		{"NaN query", CompressKV, Config{Budget: 16, Profile: prof}, nan, 4, "non-finite"},
		{"profile for another model", CompressKV, Config{Budget: 16, Profile: other}, q, 4, "profile of"},
		{"profile for another model, per group", AdaCompressKV, Config{Budget: 16, Profile: other}, q, 4, "profile of"},
		{"NaN query, per group", AdaCompressKV, Config{Budget: 16, Profile: prof}, nan, 4, "non-finite"},
		{"H2O without all queries", H2O, Config{Budget: 16}, q, 4, "every one of the 40 prompt positions"},
	}
	for _, tc := range cases {
		p, err := New(tc.m, tc.cfg)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		_, err = p.Compress(context.Background(), c, tc.q, tc.qHeads)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: error %v, want one mentioning %q", tc.name, err, tc.want)
		}
		if !sameSnapshot(before, snap(c)) {
			t.Fatalf("%s: a rejected compression changed the cache", tc.name)
		}
	}
	// A plan that does not fit the cache is rejected whole.
	p, _ := New(SnapKV, Config{Budget: 16})
	bad := &Plan{Keep: [][][]int{{{0, 1}, {0, 1}}, {{0, 99}, {1}}}}
	if err := p.Apply(c, bad); err == nil || !sameSnapshot(before, snap(c)) {
		t.Fatalf("Apply of an invalid plan: err %v, cache changed: %v", err, !sameSnapshot(before, snap(c)))
	}
	// An already compressed cache cannot be compressed again.
	ada, _ := New(AdaKV, Config{Budget: 16})
	cc := c.Clone()
	if _, err := ada.Compress(context.Background(), cc, q, 4); err != nil {
		t.Fatal(err)
	}
	if cc.Len(0, 0) != cc.Len(0, 1) {
		if _, err := ada.Compress(context.Background(), cc, q, 4); !errors.Is(err, ErrCompressed) || !strings.Contains(err.Error(), "Compress works once") {
			t.Fatalf("ragged layer: error %v", err)
		}
	}
}

// TestConfigErrors checks that every invalid configuration is reported
// clearly and wraps ErrConfig.
func TestConfigErrors(t *testing.T) {
	rng, _ := newRNG(t)
	prof := randomProfile(rng, kvcache.Shape{Layers: 2, KVHeads: 2, HeadDim: 8}, 4, true)
	broken := *prof
	broken.HeadRanking = [][]int{{0, 1, 2, 2}, {0, 1, 2, 3}}
	cases := []struct {
		m    Method
		cfg  Config
		want string
	}{
		{SnapKV, Config{Budget: 4}, "below the observation window 8"},
		{SnapKV, Config{Budget: 16, Window: -1}, "window -1"},
		{SnapKV, Config{Budget: 16, Kernel: 4}, "kernel 4 must be odd"},
		{SnapKV, Config{Budget: 16, Pooling: 7}, "unknown pooling"},
		{AdaKV, Config{Budget: 16, FloorRatio: 1.5}, "floor ratio"},
		{CompressKV, Config{Budget: 16}, "profile"},
		{CompressKV, Config{Budget: 16, Profile: prof, SRHeads: 5}, "5 SR heads"},
		{CompressKV, Config{Budget: 16, Profile: &broken}, "permutation"},
		{CompressKV, Config{Budget: 16, Profile: prof, LayerFloor: 4}, "layer floor 4"},
		{CompressKV, Config{Budget: 16, Profile: prof, LayerCap: 10}, "layer cap 10"},
		{AdaCompressKV, Config{Budget: 16}, "profile"},
		{AdaCompressKV, Config{Budget: 16, Profile: prof, SRHeads: 5}, "5 SR heads"},
		{AdaCompressKV, Config{Budget: 16, Profile: prof, FloorRatio: 2}, "floor ratio"},
		{AdaCompressKV, Config{Budget: 16, Profile: prof, LayerFloor: 4}, "layer floor 4"},
		{PyramidKV, Config{Budget: 16, Beta: -2}, "beta"},
		{"magic", Config{Budget: 16}, "unknown method"},
	}
	for _, tc := range cases {
		_, err := New(tc.m, tc.cfg)
		if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %+v: error %v, want ErrConfig mentioning %q", tc.m, tc.cfg, err, tc.want)
		}
	}
	if _, err := New(Full, Config{}); err != nil {
		t.Errorf("Full needs no budget: %v", err)
	}
	for _, s := range []string{"SnapKV", "ada-kv", "streaming", "compresskv", "Ada-CompressKV", "adackv"} {
		if _, err := ParseMethod(s); err != nil {
			t.Errorf("ParseMethod(%q): %v", s, err)
		}
	}
	if _, err := ParseMethod("nope"); err == nil {
		t.Error("ParseMethod accepted an unknown name")
	}
}

// TestCompressLayerMatchesCompress: compressing layer by layer keeps the same
// rows as compressing the whole cache.
func TestCompressLayerMatchesCompress(t *testing.T) {
	rng, seed := newRNG(t)
	s := kvcache.Shape{Layers: 4, KVHeads: 2, HeadDim: 16}
	c, q := fillCache(t, rng, s, kvcache.Float32, 120, 8, 8)
	prof := randomProfile(rng, s, 8, true)
	for _, m := range []Method{CompressKV, PyramidKV, AdaKV, AdaCompressKV} {
		p, err := New(m, Config{Budget: 40, Profile: prof})
		if err != nil {
			t.Fatal(err)
		}
		whole, byLayer := c.Clone(), c.Clone()
		if _, err := p.Compress(context.Background(), whole, q, 8); err != nil {
			t.Fatal(err)
		}
		for l := 0; l < s.Layers; l++ {
			if err := p.CompressLayer(context.Background(), byLayer, l, q[l], 8); err != nil {
				t.Fatal(err)
			}
		}
		if !sameSnapshot(snap(whole), snap(byLayer)) {
			t.Fatalf("seed %d: %s: CompressLayer differs from Compress", seed, m)
		}
	}
}

// TestSnapKVMeansBeforeMaxPooling: SnapKV averages each group's window sums
// and then pools (ALGORITHM.md section 4). With max pooling the other order
// keeps a different set; the test checks that it would, on this input, so
// that it fails if the order is ever swapped back.
func TestSnapKVMeansBeforeMaxPooling(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	const L, W, B, H, d = 120, 8, 40, 8, 16
	s := kvcache.Shape{Layers: 1, KVHeads: 2, HeadDim: d}
	c, q := fillCache(t, rng, s, kvcache.Float32, L, H, W)
	cfg := Config{Budget: B, Window: W, Kernel: 7, Pooling: backend.MaxPool}
	p, err := New(SnapKV, cfg)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := p.Plan(context.Background(), c, q, H)
	if err != nil {
		t.Fatal(err)
	}
	cfg = p.Config()
	want := refScores(SnapKV, c, 0, q[0], H, cfg)
	differs := 0
	for g := 0; g < s.KVHeads; g++ {
		kept := plan.Keep[0][g][:B-W]
		checkTop(t, fmt.Sprintf("head %d", g), want[g], kept, B-W, 1e-6)
		// The pool-then-mean order, in float64.
		var rows [][]float64
		for h := g * H / 2; h < (g+1)*H/2; h++ {
			r := reftest.WindowSums(c, 0, q[0], W, H, h)[:L-W]
			rows = append(rows, reftest.Pool(r, cfg.Kernel, false))
		}
		other := reftest.Mean(rows)
		if !isTop(other, kept, 1e-6) {
			differs++
		}
	}
	if differs == 0 {
		t.Fatal("the input does not tell the two orders apart; pick another seed")
	}
}

// isTop reports whether kept is a top-len(kept) set of x up to tol.
func isTop(x []float64, kept []int, tol float64) bool {
	minIn, maxOut := bounds(x, kept)
	return minIn >= maxOut-tol
}
