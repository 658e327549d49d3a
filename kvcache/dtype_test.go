package kvcache

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// newRand returns a generator seeded from the clock, and logs the seed so that
// a failure can be replayed.
func newRand(t testing.TB) (*rand.Rand, uint64) {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), seed
}

// refF16 rounds a finite x to the nearest binary16 value, ties to the even
// significand, by arithmetic on float64 (independent of F32ToF16). It returns
// the bits and the value.
func refF16(x float32) (uint16, float64) {
	a := float64(x)
	var sign uint16
	if math.Signbit(a) {
		sign, a = 0x8000, -a
	}
	if a == 0 {
		return sign, math.Copysign(0, float64(x))
	}
	_, e := math.Frexp(a) // a = f * 2^e, f in [0.5, 1): a in [2^(e-1), 2^e)
	ulpExp := e - 11      // 11 significant bits
	if ulpExp < -24 {     // subnormals: fixed step 2^-24
		ulpExp = -24
	}
	q := math.RoundToEven(math.Ldexp(a, -ulpExp))
	v := math.Ldexp(q, ulpExp)
	if v >= 65536 { // beyond the largest finite half once rounded
		return sign | 0x7c00, math.Copysign(math.Inf(1), float64(x))
	}
	var bits uint16
	if v < 0x1p-14 {
		bits = uint16(q) // subnormal: count of 2^-24 steps
	} else {
		_, e2 := math.Frexp(v)
		E := e2 - 1 // v in [2^E, 2^(E+1))
		mant := (math.Ldexp(v, -E) - 1) * 1024
		if mant != math.Trunc(mant) || mant < 0 || mant >= 1024 {
			panic("refF16: mantissa not integral")
		}
		bits = uint16(E+15)<<10 | uint16(mant)
	}
	return sign | bits, math.Copysign(v, float64(x))
}

// refBF16 rounds a finite x to the nearest bfloat16 value, ties to even, by
// arithmetic on float64 (independent of F32ToBF16).
func refBF16(x float32) (uint16, float64) {
	a := float64(x)
	neg := math.Signbit(a)
	if neg {
		a = -a
	}
	var v float64
	if a != 0 {
		_, e := math.Frexp(a)
		ulpExp := e - 8 // 8 significant bits
		if ulpExp < -133 {
			ulpExp = -133 // subnormals: fixed step 2^-133
		}
		v = math.Ldexp(math.RoundToEven(math.Ldexp(a, -ulpExp)), ulpExp)
		if v >= 0x1p128 {
			v = math.Inf(1)
		}
	}
	if neg {
		v = -v
	}
	// v is representable as bfloat16, hence exactly as float32.
	return uint16(math.Float32bits(float32(v)) >> 16), v
}

// refRound returns x as stored in type t and read back, computed by the
// references above.
func refRound(t DType, x float32) float64 {
	switch t {
	case Float16:
		_, v := refF16(x)
		return v
	case BFloat16:
		_, v := refBF16(x)
		return v
	}
	return float64(x)
}

func f32bits(b uint32) float32 { return math.Float32frombits(b) }

func isHalfNaN(h uint16) bool { return h&0x7c00 == 0x7c00 && h&0x3ff != 0 }
func isBF16NaN(h uint16) bool { return h&0x7f80 == 0x7f80 && h&0x7f != 0 }

