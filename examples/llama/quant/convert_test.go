package quant

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/compresskv/compresskv/internal/reftest"
)

func f32bytes(v ...float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func u16bytes(v ...uint16) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], x)
	}
	return b
}

// expect checks dequantized values at the given indices; every index not
// listed must be zero (or the given default).
func expect(t *testing.T, typ Type, block []byte, n int, want map[int]float32, others float32) {
	t.Helper()
	got := make([]float32, n)
	if err := Dequantize(typ, block, got); err != nil {
		t.Fatal(err)
	}
	for i, g := range got {
		w, ok := want[i]
		if !ok {
			w = others
		}
		if g != w || math.Signbit(float64(g)) != math.Signbit(float64(w)) && w != 0 {
			t.Errorf("%v value %d = %v, want %v", typ, i, g, w)
		}
	}
}

// TestDequantizeFloats: F32, F16 and BF16 bit patterns written out by hand.
func TestDequantizeFloats(t *testing.T) {
	expect(t, F32, f32bytes(1, -2, 0.1), 3, map[int]float32{0: 1, 1: -2, 2: 0.1}, 0)
	// F16: 1, -2, 0x3555 = 2^-2 * (1 + 341/1024), the smallest subnormal
	// 2^-24, the largest finite 65504, +Inf.
	got := make([]float32, 6)
	if err := Dequantize(F16, u16bytes(0x3c00, 0xc000, 0x3555, 0x0001, 0x7bff, 0x7c00), got); err != nil {
		t.Fatal(err)
	}
	want := []float32{1, -2, 0.333251953125, 1.0 / (1 << 24), 65504, float32(math.Inf(1))}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("F16 %d = %v, want %v", i, got[i], want[i])
		}
	}
	// BF16: 1, -3, 0x4049 = 2 * (1 + 73/128) = 3.140625.
	expect(t, BF16, u16bytes(0x3f80, 0xc040, 0x4049), 3, map[int]float32{0: 1, 1: -3, 2: 3.140625}, 0)
}

// TestDequantizeQ4_0: d = 0.5 (0x3800); byte j holds value j in its low
// nibble and value j+16 in its high one, each minus 8.
func TestDequantizeQ4_0(t *testing.T) {
	b := append(u16bytes(0x3800), make([]byte, 16)...)
	for j := range 16 {
		b[2+j] = 0x88 // zeros
	}
	b[2+0] = 0x1f  // value 0: (15-8)*0.5 = 3.5; value 16: (1-8)*0.5 = -3.5
	b[2+15] = 0x80 // value 15: (0-8)*0.5 = -4; value 31: 0
	expect(t, Q4_0, b, 32, map[int]float32{0: 3.5, 16: -3.5, 15: -4}, 0)
}

// TestDequantizeQ4_1: d = 0.25, m = 2; values as Q4_0 without the -8,
// times d plus m.
func TestDequantizeQ4_1(t *testing.T) {
	b := append(u16bytes(0x3400, 0x4000), make([]byte, 16)...)
	b[4+0] = 0xf1 // value 0: 1*0.25 + 2; value 16: 15*0.25 + 2
	expect(t, Q4_1, b, 32, map[int]float32{0: 2.25, 16: 5.75}, 2)
}

// TestDequantizeQ5_0: d = 0.5; bit j of the little-endian word qh is the
// fifth bit of value j; values minus 16.
func TestDequantizeQ5_0(t *testing.T) {
	b := make([]byte, 22)
	copy(b, u16bytes(0x3800))
	copy(b[2:], f32bytes(math.Float32frombits(0x00010001))) // qh bits 0 and 16
	b[6+0] = 0x21                                           // value 0: 1|16 - 16 = 1; value 16: 2|16 - 16 = 2
	b[6+1] = 0xf0                                           // value 1: 0 - 16; value 17: 15 - 16
	expect(t, Q5_0, b, 32, map[int]float32{0: 0.5, 16: 1, 1: -8, 17: -0.5}, -8)
}

// TestDequantizeQ5_1: d = 0.5, m = -1, qh bit 31 set; values times d plus m.
func TestDequantizeQ5_1(t *testing.T) {
	b := make([]byte, 24)
	copy(b, u16bytes(0x3800, 0xbc00))
	b[4+3] = 0x80  // qh bit 31: the fifth bit of value 31
	b[8+15] = 0x52 // value 15: 2; value 31: 5|16 = 21
	expect(t, Q5_1, b, 32, map[int]float32{15: 0, 31: 9.5}, -1)
}

