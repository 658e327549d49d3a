package llama

import (
	"math"
	"math/big"
	"testing"

	"github.com/compresskv/compresskv/internal/reftest"
)

// ulps returns how many float32 steps apart got and want are.
func ulps(got float32, want float64) float64 {
	w := float32(want)
	step := math.Nextafter32(w, float32(math.Inf(1))) - w
	return math.Abs(float64(got)-want) / float64(step)
}

// TestExpGGML: ggml's exponential is within 2.5 ulp of e^x over the range
// softmax and SiLU use (ggml states 1.45 ulp plus the final rounding's
// 0.5; counted here in steps of the rounded e^x, a little more near powers
// of two), exact at 0, 0 far below and +Inf far above.
func TestExpGGML(t *testing.T) {
	r, _ := reftest.Rand(t)
	worst := 0.0
	for i := 0; i < 100000; i++ {
		x := float32(r.Float64()*170 - 100) // [-100, 70)
		got := expGGML(x)
		if u := ulps(got, math.Exp(float64(x))); u > worst {
			worst = u
		}
	}
	if worst > 2.5 {
		t.Fatalf("expGGML is %.2f ulp from e^x", worst)
	}
	if expGGML(0) != 1 || expGGML(-200) != 0 || !math.IsInf(float64(expGGML(200)), 1) || expGGML(float32(math.Inf(-1))) != 0 {
		t.Fatalf("expGGML(0, -200, 200, -Inf) = %v %v %v %v", expGGML(0), expGGML(-200), expGGML(200), expGGML(float32(math.Inf(-1))))
	}
	t.Logf("worst %.2f ulp", worst)
}

// TestFMA32: the emulated fused multiply-add rounds once, as a float32
// FMA does, on random operands (checked in exact arithmetic).
func TestFMA32(t *testing.T) {
	r, _ := reftest.Rand(t)
	for i := 0; i < 20000; i++ {
		a, b, c := float32(r.NormFloat64()), float32(r.NormFloat64()), float32(r.NormFloat64()*4)
		exact := new(big.Float).SetPrec(200).Mul(big.NewFloat(float64(a)), big.NewFloat(float64(b)))
		exact.Add(exact, big.NewFloat(float64(c)))
		want, _ := exact.Float32()
		if got := fma32(a, b, c); got != want {
			t.Fatalf("fma32(%v, %v, %v) = %v, want %v", a, b, c, got, want)
		}
	}
}

// TestSum16AndDot16: sum16 adds in _mm512_reduce_add_ps's order (a value
// that cancels only in that order shows it), and dot16 is a dot product
// within float32 rounding of the exact one, for lengths that are and are
// not multiples of 16.
func TestSum16AndDot16(t *testing.T) {
	var v [16]float32
	// 2^24 and 1: added in order (1 + 2^24) loses the 1; the tree adds
	// v[0]+v[8] = 2^24+1 -> 2^24 too, but v[1]+v[9] = 1+1 = 2 survives.
	v[0], v[8], v[1], v[9] = 1<<24, 1, 1, 1
	if got := sum16(&v); got != 1<<24+2 {
		t.Fatalf("sum16 = %v, want %v", got, 1<<24+2)
	}
	r, _ := reftest.Rand(t)
	for _, n := range []int{16, 64, 100, 131} {
		a, b := reftest.Normal(r, n, 1), reftest.Normal(r, n, 1)
		exact, mag := 0.0, 0.0
		for i := range a {
			exact += float64(a[i]) * float64(b[i])
			mag += math.Abs(float64(a[i]) * float64(b[i]))
		}
		if got := dot16(a, b); math.Abs(float64(got)-exact) > float64(n)*0x1p-24*mag {
			t.Fatalf("n %d: dot16 %v, exact %v", n, got, exact)
		}
	}
}

func BenchmarkSwiGLU(b *testing.B) {
	g, u := make([]float32, 4096), make([]float32, 4096)
	for i := range g {
		g[i], u[i] = float32(i%17)-8, 0.5
	}
	buf := make([]float32, len(g))
	b.Run("ggml", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			copy(buf, g)
			swiglu(buf, u, len(buf))
		}
	})
	b.Run("exact", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			copy(buf, g)
			for j, a := range buf {
				buf[j] = a / (1 + float32(math.Exp(float64(-a)))) * u[j]
			}
		}
	})
}
