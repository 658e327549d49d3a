package llama

import (
	"math/rand/v2"
	"testing"
)

// TestDotOrder: dot sums element i into the (i mod 4)th partial sum, in
// order, then adds the four pairwise, bit for bit at every length (the
// forward pass's results depend on that order).
func TestDotOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 140; n++ {
		a, b := make([]float32, n), make([]float32, n+3)
		for i := range b {
			b[i] = float32(rng.NormFloat64())
		}
		for i := range a {
			a[i] = float32(rng.NormFloat64())
		}
		var s [4]float32
		for i := 0; i < n-n%4; i++ {
			s[i%4] += a[i] * b[i]
		}
		for i := n - n%4; i < n; i++ {
			s[0] += a[i] * b[i]
		}
		if want, got := (s[0]+s[1])+(s[2]+s[3]), dot(a, b); got != want {
			t.Fatalf("n=%d: dot %v, in order %v", n, got, want)
		}
	}
}
