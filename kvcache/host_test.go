package kvcache

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

var allDTypes = []DType{Float32, Float16, BFloat16}

// randKV returns token-major keys and values for n tokens: [n][G][d] each.
func randKV(r *rand.Rand, n int, s Shape) (k, v []float32) {
	k = make([]float32, n*s.KVHeads*s.HeadDim)
	v = make([]float32, len(k))
	for i := range k {
		k[i] = float32(r.NormFloat64() * 4)
		v[i] = float32(r.NormFloat64())
	}
	return k, v
}

// refRow is one stored row as the reference sees it: values already rounded
// through the storage type, and the original position.
type refRow struct {
	k, v []float64
	pos  int32
}

// refCache is a plain model of a Host: per layer, per head, a list of rows.
type refCache struct {
	s     Shape
	t     DType
	heads [][]refRow // [layer*G + g]
	seen  []int
}

func newRefCache(s Shape, t DType) *refCache {
	return &refCache{s: s, t: t, heads: make([][]refRow, s.Layers*s.KVHeads), seen: make([]int, s.Layers)}
}

func (m *refCache) append(layer int, k, v []float32) {
	G, d := m.s.KVHeads, m.s.HeadDim
	n := len(k) / (G * d)
	for t := 0; t < n; t++ {
		for g := 0; g < G; g++ {
			off := (t*G + g) * d
			row := refRow{k: make([]float64, d), v: make([]float64, d), pos: int32(m.seen[layer] + t)}
			for j := 0; j < d; j++ {
				row.k[j] = refRound(m.t, k[off+j])
				row.v[j] = refRound(m.t, v[off+j])
			}
			i := layer*G + g
			m.heads[i] = append(m.heads[i], row)
		}
	}
	m.seen[layer] += n
}

func (m *refCache) compact(layer int, keep [][]int) {
	for g, rows := range keep {
		i := layer*m.s.KVHeads + g
		var kept []refRow
		for _, r := range rows {
			kept = append(kept, m.heads[i][r])
		}
		m.heads[i] = kept
	}
}

func (m *refCache) clone() *refCache {
	out := newRefCache(m.s, m.t)
	copy(out.seen, m.seen)
	for i := range m.heads {
		out.heads[i] = slices.Clone(m.heads[i]) // rows are never mutated in place
	}
	return out
}

func (m *refCache) reset() {
	for i := range m.heads {
		m.heads[i] = nil
	}
	clear(m.seen)
}

// check compares c with the model and returns a description of the first
// difference, or "".
func (m *refCache) check(c *Host) string {
	if c.Shape() != m.s || c.DType() != m.t {
		return fmt.Sprintf("shape %+v type %v, want %+v %v", c.Shape(), c.DType(), m.s, m.t)
	}
	var rows int64
	var buf []float32
	for l := 0; l < m.s.Layers; l++ {
		if c.Seen(l) != m.seen[l] {
			return fmt.Sprintf("layer %d: Seen %d, want %d", l, c.Seen(l), m.seen[l])
		}
		for g := 0; g < m.s.KVHeads; g++ {
			want := m.heads[l*m.s.KVHeads+g]
			rows += int64(len(want))
			if n := c.Len(l, g); n != len(want) {
				return fmt.Sprintf("layer %d head %d: Len %d, want %d", l, g, n, len(want))
			}
			pos := c.Positions(l, g, nil)
			if len(pos) != len(want) {
				return fmt.Sprintf("layer %d head %d: %d positions, want %d", l, g, len(pos), len(want))
			}
			kr, vr := c.Rows(l, g)
			if kr.N != len(want) || vr.N != len(want) || kr.D != m.s.HeadDim || vr.D != m.s.HeadDim || kr.DType != m.t || vr.DType != m.t {
				return fmt.Sprintf("layer %d head %d: Rows N %d/%d D %d/%d type %v/%v, want %d rows of %d %v",
					l, g, kr.N, vr.N, kr.D, vr.D, kr.DType, vr.DType, len(want), m.s.HeadDim, m.t)
			}
			for i, w := range want {
				if pos[i] != w.pos {
					return fmt.Sprintf("layer %d head %d row %d: position %d, want %d (all %v)", l, g, i, pos[i], w.pos, pos)
				}
				if i > 0 && pos[i] <= pos[i-1] {
					return fmt.Sprintf("layer %d head %d: positions not increasing: %v", l, g, pos)
				}
				for _, kv := range []struct {
					name string
					r    Rows
					want []float64
				}{{"key", kr, w.k}, {"value", vr, w.v}} {
					buf = kv.r.Row(i, buf)
					for j, x := range buf {
						if math.Float64bits(float64(x)) != math.Float64bits(kv.want[j]) {
							return fmt.Sprintf("layer %d head %d row %d (position %d): %s %d is %g, want %g",
								l, g, i, w.pos, kv.name, j, x, kv.want[j])
						}
					}
				}
			}
		}
	}
	if want := rows * int64(2*m.s.HeadDim*m.t.Size()+4); c.Bytes() != want {
		return fmt.Sprintf("Bytes %d, want %d for %d rows", c.Bytes(), want, rows)
	}
	if c.Reserved() < c.Bytes() {
		return fmt.Sprintf("Reserved %d < Bytes %d", c.Reserved(), c.Bytes())
	}
	return ""
}

