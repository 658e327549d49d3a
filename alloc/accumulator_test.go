package alloc

import (
	"math"
	"math/rand"
	"reflect"
	"sync"
	"testing"
)

func TestErrorAccumulatorHand(t *testing.T) {
	a, err := NewErrorAccumulator(3)
	if err != nil {
		t.Fatal(err)
	}
	// Layer 0: full = (3, 4), ||full|| = 5; comp = (6, 8), ||comp-full|| = 5.
	// e = 5 / (5 + 1e-5).
	if err := a.Add(0, []float32{6, 8}, []float32{3, 4}); err != nil {
		t.Fatal(err)
	}
	// Layer 1: full = 0, comp = (1e-5, 0): e = 1e-5 / (0 + 1e-5) = 1
	// (up to the float32 rounding of 1e-5).
	if err := a.Add(1, []float32{1e-5, 0}, []float32{0, 0}); err != nil {
		t.Fatal(err)
	}
	// Layer 0 again, no error: adds 0 and counts a step.
	if err := a.Add(0, []float32{3, 4}, []float32{3, 4}); err != nil {
		t.Fatal(err)
	}
	sums := a.Sums()
	want := []float64{5 / (5 + 1e-5), float64(float32(1e-5)) / 1e-5, 0}
	for l := range want {
		if math.Abs(sums[l]-want[l]) > 1e-15 {
			t.Fatalf("layer %d: sum %v, want %v", l, sums[l], want[l])
		}
	}
	if got := a.Steps(); !reflect.DeepEqual(got, []int{2, 1, 0}) {
		t.Fatalf("steps %v, want [2 1 0]", got)
	}
	w, err := a.Weights()
	if err != nil {
		t.Fatal(err)
	}
	s := want[0] + want[1]
	if math.Abs(w[0]-want[0]/s) > 1e-15 || math.Abs(w[1]-want[1]/s) > 1e-15 || w[2] != 0 {
		t.Fatalf("weights %v", w)
	}
}

func TestErrorAccumulatorEps(t *testing.T) {
	a, _ := NewErrorAccumulator(1)
	a.Eps = 1
	// full = 0, comp = (3, 4): e = 5 / (0 + 1) = 5.
	if err := a.Add(0, []float32{3, 4}, []float32{0, 0}); err != nil {
		t.Fatal(err)
	}
	if got := a.Sums()[0]; got != 5 {
		t.Fatalf("sum %v, want 5", got)
	}
	for _, eps := range []float64{-1, math.NaN(), math.Inf(1)} {
		a.Eps = eps
		if err := a.Add(0, []float32{1}, []float32{0}); err == nil {
			t.Errorf("Eps %v: no error", eps)
		}
	}
}

func TestErrorAccumulatorRandom(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewSource(seed))
	a, _ := NewErrorAccumulator(4)
	want := make([]float64, 4)
	for step := 0; step < 200; step++ {
		l := rng.Intn(4)
		d := 1 + rng.Intn(300)
		comp, full := make([]float32, d), make([]float32, d)
		for i := range full {
			full[i] = float32(rng.NormFloat64() * 10)
			comp[i] = full[i] + float32(rng.NormFloat64()*rng.Float64())
		}
		if err := a.Add(l, comp, full); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		var num, den float64
		for i := range full {
			num += (float64(comp[i]) - float64(full[i])) * (float64(comp[i]) - float64(full[i]))
			den += float64(full[i]) * float64(full[i])
		}
		want[l] += math.Sqrt(num) / (math.Sqrt(den) + 1e-5)
	}
	got := a.Sums()
	for l := range want {
		if math.Abs(got[l]-want[l]) > 1e-12*math.Max(1, want[l]) {
			t.Fatalf("seed %d: layer %d: got %v, want %v", seed, l, got[l], want[l])
		}
	}
}

func TestErrorAccumulatorInvalidUnchanged(t *testing.T) {
	a, _ := NewErrorAccumulator(2)
	if err := a.Add(1, []float32{1, 2}, []float32{2, 2}); err != nil {
		t.Fatal(err)
	}
	sums, steps := a.Sums(), a.Steps()
	nan, inf := float32(math.NaN()), float32(math.Inf(-1))
	bad := []struct {
		name       string
		layer      int
		comp, full []float32
	}{
		{"layer negative", -1, []float32{1}, []float32{1}},
		{"layer too big", 2, []float32{1}, []float32{1}},
		{"length mismatch", 0, []float32{1, 2}, []float32{1}},
		{"empty", 0, nil, nil},
		{"NaN in comp", 0, []float32{1, nan}, []float32{1, 1}},
		{"Inf in full", 1, []float32{1, 1}, []float32{inf, 1}},
	}
	for _, tc := range bad {
		if err := a.Add(tc.layer, tc.comp, tc.full); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
		if !reflect.DeepEqual(a.Sums(), sums) || !reflect.DeepEqual(a.Steps(), steps) {
			t.Fatalf("%s: state changed: %v %v, was %v %v", tc.name, a.Sums(), a.Steps(), sums, steps)
		}
	}
	// The copies are copies.
	s := a.Sums()
	s[0] = 42
	st := a.Steps()
	st[0] = 42
	if a.Sums()[0] == 42 || a.Steps()[0] == 42 {
		t.Fatal("Sums or Steps returned internal state")
	}
}

func TestErrorAccumulatorErrors(t *testing.T) {
	if _, err := NewErrorAccumulator(0); err == nil {
		t.Error("NewErrorAccumulator(0): no error")
	}
	a, _ := NewErrorAccumulator(2)
	if w, err := a.Weights(); err == nil {
		t.Errorf("Weights before any step = %v, want an error", w)
	}
	var zero ErrorAccumulator
	if err := zero.Add(0, []float32{1}, []float32{1}); err == nil {
		t.Error("zero value Add: no error")
	}
	if _, err := zero.Weights(); err == nil {
		t.Error("zero value Weights: no error")
	}
}

func TestErrorAccumulatorConcurrent(t *testing.T) {
	const layers, workers, per = 3, 8, 500
	a, _ := NewErrorAccumulator(layers)
	a.Eps = 1
	// full = 0, comp = (1): every step adds exactly 1, so sums are exact
	// whatever the order.
	comp, full := []float32{1}, []float32{0}
	var wg sync.WaitGroup
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if err := a.Add((g+i)%layers, comp, full); err != nil {
					t.Error(err)
					return
				}
				if i%50 == 0 {
					_ = a.Sums()
					_ = a.Steps()
					_, _ = a.Weights()
				}
			}
		}()
	}
	wg.Wait()
	total := 0
	steps := a.Steps()
	for l, s := range a.Sums() {
		if s != float64(steps[l]) {
			t.Fatalf("layer %d: sum %v, steps %d", l, s, steps[l])
		}
		total += steps[l]
	}
	if total != workers*per {
		t.Fatalf("%d steps, want %d", total, workers*per)
	}
}

func BenchmarkErrorAccumulatorAdd(b *testing.B) {
	a, _ := NewErrorAccumulator(1)
	const d = 4096
	comp, full := make([]float32, d), make([]float32, d)
	for i := range full {
		full[i] = float32(i)
		comp[i] = float32(i) + 0.5
	}
	b.SetBytes(2 * 4 * d)
	for b.Loop() {
		if err := a.Add(0, comp, full); err != nil {
			b.Fatal(err)
		}
	}
}
