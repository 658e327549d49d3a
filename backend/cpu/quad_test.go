package cpu

import (
	"fmt"
	"math"
	"testing"

	"github.com/compresskv/compresskv/kvcache"
)

// guardValue fills the guard cells around every kernel output; a kernel that
// writes outside its slice changes one of them.
const guardValue = -7.25e30

// guarded returns a slice of n values x with g guard cells before and after
// it in the same array, and a function that fails t if any guard changed.
func guarded(t *testing.T, x []float32, g int) ([]float32, func(what string)) {
	t.Helper()
	buf := make([]float32, len(x)+2*g)
	for i := range buf {
		buf[i] = guardValue
	}
	copy(buf[g:], x)
	return buf[g : g+len(x) : g+len(x)], func(what string) {
		t.Helper()
		for i := 0; i < g; i++ {
			if buf[i] != guardValue || buf[len(buf)-1-i] != guardValue {
				t.Errorf("%s wrote outside its output (guard %d)", what, i)
				return
			}
		}
	}
}

// encodeRows returns x in storage type dt as kvcache.Rows of d values.
func encodeRows(x []float32, d int, dt kvcache.DType) kvcache.Rows {
	r := kvcache.Rows{DType: dt, N: len(x) / d, D: d}
	if dt == kvcache.Float32 {
		r.F32 = x
		return r
	}
	r.U16 = make([]uint16, len(x))
	for i, v := range x {
		if dt == kvcache.Float16 {
			r.U16[i] = kvcache.F32ToF16(v)
		} else {
			r.U16[i] = kvcache.F32ToBF16(v)
		}
	}
	return r
}

// TestQuadKernels compares the quad kernels (logits, weighted row sums and
// exponentials for four query heads) at every level with float64 on the
// rows as stored, at odd row counts, every d listed and every storage type,
// with guard cells on both sides of every output.
func TestQuadKernels(t *testing.T) {
	levels(t, func(t *testing.T) {
		r, seed := newRand(t)
		for _, dt := range dtypes {
			for _, d := range []int{8, 16, 24, 64, 80, 96, 128, 256} {
				for _, n := range []int{1, 2, 3, 7, 8, 31, 32} {
					name := fmt.Sprintf("%v/d%d/n%d (seed %d)", dt, d, n, seed)
					rows := encodeRows(randVec(r, (n+3)*d, 1), d, dt)
					stored := make([]float32, len(rows.U16)+len(rows.F32))
					for i := range n + 3 {
						rows.Row(i, stored[i*d:(i+1)*d])
					}
					j0, j1 := 2, 2+n // an offset start: kernels see a sub-range
					q := randVec(r, 4*d, 1)
					buf := make([]float32, blockRows*d)
					lg, check := guarded(t, make([]float32, 4*n), 5)
					mx := [4]float32{-1e30, 0.5, float32(math.Inf(-1)), 1e30}
					mx0 := mx
					logitsQuad(lg, q, rows, j0, j1, buf, 0.25, &mx)
					check("logitsQuad " + name)
					for h := range 4 {
						want := mx0[h]
						for j := range n {
							want = max(want, lg[j*4+h])
						}
						if mx[h] != want {
							t.Fatalf("logitsQuad %s: maximum of head %d = %g, want %g", name, h, mx[h], want)
						}
					}
					for j := range n {
						for h := range 4 {
							var want float64
							for i := range d {
								want += float64(q[h*d+i]) * float64(stored[(j0+j)*d+i])
							}
							want *= 0.25
							if math.Abs(float64(lg[j*4+h])-want) > 1e-6*math.Sqrt(float64(d)) {
								t.Fatalf("logitsQuad %s: row %d head %d = %g, want %g", name, j, h, lg[j*4+h], want)
							}
						}
					}
					acc0 := randVec(r, 4*d, 1)
					acc, checkAcc := guarded(t, acc0, 7)
					p := randVec(r, 4*n, 1)
					accQuad(acc, p, rows, j0, j1, buf)
					checkAcc("accQuad " + name)
					for h := range 4 {
						for i := range d {
							want := float64(acc0[h*d+i])
							for j := range n {
								want += float64(p[j*4+h]) * float64(stored[(j0+j)*d+i])
							}
							if math.Abs(float64(acc[h*d+i])-want) > 1e-5*math.Max(1, math.Abs(want)) {
								t.Fatalf("accQuad %s: head %d value %d = %g, want %g", name, h, i, acc[h*d+i], want)
							}
						}
					}
					x0 := randVec(r, 4*n, 3)
					m := [4]float32{1, -2, 0.5, 3}
					x, checkX := guarded(t, x0, 3)
					sums := expShiftQuad(x, &m)
					checkX("expShiftQuad " + name)
					var wantS [4]float64
					for i, v := range x0 {
						want := math.Exp(float64(v - m[i%4]))
						wantS[i%4] += want
						if math.Abs(float64(x[i])-want) > 5e-7*want {
							t.Fatalf("expShiftQuad %s: [%d] = %g, want %g", name, i, x[i], want)
						}
					}
					for h := range 4 {
						if math.Abs(float64(sums[h])-wantS[h]) > 1e-6*wantS[h]*math.Sqrt(float64(n)) {
							t.Fatalf("expShiftQuad %s: sum of head %d = %g, want %g", name, h, sums[h], wantS[h])
						}
					}
				}
			}
		}
	})
}