func TestF32ToF16Exact(t *testing.T) {
	p := math.Ldexp
	cases := []struct {
		name string
		in   float32
		want uint16
	}{
		{"zero", 0, 0x0000},
		{"negative zero", float32(math.Copysign(0, -1)), 0x8000},
		{"one", 1, 0x3c00},
		{"minus two", -2, 0xc000},
		{"half", 0.5, 0x3800},
		{"0.1", 0.1, 0x2e66},
		{"1/3", 1.0 / 3, 0x3555},
		{"largest finite", 65504, 0x7bff},
		{"below overflow halfway", 65519, 0x7bff},
		{"just below overflow halfway", f32bits(math.Float32bits(65520) - 1), 0x7bff},
		{"overflow halfway rounds up to Inf", 65520, 0x7c00},
		{"negative overflow halfway", -65520, 0xfc00},
		{"65536", 65536, 0x7c00},
		{"1e10", 1e10, 0x7c00},
		{"max float32", math.MaxFloat32, 0x7c00},
		{"-max float32", -math.MaxFloat32, 0xfc00},
		{"+Inf", float32(math.Inf(1)), 0x7c00},
		{"-Inf", float32(math.Inf(-1)), 0xfc00},
		{"smallest normal 2^-14", float32(p(1, -14)), 0x0400},
		{"largest subnormal 1023*2^-24", float32(p(1023, -24)), 0x03ff},
		{"subnormal/normal tie 1023.5*2^-24 to even", float32(p(2047, -25)), 0x0400},
		{"smallest subnormal 2^-24", float32(p(1, -24)), 0x0001},
		{"-2^-24", float32(p(-1, -24)), 0x8001},
		{"2^-25 tie to even zero", float32(p(1, -25)), 0x0000},
		{"-2^-25 tie to even negative zero", float32(p(-1, -25)), 0x8000},
		{"just above 2^-25", f32bits(math.Float32bits(float32(p(1, -25))) + 1), 0x0001},
		{"3*2^-26 rounds up", float32(p(3, -26)), 0x0001},
		{"2^-26 rounds down", float32(p(1, -26)), 0x0000},
		{"3*2^-25 (1.5 steps) tie to 2", float32(p(3, -25)), 0x0002},
		{"5*2^-25 (2.5 steps) tie to 2", float32(p(5, -25)), 0x0002},
		{"7*2^-25 (3.5 steps) tie to 4", float32(p(7, -25)), 0x0004},
		{"smallest float32 subnormal", f32bits(1), 0x0000},
		{"negative smallest float32 subnormal", f32bits(0x80000001), 0x8000},
		{"1+2^-11 tie down to even", float32(1 + p(1, -11)), 0x3c00},
		{"1+3*2^-11 tie up to even", float32(1 + p(3, -11)), 0x3c02},
		{"1+2^-11+2^-23 above tie", float32(1 + p(1, -11) + p(1, -23)), 0x3c01},
		{"1+2^-11-2^-24 below tie", float32(1 + p(1, -11) - p(1, -24)), 0x3c00},
		{"2049 tie down to 2048", 2049, 0x6800},
		{"2051 tie up to 2052", 2051, 0x6802},
		{"-2051 tie up to -2052", -2051, 0xe802},
		{"tie 2-2^-11 carries into the exponent", float32(2 - p(1, -11)), 0x4000},
	}
	for _, c := range cases {
		if got := F32ToF16(c.in); got != c.want {
			t.Errorf("%s: F32ToF16(%g [%#08x]) = %#04x, want %#04x", c.name, c.in, math.Float32bits(c.in), got, c.want)
		}
		// The reference must agree with the hand-derived value too.
		if ref, _ := refF16(c.in); ref != c.want && !math.IsInf(float64(c.in), 0) {
			t.Errorf("%s: reference gives %#04x, want %#04x (test bug)", c.name, ref, c.want)
		}
	}
	for _, b := range []uint32{0x7fc00000, 0x7f800001, 0x7fffffff, 0xffc00000, 0xff800001, 0x7f802000} {
		if got := F32ToF16(f32bits(b)); !isHalfNaN(got) {
			t.Errorf("F32ToF16(NaN %#08x) = %#04x, want a NaN", b, got)
		}
	}
}

