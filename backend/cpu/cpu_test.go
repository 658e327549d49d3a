package cpu

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/internal/reftest"
	"github.com/compresskv/compresskv/kvcache"
)

var dtypes = []kvcache.DType{kvcache.Float32, kvcache.Float16, kvcache.BFloat16}

// shapes are (query heads, KV heads): MHA, GQA, MQA.
var shapes = []struct{ H, G int }{{4, 4}, {8, 2}, {3, 1}}

// tolerance is the relative error allowed against the float64 reference for
// sums over L rows computed in float32.
func tolerance(L int) float64 { return 1e-5 * math.Sqrt(float64(L)) }

// parallel returns a backend that splits even tiny calls over 4 workers.
func parallel() *Backend {
	b := NewWithWorkers(4)
	b.minParallel = 0
	return b
}

func TestName(t *testing.T) {
	if n := New().Name(); n != "cpu" {
		t.Fatalf("Name() = %q", n)
	}
}

func TestWindowScoresReference(t *testing.T) {
	r, seed := newRand(t)
	for _, dt := range dtypes {
		for _, sh := range shapes {
			for _, d := range []int{8, 64, 80, 128} {
				for _, L := range []int{1, 13, 77, 203} {
					w := min(L, 1+r.IntN(9))
					name := fmt.Sprintf("%v/H%d-G%d/d%d/L%d/w%d", dt, sh.H, sh.G, d, L, w)
					c := newCache(t, r, 2, sh.G, d, L, dt)
					q := randVec(r, w*sh.H*d, 1.5)
					heads := []int{sh.H - 1, 0, sh.H / 2}
					checkWindow(t, name, seed, c, q, w, sh.H, heads)
				}
			}
		}
	}
}

// TestWindowScoresLong crosses the chunk boundary (several units per head,
// merged softmax states) on the serial and the parallel path.
func TestWindowScoresLong(t *testing.T) {
	r, seed := newRand(t)
	for _, dt := range dtypes {
		L := 2*chunkRows + 37
		c := newCache(t, r, 1, 2, 8, L, dt)
		q := randVec(r, 8*4*8, 3)
		checkWindow(t, fmt.Sprintf("%v/L%d", dt, L), seed, c, q, 8, 4, []int{0, 1, 2, 3})
	}
}

func checkWindow(t *testing.T, name string, seed uint64, c *kvcache.Host, q []float32, w, H int, heads []int) {
	t.Helper()
	s := c.Shape()
	out := make([][]float32, len(heads))
	outP := make([][]float32, len(heads))
	for j, h := range heads {
		L := c.Len(0, h/(H/s.KVHeads))
		out[j] = make([]float32, L)
		outP[j] = slices.Repeat([]float32{-1}, L)
	}
	if err := NewWithWorkers(1).WindowScores(c, 0, q, w, H, heads, out); err != nil {
		t.Fatalf("%s (seed %d): %v", name, seed, err)
	}
	if err := parallel().WindowScores(c, 0, q, w, H, heads, outP); err != nil {
		t.Fatalf("%s (seed %d): parallel: %v", name, seed, err)
	}
	for j, h := range heads {
		want := refWindowScores(c, 0, q, w, H, h)
		L := len(want)
		if e, at := maxRelErr(out[j], want, 1e-30); e > tolerance(L) {
			t.Errorf("%s head %d (seed %d): row %d = %g, want %g (relative error %.3g > %.3g)",
				name, h, seed, at, out[j][at], want[at], e, tolerance(L))
		}
		var sum float64
		for _, v := range out[j] {
			sum += float64(v)
		}
		if math.Abs(sum-float64(w)) > 1e-5*float64(w)*math.Sqrt(float64(L)) {
			t.Errorf("%s head %d (seed %d): scores sum to %g, want %d", name, h, seed, sum, w)
		}
		if !slices.Equal(out[j], outP[j]) {
			t.Errorf("%s head %d (seed %d): parallel result differs from serial", name, h, seed)
		}
	}
}

