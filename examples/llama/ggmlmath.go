package llama

import "math"

// The float32 operations of ggml's x86 CPU backend whose rounding the
// runner copies, so that its activations come out as llama.cpp's do to the
// last bit as often as possible: a bit of difference before a conversion
// to Q8_0 or float16 can move a value across a rounding boundary, a step
// that the following layers carry to the logits (docs/DESIGN.md, "The
// runner"). They follow the AVX-512 code, which the goldens ran on; the
// AVX2 code computes the same values for arguments in the normal range.

// expGGML returns e^x as ggml_v_expf computes it: x = n ln2 + b with n
// rounded to an integer, a degree-5 polynomial in b, scaled by 2^n (within
// 1.5 ulp of e^x); beyond |n| > 192, 0 or +Inf.
func expGGML(x float32) float32 {
	const r = 0x1.8p23
	z := fma32(x, 0x1.715476p+0, r)
	n := z - r
	b := fma32(-n, 0x1.7f7d1cp-20, fma32(-n, 0x1.62e4p-1, x))
	if n > 192 || n < -192 {
		if n <= 0 {
			return 0
		}
		return float32(math.Inf(1))
	}
	u := b * b
	j := fma32(fma32(fma32(0x1.0e4020p-7, b, 0x1.573e2ep-5), u, fma32(0x1.555e66p-3, b, 0x1.fffdb6p-2)),
		u, fma32(0x1.ffffecp-1, b, 1))
	if n >= -126 && n <= 127 {
		// 2^n is a float32: one multiplication, rounded once, as scalef.
		return j * math.Float32frombits(uint32(int32(n)+127)<<23)
	}
	return float32(math.Ldexp(float64(j), int(n)))
}

// fma32 returns a*b+c rounded once to float32 (through float64, which holds
// the product exactly; the second rounding of the sum differs from a single
// one only for sums within 2^-29 of a float32 half-way point).
func fma32(a, b, c float32) float32 {
	return float32(float64(a)*float64(b) + float64(c))
}

// swiglu sets gate[i] = silu(gate[i]) * up[i], silu(a) = a/(1+e^-a), row by
// row of width w, as ggml_vec_swiglu_f32 does: 16 values at a time with
// expGGML, the rest of a row with the exact exponential.
func swiglu(gate, up []float32, w int) {
	for r := 0; r < len(gate); r += w {
		g, u := gate[r:r+w], up[r:r+w]
		i := 0
		for ; i < w-w%16; i++ {
			a := g[i]
			g[i] = a / (1 + expGGML(-a)) * u[i]
		}
		for ; i < w; i++ {
			a := g[i]
			g[i] = a / (1 + float32(math.Exp(float64(-a)))) * u[i]
		}
	}
}

// sum16 returns the sum of 16 values in the order of _mm512_reduce_add_ps:
// halves, then quarters, eighths and the last pair.
func sum16(v *[16]float32) float32 {
	var t [8]float32
	for i := range t {
		t[i] = v[i+8] + v[i]
	}
	s0, s1, s2, s3 := t[4]+t[0], t[5]+t[1], t[6]+t[2], t[7]+t[3]
	return (s0 + s2) + (s1 + s3)
}

// dot16 returns the dot product of a and b as llamafile's AVX-512 tinyBLAS
// computes one output: 16 lanes, lane l accumulating a[i]*b[i] for i = l
// mod 16 with fused multiply-adds, then sum16 of the lanes. Values past the
// last multiple of 16 are added in the lanes they fall in. For float16
// operands (every product exact in float32) the fused and the separate
// multiply-add agree.
func dot16(a, b []float32) float32 {
	var acc [16]float32
	n := len(a) &^ 15
	b = b[:len(a)]
	for i := 0; i < n; i += 16 {
		x, y := a[i:i+16:i+16], b[i:i+16:i+16]
		for l := range 16 {
			acc[l] = fma32(x[l], y[l], acc[l])
		}
	}
	for i := n; i < len(a); i++ {
		acc[i%16] = fma32(a[i], b[i], acc[i%16])
	}
	return sum16(&acc)
}
