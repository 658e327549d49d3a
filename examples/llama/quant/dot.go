package quant

// The dot products of one weight row with one activation row, as ggml's CPU
// backend computes them (its vec_dot functions), in portable Go. They are
// the reference that faster kernels are checked against and the fallback
// where there are none.
//
// Accumulation. Within a block the products are integers and are summed
// exactly, as in ggml; each block's float scales are rounded to float32 as
// ggml rounds them (d_w*d_x; for the K-quants also dmin_w*d_x; for Q4_1 and
// Q5_1 the min's term m_w*s_x, with s_x the activation block's F16 sum, as
// in ggml). The sum of the block terms (of the value products, for F32,
// F16 and BF16, whose products are exact in float64) is then accumulated
// in float64 and rounded once to float32. ggml accumulates float32 terms
// in float32 lanes whose number and order depend on its SIMD width, so the
// two results differ by at most about (K+1)*2^-24*S, where S is the sum of
// the magnitudes of the K terms ggml adds (one per block for Q4_0, Q5_0
// and Q8_0, two for Q4_1 and Q5_1, nine for the K-quants, one per value
// for the float types) and 2^-24 is float32's unit roundoff; errors of
// random sign make it nearer sqrt(K)*2^-24*S. The result here is within
// 2^-24 of the exact sum of the block terms, up to terms of order
// K*2^-53*S. Measured against ggml's x86 build (AVX) on 300 random rows of
// 4096 values per type, the two differed by at most 0.41*2^-24*S (S taken
// as the sum of |w*x| over the dequantized values) and the activations were
// converted identically, byte for byte.
//
// The assembly kernels (kernels_amd64.s) compute the same block terms, with
// the same integer sums and the same float32 scale products, and add them
// as ggml's AVX2 code does: into eight float32 lanes, one fused
// multiply-add per block and lane (two for the K-quants, whose mins are a
// second term; one per 8 values for F32, F16 and BF16, two per 16 with
// VDPBF16PS), the lanes summed at the end in a fixed order. So a kernel's
// result is within (L+4)*2^-24*S of the exact sum of the terms, L the
// number of roundings in one lane, and within (L+5)*2^-24*S of the Go
// products here (TestTileKernelsBound holds them to it on random and
// extreme inputs; the largest difference seen is below 0.3 of it). Where
// every term is an integer below 2^24 in total magnitude (unit scales),
// the kernels, the Go products and the exact integer sum agree exactly
// (TestTileKernelsExact).

import (
	"encoding/binary"
	"math"
)

// dotFunc returns the dot product of n values: one weight row w of the
// function's weight type and one activation row x of that type's
// VecDotType. n is a whole number of blocks and both rows are long enough.
type dotFunc func(w, x []byte, n int) float32

// dots are the vec_dot functions by weight type. Faster kernels replace
// entries here, behind the same contract.
var dots = map[Type]dotFunc{
	F32:  dotF32,
	F16:  dotF16,
	BF16: dotBF16,
	Q4_0: dotQ4_0,
	Q4_1: dotQ4_1,
	Q5_0: dotQ5_0,
	Q5_1: dotQ5_1,
	Q8_0: dotQ8_0,
	Q4_K: dotQ4_K,
	Q6_K: dotQ6_K,
}

func dotF32(w, x []byte, n int) float32 {
	w, x = w[:4*n], x[:4*n]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= n; i += 4 {
		s0 += float64(lef32(w[4*i:])) * float64(lef32(x[4*i:]))
		s1 += float64(lef32(w[4*i+4:])) * float64(lef32(x[4*i+4:]))
		s2 += float64(lef32(w[4*i+8:])) * float64(lef32(x[4*i+8:]))
		s3 += float64(lef32(w[4*i+12:])) * float64(lef32(x[4*i+12:]))
	}
	for ; i < n; i++ {
		s0 += float64(lef32(w[4*i:])) * float64(lef32(x[4*i:]))
	}
	return float32((s0 + s1) + (s2 + s3))
}