func TestWindowScoresByHand(t *testing.T) {
	// d = 1, keys 1, 2, 3, queries ln 2: logits are j*ln 2, exp 2, 4, 8.
	// Query 0 sees rows 0..1 (2/6, 4/6), query 1 sees all (2/14, 4/14, 8/14).
	c, _ := kvcache.NewHost(kvcache.Shape{Layers: 1, KVHeads: 1, HeadDim: 1}, kvcache.Float32)
	if err := c.Append(0, []float32{1, 2, 3}, []float32{0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	ln2 := float32(math.Ln2)
	out := [][]float32{make([]float32, 3)}
	if err := New().WindowScores(c, 0, []float32{ln2, ln2}, 2, 1, []int{0}, out); err != nil {
		t.Fatal(err)
	}
	want := []float64{1.0/3 + 1.0/7, 2.0/3 + 2.0/7, 4.0 / 7}
	if e, at := maxRelErr(out[0], want, 1e-9); e > 1e-6 {
		t.Fatalf("got %v, want %v (row %d)", out[0], want, at)
	}
	// Equal logits: query 0 splits over 2 rows, query 1 over 3.
	out[0] = make([]float32, 3)
	if err := New().WindowScores(c, 0, []float32{0, 0}, 2, 1, []int{0}, out); err != nil {
		t.Fatal(err)
	}
	want = []float64{5.0 / 6, 5.0 / 6, 1.0 / 3}
	if e, at := maxRelErr(out[0], want, 1e-9); e > 1e-6 {
		t.Fatalf("got %v, want %v (row %d)", out[0], want, at)
	}
}

func TestAttendReference(t *testing.T) {
	r, seed := newRand(t)
	for _, dt := range dtypes {
		for _, sh := range shapes {
			for _, d := range []int{8, 64, 80, 128} {
				for _, L := range []int{1, 13, 203} {
					checkAttend(t, fmt.Sprintf("%v/H%d-G%d/d%d/L%d", dt, sh.H, sh.G, d, L), seed,
						newCache(t, r, 2, sh.G, d, L, dt), randVec(r, sh.H*d, 1.5), sh.H)
				}
			}
		}
	}
	for _, dt := range dtypes {
		L := 3*chunkRows + 5
		checkAttend(t, fmt.Sprintf("%v/long/L%d", dt, L), seed, newCache(t, r, 1, 2, 8, L, dt), randVec(r, 4*8, 3), 4)
		// Groups of 4 and 8 query heads (the four-head kernels) across
		// chunks, at a d the assembly takes whole and one it does not.
		L = chunkRows + 37
		checkAttend(t, fmt.Sprintf("%v/long-group4/L%d", dt, L), seed, newCache(t, r, 1, 2, 32, L, dt), randVec(r, 8*32, 3), 8)
		checkAttend(t, fmt.Sprintf("%v/long-group8/L%d", dt, L), seed, newCache(t, r, 1, 1, 24, L, dt), randVec(r, 8*24, 3), 8)
	}
}

func checkAttend(t *testing.T, name string, seed uint64, c *kvcache.Host, q []float32, H int) {
	t.Helper()
	d := c.Shape().HeadDim
	want, wantW := refAttend(c, 0, q, H)
	L := c.Len(0, 0)
	out, outP := make([]float32, H*d), make([]float32, H*d)
	if err := NewWithWorkers(1).Attend(c, 0, q, H, out); err != nil {
		t.Fatalf("%s (seed %d): %v", name, seed, err)
	}
	if err := parallel().Attend(c, 0, q, H, outP); err != nil {
		t.Fatalf("%s (seed %d): parallel: %v", name, seed, err)
	}
	// Outputs are weighted means of values of size ~1: compare absolutely.
	for i := range want {
		if e := math.Abs(float64(out[i]) - want[i]); e > tolerance(L) {
			t.Fatalf("%s (seed %d): head %d value %d = %g, want %g (error %.3g)", name, seed, i/d, i%d, out[i], want[i], e)
		}
	}
	if !slices.Equal(out, outP) {
		t.Errorf("%s (seed %d): parallel result differs from serial", name, seed)
	}
	weights := [][]float32{make([]float32, 1)} // grown
	weights, err := NewWithWorkers(1).AttentionWeights(c, 0, q, H, weights)
	if err != nil {
		t.Fatalf("%s (seed %d): %v", name, seed, err)
	}
	weightsP, err := parallel().AttentionWeights(c, 0, q, H, nil)
	if err != nil {
		t.Fatalf("%s (seed %d): parallel: %v", name, seed, err)
	}
	if len(weights) != H {
		t.Fatalf("%s: %d weight rows, want %d", name, len(weights), H)
	}
	for h := range H {
		if len(weights[h]) != L {
			t.Fatalf("%s: head %d: %d weights, want %d", name, h, len(weights[h]), L)
		}
		if e, at := maxRelErr(weights[h], wantW[h], 1e-30); e > tolerance(L) {
			t.Errorf("%s head %d (seed %d): weight %d = %g, want %g (relative error %.3g)", name, h, seed, at, weights[h][at], wantW[h][at], e)
		}
		if !slices.Equal(weights[h], weightsP[h]) {
			t.Errorf("%s head %d (seed %d): parallel weights differ from serial", name, h, seed)
		}
	}
}

func TestPoolByHand(t *testing.T) {
	b := New()
	src := []float32{1, 2, 3, 4, 5}
	for _, tc := range []struct {
		kernel int
		kind   backend.Pooling
		want   []float32
	}{
		{3, backend.AvgPool, []float32{1, 2, 3, 4, 3}},
		{3, backend.MaxPool, []float32{2, 3, 4, 5, 5}},
		{1, backend.AvgPool, []float32{1, 2, 3, 4, 5}},
		{1, backend.MaxPool, []float32{1, 2, 3, 4, 5}},
		{5, backend.MaxPool, []float32{3, 4, 5, 5, 5}},
		{5, backend.AvgPool, []float32{6.0 / 5, 2, 3, 14.0 / 5, 12.0 / 5}},
		{21, backend.MaxPool, []float32{5, 5, 5, 5, 5}},
		{21, backend.AvgPool, []float32{15.0 / 21, 15.0 / 21, 15.0 / 21, 15.0 / 21, 15.0 / 21}},
	} {
		dst := make([]float32, len(src))
		if err := b.Pool(dst, src, tc.kernel, tc.kind); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(dst, tc.want) {
			t.Errorf("%v pool kernel %d of %v = %v, want %v", tc.kind, tc.kernel, src, dst, tc.want)
		}
	}
	// Max pooling ignores the padding: all negative stays negative.
	dst := make([]float32, 3)
	if err := b.Pool(dst, []float32{-3, -2, -1}, 3, backend.MaxPool); err != nil {
		t.Fatal(err)
	}
	if want := []float32{-2, -1, -1}; !slices.Equal(dst, want) {
		t.Errorf("max pool of negatives = %v, want %v", dst, want)
	}
}

func TestPoolReference(t *testing.T) {
	r, seed := newRand(t)
	b := New()
	for _, n := range []int{1, 2, 7, 100, 333} {
		for _, kernel := range []int{1, 3, 5, 7, 15, 17, 31, 101, 2*n + 3} {
			if kernel%2 == 0 {
				kernel++
			}
			src := randVec(r, n, 1)
			for _, kind := range []backend.Pooling{backend.AvgPool, backend.MaxPool} {
				want := refPool(src, kernel, kind == backend.AvgPool)
				dst := make([]float32, n)
				if err := b.Pool(dst, src, kernel, kind); err != nil {
					t.Fatal(err)
				}
				if e, at := maxRelErr(dst, want, 1e-3); e > 1e-6 {
					t.Errorf("%v n %d kernel %d (seed %d): [%d] = %g, want %g", kind, n, kernel, seed, at, dst[at], want[at])
				}
				// In place gives the same result.
				in := slices.Clone(src)
				if err := b.Pool(in, in, kernel, kind); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(in, dst) {
					t.Errorf("%v n %d kernel %d (seed %d): in-place result differs", kind, n, kernel, seed)
				}
				// Shifted overlap too.
				if n > 1 {
					buf := append(slices.Clone(src), 0)
					if err := b.Pool(buf[1:], buf[:n], kernel, kind); err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(buf[1:], dst) {
						t.Errorf("%v n %d kernel %d (seed %d): overlapping result differs", kind, n, kernel, seed)
					}
				}
			}
		}
	}
}

// TestPoolParallel pools rows long enough to be split over workers: the
// result matches the float64 reference and, bit for bit, the serial path.
func TestPoolParallel(t *testing.T) {
	r, seed := newRand(t)
	for _, n := range []int{poolChunk + 1, 3*poolChunk - 7} {
		for _, kernel := range []int{1, 5, 15, 17, 101} {
			src := randVec(r, n, 1)
			for _, kind := range []backend.Pooling{backend.AvgPool, backend.MaxPool} {
				want := refPool(src, kernel, kind == backend.AvgPool)
				serial, par := make([]float32, n), make([]float32, n)
				if err := NewWithWorkers(1).Pool(serial, src, kernel, kind); err != nil {
					t.Fatal(err)
				}
				if err := parallel().Pool(par, src, kernel, kind); err != nil {
					t.Fatal(err)
				}
				if e, at := maxRelErr(par, want, 1e-3); e > 1e-6 {
					t.Errorf("%v n %d kernel %d (seed %d): [%d] = %g, want %g", kind, n, kernel, seed, at, par[at], want[at])
				}
				if !slices.Equal(serial, par) {
					t.Errorf("%v n %d kernel %d (seed %d): parallel result differs from serial", kind, n, kernel, seed)
				}
			}
		}
	}
}

// TestMeanRows compares MeanRows with the plain float32 loop it documents,
// bit for bit (zeros compare equal whatever their sign), serial and split
// over workers, with dst aliasing the first row too.
func TestMeanRows(t *testing.T) {
	r, seed := newRand(t)
	for _, n := range []int{1, 7, poolChunk + 3, 3 * poolChunk} {
		for _, k := range []int{1, 2, 4, 5} {
			rows := make([][]float32, k)
			for i := range rows {
				rows[i] = randVec(r, n, 1)
			}
			want := make([]float32, n)
			for _, row := range rows {
				for i, v := range row {
					want[i] += v
				}
			}
			inv := 1 / float32(k)
			for i := range want {
				want[i] *= inv
			}
			for _, b := range []*Backend{NewWithWorkers(1), parallel()} {
				got, checkGuard := guarded(t, make([]float32, n), 4)
				if err := b.MeanRows(got, rows); err != nil {
					t.Fatal(err)
				}
				checkGuard("MeanRows")
				if !slices.Equal(got, want) {
					t.Fatalf("n %d rows %d (seed %d): MeanRows differs from the float32 loop", n, k, seed)
				}
				first := slices.Clone(rows[0])
				in := append([][]float32{first}, rows[1:]...)
				if err := b.MeanRows(first, in); err != nil || !slices.Equal(first, want) {
					t.Fatalf("n %d rows %d (seed %d): in place: %v", n, k, seed, err)
				}
			}
		}
	}
	b := New()
	for _, tc := range []struct {
		name string
		dst  []float32
		rows [][]float32
	}{
		{"no rows", make([]float32, 2), nil},
		{"short row", make([]float32, 2), [][]float32{{1, 2}, {1}}},
		{"overlap", nil, nil},
	} {
		if tc.name == "overlap" {
			x := []float32{1, 2, 3, 4}
			tc.dst, tc.rows = x[:2], [][]float32{{5, 6}, x[1:3]}
		}
		keep := slices.Clone(tc.dst)
		if err := b.MeanRows(tc.dst, tc.rows); err == nil || !strings.HasPrefix(err.Error(), "cpu: MeanRows:") {
			t.Errorf("%s: error %v", tc.name, err)
		}
		if !slices.Equal(keep, tc.dst) {
			t.Errorf("%s: output changed on error", tc.name)
		}
	}
}

func TestPoolErrors(t *testing.T) {
	b := New()
	src := []float32{1, 2, 3}
	for _, tc := range []struct {
		name   string
		dst    []float32
		src    []float32
		kernel int
		kind   backend.Pooling
		is     error
	}{
		{"even kernel", make([]float32, 3), src, 4, backend.AvgPool, nil},
		{"zero kernel", make([]float32, 3), src, 0, backend.MaxPool, nil},
		{"negative kernel", make([]float32, 3), src, -3, backend.MaxPool, nil},
		{"bad kind", make([]float32, 3), src, 3, backend.Pooling(7), nil},
		{"short dst", make([]float32, 2), src, 3, backend.AvgPool, kvcache.ErrShape},
		{"NaN", make([]float32, 3), []float32{1, float32(math.NaN()), 3}, 3, backend.AvgPool, backend.ErrNaN},
	} {
		err := b.Pool(tc.dst, tc.src, tc.kernel, tc.kind)
		if err == nil || !strings.HasPrefix(err.Error(), "cpu: Pool:") || (tc.is != nil && !errors.Is(err, tc.is)) {
			t.Errorf("%s: error %v", tc.name, err)
		}
	}
	if err := b.Pool(nil, nil, 5, backend.AvgPool); err != nil {
		t.Errorf("empty input: %v", err)
	}
}

func TestTopKByHand(t *testing.T) {
	b := New()
	negZero := float32(math.Copysign(0, -1))
	inf := float32(math.Inf(1))
	for _, tc := range []struct {
		scores []float32
		k      int
		want   []int
	}{
		{[]float32{1, 1, 1, 1, 1, 1}, 3, []int{0, 1, 2}},
		{[]float32{0.5, 3, 0.5, 2, 3}, 3, []int{1, 3, 4}},
		{[]float32{0.5, 3, 0.5, 2, 3}, 4, []int{0, 1, 3, 4}},
		{[]float32{0.5, 3}, 5, []int{0, 1}},
		{[]float32{0.5, 3}, 2, []int{0, 1}},
		{[]float32{0.5, 3}, 0, []int{}},
		{[]float32{0.5, 3}, -1, []int{}},
		{nil, 3, []int{}},
		{[]float32{negZero, 0, negZero, -1}, 2, []int{0, 1}},
		{[]float32{-inf, inf, 0, -inf}, 2, []int{1, 2}},
		{[]float32{-inf, -inf, -inf}, 1, []int{0}},
	} {
		got, err := b.TopK([]int{9, 9, 9}, tc.scores, tc.k)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("TopK(%v, %d) = %v, want %v", tc.scores, tc.k, got, tc.want)
		}
	}
	_, err := b.TopK(nil, []float32{1, float32(math.NaN()), 2}, 1)
	if !errors.Is(err, backend.ErrNaN) || !strings.HasPrefix(err.Error(), "cpu: TopK:") {
		t.Errorf("NaN score: error %v", err)
	}
	_, err = b.TopK(nil, []float32{1, float32(math.NaN())}, 5)
	if !errors.Is(err, backend.ErrNaN) {
		t.Errorf("NaN score with k > n: error %v", err)
	}
}

func TestTopKReference(t *testing.T) {
	r, seed := newRand(t)
	b := New()
	for _, n := range []int{1, 5, 17, 100, 1000, 10007, 3*topkPart + 5} {
		reps := 4
		if n > 3*topkPart {
			b = parallel() // parts on several workers
			reps = 1
		}
		for range reps {
			scores := make([]float32, n)
			levels := 1 + r.IntN(n+1) // few levels: many ties
			for i := range scores {
				scores[i] = float32(r.IntN(levels)) / 4
			}
			if r.IntN(2) == 0 {
				scores = randVec(r, n, 1)
			}
			if r.IntN(4) == 0 {
				slices.Sort(scores) // sorted input, a bad case for naive pivots
			}
			for _, k := range []int{1, 2, n / 3, n / 2, n - 1, n, n + 1, r.IntN(n + 1)} {
				got, err := b.TopK(nil, scores, k)
				if err != nil {
					t.Fatal(err)
				}
				if want := refTopK(scores, k); !slices.Equal(got, want) {
					t.Fatalf("n %d k %d (seed %d): TopK = %v, want %v", n, k, seed, got, want)
				}
			}
		}
	}
}

func FuzzTopK(f *testing.F) {
	f.Add([]byte{1, 2, 3, 3, 2, 1}, 3)
	f.Add([]byte{0, 0, 0, 0}, 2)
	f.Add([]byte{255, 128, 7, 7, 7, 0, 9}, 5)
	f.Fuzz(func(t *testing.T, data []byte, k int) {
		scores := make([]float32, len(data))
		for i, c := range data {
			switch c {
			case 255:
				scores[i] = float32(math.Inf(1))
			case 254:
				scores[i] = float32(math.Inf(-1))
			case 253:
				scores[i] = float32(math.Copysign(0, -1))
			default:
				scores[i] = float32(int(c%32)-16) / 8
			}
		}
		got, err := New().TopK(nil, scores, k)
		if err != nil {
			t.Fatal(err)
		}
		if want := refTopK(scores, k); !slices.Equal(got, want) {
			t.Fatalf("TopK(%v, %d) = %v, want %v", scores, k, got, want)
		}
	})
}

// errCache hides the HostReader methods of a cache.
type errCache struct{ kvcache.KVCache }

func TestErrors(t *testing.T) {
	r, _ := newRand(t)
	b := New()
	const H, G, d, L = 4, 2, 8, 10
	c := newCache(t, r, 2, G, d, L, kvcache.Float16)
	q1 := randVec(r, H*d, 1)
	q3 := randVec(r, 3*H*d, 1)
	outs := func(n, L int) [][]float32 {
		o := make([][]float32, n)
		for i := range o {
			o[i] = make([]float32, L)
		}
		return o
	}
	nan := slices.Clone(q3)
	nan[17] = float32(math.NaN())
	inf := slices.Clone(q1)
	inf[3] = float32(math.Inf(-1))
	check := func(name string, err error, is error, want string) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: no error", name)
			return
		}
		if !strings.HasPrefix(err.Error(), "cpu: ") || !strings.Contains(err.Error(), want) || (is != nil && !errors.Is(err, is)) {
			t.Errorf("%s: error %q, want one containing %q", name, err, want)
		}
	}
	check("window: layer", b.WindowScores(c, 2, q3, 3, H, []int{0}, outs(1, L)), nil, "layer 2 out of range")
	check("window: negative layer", b.WindowScores(c, -1, q3, 3, H, []int{0}, outs(1, L)), nil, "layer -1")
	check("window: head", b.WindowScores(c, 0, q3, 3, H, []int{4}, outs(1, L)), nil, "head 4 out of range")
	check("window: negative head", b.WindowScores(c, 0, q3, 3, H, []int{-1}, outs(1, L)), nil, "head -1 out of range")
	check("window: w > L", b.WindowScores(c, 0, randVec(r, 11*H*d, 1), 11, H, []int{0}, outs(1, L)), nil, "want w <= rows")
	check("window: w = 0", b.WindowScores(c, 0, nil, 0, H, []int{0}, outs(1, L)), kvcache.ErrShape, "at least 1")
	check("window: empty layer", b.WindowScores(c, 1, q3, 3, H, []int{0}, outs(1, 0)), nil, "want w <= rows")
	check("window: out count", b.WindowScores(c, 0, q3, 3, H, []int{0, 1}, outs(1, L)), kvcache.ErrShape, "output rows")
	check("window: out length", b.WindowScores(c, 0, q3, 3, H, []int{0}, outs(1, L+1)), kvcache.ErrShape, "want 10")
	check("window: query length", b.WindowScores(c, 0, q3[1:], 3, H, []int{0}, outs(1, L)), kvcache.ErrShape, "query values")
	check("window: query heads", b.WindowScores(c, 0, q3, 3, 3, []int{0}, outs(1, L)), kvcache.ErrShape, "multiple")
	check("window: NaN query", b.WindowScores(c, 0, nan, 3, H, []int{0}, outs(1, L)), kvcache.ErrNonFinite, "NaN")
	check("window: not host", b.WindowScores(errCache{c}, 0, q3, 3, H, []int{0}, outs(1, L)), nil, "HostReader")
	check("window: nil cache", b.WindowScores(nil, 0, q3, 3, H, []int{0}, outs(1, L)), nil, "nil cache")

	check("attend: layer", b.Attend(c, 5, q1, H, make([]float32, H*d)), nil, "layer 5 out of range")
	check("attend: out", b.Attend(c, 0, q1, H, make([]float32, H*d-1)), kvcache.ErrShape, "output")
	check("attend: query", b.Attend(c, 0, q1[:d], H, make([]float32, H*d)), kvcache.ErrShape, "query values")
	check("attend: Inf query", b.Attend(c, 0, inf, H, make([]float32, H*d)), kvcache.ErrNonFinite, "-Inf")
	check("attend: empty", b.Attend(c, 1, q1, H, make([]float32, H*d)), nil, "no rows")
	check("attend: not host", b.Attend(errCache{c}, 0, q1, H, make([]float32, H*d)), nil, "HostReader")
	_, err := b.AttentionWeights(c, 0, q1, 5, nil)
	check("weights: query heads", err, kvcache.ErrShape, "multiple")
	_, err = b.AttentionWeights(c, 7, q1, H, nil)
	check("weights: layer", err, nil, "layer 7")
	_, err = b.AttentionWeights(errCache{c}, 0, q1, H, nil)
	check("weights: not host", err, nil, "HostReader")
	check("compact: layer", b.Compact(c, 9, nil), nil, "layer 9")
	check("compact: keep", b.Compact(c, 0, [][]int{{0}}), kvcache.ErrShape, "compaction")
	if c.Len(0, 0) != L {
		t.Fatalf("failed compaction changed the cache")
	}
}