func TestF16ToF32Exact(t *testing.T) {
	cases := []struct {
		in   uint16
		want uint32 // float32 bits
	}{
		{0x0000, 0x00000000},
		{0x8000, 0x80000000},
		{0x3c00, math.Float32bits(1)},
		{0xc000, math.Float32bits(-2)},
		{0x7bff, math.Float32bits(65504)},
		{0xfbff, math.Float32bits(-65504)},
		{0x0400, math.Float32bits(float32(math.Ldexp(1, -14)))},
		{0x0001, math.Float32bits(float32(math.Ldexp(1, -24)))},
		{0x8001, math.Float32bits(float32(math.Ldexp(-1, -24)))},
		{0x03ff, math.Float32bits(float32(math.Ldexp(1023, -24)))},
		{0x0200, math.Float32bits(float32(math.Ldexp(1, -15)))},
		{0x3555, math.Float32bits(0.333251953125)},
		{0x3c01, math.Float32bits(float32(1 + math.Ldexp(1, -10)))},
		{0x7c00, 0x7f800000},
		{0xfc00, 0xff800000},
	}
	for _, c := range cases {
		if got := math.Float32bits(F16ToF32(c.in)); got != c.want {
			t.Errorf("F16ToF32(%#04x) = %g [%#08x], want %g [%#08x]", c.in, f32bits(got), got, f32bits(c.want), c.want)
		}
	}
	for _, h := range []uint16{0x7c01, 0x7e00, 0x7fff, 0xfc01, 0xfe00} {
		if got := F16ToF32(h); !math.IsNaN(float64(got)) {
			t.Errorf("F16ToF32(%#04x) = %g, want NaN", h, got)
		}
	}
}

func TestF32ToBF16Exact(t *testing.T) {
	cases := []struct {
		name string
		in   uint32 // float32 bits
		want uint16
	}{
		{"zero", 0x00000000, 0x0000},
		{"negative zero", 0x80000000, 0x8000},
		{"one", 0x3f800000, 0x3f80},
		{"tie down to even", 0x3f808000, 0x3f80},
		{"tie up to even", 0x3f818000, 0x3f82},
		{"above tie", 0x3f808001, 0x3f81},
		{"below tie", 0x3f807fff, 0x3f80},
		{"negative tie up", 0xbf818000, 0xbf82},
		{"max float32 overflows", 0x7f7fffff, 0x7f80},
		{"-max float32 overflows", 0xff7fffff, 0xff80},
		{"largest finite bfloat16", 0x7f7f0000, 0x7f7f},
		{"below top tie", 0x7f7f7fff, 0x7f7f},
		{"top tie rounds to Inf", 0x7f7f8000, 0x7f80},
		{"+Inf", 0x7f800000, 0x7f80},
		{"-Inf", 0xff800000, 0xff80},
		{"smallest subnormal", 0x00000001, 0x0000},
		{"subnormal tie to zero", 0x00008000, 0x0000},
		{"subnormal above tie", 0x00008001, 0x0001},
		{"subnormal tie up", 0x00018000, 0x0002},
		{"subnormal carries to normal", 0x007fffff, 0x0080},
		{"3.140625", math.Float32bits(3.140625), 0x4049},
		{"pi", math.Float32bits(math.Pi), 0x4049},
	}
	for _, c := range cases {
		if got := F32ToBF16(f32bits(c.in)); got != c.want {
			t.Errorf("%s: F32ToBF16(%#08x) = %#04x, want %#04x", c.name, c.in, got, c.want)
		}
		if f := f32bits(c.in); !math.IsInf(float64(f), 0) {
			if ref, _ := refBF16(f); ref != c.want {
				t.Errorf("%s: reference gives %#04x, want %#04x (test bug)", c.name, ref, c.want)
			}
		}
	}
	// NaNs must stay NaN: plain rounding turns 0x7f800001 into Inf and
	// 0x7fffffff into -0.
	for _, b := range []uint32{0x7fc00000, 0x7f800001, 0x7fffffff, 0xffffffff, 0xff800001, 0x7f808000} {
		if got := F32ToBF16(f32bits(b)); !isBF16NaN(got) {
			t.Errorf("F32ToBF16(NaN %#08x) = %#04x, want a NaN", b, got)
		}
	}
	if got := F32ToBF16(f32bits(0xffc00000)); got&0x8000 == 0 {
		t.Errorf("F32ToBF16(-NaN) = %#04x, lost the sign", got)
	}
}