func dotF16(w, x []byte, n int) float32 {
	w, x = w[:2*n], x[:2*n]
	var s0, s1 float64
	i := 0
	for ; i+2 <= n; i += 2 {
		s0 += float64(f16[le16(w[2*i:])]) * float64(f16[le16(x[2*i:])])
		s1 += float64(f16[le16(w[2*i+2:])]) * float64(f16[le16(x[2*i+2:])])
	}
	for ; i < n; i++ {
		s0 += float64(f16[le16(w[2*i:])]) * float64(f16[le16(x[2*i:])])
	}
	return float32(s0 + s1)
}

func bf16(b []byte) float64 {
	return float64(math.Float32frombits(uint32(le16(b)) << 16))
}

func dotBF16(w, x []byte, n int) float32 {
	w, x = w[:2*n], x[:2*n]
	var s0, s1 float64
	i := 0
	for ; i+2 <= n; i += 2 {
		s0 += bf16(w[2*i:]) * bf16(x[2*i:])
		s1 += bf16(w[2*i+2:]) * bf16(x[2*i+2:])
	}
	for ; i < n; i++ {
		s0 += bf16(w[2*i:]) * bf16(x[2*i:])
	}
	return float32(s0 + s1)
}

// dotQ4_0 is ggml_vec_dot_q4_0_q8_0.
func dotQ4_0(w, x []byte, n int) float32 {
	var s float64
	for b := range n / 32 {
		wb, xb := w[18*b:18*b+18], x[34*b:34*b+34]
		qs, q8 := wb[2:18], xb[2:34]
		var sumi int32
		for j, q := range qs {
			sumi += (int32(q&15)-8)*int32(int8(q8[j])) + (int32(q>>4)-8)*int32(int8(q8[j+16]))
		}
		d := f16[le16(wb)] * f16[le16(xb)]
		s += float64(sumi) * float64(d)
	}
	return float32(s)
}

// dotQ4_1 is ggml_vec_dot_q4_1_q8_1: (d_w*d_x)*sumi + m_w*s_x, where s_x
// is the activation block's F16 sum (so the min's term carries the F16
// rounding of s_x, as in ggml).
func dotQ4_1(w, x []byte, n int) float32 {
	var s float64
	for b := range n / 32 {
		wb, xb := w[20*b:20*b+20], x[36*b:36*b+36]
		qs, q8 := wb[4:20], xb[4:36]
		var sumi int32
		for j, q := range qs {
			sumi += int32(q&15)*int32(int8(q8[j])) + int32(q>>4)*int32(int8(q8[j+16]))
		}
		d := f16[le16(wb)] * f16[le16(xb)]
		s += float64(sumi)*float64(d) + float64(f16[le16(wb[2:])]*f16[le16(xb[2:])])
	}
	return float32(s)
}

// q5values decodes the 32 five-bit values of a Q5_0 or Q5_1 block from
// its qh word and its 16 bytes of low nibbles, minus sub.
func q5values(qh uint32, qs []byte, sub int32, v *[32]int32) {
	for j, q := range qs[:16] {
		v[j] = int32(q&15|uint8(qh>>j&1)<<4) - sub
		v[j+16] = int32(q>>4|uint8(qh>>(j+16)&1)<<4) - sub
	}
}

// dotQ5_0 is ggml_vec_dot_q5_0_q8_0.
func dotQ5_0(w, x []byte, n int) float32 {
	var s float64
	var v [32]int32
	for b := range n / 32 {
		wb, xb := w[22*b:22*b+22], x[34*b:34*b+34]
		q5values(binary.LittleEndian.Uint32(wb[2:]), wb[6:22], 16, &v)
		var sumi int32
		for j, q := range xb[2:34] {
			sumi += v[j] * int32(int8(q))
		}
		d := f16[le16(wb)] * f16[le16(xb)]
		s += float64(sumi) * float64(d)
	}
	return float32(s)
}

// dotQ5_1 is ggml_vec_dot_q5_1_q8_1, with the min's term as in dotQ4_1.
func dotQ5_1(w, x []byte, n int) float32 {
	var s float64
	var v [32]int32
	for b := range n / 32 {
		wb, xb := w[24*b:24*b+24], x[36*b:36*b+36]
		q5values(binary.LittleEndian.Uint32(wb[4:]), wb[8:24], 0, &v)
		var sumi int32
		for j, q := range xb[4:36] {
			sumi += v[j] * int32(int8(q))
		}
		d := f16[le16(wb)] * f16[le16(xb)]
		s += float64(sumi)*float64(d) + float64(f16[le16(wb[2:])]*f16[le16(xb[2:])])
	}
	return float32(s)
}