// TestOverflowedStorage: Append rejects a value float16 cannot hold, but a
// row written through the aliasing Rows can still hold +Inf; the kernels
// must report it, not panic or return garbage silently.
func TestOverflowedStorage(t *testing.T) {
	c, _ := kvcache.NewHost(kvcache.Shape{Layers: 1, KVHeads: 1, HeadDim: 2}, kvcache.Float16)
	if err := c.Append(0, []float32{1, 2, 1e5, 1, 3, 4}, []float32{1, 1, 1, 1, 1, 1}); !errors.Is(err, kvcache.ErrNonFinite) {
		t.Fatalf("Append of 1e5 into float16: %v", err)
	}
	if err := c.Append(0, []float32{1, 2, 1, 1, 3, 4}, []float32{1, 1, 1, 1, 1, 1}); err != nil {
		t.Fatal(err)
	}
	k, _ := c.Rows(0, 0)
	k.U16[2] = 0x7C00 // +Inf
	q := []float32{1, 1}
	for _, b := range []*Backend{New(), parallel()} {
		if err := b.Attend(c, 0, q, 1, make([]float32, 2)); !errors.Is(err, kvcache.ErrNonFinite) {
			t.Errorf("Attend: error %v", err)
		}
		if _, err := b.AttentionWeights(c, 0, q, 1, nil); !errors.Is(err, kvcache.ErrNonFinite) {
			t.Errorf("AttentionWeights: error %v", err)
		}
		if err := b.WindowScores(c, 0, q, 1, 1, []int{0}, [][]float32{make([]float32, 3)}); !errors.Is(err, kvcache.ErrNonFinite) {
			t.Errorf("WindowScores: error %v", err)
		}
	}
}