// TestDequantizeQ8_0: d = 0.25 (0x3400), values as int8.
func TestDequantizeQ8_0(t *testing.T) {
	b := append(u16bytes(0x3400), make([]byte, 32)...)
	b[2+0] = 0x7f  // 127*0.25
	b[2+1] = 0x80  // -128*0.25
	b[2+31] = 0xff // -1*0.25
	expect(t, Q8_0, b, 32, map[int]float32{0: 31.75, 1: -32, 31: -0.25}, 0)
}

// TestDequantizeQ4_K: d = 1, dmin = 0.5; the six-bit scales and mins of
// sub-blocks 0-3 are the low six bits of scale bytes 0-3 and 4-7; those of
// sub-blocks 4-7 take their low four bits from bytes 8-11 and their top two
// from the top bits of bytes 0-3 (scales) and 4-7 (mins).
func TestDequantizeQ4_K(t *testing.T) {
	b := make([]byte, 144)
	copy(b, u16bytes(0x3c00, 0x3800))
	sc := b[4:16]
	sc[0] = 0b01_000010 // scale 0 = 2; top bits 01 give scale 4 a 16
	sc[1] = 3           // scale 1 = 3
	sc[4] = 0b10_000001 // min 0 = 1; top bits 10 give min 4 a 32
	sc[8] = 0x21        // scale 4 = 1 + 16 = 17, min 4 = 2 + 32 = 34
	qs := b[16:]
	qs[0] = 0x5a  // sub-block 0 value 0: 10; sub-block 1 value 0: 5
	qs[64] = 0x03 // sub-block 4 value 0: 3; sub-block 5 value 0: 0
	want := map[int]float32{
		0:   1*2*10 - 0.5*1, // 19.5
		32:  1 * 3 * 5,      // min 1 = 0
		128: 1*17*3 - 0.5*34,
	}
	for i := 1; i < 32; i++ {
		want[i] = -0.5 // q = 0: minus dmin*min 0
	}
	for i := 129; i < 160; i++ {
		want[i] = -17 // q = 0: minus dmin*min 4
	}
	expect(t, Q4_K, b, 256, want, 0)
}

// TestDequantizeQ6_K: 128 bytes of low nibbles, 64 of high bit pairs, 16
// int8 scales (one per 16 values), then d. Per half of 128 values, byte l
// of ql holds value l (low nibble) and l+64 (high); byte l+32 holds l+32
// and l+96; byte l of qh holds the top two bits of l, l+32, l+64, l+96.
func TestDequantizeQ6_K(t *testing.T) {
	b := make([]byte, 210)
	ql, qh, sc := b[0:128], b[128:192], b[192:208]
	copy(b[208:], u16bytes(0x3800)) // d = 0.5
	sc[0], sc[1], sc[2], sc[4], sc[6], sc[8] = 2, 7, 0xfd, 5, 1, 4
	ql[0] = 0x21       // value 0 low 1, value 64 low 2
	qh[0] = 0b11100111 // high bits: value 0: 3, value 32: 1, value 64: 2, value 96: 3
	ql[64] = 0x0f      // second half, value 128: low 15, high bits 0
	want := map[int]float32{
		0:   0.5 * 2 * (1 + 3<<4 - 32),  // 17
		32:  0.5 * -3 * (0 + 1<<4 - 32), // 24
		64:  0.5 * 5 * (2 + 2<<4 - 32),  // 5
		96:  0.5 * 1 * (0 + 3<<4 - 32),  // 8
		128: 0.5 * 4 * (15 - 32),        // -34
		16:  0.5 * 7 * -32,              // group 1, all bits zero
	}
	// Every other value has q = 0, so -32 times its group's scale.
	scale := func(i int) float32 { return float32(int8(sc[i/16])) }
	for i := range 256 {
		if _, ok := want[i]; !ok {
			want[i] = 0.5 * scale(i) * -32
		}
	}
	expect(t, Q6_K, b, 256, want, 0)
}