// sameHost compares two caches byte for byte, storage slices included (their
// lengths and contents, not their capacities), and returns a description of
// the first difference, or "".
func sameHost(a, b *Host) string {
	if a.shape != b.shape || a.dtype != b.dtype {
		return fmt.Sprintf("shape/type %+v %v vs %+v %v", a.shape, a.dtype, b.shape, b.dtype)
	}
	if !slices.Equal(a.seen, b.seen) {
		return fmt.Sprintf("seen %v vs %v", a.seen, b.seen)
	}
	if len(a.heads) != len(b.heads) {
		return fmt.Sprintf("%d heads vs %d", len(a.heads), len(b.heads))
	}
	bits := func(x []float32) []uint32 {
		out := make([]uint32, len(x))
		for i, f := range x {
			out[i] = math.Float32bits(f)
		}
		return out
	}
	for i := range a.heads {
		x, y := &a.heads[i], &b.heads[i]
		switch {
		case !slices.Equal(x.pos, y.pos):
			return fmt.Sprintf("head slot %d: positions %v vs %v", i, x.pos, y.pos)
		case !slices.Equal(bits(x.k32), bits(y.k32)), !slices.Equal(bits(x.v32), bits(y.v32)):
			return fmt.Sprintf("head slot %d: float32 rows differ", i)
		case !slices.Equal(x.k16, y.k16), !slices.Equal(x.v16, y.v16):
			return fmt.Sprintf("head slot %d: 16-bit rows differ", i)
		}
	}
	return ""
}

func mustHost(t testing.TB, s Shape, dt DType) *Host {
	t.Helper()
	c, err := NewHost(s, dt)
	if err != nil {
		t.Fatalf("NewHost(%+v, %v): %v", s, dt, err)
	}
	return c
}

func TestNewHost(t *testing.T) {
	for _, s := range []Shape{
		{0, 1, 1}, {1, 0, 1}, {1, 1, 0}, {-1, 1, 1}, {1, -2, 1}, {1, 1, -3}, {},
	} {
		if c, err := NewHost(s, Float32); err == nil || c != nil {
			t.Errorf("NewHost(%+v) = %v, %v; want an error", s, c, err)
		}
	}
	if c, err := NewHost(Shape{1, 1, 1}, DType(3)); err == nil || c != nil {
		t.Errorf("NewHost with DType(3) = %v, %v; want an error", c, err)
	}
	s := Shape{Layers: 3, KVHeads: 2, HeadDim: 4}
	for _, dt := range allDTypes {
		c := mustHost(t, s, dt)
		if msg := newRefCache(s, dt).check(c); msg != "" {
			t.Errorf("%v: new cache: %s", dt, msg)
		}
		if c.Bytes() != 0 || c.Reserved() != 0 {
			t.Errorf("%v: new cache: Bytes %d Reserved %d, want 0", dt, c.Bytes(), c.Reserved())
		}
	}
}