func TestCompact(t *testing.T) {
	r, _ := newRand(t)
	c := newCache(t, r, 1, 2, 8, 10, kvcache.BFloat16)
	if err := New().Compact(c, 0, [][]int{{1, 4, 9}, {0, 2, 3}}); err != nil {
		t.Fatal(err)
	}
	if c.Len(0, 0) != 3 || c.Len(0, 1) != 3 {
		t.Fatalf("lengths %d %d after compaction, want 3", c.Len(0, 0), c.Len(0, 1))
	}
	if pos := c.Positions(0, 0, nil); !slices.Equal(pos, []int32{1, 4, 9}) {
		t.Fatalf("positions %v", pos)
	}
}

func TestDecodeF16Exhaustive(t *testing.T) {
	src := make([]uint16, 1<<16)
	for i := range src {
		src[i] = uint16(i)
	}
	dst := make([]float32, len(src))
	// The Go references give the exact bits of kvcache; the dispatched
	// kernels (F16C on amd64) may quiet a signalling NaN.
	for _, k := range []struct {
		name  string
		f16   func([]float32, []uint16)
		exact bool
	}{{"Go", decodeF16Go, true}, {"dispatched", decodeF16, false}} {
		k.f16(dst, src)
		for i, h := range src {
			got, want := dst[i], kvcache.F16ToF32(h)
			if math.Float32bits(got) != math.Float32bits(want) && (k.exact || want == want || got == got) {
				t.Fatalf("decodeF16 (%s, %s)(%#04x) = %#08x, want %#08x", k.name, kernelLevel(), h, math.Float32bits(got), math.Float32bits(want))
			}
		}
	}
	for _, f := range []func([]float32, []uint16){decodeBF16Go, decodeBF16} {
		f(dst, src)
		for i, h := range src {
			if got, want := math.Float32bits(dst[i]), math.Float32bits(kvcache.BF16ToF32(h)); got != want {
				t.Fatalf("decodeBF16(%#04x) = %#08x, want %#08x", h, got, want)
			}
		}
	}
	// Odd lengths and offsets: the vector part and the Go tail must meet.
	for n := range 40 {
		for off := range 3 {
			decodeF16(dst[:n], src[1000+off:1000+off+n])
			decodeBF16(dst[n:2*n], src[1000+off:1000+off+n])
			for i := range n {
				h := src[1000+off+i]
				if dst[i] != kvcache.F16ToF32(h) || dst[n+i] != kvcache.BF16ToF32(h) {
					t.Fatalf("n %d offset %d: value %d (%#04x) decoded to %g and %g", n, off, i, h, dst[i], dst[n+i])
				}
			}
		}
	}
}