// TestDequantizeQ8_K: d as float32, then int8 values.
func TestDequantizeQ8_K(t *testing.T) {
	b := make([]byte, 292)
	copy(b, f32bytes(0.5))
	b[4+0], b[4+1], b[4+255] = 0x7f, 0x80, 0xfe
	expect(t, Q8_K, b, 256, map[int]float32{0: 63.5, 1: -64, 255: -1}, 0)
}

// TestQuantizeQ8_0: amax 31.75 gives d = 0.25 exactly; the reference
// multiplies by 1/d = 4 and rounds halves away from zero, the x86 AVX code
// multiplies by 127/amax = 4 and rounds halves to even.
func TestQuantizeQ8_0(t *testing.T) {
	x := make([]float32, 32)
	x[0], x[1], x[2], x[3], x[4], x[5] = 31.75, 0.125, -0.375, 0.625, -31.75, 0.3
	ref := make([]byte, 34)
	if err := Quantize(Q8_0, x, ref); err != nil {
		t.Fatal(err)
	}
	avx := make([]byte, 34)
	if err := QuantizeActivations(Q8_0, x, avx); err != nil {
		t.Fatal(err)
	}
	// 0.3*4 = 1.2 rounds to 1 in both.
	wantRef := []int8{127, 1, -2, 3, -127, 1}
	wantAVX := []int8{127, 0, -2, 2, -127, 1}
	for i := range 32 {
		var r, a int8
		if i < len(wantRef) {
			r, a = wantRef[i], wantAVX[i]
		}
		if int8(ref[2+i]) != r || int8(avx[2+i]) != a {
			t.Errorf("value %d (%v): reference %d AVX %d, want %d and %d", i, x[i], int8(ref[2+i]), int8(avx[2+i]), r, a)
		}
	}
	if d := binary.LittleEndian.Uint16(ref); d != 0x3400 || binary.LittleEndian.Uint16(avx) != 0x3400 {
		t.Errorf("d = %#x, want 0x3400 (0.25)", d)
	}
	// Q8_1 stores the same values after d and s = d*sum: the reference's
	// sum is 3 (s = 0.75, 0x3a00), the AVX code's 1 (s = 0.25, 0x3400).
	ref1, avx1 := make([]byte, 36), make([]byte, 36)
	must(t, Quantize(Q8_1, x, ref1))
	must(t, QuantizeActivations(Q8_1, x, avx1))
	if string(ref1[4:]) != string(ref[2:]) || string(avx1[4:]) != string(avx[2:]) {
		t.Errorf("Q8_1 values differ from Q8_0's")
	}
	if string(ref1[:4]) != string(u16bytes(0x3400, 0x3a00)) || string(avx1[:4]) != string(u16bytes(0x3400, 0x3400)) {
		t.Errorf("Q8_1 d, s: reference % x, AVX % x", ref1[:4], avx1[:4])
	}
	// An all-zero block: d = 0 and zero values.
	zero := make([]byte, 34)
	for i := range zero {
		zero[i] = 0xaa
	}
	if err := Quantize(Q8_0, make([]float32, 32), zero); err != nil {
		t.Fatal(err)
	}
	for i, b := range zero {
		if b != 0 {
			t.Fatalf("zero block byte %d = %#x", i, b)
		}
	}
}

// TestQuantizeQ8_0Multiplier: with amax = 0.15 the two multipliers
// differ by one float32 step: the reference's 1/(0.15/127) gives exactly
// 1.5 for x = 0x3ae836d4 (0.0017716535), which rounds away from zero to 2;
// the AVX code's 127/0.15 gives 1.4999999, which rounds to 1.
func TestQuantizeQ8_0Multiplier(t *testing.T) {
	x := make([]float32, 32)
	x[0] = 0.15
	x[1] = math.Float32frombits(0x3ae836d4)
	ref, avx := make([]byte, 34), make([]byte, 34)
	must(t, Quantize(Q8_0, x, ref))
	must(t, QuantizeActivations(Q8_0, x, avx))
	if int8(ref[3]) != 2 || int8(avx[3]) != 1 || ref[2] != 127 || avx[2] != 127 {
		t.Fatalf("reference %d %d, AVX %d %d; want 127 2 and 127 1", int8(ref[2]), int8(ref[3]), int8(avx[2]), int8(avx[3]))
	}
}