// TestAppendLayout checks that token-major input lands head-major, with the
// right values and positions, in the right layer only.
func TestAppendLayout(t *testing.T) {
	r, seed := newRand(t)
	s := Shape{Layers: 3, KVHeads: 4, HeadDim: 5}
	for _, dt := range allDTypes {
		c := mustHost(t, s, dt)
		m := newRefCache(s, dt)
		for step, a := range []struct{ layer, n int }{{1, 3}, {1, 1}, {0, 2}, {1, 0}, {2, 7}, {1, 5}} {
			k, v := randKV(r, a.n, s)
			if err := c.Append(a.layer, k, v); err != nil {
				t.Fatalf("seed %d: %v: step %d: Append(%d, %d tokens): %v", seed, dt, step, a.layer, a.n, err)
			}
			m.append(a.layer, k, v)
			if msg := m.check(c); msg != "" {
				t.Fatalf("seed %d: %v: after step %d (Append(%d, %d tokens)): %s", seed, dt, step, a.layer, a.n, msg)
			}
		}
		// A direct look at the layout: row i of head g is token i's slice
		// [i][g][:] of the input.
		c = mustHost(t, s, dt)
		k, v := randKV(r, 4, s)
		if err := c.Append(0, k, v); err != nil {
			t.Fatal(err)
		}
		for g := 0; g < s.KVHeads; g++ {
			kr, vr := c.Rows(0, g)
			for i := 0; i < 4; i++ {
				kd, vd := kr.Row(i, nil), vr.Row(i, make([]float32, 1))
				for j := 0; j < s.HeadDim; j++ {
					src := (i*s.KVHeads+g)*s.HeadDim + j
					if float64(kd[j]) != refRound(dt, k[src]) || float64(vd[j]) != refRound(dt, v[src]) {
						t.Fatalf("seed %d: %v: head %d row %d col %d: got k=%g v=%g, want k=%g v=%g (from token-major [%d][%d][%d])",
							seed, dt, g, i, j, kd[j], vd[j], refRound(dt, k[src]), refRound(dt, v[src]), i, g, j)
					}
				}
			}
			if got := c.Positions(0, g, []int32{-7}); !slices.Equal(got, []int32{-7, 0, 1, 2, 3}) {
				t.Errorf("%v: Positions with a prefix = %v, want [-7 0 1 2 3]", dt, got)
			}
		}
	}
}

func TestAppendStorage(t *testing.T) {
	// bfloat16 and float32 keep 1e6 (bfloat16 rounded); float16 cannot hold
	// it and rejects it at Append, before anything is stored.
	s := Shape{1, 1, 2}
	for _, c := range []struct {
		dt   DType
		want float32
	}{{Float32, 1e6}, {BFloat16, 999424}} {
		h := mustHost(t, s, c.dt)
		if err := h.Append(0, []float32{1e6, -1e6}, []float32{0, 0}); err != nil {
			t.Fatalf("%v: %v", c.dt, err)
		}
		kr, _ := h.Rows(0, 0)
		if got := kr.Row(0, nil); got[0] != c.want || got[1] != -c.want {
			t.Errorf("%v: 1e6 stored as %v, want ±%g", c.dt, got, c.want)
		}
	}
	// The edges: the largest value each type rounds to a finite one is
	// accepted and stored finite; the next float32 is rejected.
	for _, c := range []struct {
		dt       DType
		ok, over float32
	}{
		{Float16, math.Nextafter32(65520, 0), 65520},
		{BFloat16, math.Float32frombits(0x7F7F7FFF), math.Float32frombits(0x7F7F8000)},
		{Float32, math.MaxFloat32, float32(math.Inf(1))},
	} {
		h := mustHost(t, s, c.dt)
		if err := h.Append(0, []float32{c.ok, -c.ok}, []float32{c.ok, 0}); err != nil {
			t.Fatalf("%v: %g rejected: %v", c.dt, c.ok, err)
		}
		kr, vr := h.Rows(0, 0)
		for _, x := range append(kr.Row(0, nil), vr.Row(0, nil)...) {
			if math.IsInf(float64(x), 0) || math.IsNaN(float64(x)) {
				t.Fatalf("%v: %g stored as %g", c.dt, c.ok, x)
			}
		}
		for _, bad := range [][2][]float32{{{1, -c.over}, {0, 0}}, {{1, 2}, {c.over, 0}}} {
			before := h.Bytes()
			err := h.Append(0, bad[0], bad[1])
			if !errors.Is(err, ErrNonFinite) || h.Len(0, 0) != 1 || h.Seen(0) != 1 || h.Bytes() != before {
				t.Fatalf("%v: Append of %g: error %v, %d rows", c.dt, c.over, err, h.Len(0, 0))
			}
		}
	}
}