func TestExpf(t *testing.T) {
	worst := 0.0
	for x := float32(-87.3); x <= 88.7; x += 0.0137 {
		got, want := float64(expf(x)), math.Exp(float64(x))
		if e := math.Abs(got-want) / want; e > worst {
			worst = e
		}
	}
	if worst > 3e-7 { // about 2.5 ulp of float32
		t.Errorf("expf: worst relative error %.3g", worst)
	}
	if expf(0) != 1 {
		t.Errorf("expf(0) = %v", expf(0))
	}
	if v := expf(-100); v != 0 {
		t.Errorf("expf(-100) = %v, want 0", v)
	}
	if v := expf(float32(math.Inf(-1))); v != 0 {
		t.Errorf("expf(-Inf) = %v, want 0", v)
	}
	if v := expf(100); !math.IsInf(float64(v), 1) {
		t.Errorf("expf(100) = %v, want +Inf", v)
	}
	if v := expf(float32(math.NaN())); v == v {
		t.Errorf("expf(NaN) = %v, want NaN", v)
	}
	t.Logf("expf: worst relative error %.3g", worst)
}

func TestKernels(t *testing.T) {
	r, seed := newRand(t)
	for _, n := range []int{0, 1, 3, 8, 13, 128} {
		a, b := randVec(r, n, 1), randVec(r, 5*n, 1)
		var want float64
		for i := range a {
			want += float64(a[i]) * float64(b[i])
		}
		if got := dot(a, b); math.Abs(float64(got)-want) > 1e-5*math.Sqrt(float64(n+1)) {
			t.Errorf("dot n %d (seed %d): %g, want %g", n, seed, got, want)
		}
		dst := make([]float32, 5)
		dotsGo(dst, a, b, 0.5)
		for j := range dst {
			if w := 0.5 * dot(a, b[j*n:]); dst[j] != w {
				t.Errorf("dots n %d row %d (seed %d): %g, want %g (as dot)", n, j, seed, dst[j], w)
			}
		}
		acc := randVec(r, n, 1)
		p := randVec(r, 5, 1)
		want64 := reftest.F64(acc)
		for j := range p {
			for i := range n {
				want64[i] += float64(p[j]) * float64(b[j*n+i])
			}
		}
		accRowsGo(acc, p, b)
		if e, at := maxRelErr(acc, want64, 1); e > 1e-5 {
			t.Errorf("accRows n %d (seed %d): [%d] = %g, want %g", n, seed, at, acc[at], want64[at])
		}
	}
}

