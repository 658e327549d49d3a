package cpu

import (
	"fmt"
	"math"
	"slices"
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

// TestQuadKernels compares the quad kernels (logits and weighted row sums
// for four query heads) at every level with float64 on the rows as stored,
// at odd row counts, every d listed and every storage type, with guard
// cells on both sides of every output; and checks that every assembly
// level, and the one-head kernels (dots, accRows) over the decoded rows,
// give the same bits, as the plan requires of its candidates.
func TestQuadKernels(t *testing.T) {
	r, seed := newRand(t)
	for _, dt := range dtypes {
		for _, d := range []int{8, 16, 24, 40, 64, 80, 96, 128, 136, 256} {
			for _, n := range []int{1, 2, 3, 5, 7, 8, 9, 31, 32} {
				name := fmt.Sprintf("%v/d%d/n%d (seed %d)", dt, d, n, seed)
				rows := encodeRows(randVec(r, (n+3)*d, 1), d, dt)
				stored := make([]float32, len(rows.U16)+len(rows.F32))
				for i := range n + 3 {
					rows.Row(i, stored[i*d:(i+1)*d])
				}
				j0, j1 := 2, 2+n // an offset start: kernels see a sub-range
				dec := stored[j0*d : j1*d]
				q := randVec(r, 4*d, 1)
				acc0 := randVec(r, 4*d, 1)
				p := randVec(r, 4*n, 1)
				var firstLg, firstAcc, goLg, goAcc []float32
				for _, l := range testLevels() {
					name := l.String() + "/" + name
					buf := make([]float32, blockRows*d)
					lg, check := guarded(t, make([]float32, 4*n), 5)
					mx := [4]float32{-1e30, 0.5, float32(math.Inf(-1)), 1e30}
					mx0 := mx
					logitsQuadAt(l, lg, q, rows, j0, j1, buf, 0.25, &mx)
					check("logitsQuad " + name)
					for h := range 4 {
						want := mx0[h]
						for j := range n {
							want = max(want, lg[j*4+h])
						}
						if mx[h] != want {
							t.Fatalf("logitsQuad %s: maximum of head %d = %g, want %g", name, h, mx[h], want)
						}
						one := make([]float32, n)
						dotsAt(l, one, q[h*d:(h+1)*d], dec, 0.25)
						for j := range n {
							if math.Float32bits(one[j]) != math.Float32bits(lg[j*4+h]) {
								t.Fatalf("%s: dots row %d head %d = %g, logitsQuad %g: not the same bits", name, j, h, one[j], lg[j*4+h])
							}
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
					acc, checkAcc := guarded(t, acc0, 7)
					accQuadAt(l, acc, p, rows, j0, j1, buf)
					checkAcc("accQuad " + name)
					for h := range 4 {
						one := slices.Clone(acc0[h*d : (h+1)*d])
						ph := make([]float32, n)
						for j := range n {
							ph[j] = p[j*4+h]
						}
						accRowsAt(l, one, ph, dec)
						for i := range d {
							want := float64(acc0[h*d+i])
							for j := range n {
								want += float64(p[j*4+h]) * float64(stored[(j0+j)*d+i])
							}
							if math.Abs(float64(acc[h*d+i])-want) > 1e-5*math.Max(1, math.Abs(want)) {
								t.Fatalf("accQuad %s: head %d value %d = %g, want %g", name, h, i, acc[h*d+i], want)
							}
							if math.Float32bits(one[i]) != math.Float32bits(acc[h*d+i]) {
								t.Fatalf("%s: accRows head %d value %d = %g, accQuad %g: not the same bits", name, h, i, one[i], acc[h*d+i])
							}
						}
					}
					if l == levelGo {
						goLg, goAcc = lg, acc
						continue
					}
					// Assembly and Go sum in different orders: they agree
					// to float32 rounding.
					for i := range lg {
						if math.Abs(float64(lg[i]-goLg[i])) > 2e-6*math.Sqrt(float64(d)) {
							t.Fatalf("%s: logit %d = %g, Go %g", name, i, lg[i], goLg[i])
						}
					}
					for i := range acc {
						if math.Abs(float64(acc[i]-goAcc[i])) > 2e-6*math.Max(1, math.Abs(float64(acc[i])))*float64(n) {
							t.Fatalf("%s: sum %d = %g, Go %g", name, i, acc[i], goAcc[i])
						}
					}
					if firstLg == nil {
						firstLg, firstAcc = lg, acc
						continue
					}
					for i := range lg {
						if math.Float32bits(lg[i]) != math.Float32bits(firstLg[i]) {
							t.Fatalf("%s: logit %d = %g, %g at the level above: not the same bits", name, i, lg[i], firstLg[i])
						}
					}
					for i := range acc {
						if math.Float32bits(acc[i]) != math.Float32bits(firstAcc[i]) {
							t.Fatalf("%s: sum %d = %g, %g at the level above: not the same bits", name, i, acc[i], firstAcc[i])
						}
					}
				}
			}
		}
	}
}

// TestExpQuad compares expQuad at every level with float64, checks that
// the assembly levels give the same bits wherever an element sits in a
// vector, and that expSumQuad gives expQuad's values and blockSumQuad's
// sums.
func TestExpQuad(t *testing.T) {
	r, seed := newRand(t)
	for _, n := range []int{1, 3, 4, 7, 8, 12, 15, 16, 17, 20, 33, 64, 124, 128, 129} {
		x0 := randVec(r, n, 3)
		m := [4]float32{1, -2, 0.5, 3}
		for i, v := range x0 {
			m[i%4] = max(m[i%4], v)
		}
		var first []float32
		levels(t, func(t *testing.T) {
			x, check := guarded(t, x0, 3)
			expQuad(x, &m)
			check(fmt.Sprintf("expQuad n %d", n))
			for i, v := range x0 {
				want := math.Exp(float64(v - m[i%4]))
				if math.Abs(float64(x[i])-want) > 5e-7*want {
					t.Fatalf("expQuad n %d (seed %d): [%d] = %g, want %g", n, seed, i, x[i], want)
				}
			}
			if n%4 == 0 {
				x2 := slices.Clone(x0)
				sums := expSumQuad(x2, &m)
				if !slices.Equal(x2, x) {
					t.Fatalf("expSumQuad n %d (seed %d): exponentials differ from expQuad's", n, seed)
				}
				if want := blockSumQuad(x); sums != want {
					t.Fatalf("expSumQuad n %d (seed %d): sums %v, blockSumQuad %v", n, seed, sums, want)
				}
			}
			if kernelLevel() == "go" {
				return
			}
			if first == nil {
				first = slices.Clone(x)
			} else if !slices.Equal(first, x) {
				t.Fatalf("expQuad n %d (seed %d): AVX2 and AVX-512 differ", n, seed)
			}
		})
	}
}

// TestBlockSums checks the shared order of the sums of exponentials.
func TestBlockSums(t *testing.T) {
	r, _ := newRand(t)
	for n := range 40 {
		x := randVec(r, 4*n, 1)
		got := blockSumQuad(x)
		for h := range 4 {
			col := make([]float32, n)
			for j := range n {
				col[j] = x[j*4+h]
			}
			if b := blockSum(col); math.Float32bits(b) != math.Float32bits(got[h]) {
				t.Fatalf("n %d head %d: blockSumQuad %g, blockSum %g", n, h, got[h], b)
			}
			var s [4]float32
			for j, v := range col {
				s[j%4] += v
			}
			if want := (s[0] + s[2]) + (s[1] + s[3]); want != got[h] {
				t.Fatalf("n %d head %d: %g, want %g", n, h, got[h], want)
			}
		}
	}
}