// TestQuantizeQ8_K: the value of largest magnitude is -2, so iscale =
// -127/-2 = 63.5 and values are nearest_int(63.5*x) with halves to even;
// d = 1/63.5; bsums add each 16 values.
func TestQuantizeQ8_K(t *testing.T) {
	x := make([]float32, 256)
	copy(x, []float32{-2, 1, 0.5, 0.0078125, -1, 1.5, 2})
	x[16] = 0.25 // 15.875 -> 16, in the second group
	b := make([]byte, 292)
	must(t, Quantize(Q8_K, x, b))
	want := []int8{-127, 64, 32, 0, -64, 95, 127}
	for i := range 256 {
		var w int8
		switch {
		case i < len(want):
			w = want[i]
		case i == 16:
			w = 16
		}
		if int8(b[4+i]) != w {
			t.Errorf("value %d (%v) = %d, want %d", i, x[i], int8(b[4+i]), w)
		}
	}
	if d := lef32(b); d != 1/float32(63.5) {
		t.Errorf("d = %v, want 1/63.5", d)
	}
	bsum := func(j int) int16 { return int16(binary.LittleEndian.Uint16(b[260+2*j:])) }
	if bsum(0) != -127+64+32-64+95+127 || bsum(1) != 16 || bsum(15) != 0 {
		t.Errorf("bsums %d %d %d", bsum(0), bsum(1), bsum(15))
	}
	// QuantizeActivations is the same for Q8_K.
	c := make([]byte, 292)
	must(t, QuantizeActivations(Q8_K, x, c))
	if string(b) != string(c) {
		t.Error("QuantizeActivations differs from Quantize for Q8_K")
	}
	// Non-finite input neither fails nor panics.
	x[3] = float32(math.NaN())
	must(t, Quantize(Q8_K, x, b))
	x[3] = float32(math.Inf(-1))
	must(t, Quantize(Q8_K, x, b))
	must(t, Quantize(Q8_0, x[:32], make([]byte, 34)))
	must(t, Quantize(Q4_0, x[:32], make([]byte, 18)))
}

// TestQuantizeQ4_0: the value of largest magnitude is -4, so d = -4/-8 =
// 0.5, id = 2, and a value is min(15, trunc(2x + 8.5)).
func TestQuantizeQ4_0(t *testing.T) {
	x := make([]float32, 32)
	x[0], x[5], x[16], x[17] = 1, -4, 3.9, -0.3
	b := make([]byte, 18)
	must(t, Quantize(Q4_0, x, b))
	want := make([]byte, 18)
	copy(want, u16bytes(0x3800))
	for j := range 16 {
		want[2+j] = 0x88 // 0 -> trunc(8.5) = 8
	}
	want[2+0] = 10 | 15<<4 // 1 -> 10.5 -> 10; 3.9 -> 16.3 -> 16 -> 15
	want[2+1] = 8 | 7<<4   // -0.3 -> 7.9 -> 7
	want[2+5] = 0 | 8<<4   // -4 -> 0.5 -> 0
	if string(b) != string(want) {
		t.Fatalf("got % x\nwant % x", b, want)
	}
}

// TestQuantizeFloats: F16 and BF16 round to nearest even; F32 is a copy.
func TestQuantizeFloats(t *testing.T) {
	// 1 + 2^-11 is halfway between two halfs: it rounds to 1 (even); 1 +
	// 3*2^-11 rounds up to 1 + 2^-9.
	x := []float32{1 + 1.0/2048, 1 + 3.0/2048, -65520, 1e-8}
	h := make([]byte, 8)
	must(t, Quantize(F16, x, h))
	if got, want := h, u16bytes(0x3c00, 0x3c02, 0xfc00, 0x0000); string(got) != string(want) {
		t.Errorf("F16 % x, want % x", got, want)
	}
	// bfloat16: 1 + 2^-8 is halfway: rounds to 1; 1 + 3*2^-8 rounds to 1 + 2^-6.
	bb := make([]byte, 4)
	must(t, Quantize(BF16, []float32{1 + 1.0/256, 1 + 3.0/256}, bb))
	if want := u16bytes(0x3f80, 0x3f82); string(bb) != string(want) {
		t.Errorf("BF16 % x, want % x", bb, want)
	}
	f := make([]byte, 4)
	must(t, Quantize(F32, []float32{-0.1}, f))
	if string(f) != string(f32bytes(-0.1)) {
		t.Errorf("F32 % x", f)
	}
}