// dotQ8_0 is ggml_vec_dot_q8_0_q8_0.
func dotQ8_0(w, x []byte, n int) float32 {
	var s float64
	for b := range n / 32 {
		wb, xb := (*[34]byte)(w[34*b:]), (*[34]byte)(x[34*b:])
		qw, qx := (*[32]byte)(wb[2:]), (*[32]byte)(xb[2:])
		var s0, s1 int32
		for j := 0; j < 32; j += 2 {
			s0 += int32(int8(qw[j])) * int32(int8(qx[j]))
			s1 += int32(int8(qw[j+1])) * int32(int8(qx[j+1]))
		}
		d := f16[le16(wb[:])] * f16[le16(xb[:])]
		s += float64(s0+s1) * float64(d)
	}
	return float32(s)
}

// dotQ4_K is ggml_vec_dot_q4_K_q8_K: per block, the integer sum of
// scale_j*q*q8 over the eight sub-blocks and the integer sum of min_j times
// the activation sums, scaled by d_w*d_x and dmin_w*d_x.
func dotQ4_K(w, x []byte, n int) float32 {
	var s float64
	for b := range n / QK_K {
		wb, xb := w[144*b:144*b+144], x[292*b:292*b+292]
		scales, q4 := wb[4:16], wb[16:144]
		q8, bsums := xb[4:260], xb[260:292]
		var sumi, summ int32
		for j := range 8 {
			sc, m := scaleMinK4(j, scales)
			summ += int32(m) * (int32(int16(le16(bsums[4*j:]))) + int32(int16(le16(bsums[4*j+2:]))))
			qq, yy := q4[32*(j/2):32*(j/2)+32], q8[32*j:32*j+32]
			var p int32
			if j%2 == 0 {
				for l, q := range qq {
					p += int32(q&15) * int32(int8(yy[l]))
				}
			} else {
				for l, q := range qq {
					p += int32(q>>4) * int32(int8(yy[l]))
				}
			}
			sumi += int32(sc) * p
		}
		xd := lef32(xb)
		d := f16[le16(wb)] * xd
		dmin := f16[le16(wb[2:])] * xd
		s += float64(d)*float64(sumi) - float64(dmin)*float64(summ)
	}
	return float32(s)
}

// dotQ6_K is ggml_vec_dot_q6_K_q8_K: per block, the integer sum of
// scale_g*(q-32)*q8 over the sixteen groups of 16 values, scaled by
// d_w*d_x.
func dotQ6_K(w, x []byte, n int) float32 {
	var s float64
	var q [QK_K]int32
	for b := range n / QK_K {
		wb, xb := w[210*b:210*b+210], x[292*b:292*b+292]
		ql, qh, sc := wb[0:128], wb[128:192], wb[192:208]
		for h := range 2 {
			l4, hh, qq := ql[64*h:64*h+64], qh[32*h:32*h+32], q[128*h:128*h+128]
			for l := range 32 {
				qq[l] = int32(l4[l]&15|(hh[l]&3)<<4) - 32
				qq[l+32] = int32(l4[l+32]&15|(hh[l]>>2&3)<<4) - 32
				qq[l+64] = int32(l4[l]>>4|(hh[l]>>4&3)<<4) - 32
				qq[l+96] = int32(l4[l+32]>>4|(hh[l]>>6&3)<<4) - 32
			}
		}
		q8 := xb[4:260]
		var sumi int32
		for g := range 16 {
			var p int32
			for l := 16 * g; l < 16*g+16; l++ {
				p += q[l] * int32(int8(q8[l]))
			}
			sumi += int32(int8(sc[g])) * p
		}
		d := f16[le16(wb[208:])] * lef32(xb)
		s += float64(d) * float64(sumi)
	}
	return float32(s)
}
