package quant

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/compresskv/compresskv/kvcache"
)

// f16 converts every binary16 bit pattern to float32 exactly (as ggml's
// table does), so that a product's inner loop is one load.
var f16 = func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for i := range t {
		t[i] = kvcache.F16ToF32(uint16(i))
	}
	return &t
}()

// F16ToF32 converts IEEE-754 binary16 bits to float32 exactly.
func F16ToF32(h uint16) float32 { return f16[h] }

// F32ToF16 converts f to binary16 bits with round-to-nearest-even (what
// ggml's CPU conversion does, in hardware on x86 with F16C); overflow gives
// ±Inf.
func F32ToF16(f float32) uint16 { return kvcache.F32ToF16(f) }

// BF16ToF32 converts bfloat16 bits to float32 exactly.
func BF16ToF32(h uint16) float32 { return kvcache.BF16ToF32(h) }

// F32ToBF16 converts f to bfloat16 bits with round-to-nearest-even, as
// ggml's reference conversion does (NaN stays a quiet NaN).
func F32ToBF16(f float32) uint16 { return kvcache.F32ToBF16(f) }

func le16(b []byte) uint16 { return binary.LittleEndian.Uint16(b) }

func lef32(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) }

// sizes checks that n values of t fill exactly nb bytes.
func sizes(t Type, n, nb int, what string) error {
	if !t.Supported() {
		return fmt.Errorf("%w: %s %v", ErrUnsupported, what, t)
	}
	want, err := t.RowBytes(n)
	if err != nil {
		return err
	}
	if nb != want {
		return fmt.Errorf("%w: %d values of %v take %d bytes, not %d", ErrSize, n, t, want, nb)
	}
	return nil
}

// Dequantize converts src, len(dst) values of type t, to float32 in dst,
// as ggml's dequantize_row functions (or its exact F16 and BF16
// conversions) do, with the same float32 rounding. It fails, changing
// nothing, wrapping ErrUnsupported for a type it does not convert and
// ErrSize when len(dst) is not a whole number of blocks or src is not
// exactly their size.
func Dequantize(t Type, src []byte, dst []float32) error {
	if err := sizes(t, len(dst), len(src), "dequantizing"); err != nil {
		return err
	}
	dequantize(t, src, dst)
	return nil
}

// dequantize is Dequantize with the sizes already checked.
func dequantize(t Type, src []byte, dst []float32) {
	switch t {
	case F32:
		for i := range dst {
			dst[i] = lef32(src[4*i:])
		}
	case F16:
		for i := range dst {
			dst[i] = f16[le16(src[2*i:])]
		}
	case BF16:
		for i := range dst {
			dst[i] = BF16ToF32(le16(src[2*i:]))
		}
	case Q4_0:
		for b := range len(dst) / 32 {
			dequantQ4_0(src[18*b:18*b+18], dst[32*b:32*b+32])
		}
	case Q4_1:
		for b := range len(dst) / 32 {
			dequantQ4_1(src[20*b:20*b+20], dst[32*b:32*b+32])
		}
	case Q5_0:
		for b := range len(dst) / 32 {
			dequantQ5(src[22*b:22*b+22], dst[32*b:32*b+32], false)
		}
	case Q5_1:
		for b := range len(dst) / 32 {
			dequantQ5(src[24*b:24*b+24], dst[32*b:32*b+32], true)
		}
	case Q8_0:
		for b := range len(dst) / 32 {
			dequantQ8_0(src[34*b:34*b+34], dst[32*b:32*b+32])
		}
	case Q8_1:
		for b := range len(dst) / 32 {
			dequantQ8_0(src[36*b:36*b+36], dst[32*b:32*b+32])
		}
	case Q4_K:
		for b := range len(dst) / QK_K {
			dequantQ4_K(src[144*b:144*b+144], dst[QK_K*b:QK_K*b+QK_K])
		}
	case Q6_K:
		for b := range len(dst) / QK_K {
			dequantQ6_K(src[210*b:210*b+210], dst[QK_K*b:QK_K*b+QK_K])
		}
	case Q8_K:
		for b := range len(dst) / QK_K {
			dequantQ8_K(src[292*b:292*b+292], dst[QK_K*b:QK_K*b+QK_K])
		}
	}
}

