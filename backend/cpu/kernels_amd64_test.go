//go:build amd64 && !noasm

package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/compresskv/compresskv/kvcache"
)

// levels runs f once per kernel level this processor supports, with the
// dispatchers set to it (without the Go level under the race detector: CI
// tests it with the noasm tag).
func levels(t *testing.T, f func(t *testing.T)) {
	saved2, saved5 := useAVX2, useAVX512
	defer func() { useAVX2, useAVX512 = saved2, saved5 }()
	for _, l := range []struct {
		name     string
		on, avx2 bool
		avx512   bool
	}{{"go", true, false, false}, {"avx2", saved2, true, false}, {"avx512", saved5, true, true}} {
		if !l.on || (raceEnabled && l.name == "go") { // the noasm run tests Go
			continue
		}
		useAVX2, useAVX512 = l.avx2, l.avx512
		t.Run(l.name, f)
	}
}

func TestKernelLevels(t *testing.T) {
	t.Logf("kernels in use: %s", kernelLevel())
	levels(t, func(t *testing.T) {
		r, seed := newRand(t)
		for _, d := range []int{8, 16, 24, 64, 80, 96, 128, 256} {
			for _, n := range []int{1, 7, 8, 9, 17, 64} {
				checkKernels(t, r, seed, d, n)
			}
		}
	})
}

func checkKernels(t *testing.T, r *rand.Rand, seed uint64, d, n int) {
	t.Helper()
	name := fmt.Sprintf("d%d/n%d (seed %d)", d, n, seed)
	q, rows := randVec(r, d, 1), randVec(r, n*d+3, 1)
	dst, check := guarded(t, make([]float32, n), 5)
	dots(dst, q, rows, 0.25)
	check("dots " + name)
	for j := range n {
		var want float64
		for i := range d {
			want += float64(q[i]) * float64(rows[j*d+i])
		}
		want *= 0.25
		if math.Abs(float64(dst[j])-want) > 1e-6*math.Sqrt(float64(d)) {
			t.Errorf("dots %s: [%d] = %g, want %g", name, j, dst[j], want)
		}
	}
	acc0 := randVec(r, d, 1)
	acc, check := guarded(t, acc0, 7)
	p := randVec(r, n, 1)
	want := make([]float64, d)
	for i := range d {
		want[i] = float64(acc0[i])
		for j := range n {
			want[i] += float64(p[j]) * float64(rows[j*d+i])
		}
	}
	accRows(acc, p, rows)
	check("accRows " + name)
	if e, at := maxRelErr(acc, want, 1); e > 1e-5 {
		t.Errorf("accRows %s: [%d] = %g, want %g", name, at, acc[at], want[at])
	}
	x0 := randVec(r, n*d/8+n, 4)
	m := maxOfGo(x0) + float32(r.NormFloat64())
	if got, want := maxOf(x0), maxOfGo(x0); got != want {
		t.Errorf("maxOf %s: %g, want %g", name, got, want)
	}
	wantE := make([]float64, len(x0))
	var wantS float64
	for i, v := range x0 {
		wantE[i] = math.Exp(float64(v - m)) // the rounded difference, as the kernels see it
		wantS += wantE[i]
	}
	x, check := guarded(t, x0, 3)
	gotS := expShift(x, m)
	check("expShift " + name)
	if e, at := maxRelErr(x, wantE, 1e-30); e > 5e-7 {
		t.Errorf("expShift %s: [%d] = %g, want %g", name, at, x[at], wantE[at])
	}
	if e := math.Abs(float64(gotS)-wantS) / wantS; e > 1e-6*math.Sqrt(float64(len(x))) {
		t.Errorf("expShift %s: sum %g, want %g", name, gotS, wantS)
	}
	y0 := randVec(r, len(x), 1)
	wantY := make([]float64, len(y0))
	for i := range y0 {
		wantY[i] = float64(y0[i]) + 0.5*float64(x[i])
	}
	sc, check := guarded(t, y0, 4)
	scale(sc, -1.25)
	check("scale " + name)
	for i := range sc {
		if sc[i] != y0[i]*-1.25 {
			t.Errorf("scale %s: [%d] = %g, want %g", name, i, sc[i], y0[i]*-1.25)
		}
	}
	y0 = randVec(r, len(x), 1)
	for i := range y0 {
		wantY[i] = float64(y0[i]) + 0.5*float64(x[i])
	}
	y, check := guarded(t, y0, 9)
	axpy(y, 0.5, x)
	check("axpy " + name)
	if e, at := maxRelErr(y, wantY, 1); e > 1e-6 {
		t.Errorf("axpy %s: [%d] = %g, want %g", name, at, y[at], wantY[at])
	}
	h := make([]uint16, len(x))
	for i := range h {
		h[i] = uint16(r.Uint32())
	}
	for _, bf := range []bool{false, true} {
		got, check := guarded(t, make([]float32, len(h)), 8)
		if bf {
			decodeBF16(got, h)
			check("decodeBF16 " + name)
		} else {
			decodeF16(got, h)
			check("decodeF16 " + name)
		}
		for i, v := range h {
			want := kvcache.F16ToF32(v)
			if bf {
				want = kvcache.BF16ToF32(v)
			}
			if math.Float32bits(got[i]) != math.Float32bits(want) && !(got[i] != got[i] && want != want) {
				t.Fatalf("decode (bfloat16 %v) %s: [%d] of %#04x = %g, want %g", bf, name, i, v, got[i], want)
			}
		}
	}
	words := make([]uint64, n*d/4+n)
	var wantW uint64
	for i := range words {
		words[i] = r.Uint64()
		wantW += words[i]
	}
	if got := sumWords(words); got != wantW {
		t.Errorf("sumWords %s: %d, want %d", name, got, wantW)
	}
}