// TestSizeErrors: lengths that are not whole blocks, mismatched buffers
// and unsupported types fail with the right sentinel and write nothing.
func TestSizeErrors(t *testing.T) {
	dst := make([]float32, 256)
	for i := range dst {
		dst[i] = 7
	}
	for _, c := range []struct {
		t    Type
		src  int
		dst  int
		want error
	}{
		{Q8_0, 34, 31, ErrSize},
		{Q8_0, 33, 32, ErrSize},
		{Q4_K, 144, 32, ErrSize},
		{F16, 63, 32, ErrSize},
		{Q5_K, 176, 256, ErrUnsupported},
		{Type(4), 0, 32, ErrUnsupported},
		{Type(1000), 0, 32, ErrUnsupported},
	} {
		err := Dequantize(c.t, make([]byte, c.src), dst[:c.dst])
		if !errors.Is(err, c.want) {
			t.Errorf("Dequantize(%v, %d bytes, %d values): %v, want %v", c.t, c.src, c.dst, err, c.want)
		}
	}
	for i, v := range dst {
		if v != 7 {
			t.Fatalf("value %d changed to %v by a failed call", i, v)
		}
	}
	if err := Quantize(Q5_0, make([]float32, 32), make([]byte, 22)); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Quantize(Q5_0): %v", err)
	}
	if err := QuantizeActivations(Q5_0, make([]float32, 32), make([]byte, 22)); !errors.Is(err, ErrUnsupported) {
		t.Errorf("QuantizeActivations(Q5_0): %v", err)
	}
	if err := Quantize(Q8_K, make([]float32, 256), make([]byte, 291)); !errors.Is(err, ErrSize) {
		t.Errorf("Quantize(Q8_K, short): %v", err)
	}
	if _, err := Q8_0.RowBytes(-32); !errors.Is(err, ErrSize) {
		t.Errorf("RowBytes(-32): %v", err)
	}
}