// TestAppendErrors checks that every rejected Append names its cause and
// leaves the cache exactly as it was.
func TestAppendErrors(t *testing.T) {
	r, seed := newRand(t)
	s := Shape{Layers: 2, KVHeads: 3, HeadDim: 4}
	row := s.KVHeads * s.HeadDim
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, dt := range allDTypes {
		c := mustHost(t, s, dt)
		k, v := randKV(r, 5, s)
		if err := c.Append(0, k, v); err != nil {
			t.Fatal(err)
		}
		if err := c.Compact(0, [][]int{{0, 2, 4}, {1}, {}}); err != nil { // uneven heads
			t.Fatal(err)
		}
		k, v = randKV(r, 2, s)
		if err := c.Append(1, k, v); err != nil {
			t.Fatal(err)
		}
		with := func(x []float32, i int, f float32) []float32 {
			x = slices.Clone(x)
			x[i] = f
			return x
		}
		k, v = randKV(r, 3, s)
		cases := []struct {
			name  string
			layer int
			k, v  []float32
			is    error
		}{
			{"short keys and values", 0, k[:row-1], v[:row-1], ErrShape},
			{"not a multiple", 1, k[:row+1], v[:row+1], ErrShape},
			{"keys longer than values", 0, k, v[:2*row], ErrShape},
			{"values longer than keys", 0, k[:row], v, ErrShape},
			{"values nil", 0, k, nil, ErrShape},
			{"NaN key first", 0, with(k, 0, nan), v, ErrNonFinite},
			{"NaN key last", 1, with(k, len(k)-1, nan), v, ErrNonFinite},
			{"NaN value", 0, k, with(v, row+1, nan), ErrNonFinite},
			{"+Inf key", 1, with(k, 5, inf), v, ErrNonFinite},
			{"NaN value last", 1, k, with(v, len(v)-1, nan), ErrNonFinite},
			{"-Inf value", 0, k, with(v, 7, -inf), ErrNonFinite},
			{"layer -1", -1, k, v, nil},
			{"layer beyond", 2, k, v, nil},
		}
		for _, tc := range cases {
			before := c.Clone()
			seen := []int{c.Seen(0), c.Seen(1)}
			bytes := c.Bytes()
			err := c.Append(tc.layer, tc.k, tc.v)
			if err == nil {
				t.Errorf("seed %d: %v: %s: Append succeeded", seed, dt, tc.name)
				continue
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("%v: %s: error %q does not wrap %q", dt, tc.name, err, tc.is)
			}
			if msg := sameHost(before, c); msg != "" {
				t.Errorf("seed %d: %v: %s: cache changed: %s", seed, dt, tc.name, msg)
			}
			if c.Seen(0) != seen[0] || c.Seen(1) != seen[1] || c.Bytes() != bytes {
				t.Errorf("%v: %s: Seen %d,%d Bytes %d; want %v, %d", dt, tc.name, c.Seen(0), c.Seen(1), c.Bytes(), seen, bytes)
			}
		}
		// Zero tokens is a valid no-op.
		before := c.Clone()
		if err := c.Append(0, nil, nil); err != nil {
			t.Errorf("%v: Append of zero tokens: %v", dt, err)
		}
		if msg := sameHost(before, c); msg != "" {
			t.Errorf("%v: Append of zero tokens changed the cache: %s", dt, msg)
		}
	}
}

// TestAppendPositionLimit checks the int32 limit on positions: the cache
// refuses a token whose position, or the next position (Seen), would not fit.
func TestAppendPositionLimit(t *testing.T) {
	s := Shape{1, 1, 1}
	c := mustHost(t, s, Float32)
	c.seen[0] = math.MaxInt32 - 2 // as if that many tokens had gone before
	if err := c.Append(0, []float32{1, 2, 3}, []float32{1, 2, 3}); err == nil {
		t.Fatal("Append past position MaxInt32 succeeded")
	}
	if c.Len(0, 0) != 0 || c.Seen(0) != math.MaxInt32-2 {
		t.Fatalf("rejected Append changed the cache: Len %d Seen %d", c.Len(0, 0), c.Seen(0))
	}
	for i := 0; i < 2; i++ {
		if err := c.Append(0, []float32{1}, []float32{1}); err != nil {
			t.Fatalf("Append %d up to MaxInt32: %v", i, err)
		}
	}
	if got := c.Positions(0, 0, nil); !slices.Equal(got, []int32{math.MaxInt32 - 2, math.MaxInt32 - 1}) {
		t.Fatalf("positions %v", got)
	}
	if c.Seen(0) != math.MaxInt32 {
		t.Fatalf("Seen %d, want MaxInt32", c.Seen(0))
	}
	if err := c.Append(0, []float32{1}, []float32{1}); err == nil {
		t.Fatal("Append past position MaxInt32 succeeded")
	}
}

// randKeep returns, per head, a random sorted subset of [0, lens[g]).
func randKeep(r *rand.Rand, lens []int) [][]int {
	keep := make([][]int, len(lens))
	for g, n := range lens {
		switch r.IntN(6) {
		case 0: // nothing
			keep[g] = []int{}
		case 1: // everything
			for i := 0; i < n; i++ {
				keep[g] = append(keep[g], i)
			}
		default:
			p := r.Float64()
			for i := 0; i < n; i++ {
				if r.Float64() < p {
					keep[g] = append(keep[g], i)
				}
			}
		}
	}
	return keep
}