// TestLevelsReference runs the float64 reference tests of the backend at
// every kernel level.
func TestLevelsReference(t *testing.T) {
	levels(t, func(t *testing.T) {
		t.Run("WindowScores", TestWindowScoresReference)
		t.Run("WindowScoresLong", TestWindowScoresLong)
		t.Run("WindowScoresStore", TestWindowScoresStore)
		t.Run("Attend", TestAttendReference)
	})
}

// FuzzKernelsAsm compares the dispatched kernels (the fastest level here)
// with the Go references on fuzzed sizes and values.
func FuzzKernelsAsm(f *testing.F) {
	f.Add(uint64(1), uint8(16), uint8(9), float32(1))
	f.Add(uint64(2), uint8(1), uint8(64), float32(30))
	f.Add(uint64(3), uint8(32), uint8(1), float32(0.01))
	f.Fuzz(func(t *testing.T, seed uint64, d8, n uint8, sd float32) {
		if !(sd > 0 && sd < 100) {
			t.Skip()
		}
		d, nn := 8*int(d8%40+1), int(n%130)
		r := rand.New(rand.NewPCG(seed, 9))
		q, rows := randVec(r, d, float64(sd)), randVec(r, nn*d, float64(sd))
		got, want := make([]float32, nn), make([]float32, nn)
		dots(got, q, rows, 0.125)
		dotsGo(want, q, rows, 0.125)
		bound := float64(sd) * float64(sd) * 1e-6 * float64(d)
		for j := range nn {
			if math.Abs(float64(got[j]-want[j])) > bound {
				t.Fatalf("dots d %d n %d: [%d] = %g, Go %g", d, nn, j, got[j], want[j])
			}
		}
		if nn == 0 {
			return
		}
		acc, accG := make([]float32, d), make([]float32, d)
		p := randVec(r, nn, 1)
		accRows(acc, p, rows)
		accRowsGo(accG, p, rows)
		for i := range d {
			if math.Abs(float64(acc[i]-accG[i])) > float64(sd)*1e-5*float64(nn) {
				t.Fatalf("accRows d %d n %d: [%d] = %g, Go %g", d, nn, i, acc[i], accG[i])
			}
		}
		m := maxOfGo(got)
		if mm := maxOf(got); mm != m {
			t.Fatalf("maxOf n %d: %g, Go %g", nn, mm, m)
		}
		e, eG := append([]float32(nil), got...), append([]float32(nil), got...)
		s, sG := expShift(e, m), expShiftGo(eG, m)
		for i := range e {
			if math.Abs(float64(e[i]-eG[i])) > 4e-7*float64(eG[i]) {
				t.Fatalf("expShift n %d: [%d] = %g, Go %g (x-m %g)", nn, i, e[i], eG[i], got[i]-m)
			}
		}
		if math.Abs(float64(s-sG)) > 1e-6*float64(sG)*math.Sqrt(float64(nn)) {
			t.Fatalf("expShift n %d: sum %g, Go %g", nn, s, sG)
		}
	})
}

// testLevels returns every level this processor runs, Go first.
func testLevels() []level {
	avx2, avx512 := detectLevels("")
	ls := []level{levelGo}
	if avx2 {
		ls = append(ls, levelAVX2)
	}
	if avx512 {
		ls = append(ls, levelAVX512)
	}
	return ls
}