func TestBF16ToF32Exact(t *testing.T) {
	cases := []struct {
		in   uint16
		want uint32
	}{
		{0x0000, 0x00000000},
		{0x8000, 0x80000000},
		{0x3f80, 0x3f800000},
		{0x0001, 0x00010000},
		{0x7f7f, 0x7f7f0000},
		{0x7f80, 0x7f800000},
		{0xff80, 0xff800000},
		{0x4049, 0x40490000},
	}
	for _, c := range cases {
		if got := math.Float32bits(BF16ToF32(c.in)); got != c.want {
			t.Errorf("BF16ToF32(%#04x) = %#08x, want %#08x", c.in, got, c.want)
		}
	}
	if got := BF16ToF32(0x7fc0); !math.IsNaN(float64(got)) {
		t.Errorf("BF16ToF32(0x7fc0) = %g, want NaN", got)
	}
}

// TestF16RoundTripAll checks every half bit pattern: decoding is exact (it
// agrees with the reference on the decoded value) and re-encoding gives the
// same bits, for all but NaN, which must stay NaN.
func TestF16RoundTripAll(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := F16ToF32(h)
		if isHalfNaN(h) {
			if !math.IsNaN(float64(f)) || !isHalfNaN(F32ToF16(f)) {
				t.Errorf("NaN %#04x: decoded %g, re-encoded %#04x", h, f, F32ToF16(f))
			}
			continue
		}
		if back := F32ToF16(f); back != h {
			t.Errorf("F32ToF16(F16ToF32(%#04x) = %g) = %#04x", h, f, back)
		}
		if math.IsInf(float64(f), 0) {
			continue
		}
		if ref, v := refF16(f); ref != h || v != float64(f) {
			t.Errorf("F16ToF32(%#04x) = %g, reference re-encodes as %#04x (%g)", h, f, ref, v)
		}
	}
}

func TestBF16RoundTripAll(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := BF16ToF32(h)
		if isBF16NaN(h) {
			if !math.IsNaN(float64(f)) || !isBF16NaN(F32ToBF16(f)) {
				t.Errorf("NaN %#04x: decoded %g, re-encoded %#04x", h, f, F32ToBF16(f))
			}
			continue
		}
		if back := F32ToBF16(f); back != h {
			t.Errorf("F32ToBF16(BF16ToF32(%#04x) = %g) = %#04x", h, f, back)
		}
	}
}

// randF32 returns a finite float32 from one of several families: uniform
// bits, values in the range of half, exact half ties and their neighbours,
// exact bfloat16 ties and their neighbours.
func randF32(r *rand.Rand) float32 {
	var f float32
	for {
		switch r.IntN(5) {
		case 0: // any bit pattern
			f = math.Float32frombits(r.Uint32())
		case 1: // half's range and a little beyond, random significand
			f = float32(math.Ldexp(1+r.Float64(), r.IntN(46)-28))
		case 2, 3: // a half tie: odd multiple of half an ulp, then maybe a neighbour
			E := r.IntN(41) - 25 // ulp 2^(E-10) for normals, 2^-24 for subnormals
			var x float64
			if E < -14 {
				x = (float64(r.IntN(1024)) + 0.5) * 0x1p-24
			} else {
				x = math.Ldexp(float64(1024+r.IntN(1024))+0.5, E-10)
			}
			f = float32(x)
			switch r.IntN(3) {
			case 1:
				f = math.Nextafter32(f, float32(math.Inf(1)))
			case 2:
				f = math.Nextafter32(f, 0)
			}
		case 4: // a bfloat16 tie, maybe a neighbour
			b := r.Uint32()&^0xffff | 0x8000
			b += uint32(r.IntN(3)) - 1
			f = math.Float32frombits(b)
		}
		if r.IntN(2) == 0 {
			f = -f
		}
		if !math.IsNaN(float64(f)) && !math.IsInf(float64(f), 0) {
			return f
		}
	}
}