// Block layouts (ggml-common.h), all little-endian:
//
//	Q4_0 (18 bytes, 32 values):  d f16 | qs[16]: value j is qs[j]&15 - 8, value j+16 is qs[j]>>4 - 8; x = d*value
//	Q4_1 (20 bytes, 32 values):  d f16 | m f16 | qs[16] as Q4_0 without the -8; x = d*value + m
//	Q5_0 (22 bytes, 32 values):  d f16 | qh[4]: bit j is the fifth bit of value j | qs[16] as Q4_0; value - 16
//	Q5_1 (24 bytes, 32 values):  d f16 | m f16 | qh[4] | qs[16]; x = d*value + m
//	Q8_0 (34 bytes, 32 values):  d f16 | qs[32] int8; x = d*qs[j]
//	Q8_1 (36 bytes, 32 values):  d f16 | s f16 (d times the sum of qs) | qs[32] int8; x = d*qs[j]
//	Q4_K (144 bytes, 256 values): d f16 | dmin f16 | scales[12]: eight 6-bit scales and eight 6-bit mins |
//	                              qs[128]: per 64 values, 32 bytes: low nibbles the first 32 values, high nibbles the next 32;
//	                              sub-block j (32 values): x = d*scale_j*q - dmin*min_j
//	Q6_K (210 bytes, 256 values): ql[128] low 4 bits | qh[64] high 2 bits | scales[16] int8 (one per 16 values) | d f16;
//	                              x = d*scale*(q - 32)
//	Q8_K (292 bytes, 256 values): d f32 | qs[256] int8 | bsums[16] int16 (sums of 16 qs); x = d*qs[j]

func dequantQ4_0(b []byte, y []float32) {
	d := f16[le16(b)]
	qs := b[2:18]
	for j, q := range qs {
		y[j] = float32(int(q&15)-8) * d
		y[j+16] = float32(int(q>>4)-8) * d
	}
}

func dequantQ4_1(b []byte, y []float32) {
	d, m := f16[le16(b)], f16[le16(b[2:])]
	for j, q := range b[4:20] {
		// The products are exact: one rounding, of the sum, as in ggml.
		y[j] = float32(float32(q&15)*d) + m
		y[j+16] = float32(float32(q>>4)*d) + m
	}
}

// dequantQ5 decodes a Q5_0 block (minus 16, no m) or a Q5_1 block (plus m).
func dequantQ5(b []byte, y []float32, withMin bool) {
	d := f16[le16(b)]
	var m float32
	off, sub := 2, 16
	if withMin {
		m, off, sub = f16[le16(b[2:])], 4, 0
	}
	qh := binary.LittleEndian.Uint32(b[off:])
	for j, q := range b[off+4 : off+20] {
		x0 := int(q&15|uint8(qh>>j&1)<<4) - sub
		x1 := int(q>>4|uint8(qh>>(j+16)&1)<<4) - sub
		y[j] = float32(float32(x0)*d) + m
		y[j+16] = float32(float32(x1)*d) + m
	}
}

func dequantQ8_0(b []byte, y []float32) {
	d := f16[le16(b)]
	off := len(b) - 32 // Q8_1 keeps s between d and the values
	for j, q := range b[off:] {
		y[j] = float32(int8(q)) * d
	}
}

