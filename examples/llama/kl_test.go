package llama

import (
	"math"
	"testing"
)

func TestKL(t *testing.T) {
	p := []float32{1, 2, 3}
	if d := KL(p, p); d != 0 {
		t.Fatalf("KL(p||p) = %v", d)
	}
	// KL between softmax([0, 0]) and softmax([0, ln 3]) = 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75).
	want := 0.5*math.Log(2) + 0.5*math.Log(2.0/3)
	if d := KL([]float32{0, 0}, []float32{0, float32(math.Log(3))}); math.Abs(d-want) > 1e-6 {
		t.Fatalf("KL = %v, want %v", d, want)
	}
}