func TestF32ToF16Random(t *testing.T) {
	r, seed := newRand(t)
	n := 400000
	if testing.Short() {
		n = 40000
	}
	fails := 0
	for i := 0; i < n && fails < 10; i++ {
		f := randF32(r)
		want, v := refF16(f)
		got := F32ToF16(f)
		if got != want {
			fails++
			t.Errorf("seed %d: F32ToF16(%g [%#08x]) = %#04x, reference %#04x (%g)", seed, f, math.Float32bits(f), got, want, v)
		}
		if !math.IsInf(v, 0) && float64(F16ToF32(got)) != v && got == want {
			fails++
			t.Errorf("seed %d: F16ToF32(%#04x) = %g, reference value %g", seed, got, F16ToF32(got), v)
		}
	}
}

func TestF32ToBF16Random(t *testing.T) {
	r, seed := newRand(t)
	n := 400000
	if testing.Short() {
		n = 40000
	}
	fails := 0
	for i := 0; i < n && fails < 10; i++ {
		f := randF32(r)
		want, v := refBF16(f)
		got := F32ToBF16(f)
		if got != want {
			fails++
			t.Errorf("seed %d: F32ToBF16(%g [%#08x]) = %#04x, reference %#04x (%g)", seed, f, math.Float32bits(f), got, want, v)
		}
		if got == want && float64(BF16ToF32(got)) != v {
			fails++
			t.Errorf("seed %d: BF16ToF32(%#04x) = %g, reference value %g", seed, got, BF16ToF32(got), v)
		}
	}
}

func TestDecodeEncode(t *testing.T) {
	src := []float32{0, 1, -2.5, 65504, 1e-6, 3.14159, -1e5}
	for _, dt := range []DType{Float16, BFloat16} {
		enc := make([]uint16, len(src))
		encode(dt, enc, src)
		dst := make([]float32, len(src)+2) // longer than src: the tail is untouched
		dst[len(src)] = 42
		Decode(dt, dst, enc)
		for i, x := range src {
			if want := refRound(dt, x); float64(dst[i]) != want {
				t.Errorf("%v: value %d: %g stored and read as %g, want %g", dt, i, x, dst[i], want)
			}
		}
		if dst[len(src)] != 42 {
			t.Errorf("%v: Decode wrote past len(src)", dt)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("Decode(Float32) did not panic")
		}
	}()
	Decode(Float32, make([]float32, 1), make([]uint16, 1))
}

func TestDType(t *testing.T) {
	for _, c := range []struct {
		t     DType
		size  int
		name  string
		short []string
	}{
		{Float32, 4, "float32", []string{"f32", "fp32"}},
		{Float16, 2, "float16", []string{"f16", "fp16", "half"}},
		{BFloat16, 2, "bfloat16", []string{"bf16"}},
	} {
		if c.t.Size() != c.size || c.t.String() != c.name || !c.t.Valid() {
			t.Errorf("%d: Size %d String %q Valid %v, want %d %q true", c.t, c.t.Size(), c.t.String(), c.t.Valid(), c.size, c.name)
		}
		for _, s := range append(c.short, c.name) {
			if got, err := ParseDType(s); err != nil || got != c.t {
				t.Errorf("ParseDType(%q) = %v, %v; want %v", s, got, err, c.t)
			}
		}
	}
	if DType(3).Valid() || DType(255).Valid() {
		t.Error("DType(3) or DType(255) reported valid")
	}
	if s := DType(7).String(); s != "DType(7)" {
		t.Errorf("DType(7).String() = %q", s)
	}
	if _, err := ParseDType("int8"); err == nil || !strings.Contains(err.Error(), "int8") {
		t.Errorf("ParseDType(int8) error %v, want one naming the input", err)
	}
}