// scaleMinK4 returns the 6-bit scale and min of sub-block j of a Q4_K
// block's 12 scale bytes q (ggml's get_scale_min_k4).
func scaleMinK4(j int, q []byte) (sc, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&15 | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

func dequantQ4_K(b []byte, y []float32) {
	d := f16[le16(b)]
	dmin := f16[le16(b[2:])]
	scales := b[4:16]
	q := b[16:144]
	for j := 0; j < 8; j += 2 {
		sc, m := scaleMinK4(j, scales)
		d1, m1 := d*float32(sc), dmin*float32(m)
		sc, m = scaleMinK4(j+1, scales)
		d2, m2 := d*float32(sc), dmin*float32(m)
		qq := q[16*j : 16*j+32]
		yy := y[32*j : 32*j+64]
		for l, v := range qq {
			// The product is exact (at most 21 significant bits), so one
			// rounding, of the difference, as in ggml.
			yy[l] = float32(d1*float32(v&15)) - m1
			yy[l+32] = float32(d2*float32(v>>4)) - m2
		}
	}
}

func dequantQ6_K(b []byte, y []float32) {
	ql := b[0:128]
	qh := b[128:192]
	sc := b[192:208]
	d := f16[le16(b[208:])]
	for n := 0; n < 2; n++ {
		l4, h, s, yy := ql[64*n:64*n+64], qh[32*n:32*n+32], sc[8*n:8*n+8], y[128*n:128*n+128]
		for l := 0; l < 32; l++ {
			is := l / 16
			q1 := int(l4[l]&15|(h[l]>>0&3)<<4) - 32
			q2 := int(l4[l+32]&15|(h[l]>>2&3)<<4) - 32
			q3 := int(l4[l]>>4|(h[l]>>4&3)<<4) - 32
			q4 := int(l4[l+32]>>4|(h[l]>>6&3)<<4) - 32
			// ggml rounds d*scale (exact) and then its product with q.
			yy[l] = float32(d*float32(int8(s[is]))) * float32(q1)
			yy[l+32] = float32(d*float32(int8(s[is+2]))) * float32(q2)
			yy[l+64] = float32(d*float32(int8(s[is+4]))) * float32(q3)
			yy[l+96] = float32(d*float32(int8(s[is+6]))) * float32(q4)
		}
	}
}

func dequantQ8_K(b []byte, y []float32) {
	d := lef32(b)
	for j, q := range b[4:260] {
		y[j] = d * float32(int8(q))
	}
}

// Quantize converts len(src) float32 values to type t in dst, exactly as
// ggml's reference quantizers do (quantize_row_q4_0_ref, _q8_0_ref,
// _q8_1_ref, _q8_K_ref, _q4_K_ref, _q6_K_ref: the last two search each
// sub-block's scale and cost tens of nanoseconds per value) and, for F16
// and BF16, with round-to-nearest-even. Q4_1, Q5_0 and Q5_1, whose
// reference quantizers are not provided here, give an error wrapping
// ErrUnsupported. It fails, changing nothing, wrapping
// ErrSize when len(src) is not a whole number of blocks or dst not exactly
// their size.
//
// The result for NaN or infinite input is unspecified (as in ggml), but
// Quantize does not fail or panic on it.
func Quantize(t Type, src []float32, dst []byte) error {
	if !quantizes(t) {
		return fmt.Errorf("%w: quantizing to %v", ErrUnsupported, t)
	}
	if err := sizes(t, len(src), len(dst), "quantizing to"); err != nil {
		return err
	}
	quantize(t, src, dst, false)
	return nil
}

// quantizes reports whether Quantize converts to t.
func quantizes(t Type) bool {
	switch t {
	case F32, F16, BF16, Q4_0, Q8_0, Q8_1, Q8_K, Q4_K, Q6_K:
		return true
	}
	return false
}

// QuantizeActivations converts src to t as ggml's CPU backend converts the
// activations of a matrix product on x86 (its from_float with AVX): the same
// as Quantize for every type but Q8_0 and Q8_1, where the AVX code
// multiplies by 127/amax instead of by 1/(amax/127) and rounds halves to
// even instead of away from zero. The two conversions differ by one step
// in about one value in a million (29 of 2^25 random values). MulMat
// converts its activations with this function.
func QuantizeActivations(t Type, src []float32, dst []byte) error {
	if !quantizes(t) {
		return fmt.Errorf("%w: quantizing to %v", ErrUnsupported, t)
	}
	if err := sizes(t, len(src), len(dst), "quantizing to"); err != nil {
		return err
	}
	quantize(t, src, dst, true)
	return nil
}

// quantize is Quantize (avx false) or QuantizeActivations (avx true) with
// the sizes checked.
func quantize(t Type, src []float32, dst []byte, avx bool) {
	switch t {
	case F32:
		for i, v := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case F16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], F32ToF16(v))
		}
	case BF16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], F32ToBF16(v))
		}
	case Q4_0:
		for b := range len(src) / 32 {
			quantQ4_0(src[32*b:32*b+32], dst[18*b:18*b+18])
		}
	case Q8_0, Q8_1:
		bb := t.BlockBytes()
		for b := range len(src) / 32 {
			quantQ8(src[32*b:32*b+32], dst[bb*b:bb*b+bb], avx)
		}
	case Q8_K:
		for b := range len(src) / QK_K {
			quantQ8_K(src[QK_K*b:QK_K*b+QK_K], dst[292*b:292*b+292])
		}
	case Q4_K:
		for b := range len(src) / QK_K {
			quantQ4_K(src[QK_K*b:QK_K*b+QK_K], dst[144*b:144*b+144])
		}
	case Q6_K:
		for b := range len(src) / QK_K {
			quantQ6_K(src[QK_K*b:QK_K*b+QK_K], dst[210*b:210*b+210])
		}
	}
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// toInt8 converts a rounded float to int8 saturating, so that non-finite
// input cannot give an unspecified conversion.
func toInt8(x float64) int8 {
	switch {
	case x >= 127:
		return 127
	case x <= -128:
		return -128
	case x == x:
		return int8(x)
	}
	return 0
}