func lensOf(c *Host, layer int) []int {
	lens := make([]int, c.Shape().KVHeads)
	for g := range lens {
		lens[g] = c.Len(layer, g)
	}
	return lens
}

func TestCompact(t *testing.T) {
	r, seed := newRand(t)
	s := Shape{Layers: 2, KVHeads: 3, HeadDim: 7}
	for _, dt := range allDTypes {
		c := mustHost(t, s, dt)
		m := newRefCache(s, dt)
		k, v := randKV(r, 40, s)
		for l := 0; l < s.Layers; l++ {
			if err := c.Append(l, k, v); err != nil {
				t.Fatal(err)
			}
			m.append(l, k, v)
		}
		// A fixed compaction first: every head its own set.
		keep := [][]int{{0, 5, 6, 39}, {}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39}}
		if err := c.Compact(1, keep); err != nil {
			t.Fatalf("%v: Compact: %v", dt, err)
		}
		m.compact(1, keep)
		if msg := m.check(c); msg != "" {
			t.Fatalf("%v: after the fixed compaction: %s", dt, msg)
		}
		if got := c.Positions(1, 0, nil); !slices.Equal(got, []int32{0, 5, 6, 39}) {
			t.Errorf("%v: head 0 positions %v, want [0 5 6 39]", dt, got)
		}
		// Random compactions, interleaved with appends, on both layers.
		for step := 0; step < 30; step++ {
			l := r.IntN(s.Layers)
			if r.IntN(3) == 0 {
				n := r.IntN(6)
				k, v := randKV(r, n, s)
				if err := c.Append(l, k, v); err != nil {
					t.Fatal(err)
				}
				m.append(l, k, v)
			} else {
				keep := randKeep(r, lensOf(c, l))
				if err := c.Compact(l, keep); err != nil {
					t.Fatalf("seed %d: %v: step %d: Compact(%d, %v): %v", seed, dt, step, l, keep, err)
				}
				m.compact(l, keep)
			}
			if msg := m.check(c); msg != "" {
				t.Fatalf("seed %d: %v: step %d: %s", seed, dt, step, msg)
			}
		}
	}
}

// TestCompactThenAppend checks that decoding after a compaction continues
// positions from the uncompressed length, not the kept count.
func TestCompactThenAppend(t *testing.T) {
	r, _ := newRand(t)
	s := Shape{Layers: 1, KVHeads: 2, HeadDim: 3}
	for _, dt := range allDTypes {
		c := mustHost(t, s, dt)
		k, v := randKV(r, 10, s)
		if err := c.Append(0, k, v); err != nil {
			t.Fatal(err)
		}
		if err := c.Compact(0, [][]int{{1, 8}, {0, 1, 2, 9}}); err != nil {
			t.Fatal(err)
		}
		k, v = randKV(r, 2, s)
		if err := c.Append(0, k, v); err != nil {
			t.Fatal(err)
		}
		if c.Seen(0) != 12 {
			t.Errorf("%v: Seen %d, want 12", dt, c.Seen(0))
		}
		for g, want := range [][]int32{{1, 8, 10, 11}, {0, 1, 2, 9, 10, 11}} {
			if got := c.Positions(0, g, nil); !slices.Equal(got, want) {
				t.Errorf("%v: head %d positions %v, want %v", dt, g, got, want)
			}
		}
		kr, _ := c.Rows(0, 1)
		if got := kr.Row(5, nil); float64(got[2]) != refRound(dt, k[(1*2+1)*3+2]) {
			t.Errorf("%v: head 1 last row %v, want token 1 head 1 of the second append", dt, got)
		}
	}
}

