package cpu

import (
	"errors"
	"math"
	"testing"

	"github.com/compresskv/compresskv/internal/reftest"
	"github.com/compresskv/compresskv/kvcache"
)

// TestMatVec: MatVec equals a float64 matrix-vector product within float32
// rounding at sizes that take every kernel (multiples of 16 and 8, and
// odd), and refuses rows of the wrong size.
func TestMatVec(t *testing.T) {
	rng, seed := reftest.Rand(t)
	for _, d := range []int{1, 7, 8, 16, 24, 37, 64, 128, 352} {
		n := 1 + rng.IntN(40)
		x, rows := reftest.Normal(rng, d, 1), reftest.Normal(rng, n*d, 1)
		dst := make([]float32, n)
		if err := MatVec(dst, x, rows); err != nil {
			t.Fatal(err)
		}
		for j := range dst {
			var want, mag float64
			for i := 0; i < d; i++ {
				p := float64(x[i]) * float64(rows[j*d+i])
				want += p
				mag += math.Abs(p)
			}
			if math.Abs(float64(dst[j])-want) > 1e-6*mag+1e-7 {
				t.Fatalf("d=%d row %d (seed %d): %v, float64 %v", d, j, seed, dst[j], want)
			}
		}
	}
	if err := MatVec(make([]float32, 3), make([]float32, 4), make([]float32, 11)); !errors.Is(err, kvcache.ErrShape) {
		t.Fatalf("rows of the wrong size: %v", err)
	}
}