// TestAllocs checks that warm serial calls allocate nothing.
func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	r, _ := newRand(t)
	b := NewWithWorkers(1)
	const H, G, d, L, w = 8, 2, 64, 300, 8
	c := newCache(t, r, 1, G, d, L, kvcache.Float16)
	q := randVec(r, w*H*d, 1)
	out := [][]float32{make([]float32, L), make([]float32, L)}
	heads := []int{1, 6}
	att := make([]float32, H*d)
	scores := randVec(r, L, 1)
	dst := make([]int, 0, L)
	pooled := make([]float32, L)
	var weights [][]float32
	for name, f := range map[string]func(){
		"WindowScores":     func() { _ = b.WindowScores(c, 0, q, w, H, heads, out) },
		"Attend":           func() { _ = b.Attend(c, 0, q[:H*d], H, att) },
		"AttentionWeights": func() { weights, _ = b.AttentionWeights(c, 0, q[:H*d], H, weights) },
		"TopK":             func() { dst, _ = b.TopK(dst, scores, 50) },
		"Pool":             func() { _ = b.Pool(pooled, scores, 5, backend.AvgPool) },
		"PoolInPlace":      func() { _ = b.Pool(pooled, pooled, 5, backend.MaxPool) },
	} {
		f()
		if n := testing.AllocsPerRun(20, f); n != 0 {
			t.Errorf("%s: %v allocations per call", name, n)
		}
	}
}