func TestCompactErrors(t *testing.T) {
	r, seed := newRand(t)
	s := Shape{Layers: 2, KVHeads: 2, HeadDim: 3}
	for _, dt := range allDTypes {
		c := mustHost(t, s, dt)
		k, v := randKV(r, 6, s)
		for l := 0; l < 2; l++ {
			if err := c.Append(l, k, v); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Compact(1, [][]int{{0, 1, 3, 5}, {2, 4}}); err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name  string
			layer int
			keep  [][]int
			shape bool // wraps ErrShape
		}{
			{"unsorted", 0, [][]int{{0, 1}, {3, 2}}, false},
			{"duplicate", 0, [][]int{{1, 1}, {0}}, false},
			{"duplicate in a later head", 1, [][]int{{0, 1, 2}, {0, 0}}, false},
			{"row at length", 0, [][]int{{0, 6}, {0}}, false},
			{"row past a compacted length", 1, [][]int{{0}, {2}}, false},
			{"negative row", 0, [][]int{{-1, 0}, {0}}, false},
			{"too few heads", 0, [][]int{{0}}, true},
			{"too many heads", 0, [][]int{{0}, {0}, {0}}, true},
			{"nil", 0, nil, true},
			{"layer -1", -1, [][]int{{0}, {0}}, false},
			{"layer beyond", 2, [][]int{{0}, {0}}, false},
		}
		for _, tc := range cases {
			before := c.Clone()
			err := c.Compact(tc.layer, tc.keep)
			if err == nil {
				t.Errorf("%v: %s: Compact(%d, %v) succeeded", dt, tc.name, tc.layer, tc.keep)
				continue
			}
			if tc.shape && !errors.Is(err, ErrShape) {
				t.Errorf("%v: %s: error %q does not wrap ErrShape", dt, tc.name, err)
			}
			if msg := sameHost(before, c); msg != "" {
				t.Errorf("seed %d: %v: %s: cache changed: %s", seed, dt, tc.name, msg)
			}
		}
	}
}

func TestCheckKeep(t *testing.T) {
	if err := CheckKeep([][]int{{0, 2}, nil, {}}, []int{3, 0, 5}); err != nil {
		t.Errorf("valid keep rejected: %v", err)
	}
	if err := CheckKeep([][]int{{0}}, []int{0}); err == nil {
		t.Error("row 0 of an empty head accepted")
	}
}

func TestBytesReserved(t *testing.T) {
	r, seed := newRand(t)
	s := Shape{Layers: 2, KVHeads: 2, HeadDim: 16}
	for _, dt := range allDTypes {
		c := mustHost(t, s, dt)
		rowBytes := int64(2*s.HeadDim*dt.Size() + 4)
		k, v := randKV(r, 1, s)
		for i := 0; i < 1024; i++ { // one token at a time, as decoding does
			if err := c.Append(0, k, v); err != nil {
				t.Fatal(err)
			}
		}
		if want := 1024 * int64(s.KVHeads) * rowBytes; c.Bytes() != want {
			t.Errorf("%v: Bytes %d, want %d", dt, c.Bytes(), want)
		}
		if c.Reserved() < c.Bytes() {
			t.Errorf("%v: Reserved %d < Bytes %d", dt, c.Reserved(), c.Bytes())
		}
		before := c.Reserved()
		keep := make([][]int, s.KVHeads)
		for i := 0; i < 1024; i += 64 {
			keep[0] = append(keep[0], i)
		}
		keep[1] = []int{3}
		if err := c.Compact(0, keep); err != nil {
			t.Fatal(err)
		}
		if want := 17 * rowBytes; c.Bytes() != want {
			t.Errorf("%v: Bytes after compaction %d, want %d", dt, c.Bytes(), want)
		}
		after := c.Reserved()
		if after < c.Bytes() || after > 2*c.Bytes() || after >= before/10 {
			t.Errorf("seed %d: %v: Reserved %d before and %d after keeping 1/64: want it to fall to within 2x of Bytes %d",
				seed, dt, before, after, c.Bytes())
		}
		// A light compaction (keep most rows) may keep the memory.
		if err := c.Compact(0, [][]int{{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}, {0}}); err != nil {
			t.Fatal(err)
		}
		if c.Reserved() < c.Bytes() || c.Bytes() != 16*rowBytes {
			t.Errorf("%v: Reserved %d Bytes %d after a light compaction", dt, c.Reserved(), c.Bytes())
		}
		// Compacting to nothing frees nearly all.
		if err := c.Compact(0, [][]int{{}, nil}); err != nil {
			t.Fatal(err)
		}
		if c.Bytes() != 0 || c.Reserved() != 0 {
			t.Errorf("%v: after dropping every row: Bytes %d Reserved %d, want 0 0", dt, c.Bytes(), c.Reserved())
		}
	}
}

