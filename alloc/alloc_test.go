package alloc

import (
	"errors"
	"math"
	"math/rand"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testSeed returns a fresh seed per run, or ALLOC_SEED to reproduce a failure.
func testSeed(t testing.TB) int64 {
	t.Helper()
	seed := time.Now().UnixNano()
	if s := os.Getenv("ALLOC_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("ALLOC_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (rerun with ALLOC_SEED=%d)", seed, seed)
	return seed
}

// refErrorAware is a literal transcription of the pseudo-code of docs/DESIGN.md
// section 3, one token at a time, written independently of ErrorAware.
// ok is false when no layer can move.
func refErrorAware(weights []float64, b, lo, hi int) (out []int, ok bool) {
	s := 0.0
	for _, w := range weights {
		s += w
	}
	w := make([]float64, len(weights))
	for i := range weights {
		w[i] = weights[i] / s
	}
	n := len(w)
	total := b * n
	rest := total - lo*n
	out = make([]int, n)
	sum := 0
	for l := range w {
		v := lo + int(math.RoundToEven(w[l]*float64(rest)))
		if v < lo {
			v = lo
		}
		if v > hi {
			v = hi
		}
		out[l] = v
		sum += v
	}
	diff := total - sum
	for diff != 0 {
		var cand []int
		for l := range out {
			if (diff > 0 && out[l] < hi) || (diff < 0 && out[l] > lo) {
				cand = append(cand, l)
			}
		}
		if len(cand) == 0 {
			return nil, false
		}
		// Insertion sort by weight (descending for diff > 0, ascending for
		// diff < 0), ties by layer ascending.
		for i := 1; i < len(cand); i++ {
			for j := i; j > 0; j-- {
				a, c := cand[j-1], cand[j]
				var swap bool
				if diff > 0 {
					swap = w[c] > w[a]
				} else {
					swap = w[c] < w[a]
				}
				if !swap {
					break
				}
				cand[j-1], cand[j] = c, a
			}
		}
		for _, l := range cand {
			if diff == 0 {
				break
			}
			if diff > 0 {
				out[l]++
				diff--
			} else {
				out[l]--
				diff++
			}
		}
	}
	return out, true
}

func checkBudgets(t *testing.T, seed int64, got []int, n, b, lo, hi int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("seed %d: %d budgets, want %d", seed, len(got), n)
	}
	sum := 0
	for l, v := range got {
		if v < lo || v > hi {
			t.Fatalf("seed %d: layer %d budget %d outside [%d, %d]", seed, l, v, lo, hi)
		}
		sum += v
	}
	if sum != b*n {
		t.Fatalf("seed %d: budgets sum to %d, want %d", seed, sum, b*n)
	}
}

func randomWeights(rng *rand.Rand, n int) []float64 {
	w := make([]float64, n)
	mode := rng.Intn(4)
	for i := range w {
		switch mode {
		case 0: // continuous
			w[i] = rng.Float64()
		case 1: // coarse values: many ties and exact halves
			w[i] = float64(rng.Intn(4))
		case 2: // heavy-tailed: one layer dominates, clipping at hi
			w[i] = math.Exp(rng.NormFloat64() * 3)
		default: // some zeros
			if rng.Intn(3) > 0 {
				w[i] = rng.Float64()
			}
		}
	}
	w[rng.Intn(n)] += 0.5 // sum > 0
	return w
}

func TestErrorAwareRandom(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewSource(seed))
	for iter := 0; iter < 3000; iter++ {
		n := 1 + rng.Intn(48)
		b := 1 + rng.Intn(400)
		lo := rng.Intn(b + 1)
		if rng.Intn(10) == 0 {
			lo = b + 1 + rng.Intn(5) // infeasible: lo > b
		}
		hi := lo + rng.Intn(4*b+1)
		w := randomWeights(rng, n)

		got, err := ErrorAware(w, b, lo, hi)
		want, ok := refErrorAware(w, b, lo, hi)
		feasible := lo*n <= b*n && b*n <= hi*n
		if ok != feasible {
			t.Fatalf("seed %d iter %d: reference ok=%v, feasible=%v", seed, iter, ok, feasible)
		}
		if !feasible {
			if !errors.Is(err, ErrInfeasible) {
				t.Fatalf("seed %d iter %d: n=%d b=%d lo=%d hi=%d: err %v, want ErrInfeasible", seed, iter, n, b, lo, hi, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("seed %d iter %d: n=%d b=%d lo=%d hi=%d: %v", seed, iter, n, b, lo, hi, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d iter %d: n=%d b=%d lo=%d hi=%d w=%v:\n got %v\nwant %v", seed, iter, n, b, lo, hi, w, got, want)
		}
		checkBudgets(t, seed, got, n, b, lo, hi)

		// Scaling the weights changes nothing (they are normalised) as long
		// as the scale is a power of two, which keeps every ratio exact.
		scaled := make([]float64, n)
		for i := range w {
			scaled[i] = w[i] * 8
		}
		got2, err := ErrorAware(scaled, b, lo, hi)
		if err != nil || !reflect.DeepEqual(got2, got) {
			t.Fatalf("seed %d iter %d: weights*8 gave %v, %v; want %v", seed, iter, got2, err, got)
		}
	}
}

func TestErrorAwareHand(t *testing.T) {
	tests := []struct {
		name      string
		w         []float64
		b, lo, hi int
		want      []int
	}{
		{
			// Normalised w = 1/8, 1/8, 1/8, 5/8; total = 10*4 = 40,
			// rest = 40 - 5*4 = 20; w*rest = 2.5, 2.5, 2.5, 12.5, rounded
			// half to even: 2, 2, 2, 12 -> B = 7, 7, 7, 17 (sum 38).
			// diff = +2: walk by weight descending, ties by layer:
			// layer 3 +1, layer 0 +1 -> 8, 7, 7, 18.
			name: "walk up, halves round to even",
			w:    []float64{1, 1, 1, 5}, b: 10, lo: 5, hi: 30,
			want: []int{8, 7, 7, 18},
		},
		{
			// Normalised w = 7/32, 7/32, 7/32, 11/32; total = 6*4 = 24,
			// rest = 24 - 2*4 = 16; w*rest = 3.5, 3.5, 3.5, 5.5, rounded
			// half to even: 4, 4, 4, 6 -> B = 6, 6, 6, 8 (sum 26).
			// diff = -2: walk by weight ascending, ties by layer:
			// layer 0 -1, layer 1 -1 -> 5, 5, 6, 8.
			name: "walk down, halves round to even",
			w:    []float64{7, 7, 7, 11}, b: 6, lo: 2, hi: 18,
			want: []int{5, 5, 6, 8},
		},
		{
			// w = 1/4 each; total 40, rest = 40 - 0 = 40; w*rest = 10 each.
			// No walk.
			name: "exact",
			w:    []float64{0.25, 0.25, 0.25, 0.25}, b: 10, lo: 0, hi: 30,
			want: []int{10, 10, 10, 10},
		},
		{
			// w = 1, 0, 0, 0; total 40, rest = 40 - 2*4 = 32;
			// B = clip(2+32, 2, 15) = 15, then 2, 2, 2 (sum 21), diff = +19.
			// Layer 0 is at hi. Layers 1..3 (weight 0, by layer) take
			// 6 whole walks (+18) and layer 1 one more: 15, 9, 8, 8.
			name: "hi clip, repeated walks",
			w:    []float64{1, 0, 0, 0}, b: 10, lo: 2, hi: 15,
			want: []int{15, 9, 8, 8},
		},
		{
			// w = 1/2, 1/2, 0 (sum 1), total 9, rest = 9 - 1*3 = 6;
			// w*rest = 3, 3, 0 -> B = 4, 4, 1, clipped to hi=3: 3, 3, 1
			// (sum 7), diff = +2: only layer 2 is below hi: 2 walks -> 3.
			name: "walks until a layer reaches hi",
			w:    []float64{0.5, 0.5, 0}, b: 3, lo: 1, hi: 3,
			want: []int{3, 3, 3},
		},
		{
			// One layer takes the whole total whatever the weight.
			name: "one layer",
			w:    []float64{0.3}, b: 64, lo: 32, hi: 192,
			want: []int{64},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ErrorAware(tc.w, tc.b, tc.lo, tc.hi)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			ref, ok := refErrorAware(tc.w, tc.b, tc.lo, tc.hi)
			if !ok || !reflect.DeepEqual(ref, tc.want) {
				t.Fatalf("reference gives %v (ok=%v), want %v", ref, ok, tc.want)
			}
		})
	}
}

func TestRoundHalfEven(t *testing.T) {
	// The rounding ErrorAware relies on is numpy's: halves to the even integer.
	for _, c := range []struct{ x, want float64 }{{0.5, 0}, {1.5, 2}, {2.5, 2}, {3.5, 4}, {-2.5, -2}, {2.4999, 2}, {2.5001, 3}} {
		if got := math.RoundToEven(c.x); got != c.want {
			t.Errorf("RoundToEven(%v) = %v, want %v", c.x, got, c.want)
		}
	}
	// w*rest = 2.5 and 1.5 with rest = 4: w = 5/8 and 3/8 -> 2 and 2, the sum
	// 4 is met without a walk: lo + 2 each.
	got, err := ErrorAware([]float64{5, 3}, 3, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{3, 3}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestErrorAwareErrors(t *testing.T) {
	tests := []struct {
		name       string
		w          []float64
		b, lo, hi  int
		infeasible bool
		contains   string
	}{
		{"total above hi*n", []float64{1, 1}, 10, 0, 9, true, "total 20"},
		{"total below lo*n", []float64{1, 1}, 10, 11, 20, true, "lo=11"},
		{"empty weights", nil, 10, 0, 20, false, "no values"},
		{"negative weight", []float64{1, -1}, 10, 0, 20, false, "negative"},
		{"NaN weight", []float64{1, math.NaN()}, 10, 0, 20, false, "finite"},
		{"Inf weight", []float64{1, math.Inf(1)}, 10, 0, 20, false, "finite"},
		{"zero weights", []float64{0, 0}, 10, 0, 20, false, "zero"},
		{"zero budget", []float64{1}, 0, 0, 20, false, "budget"},
		{"negative lo", []float64{1}, 10, -1, 20, false, "floor"},
		{"hi below lo", []float64{1}, 10, 5, 4, false, "cap"},
		{"overflow", []float64{1, 1}, math.MaxInt / 2, 0, math.MaxInt, false, "2^53"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ErrorAware(tc.w, tc.b, tc.lo, tc.hi)
			if err == nil {
				t.Fatalf("got %v, want an error", got)
			}
			if errors.Is(err, ErrInfeasible) != tc.infeasible {
				t.Fatalf("error %q: errors.Is(ErrInfeasible) = %v, want %v", err, !tc.infeasible, tc.infeasible)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("error %q does not mention %q", err, tc.contains)
			}
		})
	}
}

func TestErrorAwareLarge(t *testing.T) {
	// Totals far beyond what a token-by-token walk could do quickly: the
	// bulk walks must still be exact.
	w := []float64{1, 0, 0, 0, 0, 0, 0}
	b, lo, hi := 1<<40, 0, 1<<41
	got, err := ErrorAware(w, b, lo, hi)
	if err != nil {
		t.Fatal(err)
	}
	checkBudgets(t, 0, got, len(w), b, lo, hi)
	if got[0] != hi {
		t.Fatalf("layer 0 has %d, want hi=%d", got[0], hi)
	}
}

func TestUniform(t *testing.T) {
	got, err := Uniform(3, 128)
	if err != nil || !reflect.DeepEqual(got, []int{128, 128, 128}) {
		t.Fatalf("Uniform(3, 128) = %v, %v", got, err)
	}
	if _, err := Uniform(0, 128); err == nil {
		t.Error("Uniform(0, 128): no error")
	}
	if _, err := Uniform(3, -1); err == nil {
		t.Error("Uniform(3, -1): no error")
	}
}

func TestPyramidHand(t *testing.T) {
	tests := []struct {
		name             string
		n, b, w, L, beta int
		want             []int
	}{
		{
			// c = 72-8 = 64; lo = 64/20 = 3; hi = 128-3 = 125 < L-w = 992;
			// step = (125-3)/3 = 40; selected 125, 85, 45, 5; plus w = 8.
			// Sum 292, not 4*72 = 288: the step is rounded down.
			name: "no clamp", n: 4, b: 72, w: 8, L: 1000, beta: 20,
			want: []int{133, 93, 53, 13},
		},
		{
			// c = 64, hi = 125 >= L-w = 92 -> hi = 92, lo = 128-92 = 36;
			// step = (92-36)/3 = 18; selected 92, 74, 56, 38; plus 8.
			name: "short prompt clamps hi", n: 4, b: 72, w: 8, L: 100, beta: 20,
			want: []int{100, 82, 64, 46},
		},
		{
			// c = 64, hi = 125 >= L-w = 32 -> hi = 32, lo = 128-32 = 96;
			// step = floor((32-96)/3) = floor(-21.33) = -22 (Python //);
			// selected 32, 54, 76, 98; plus 8.
			name: "very short prompt: budgets rise", n: 4, b: 72, w: 8, L: 40, beta: 20,
			want: []int{40, 62, 84, 106},
		},
		{
			// c = 120, lo = 120/20 = 6, hi = 234; step = 228/31 = 7;
			// selected 234 - 7l.
			name: "32 layers", n: 32, b: 128, w: 8, L: 4096, beta: 20,
			want: func() []int {
				out := make([]int, 32)
				for l := range out {
					out[l] = 234 - 7*l + 8
				}
				return out
			}(),
		},
		{
			// n == 1: the single layer keeps the average budget.
			name: "one layer", n: 1, b: 72, w: 8, L: 1000, beta: 20,
			want: []int{72},
		},
		{
			// b == w: c = 0, every layer keeps only the window.
			name: "window only", n: 3, b: 8, w: 8, L: 1000, beta: 20,
			want: []int{8, 8, 8},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Pyramid(tc.n, tc.b, tc.w, tc.L, tc.beta)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPyramidRandom(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewSource(seed))
	for iter := 0; iter < 5000; iter++ {
		n := 1 + rng.Intn(80)
		w := rng.Intn(64)
		b := w + rng.Intn(4096)
		L := rng.Intn(8192)
		beta := 1 + rng.Intn(40)
		got, err := Pyramid(n, b, w, L, beta)
		if err != nil {
			t.Fatalf("seed %d iter %d: %v", seed, iter, err)
		}
		if len(got) != n {
			t.Fatalf("seed %d iter %d: %d budgets, want %d", seed, iter, len(got), n)
		}
		sum := 0
		for l, v := range got {
			if v < 0 {
				t.Fatalf("seed %d iter %d: n=%d b=%d w=%d L=%d beta=%d: layer %d budget %d < 0", seed, iter, n, b, w, L, beta, l, v)
			}
			sum += v
		}
		// The schedule is linear: constant differences.
		for l := 2; l < n; l++ {
			if got[l]-got[l-1] != got[1]-got[0] {
				t.Fatalf("seed %d iter %d: not linear: %v", seed, iter, got)
			}
		}
		// The floor of the step moves the sum by less than one step per
		// layer pair: |sum - n*b| <= n*(n-1)/2.
		if n > 1 {
			if d := sum - n*b; d < -n*(n-1)/2 || d > n*(n-1)/2 {
				t.Fatalf("seed %d iter %d: sum %d vs n*b %d", seed, iter, sum, n*b)
			}
		}
		// Without the clamp, budgets fall and the first is hi + w.
		c := b - w
		if hi := 2*c - c/beta; n > 1 && hi < L-w {
			if got[0] != hi+w || got[n-1] > got[0] {
				t.Fatalf("seed %d iter %d: n=%d b=%d w=%d L=%d beta=%d: %v", seed, iter, n, b, w, L, beta, got)
			}
		}
	}
}

func TestPyramidErrors(t *testing.T) {
	for _, c := range []struct{ n, b, w, L, beta int }{
		{0, 72, 8, 100, 20},
		{4, 7, 8, 100, 20},
		{4, 72, -1, 100, 20},
		{4, 72, 8, 100, 0},
		{4, 72, 8, -1, 20},
	} {
		if got, err := Pyramid(c.n, c.b, c.w, c.L, c.beta); err == nil {
			t.Errorf("Pyramid(%+v) = %v, want an error", c, got)
		}
	}
}

func TestFloorDiv(t *testing.T) {
	for _, c := range []struct{ a, b, want int }{{7, 2, 3}, {-7, 2, -4}, {-6, 2, -3}, {0, 3, 0}, {-1, 3, -1}} {
		if got := floorDiv(c.a, c.b); got != c.want {
			t.Errorf("floorDiv(%d, %d) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestNormalize(t *testing.T) {
	got, err := Normalize([]float64{1, 3, 0, 4})
	if err != nil || !reflect.DeepEqual(got, []float64{0.125, 0.375, 0, 0.5}) {
		t.Fatalf("got %v, %v", got, err)
	}
	big, err := Normalize([]float64{math.MaxFloat64, math.MaxFloat64})
	if err != nil || big[0] != 0.5 || big[1] != 0.5 {
		t.Fatalf("overflowing sum: got %v, %v", big, err)
	}
	for _, x := range [][]float64{nil, {}, {0, 0}, {1, -1}, {math.NaN()}, {math.Inf(1), 1}} {
		if got, err := Normalize(x); err == nil {
			t.Errorf("Normalize(%v) = %v, want an error", x, got)
		}
	}
}

func TestNormalizeRandom(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewSource(seed))
	for iter := 0; iter < 1000; iter++ {
		x := randomWeights(rng, 1+rng.Intn(64))
		got, err := Normalize(x)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		s := 0.0
		for _, v := range got {
			s += v
		}
		if math.Abs(s-1) > 1e-12 {
			t.Fatalf("seed %d: sum %v", seed, s)
		}
	}
}

func TestAverage(t *testing.T) {
	// Data set A: 1, 3 -> 0.25, 0.75. Data set B: 2, 2 -> 0.5, 0.5.
	// Average 0.375, 0.625; already sums to 1.
	got, err := Average([][]float64{{1, 3}, {2, 2}})
	if err != nil || !reflect.DeepEqual(got, []float64{0.375, 0.625}) {
		t.Fatalf("got %v, %v", got, err)
	}
	// The scale of each data set does not matter.
	got2, err := Average([][]float64{{100, 300}, {0.5, 0.5}})
	if err != nil || !reflect.DeepEqual(got2, got) {
		t.Fatalf("scaled: got %v, %v", got2, err)
	}
	for _, c := range [][][]float64{nil, {}, {{1, 2}, {1}}, {{}}, {{1, -1}}, {{0, 0}, {1, 1}}, {{1, math.NaN()}}} {
		if got, err := Average(c); err == nil {
			t.Errorf("Average(%v) = %v, want an error", c, got)
		}
	}
}

func TestAverageRandom(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewSource(seed))
	for iter := 0; iter < 200; iter++ {
		n, d := 1+rng.Intn(40), 1+rng.Intn(10)
		per := make([][]float64, d)
		for i := range per {
			per[i] = randomWeights(rng, n)
		}
		got, err := Average(per)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		// float64 reference written out directly.
		want := make([]float64, n)
		for _, x := range per {
			s := 0.0
			for _, v := range x {
				s += v
			}
			for l, v := range x {
				want[l] += v / s / float64(d)
			}
		}
		for l := range want {
			if math.Abs(got[l]-want[l]) > 1e-12 {
				t.Fatalf("seed %d: layer %d: got %v, want %v", seed, l, got[l], want[l])
			}
		}
		// Weights from Average feed ErrorAware without error.
		if _, err := ErrorAware(got, 64, 32, 192); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
}

func BenchmarkErrorAware(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	w := make([]float64, 80)
	for i := range w {
		w[i] = rng.Float64()
	}
	for b.Loop() {
		if _, err := ErrorAware(w, 128, 32, 384); err != nil {
			b.Fatal(err)
		}
	}
}
