package finite

import (
	"math"
	"testing"
)

func TestLimitsMatchRounding(t *testing.T) {
	// The largest float16 is 65504; 65520 is the midpoint to the next power
	// of two and rounds (to even) to infinity; just below it rounds down.
	below := math.Nextafter32(65520, 0)
	if FirstAtLimit([]float32{65504, below, -below}, Float16Limit) != -1 {
		t.Fatal("finite float16 values rejected")
	}
	if i := FirstAtLimit([]float32{1, -65520}, Float16Limit); i != 1 {
		t.Fatalf("-65520 not caught for float16: %d", i)
	}
	maxBF := math.Float32frombits(0x7F7F7FFF) // rounds down to 0x7F7F
	if FirstAtLimit([]float32{maxBF, -maxBF}, BFloat16Limit) != -1 {
		t.Fatal("finite bfloat16 values rejected")
	}
	if i := FirstAtLimit([]float32{0, math.MaxFloat32}, BFloat16Limit); i != 1 {
		t.Fatalf("MaxFloat32 not caught for bfloat16: %d", i)
	}
	nan := float32(math.NaN())
	for _, lim := range []uint32{Float32Limit, Float16Limit, BFloat16Limit} {
		if FirstAtLimit([]float32{0, 1, nan}, lim) != 2 || FirstAtLimit([]float32{float32(math.Inf(-1))}, lim) != 0 {
			t.Fatalf("limit %#x: NaN or -Inf not caught", lim)
		}
	}
	if First([]float32{math.MaxFloat32, -math.MaxFloat32}) != -1 || First([]float32{3, nan}) != 1 {
		t.Fatal("First")
	}
	if First64([]float64{1, math.Inf(1)}) != 1 || First64([]float64{1, 2}) != -1 {
		t.Fatal("First64")
	}
}