func TestClone(t *testing.T) {
	r, seed := newRand(t)
	s := Shape{Layers: 2, KVHeads: 2, HeadDim: 4}
	for _, dt := range allDTypes {
		c := mustHost(t, s, dt)
		m := newRefCache(s, dt)
		k, v := randKV(r, 8, s)
		if err := c.Append(0, k, v); err != nil {
			t.Fatal(err)
		}
		m.append(0, k, v)
		e := mustHost(t, s, dt).Clone() // an empty cache clones too
		if msg := newRefCache(s, dt).check(e); msg != "" {
			t.Errorf("%v: clone of an empty cache: %s", dt, msg)
		}

		cl := c.Clone()
		if msg := m.check(cl); msg != "" {
			t.Fatalf("%v: clone: %s", dt, msg)
		}
		// Mutate the clone every way there is; the original must not move.
		kr, vr := cl.Rows(0, 1)
		if dt == Float32 {
			kr.F32[0], vr.F32[3] = 1234, 1234
		} else {
			kr.U16[0], vr.U16[3] = 0x1234, 0x1234
		}
		k2, v2 := randKV(r, 3, s)
		for _, err := range []error{
			cl.Append(0, k2, v2),
			cl.Append(1, k2, v2),
			cl.Compact(0, [][]int{{1, 9}, {0, 2, 4}}),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
		if msg := m.check(c); msg != "" {
			t.Fatalf("seed %d: %v: original after mutating the clone: %s", seed, dt, msg)
		}
		// And the other way round.
		cl = c.Clone()
		mc := m.clone()
		kr, _ = c.Rows(0, 0)
		if dt == Float32 {
			kr.F32[1] = -99
		} else {
			kr.U16[1] = 0x4321
		}
		if err := c.Compact(0, [][]int{{}, {7}}); err != nil {
			t.Fatal(err)
		}
		c.Reset()
		if msg := mc.check(cl); msg != "" {
			t.Fatalf("seed %d: %v: clone after mutating the original: %s", seed, dt, msg)
		}
	}
}

func TestReset(t *testing.T) {
	r, seed := newRand(t)
	s := Shape{Layers: 2, KVHeads: 3, HeadDim: 2}
	for _, dt := range allDTypes {
		c := mustHost(t, s, dt)
		for l := 0; l < 2; l++ {
			k, v := randKV(r, 5+l, s)
			if err := c.Append(l, k, v); err != nil {
				t.Fatal(err)
			}
		}
		c.Reset()
		m := newRefCache(s, dt)
		if msg := m.check(c); msg != "" {
			t.Fatalf("%v: after Reset: %s", dt, msg)
		}
		if c.Reserved() != 0 {
			t.Errorf("%v: Reserved %d after Reset, want 0", dt, c.Reserved())
		}
		k, v := randKV(r, 2, s)
		if err := c.Append(1, k, v); err != nil {
			t.Fatal(err)
		}
		m.append(1, k, v)
		if msg := m.check(c); msg != "" {
			t.Fatalf("seed %d: %v: Append after Reset: %s", seed, dt, msg)
		}
		if got := c.Positions(1, 2, nil); !slices.Equal(got, []int32{0, 1}) {
			t.Errorf("%v: positions after Reset %v, want [0 1]", dt, got)
		}
	}
}

func TestHeadOutOfRangePanics(t *testing.T) {
	c := mustHost(t, Shape{2, 2, 2}, Float16)
	for _, f := range []func(){
		func() { c.Len(0, 2) },
		func() { c.Len(2, 0) },
		func() { c.Positions(-1, 0, nil) },
		func() { c.Rows(0, -1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("no panic for a head out of range")
				}
			}()
			f()
		}()
	}
}

// TestConcurrentLayers appends to and compacts distinct layers from distinct
// goroutines, as the interface allows; run with -race.
func TestConcurrentLayers(t *testing.T) {
	s := Shape{Layers: 4, KVHeads: 2, HeadDim: 8}
	for _, dt := range allDTypes {
		c := mustHost(t, s, dt)
		var wg sync.WaitGroup
		errs := make([]error, s.Layers)
		for l := 0; l < s.Layers; l++ {
			wg.Add(1)
			go func(l int) {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(l), 1))
				for i := 0; i < 50 && errs[l] == nil; i++ {
					k, v := randKV(r, 1+r.IntN(3), s)
					errs[l] = c.Append(l, k, v)
					if i%10 == 9 && errs[l] == nil {
						errs[l] = c.Compact(l, randKeep(r, lensOf(c, l)))
					}
				}
			}(l)
		}
		wg.Wait()
		for l, err := range errs {
			if err != nil {
				t.Errorf("%v: layer %d: %v", dt, l, err)
			}
		}
	}
}