// TestTypeTable: sizes as ggml-common.h defines them, and the vec_dot
// types of ggml's CPU type traits.
func TestTypeTable(t *testing.T) {
	for _, c := range []struct {
		t            Type
		name         string
		block, bytes int
		vec          Type
	}{
		{F32, "F32", 1, 4, F32}, {F16, "F16", 1, 2, F16}, {BF16, "BF16", 1, 2, BF16},
		{Q4_0, "Q4_0", 32, 2 + 16, Q8_0}, {Q8_0, "Q8_0", 32, 2 + 32, Q8_0},
		{Q4_K, "Q4_K", 256, 2 + 2 + 12 + 128, Q8_K}, {Q6_K, "Q6_K", 256, 128 + 64 + 16 + 2, Q8_K},
		{Q8_K, "Q8_K", 256, 4 + 256 + 32, Q8_K}, {Q5_0, "Q5_0", 32, 2 + 4 + 16, Q8_0},
		{Q4_1, "Q4_1", 32, 2 + 2 + 16, Q8_1}, {Q5_1, "Q5_1", 32, 2 + 2 + 4 + 16, Q8_1}, {Q8_1, "Q8_1", 32, 2 + 2 + 32, Q8_1},
		{Q5_K, "Q5_K", 256, 2 + 2 + 12 + 32 + 128, Q5_K},
		{IQ4_XS, "IQ4_XS", 256, 2 + 2 + 4 + 128, IQ4_XS}, {MXFP4, "MXFP4", 32, 1 + 16, MXFP4},
	} {
		if c.t.String() != c.name || c.t.BlockSize() != c.block || c.t.BlockBytes() != c.bytes || c.t.VecDotType() != c.vec {
			t.Errorf("%v: %q %d %d %v, want %q %d %d %v", uint32(c.t), c.t, c.t.BlockSize(), c.t.BlockBytes(), c.t.VecDotType(), c.name, c.block, c.bytes, c.vec)
		}
	}
	if Type(4).Known() || Type(4).String() != "Type(4)" || Type(99).BlockSize() != 0 {
		t.Error("retired or unknown ids look known")
	}
	if n, err := Q4_K.RowBytes(512); n != 288 || err != nil {
		t.Errorf("Q4_K.RowBytes(512) = %d %v", n, err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestQuantizeQ4_K: a block of 256 values 15. Each sub-block's search
// finds scale 1 and min 0 (15 = 1*15 exactly, no other step does better),
// so the block's scale is 1/63 (the F16 0x2410), its min 0, every six-bit
// scale 63 (bytes 0-3 hold 63 with the top bits of scales 4-7, bytes 8-11
// their low four bits; mins zero) and every value 15: nearest(15/(63*d)).
func TestQuantizeQ4_K(t *testing.T) {
	x := make([]float32, 256)
	for i := range x {
		x[i] = 15
	}
	b := make([]byte, 144)
	must(t, Quantize(Q4_K, x, b))
	want := append(u16bytes(0x2410, 0), 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x0f, 0x0f, 0x0f, 0x0f)
	for range 128 {
		want = append(want, 0xff)
	}
	if string(b) != string(want) {
		t.Fatalf("got  % x\nwant % x", b, want)
	}
	// An all-zero block is all zero bytes.
	must(t, Quantize(Q4_K, make([]float32, 256), b))
	if string(b) != string(make([]byte, 144)) {
		t.Fatalf("zero block % x", b)
	}
}

// TestQuantizeQ6_K: a block of 256 ones. Each group of 16 finds scale
// -1/32 (values -32; the steps towards 31 tie and do not replace it); the
// block's d is 1/(-128/(-1/32)) = 2^-12 (0x0c00), every group scale
// nearest(4096 * -1/32) = -128, and every value nearest(1/(2^-12*-128)) =
// -32, stored as 0: ql and qh are zero.
func TestQuantizeQ6_K(t *testing.T) {
	x := make([]float32, 256)
	for i := range x {
		x[i] = 1
	}
	b := make([]byte, 210)
	must(t, Quantize(Q6_K, x, b))
	want := make([]byte, 210)
	for i := 192; i < 208; i++ {
		want[i] = 0x80
	}
	copy(want[208:], u16bytes(0x0c00))
	if string(b) != string(want) {
		t.Fatalf("got  % x\nwant % x", b, want)
	}
	y := make([]float32, 256)
	must(t, Dequantize(Q6_K, b, y))
	if y[0] != 1 || y[255] != 1 {
		t.Fatalf("dequantized %v %v, want 1", y[0], y[255])
	}
	must(t, Quantize(Q6_K, make([]float32, 256), b))
	if string(b) != string(make([]byte, 210)) {
		t.Fatalf("zero block % x", b)
	}
}

// TestQuantizeRoundTrip: random normal weights quantized and dequantized
// keep a relative RMS error within what each type's bits allow (about
// 2^-b of the range; the bounds are 1.5 times the errors measured over
// 30 seeds), and non-finite input neither fails nor panics.
func TestQuantizeRoundTrip(t *testing.T) {
	r, _ := reftest.Rand(t)
	for _, c := range []struct {
		t   Type
		max float64
	}{{Q4_0, 0.13}, {Q4_K, 0.11}, {Q6_K, 0.028}, {Q8_0, 0.0083}, {Q8_K, 0.0115}, {F16, 0.0003}, {BF16, 0.0026}} {
		const n = 256 * 21
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		rb, _ := c.t.RowBytes(n)
		b := make([]byte, rb)
		must(t, Quantize(c.t, x, b))
		y := make([]float32, n)
		must(t, Dequantize(c.t, b, y))
		var se, ss float64
		for i := range x {
			se += (float64(x[i]) - float64(y[i])) * (float64(x[i]) - float64(y[i]))
			ss += float64(x[i]) * float64(x[i])
		}
		rel := math.Sqrt(se / ss)
		t.Logf("%v: relative RMS error %.4f", c.t, rel)
		if rel > c.max {
			t.Errorf("%v: relative RMS error %.4f above %.4f", c.t, rel, c.max)
		}
		x[3], x[700] = float32(math.NaN()), float32(math.Inf(1))
		must(t, Quantize(c.t, x, b))
	}
}

// BenchmarkQuantize times the quantizers on 64 blocks of 256 normal values:
// nanoseconds per value.
func BenchmarkQuantize(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	x := reftest.Normal(r, 256*64, 1)
	for _, typ := range []Type{Q8_0, Q8_K, Q4_0, Q4_K, Q6_K} {
		rb, _ := typ.RowBytes(len(x))
		dst := make([]byte, rb)
		b.Run(typ.String(), func(b *testing.B) {
			for b.Loop() {
				if err := Quantize(typ, x, dst); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(x)), "ns/value")
		})
	}
}