// TestWindowScoresStore checks that keeping the exponentials between the
// two passes and computing them again give the same bits, on one chunk and
// on several, serial and parallel.
func TestWindowScoresStore(t *testing.T) {
	r, seed := newRand(t)
	for _, dt := range dtypes {
		for _, L := range []int{77, chunkRows + 9, 2*chunkRows + 1} {
			const H, G, d, w = 8, 2, 16, 8
			c := newCache(t, r, 1, G, d, L, dt)
			q := randVec(r, w*H*d, 2)
			heads := []int{0, 1, 5, 6}
			var outs [4][][]float32
			for i := range outs {
				b := NewWithWorkers(1)
				if i >= 2 {
					b = parallel()
				}
				if i%2 == 1 {
					b.storeBytes = 0
				}
				outs[i] = make([][]float32, len(heads))
				for e := range heads {
					outs[i][e] = make([]float32, L)
				}
				if err := b.WindowScores(c, 0, q, w, H, heads, outs[i]); err != nil {
					t.Fatal(err)
				}
			}
			for i := 1; i < len(outs); i++ {
				for e := range heads {
					if !slices.Equal(outs[0][e], outs[i][e]) {
						t.Errorf("%v L %d (seed %d): head %d: variant %d (store, recompute, parallel store, parallel recompute) differs",
							dt, L, seed, heads[e], i)
					}
				}
			}
			want := refWindowScores(c, 0, q, w, H, heads[2])
			if e, at := maxRelErr(outs[0][2], want, 1e-30); e > tolerance(L) {
				t.Errorf("%v L %d (seed %d): row %d = %g, want %g", dt, L, seed, at, outs[0][2][at], want[at])
			}
		}
	}
}