func TestReserve(t *testing.T) {
	c, err := NewHost(Shape{Layers: 2, KVHeads: 2, HeadDim: 4}, Float16)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Reserve(-1); err == nil {
		t.Fatal("negative reserve accepted")
	}
	if err := c.Reserve(200); err != nil { // AllocsPerRun appends twice
		t.Fatal(err)
	}
	if c.Bytes() != 0 || c.Reserved() < 4*200*(2*4*2+4) {
		t.Fatalf("after Reserve(200): Bytes %d Reserved %d", c.Bytes(), c.Reserved())
	}
	row := make([]float32, 100*2*4)
	if n := testing.AllocsPerRun(1, func() {
		if err := c.Append(0, row, row); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("append into reserved room allocated %v times", n)
	}
}

// TestCompactLargeParallel compacts enough rows to take the multi-core path,
// both keeping most rows (moved in place) and few (gathered into new
// storage), and checks every kept row and position.
func TestCompactLargeParallel(t *testing.T) {
	const G, d, L = 4, 64, 4096
	for _, dt := range []DType{Float32, Float16} {
		for _, every := range []int{1, 3} { // keep all but a few / a third
			c, err := NewHost(Shape{Layers: 1, KVHeads: G, HeadDim: d}, dt)
			if err != nil {
				t.Fatal(err)
			}
			k := make([]float32, L*G*d)
			for i := range k {
				k[i] = float32(i%2048) / 8
			}
			v := make([]float32, len(k))
			for i := range v {
				v[i] = -k[i]
			}
			if err := c.Append(0, k, v); err != nil {
				t.Fatal(err)
			}
			keep := make([][]int, G)
			for g := range keep {
				for r := g; r < L; r += every {
					if every == 1 && r%97 == 0 {
						continue
					}
					keep[g] = append(keep[g], r)
				}
			}
			if err := c.Compact(0, keep); err != nil {
				t.Fatal(err)
			}
			var row []float32
			for g := range keep {
				kr, vr := c.Rows(0, g)
				pos := c.Positions(0, g, nil)
				if kr.N != len(keep[g]) {
					t.Fatalf("%v every %d head %d: %d rows, want %d", dt, every, g, kr.N, len(keep[g]))
				}
				for i, r := range keep[g] {
					if pos[i] != int32(r) {
						t.Fatalf("head %d row %d: position %d, want %d", g, i, pos[i], r)
					}
					row = kr.Row(i, row)
					if want := float32(((r*G+g)*d)%2048) / 8; row[0] != want {
						t.Fatalf("%v head %d row %d: key %v, want %v", dt, g, i, row[0], want)
					}
					row = vr.Row(i, row)
					if want := -float32(((r*G+g)*d+1)%2048) / 8; row[1] != want {
						t.Fatalf("%v head %d row %d: value %v, want %v", dt, g, i, row[1], want)
					}
				}
			}
			if every == 3 && c.Reserved() > 2*c.Bytes()+int64(G*d*8) {
				t.Fatalf("keeping a third: Reserved %d for Bytes %d, storage not released", c.Reserved(), c.Bytes())
			}
		}
	}
}

// TestHostBusy: overlapping mutation of one layer, or an Append while the
// cache is held, fails with ErrBusy; accessors out of range panic with the
// same kind of message.
func TestHostBusy(t *testing.T) {
	s := Shape{Layers: 2, KVHeads: 1, HeadDim: 2}
	c := mustHost(t, s, Float32)
	release, err := c.Acquire("test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Acquire("second"); !errors.Is(err, ErrBusy) {
		t.Fatalf("second Acquire: %v", err)
	}
	if err := c.Append(0, []float32{1, 2}, []float32{3, 4}); !errors.Is(err, ErrBusy) || c.Seen(0) != 0 {
		t.Fatalf("Append while held: %v, seen %d", err, c.Seen(0))
	}
	if err := c.Reserve(10); !errors.Is(err, ErrBusy) {
		t.Fatalf("Reserve while held: %v", err)
	}
	if err := c.Compact(0, [][]int{{}}); err != nil {
		t.Fatalf("the holder compacts: %v", err)
	}
	release()
	release() // idempotent
	if err := c.Append(0, []float32{1, 2}, []float32{3, 4}); err != nil {
		t.Fatal(err)
	}
	// Many goroutines append to one layer: each call either goes through
	// whole or fails with ErrBusy.
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				err := c.Append(1, []float32{1, 2}, []float32{3, 4})
				if err != nil && !errors.Is(err, ErrBusy) {
					t.Error(err)
				}
				if err == nil {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if c.Seen(1) != ok || c.Len(1, 0) != ok {
		t.Fatalf("seen %d, rows %d, successful appends %d", c.Seen(1), c.Len(1, 0), ok)
	}
	for _, f := range []func(){func() { c.Seen(-1) }, func() { c.Seen(2) }, func() { c.Len(0, 1) }} {
		func() {
			defer func() {
				msg, _ := recover().(string)
				if !strings.Contains(msg, "out of range") {
					t.Fatalf("panic %q, want an out-of-range message", msg)
				}
			}()
			f()
		}()
	}
}