// quantQ4_0 is quantize_row_q4_0_ref for one block: d = max/-8 where max
// is the value of largest magnitude (the first one), values
// min(15, trunc(x/d + 8.5)).
func quantQ4_0(x []float32, b []byte) {
	var amax, max float32
	for _, v := range x {
		if a := abs32(v); amax < a {
			amax, max = a, v
		}
	}
	d := max / -8
	var id float32
	if d != 0 {
		id = 1 / d
	}
	binary.LittleEndian.PutUint16(b, F32ToF16(d))
	for j := range 16 {
		x0 := float32(x[j]*id) + 8.5
		x1 := float32(x[j+16]*id) + 8.5
		b[2+j] = min(15, uint8(toInt8(float64(x0)))) | min(15, uint8(toInt8(float64(x1))))<<4
	}
}

// quantQ8 quantizes one Q8_0 block (34 bytes) or Q8_1 block (36 bytes,
// with s = d times the sum of the values stored as F16 after d). The
// reference (quantize_row_q8_0_ref, _q8_1_ref): d = amax/127, values
// round(x * (1/d)) with halves away from zero. The AVX code of ggml's x86
// backend (avx): d = amax/127, values x * (127/amax) rounded to nearest
// with halves to even. Both store d as F16.
func quantQ8(x []float32, b []byte, avx bool) {
	var amax float32
	for _, v := range x {
		amax = max(amax, abs32(v))
	}
	d := amax / 127
	var id float32
	switch {
	case avx && amax != 0:
		id = 127 / amax
	case !avx && d != 0:
		id = 1 / d
	}
	binary.LittleEndian.PutUint16(b, F32ToF16(d))
	qs := b[len(b)-32:]
	sum := 0
	for j, v := range x {
		var q int8
		if avx {
			q = toInt8(math.RoundToEven(float64(v * id)))
		} else {
			q = toInt8(math.Round(float64(v * id)))
		}
		qs[j] = uint8(q)
		sum += int(q)
	}
	if len(b) == 36 {
		binary.LittleEndian.PutUint16(b[2:], F32ToF16(float32(sum)*d))
	}
}

// nearestInt is ggml's nearest_int: adding 1.5*2^23 in float32 rounds to
// an integer with halves to even (valid for |x| <= 2^22; beyond, the same
// bits as ggml's). Callers pass a rounded float32 (an explicit conversion
// of a product), so that the product is never fused with the sum.
func nearestInt(x float32) int {
	v := x + 12582912
	return int(math.Float32bits(v)&0x7fffff) - 0x400000
}

// quantQ8_K is quantize_row_q8_K_ref for one block: iscale = -127/max
// where max is the value of largest magnitude (the first one), values
// min(127, nearest_int(iscale*x)), d = 1/iscale, and the sums of each 16
// values. An all-zero block gets d = 0 and zero values (and zero sums,
// which ggml leaves unset).
func quantQ8_K(x []float32, b []byte) {
	var amax, mx float32
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax, mx = a, v
		}
	}
	qs := b[4:260]
	if amax == 0 || amax != amax || amax > math.MaxFloat32 {
		// All zero (ggml's case), or not finite (unspecified in ggml).
		clear(b)
		return
	}
	iscale := -127 / mx
	for j, v := range x {
		p := float32(iscale * v)    // rounded before nearestInt's sum, never fused with it
		if !(abs32(p) <= 4194303) { // NaN among finite amax: unspecified in ggml
			p = 0
		}
		qs[j] = uint8(int8(min(127, nearestInt(p))))
	}
	for j := range 16 {
		s := 0
		for _, q := range qs[16*j : 16*j+16] {
			s += int(int8(q))
		}
		binary.LittleEndian.PutUint16(b[260+2*j:], uint16(int16(s)))
	}
	binary.LittleEndian.PutUint32(b, math.Float32bits(1/iscale))
}
