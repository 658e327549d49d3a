package ptx

import (
	"encoding/binary"
	"errors"
	"math"
	"math/big"
	"math/bits"
	"math/rand/v2"
	"testing"

	"github.com/compresskv/compresskv/kvcache"
)

// unary runs "op" once per input on 256-thread blocks: every thread loads
// three 64-bit words a, b, c of its input into registers of every type
// (%ra %fa %da %la %pa ... from a; likewise b, c) and stores the register
// named out (of type outType) to its output word.
func unary(t *testing.T, op, out, outType string, in [][3]uint64) []uint64 {
	t.Helper()
	st := map[string]string{"b32": "st.global.u32", "f32": "st.global.f32", "b64": "st.global.u64", "f64": "st.global.f64", "pred": "", "b16": "st.global.u16"}[outType]
	store := st + " [%rd21], " + out + ";"
	if outType == "pred" {
		store = "selp.u32 %r30, 1, 0, " + out + ";\n\tst.global.u32 [%rd21], %r30;"
	}
	src := `
.visible .entry k(.param .u64 k_in, .param .u64 k_out)
{
	.reg .pred %p<40>;
	.reg .b16 %rs<40>;
	.reg .b32 %r<40>;
	.reg .f32 %f<40>;
	.reg .b64 %rd<40>;
	.reg .f64 %fd<40>;
	ld.param.u64 %rd1, [k_in];
	ld.param.u64 %rd2, [k_out];
	mov.u32 %r1, %ctaid.x;
	mov.u32 %r2, %ntid.x;
	mov.u32 %r3, %tid.x;
	mad.lo.s32 %r4, %r1, %r2, %r3;
	mul.wide.u32 %rd3, %r4, 24;
	add.s64 %rd20, %rd1, %rd3;
	mul.wide.u32 %rd3, %r4, 8;
	add.s64 %rd21, %rd2, %rd3;
	ld.global.u64 %rd10, [%rd20];
	ld.global.u64 %rd11, [%rd20+8];
	ld.global.u64 %rd12, [%rd20+16];
	cvt.u32.u64 %r10, %rd10;
	cvt.u32.u64 %r11, %rd11;
	cvt.u32.u64 %r12, %rd12;
	mov.b32 %f10, %r10;
	mov.b32 %f11, %r11;
	mov.b32 %f12, %r12;
	mov.b64 %fd10, %rd10;
	mov.b64 %fd11, %rd11;
	mov.b64 %fd12, %rd12;
	cvt.u16.u32 %rs10, %r10;
	setp.ne.s32 %p10, %r10, 0;
	setp.ne.s32 %p12, %r12, 0;
	` + op + `;
	` + store + `
	ret;
}
`
	m := mustParse(t, src)
	mem := &testMem{}
	n := len(in)
	blocks := (n + 255) / 256
	pin := mem.alloc(24 * blocks * 256)
	pout := mem.alloc(8 * blocks * 256)
	b := mem.bytes(pin)
	for i, v := range in {
		for j := 0; j < 3; j++ {
			binary.LittleEndian.PutUint64(b[24*i+8*j:], v[j])
		}
	}
	// pad with the first input
	for i := n; i < blocks*256; i++ {
		copy(b[24*i:24*i+24], b[0:24])
	}
	if _, err := m.Kernel("k").Run(mem, Launch{Grid: [3]int{blocks, 1, 1}, Block: [3]int{256, 1, 1}, Params: [][]byte{u64p(pin), u64p(pout)}}); err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	res := make([]uint64, n)
	o := mem.bytes(pout)
	for i := range res {
		res[i] = binary.LittleEndian.Uint64(o[8*i:])
	}
	return res
}

func f32in(r *rand.Rand) float32 {
	switch r.IntN(8) {
	case 0:
		return []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), math.MaxFloat32, math.SmallestNonzeroFloat32, 1, -1, 0.5, 1.5, 2.5, -2.5, 3e9, -3e9}[r.IntN(15)]
	case 1:
		return math.Float32frombits(r.Uint32()) // any bits
	case 2:
		return float32(r.IntN(9) - 4) // small integers, ties
	}
	return float32(r.NormFloat64() * math.Exp2(float64(r.IntN(20)-10)))
}

func sameF32(a, b float32) bool {
	return math.Float32bits(a) == math.Float32bits(b) || (a != a && b != b)
}

// fmaExact rounds a*b+c computed exactly.
func fmaExact(a, b, c float32) float32 {
	if math.IsInf(float64(a), 0) || math.IsInf(float64(b), 0) || math.IsInf(float64(c), 0) || a != a || b != b || c != c {
		return float32(float64(a)*float64(b) + float64(c))
	}
	x := new(big.Float).SetPrec(400).SetFloat64(float64(a))
	x.Mul(x, new(big.Float).SetPrec(400).SetFloat64(float64(b)))
	x.Add(x, new(big.Float).SetPrec(400).SetFloat64(float64(c)))
	f, _ := x.Float32()
	if f == 0 {
		// exact zero: IEEE sign rules
		p := float64(a) * float64(b)
		return float32(p + float64(c))
	}
	return f
}

func TestFloat32Arithmetic(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	in := make([][3]uint64, 4096)
	for i := range in {
		a, b, c := f32in(r), f32in(r), f32in(r)
		if i%4 == 0 { // cancellation: c close to -a*b
			c = -float32(float64(a) * float64(b) * (1 + r.NormFloat64()*1e-7))
		}
		if i%16 == 1 { // exact halfway cases of a*b+c near 1
			a, b = 1+float32(r.IntN(1<<12))*(1.0/(1<<23)), 1+float32(r.IntN(1<<12))*(1.0/(1<<23))
			c = float32(math.Ldexp(1, -r.IntN(60)))
		}
		in[i] = [3]uint64{f32u(a), f32u(b), f32u(c)}
	}
	for _, c := range []struct {
		op   string
		want func(a, b, c float32) float32
	}{
		{"fma.rn.f32 %f1, %f10, %f11, %f12", fmaExact},
		{"add.rn.f32 %f1, %f10, %f11", func(a, b, _ float32) float32 { return a + b }},
		{"sub.f32 %f1, %f10, %f11", func(a, b, _ float32) float32 { return a - b }},
		{"mul.rn.f32 %f1, %f10, %f11", func(a, b, _ float32) float32 { return a * b }},
		{"div.rn.f32 %f1, %f10, %f11", func(a, b, _ float32) float32 { return a / b }},
		{"rcp.rn.f32 %f1, %f10", func(a, _, _ float32) float32 { return 1 / a }},
		{"neg.f32 %f1, %f10", func(a, _, _ float32) float32 { return -a }},
		{"max.f32 %f1, %f10, %f11", func(a, b, _ float32) float32 {
			switch {
			case a != a:
				return b
			case b != b:
				return a
			case a == 0 && b == 0:
				return float32(math.Copysign(0, float64(a)+float64(b))) // -0 only if both are -0... see below
			}
			return float32(math.Max(float64(a), float64(b)))
		}},
		{"min.f32 %f1, %f10, %f11", func(a, b, _ float32) float32 {
			switch {
			case a != a:
				return b
			case b != b:
				return a
			}
			return float32(math.Min(float64(a), float64(b)))
		}},
	} {
		got := unary(t, c.op, "%f1", "f32", in)
		for i, g := range got {
			a, b, cc := f32(in[i][0]), f32(in[i][1]), f32(in[i][2])
			w := c.want(a, b, cc)
			if c.op[:3] == "max" && a == 0 && b == 0 {
				w = 0
				if math.Signbit(float64(a)) && math.Signbit(float64(b)) {
					w = float32(math.Copysign(0, -1))
				}
			}
			if !sameF32(f32(g), w) {
				t.Fatalf("%s (%v, %v, %v) = %v (%#x), want %v (%#x)", c.op, a, b, cc, f32(g), uint32(g), w, math.Float32bits(w))
			}
		}
	}
	// max of two NaNs is the canonical NaN
	nan := f32u(float32(math.NaN()))
	if g := unary(t, "max.f32 %f1, %f10, %f11", "%f1", "f32", [][3]uint64{{nan, nan, 0}}); uint32(g[0]) != 0x7fffffff {
		t.Fatalf("max(NaN, NaN) = %#x", g[0])
	}
}

func TestComparisons(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	in := make([][3]uint64, 2048)
	for i := range in {
		a, b := f32in(r), f32in(r)
		if i%3 == 0 {
			b = a
		}
		in[i] = [3]uint64{f32u(a), f32u(b), uint64(r.IntN(2))}
	}
	cmp := map[string]func(a, b float64) bool{
		"eq": func(a, b float64) bool { return a == b }, "ne": func(a, b float64) bool { return a == a && b == b && a != b },
		"lt": func(a, b float64) bool { return a < b }, "le": func(a, b float64) bool { return a <= b },
		"gt": func(a, b float64) bool { return a > b }, "ge": func(a, b float64) bool { return a >= b },
		"equ": func(a, b float64) bool { return !(a < b || a > b) }, "neu": func(a, b float64) bool { return a != b },
		"ltu": func(a, b float64) bool { return !(a >= b) }, "leu": func(a, b float64) bool { return !(a > b) },
		"gtu": func(a, b float64) bool { return !(a <= b) }, "geu": func(a, b float64) bool { return !(a < b) },
		"num": func(a, b float64) bool { return a == a && b == b }, "nan": func(a, b float64) bool { return a != a || b != b },
	}
	for name, f := range cmp {
		got := unary(t, "setp."+name+".f32 %p1, %f10, %f11", "%p1", "pred", in)
		got2 := unary(t, "setp."+name+".and.f32 %p1|%p2, %f10, %f11, %p12", "%p2", "pred", in)
		for i := range got {
			a, b := float64(f32(in[i][0])), float64(f32(in[i][1]))
			if (got[i] == 1) != f(a, b) {
				t.Fatalf("setp.%s.f32 %v %v = %d", name, a, b, got[i])
			}
			if (got2[i] == 1) != (!f(a, b) && in[i][2] != 0) {
				t.Fatalf("setp.%s.f32.and second predicate %v %v %d = %d", name, a, b, in[i][2], got2[i])
			}
		}
	}
	// integers, signed and unsigned
	for i := range in {
		in[i] = [3]uint64{uint64(r.Uint32()), uint64(r.Uint32()), 0}
		if i%5 == 0 {
			in[i][1] = in[i][0]
		}
	}
	lt := unary(t, "setp.lt.s32 %p1, %r10, %r11", "%p1", "pred", in)
	lo := unary(t, "setp.lo.u32 %p1, %r10, %r11", "%p1", "pred", in)
	ge := unary(t, "setp.ge.u32 %p1, %r10, %r11", "%p1", "pred", in)
	for i := range in {
		a, b := uint32(in[i][0]), uint32(in[i][1])
		if (lt[i] == 1) != (int32(a) < int32(b)) || (lo[i] == 1) != (a < b) || (ge[i] == 1) != (a >= b) {
			t.Fatalf("integer setp of %#x %#x: lt %d lo %d ge %d", a, b, lt[i], lo[i], ge[i])
		}
	}
}

func TestIntegerArithmetic(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	in := make([][3]uint64, 2048)
	for i := range in {
		in[i] = [3]uint64{uint64(r.Uint32()), uint64(r.Uint32()), uint64(r.Uint32())}
		switch i % 4 {
		case 0:
			in[i][1] = uint64(r.IntN(70)) // shift amounts beyond the width
		case 1:
			in[i][0], in[i][1] = uint64(uint32(int32(r.IntN(200)-100))), uint64(uint32(int32(r.IntN(19)-9)))
		case 2:
			in[i][0] = 0x80000000
			in[i][1] = 0xffffffff
		}
		if uint32(in[i][1]) == 0 {
			in[i][1] = 1
		}
	}
	s := func(u uint64) int32 { return int32(uint32(u)) }
	for _, c := range []struct {
		op, out, typ string
		want         func(a, b, c uint64) uint64
	}{
		{"add.s32 %r1, %r10, %r11", "%r1", "b32", func(a, b, _ uint64) uint64 { return uint64(uint32(a + b)) }},
		{"sub.s32 %r1, %r10, %r11", "%r1", "b32", func(a, b, _ uint64) uint64 { return uint64(uint32(a - b)) }},
		{"mul.lo.s32 %r1, %r10, %r11", "%r1", "b32", func(a, b, _ uint64) uint64 { return uint64(uint32(a) * uint32(b)) }},
		{"mad.lo.s32 %r1, %r10, %r11, %r12", "%r1", "b32", func(a, b, c uint64) uint64 { return uint64(uint32(a)*uint32(b) + uint32(c)) }},
		{"mul.wide.s32 %rd1, %r10, %r11", "%rd1", "b64", func(a, b, _ uint64) uint64 { return uint64(int64(s(a)) * int64(s(b))) }},
		{"mul.wide.u32 %rd1, %r10, %r11", "%rd1", "b64", func(a, b, _ uint64) uint64 { return a * b }},
		{"div.s32 %r1, %r10, %r11", "%r1", "b32", func(a, b, _ uint64) uint64 { return uint64(uint32(s(a) / s(b))) }},
		{"rem.s32 %r1, %r10, %r11", "%r1", "b32", func(a, b, _ uint64) uint64 { return uint64(uint32(s(a) % s(b))) }},
		{"shl.b32 %r1, %r10, %r11", "%r1", "b32", func(a, b, _ uint64) uint64 {
			if uint32(b) > 31 {
				return 0
			}
			return uint64(uint32(a) << b)
		}},
		{"shr.u32 %r1, %r10, %r11", "%r1", "b32", func(a, b, _ uint64) uint64 {
			if uint32(b) > 31 {
				return 0
			}
			return uint64(uint32(a) >> b)
		}},
		{"shr.s32 %r1, %r10, %r11", "%r1", "b32", func(a, b, _ uint64) uint64 { return uint64(uint32(s(a) >> min(uint32(b), 31))) }},
		{"shl.b64 %rd1, %rd10, %r11", "%rd1", "b64", func(a, b, _ uint64) uint64 {
			if uint32(b) > 63 {
				return 0
			}
			return a << b
		}},
		{"popc.b32 %r1, %r10", "%r1", "b32", func(a, _, _ uint64) uint64 { return uint64(bits.OnesCount32(uint32(a))) }},
		{"min.s32 %r1, %r10, %r11", "%r1", "b32", func(a, b, _ uint64) uint64 { return uint64(uint32(min(s(a), s(b)))) }},
		{"max.u32 %r1, %r10, %r11", "%r1", "b32", func(a, b, _ uint64) uint64 { return uint64(max(uint32(a), uint32(b))) }},
		{"neg.s32 %r1, %r10", "%r1", "b32", func(a, _, _ uint64) uint64 { return uint64(-uint32(a)) }},
		{"not.b32 %r1, %r10", "%r1", "b32", func(a, _, _ uint64) uint64 { return uint64(^uint32(a)) }},
		{"cvt.u16.u32 %rs1, %r10;\n\tcvt.u16.u32 %rs2, %r11;\n\tnot.b16 %rs3, %rs1;\n\tadd.s16 %rs3, %rs3, %rs2;\n\tsub.s16 %rs3, %rs3, %rs1;\n\tcvt.u32.u16 %r1, %rs3", "%r1", "b32",
			func(a, b, _ uint64) uint64 { return uint64(^uint16(a) + uint16(b) - uint16(a)) }},
		{"xor.b32 %r1, %r10, %r11", "%r1", "b32", func(a, b, _ uint64) uint64 { return uint64(uint32(a ^ b)) }},
		{"selp.b32 %r1, %r10, %r11, %p12", "%r1", "b32", func(a, b, c uint64) uint64 {
			if uint32(c) != 0 {
				return a
			}
			return b
		}},
		{"cvt.s64.s32 %rd1, %r10", "%rd1", "b64", func(a, _, _ uint64) uint64 { return uint64(int64(s(a))) }},
		{"cvt.u32.u16 %r1, %rs10", "%r1", "b32", func(a, _, _ uint64) uint64 { return a & 0xffff }},
		{"cvt.rn.f32.s32 %f1, %r10", "%f1", "f32", func(a, _, _ uint64) uint64 { return f32u(float32(s(a))) }},
		{"cvt.rn.f64.s32 %fd1, %r10", "%fd1", "f64", func(a, _, _ uint64) uint64 { return f64u(float64(s(a))) }},
		{"mov.b64 %rd1, {%r10, %r11}", "%rd1", "b64", func(a, b, _ uint64) uint64 { return a | b<<32 }},
	} {
		got := unary(t, c.op, c.out, c.typ, in)
		for i, g := range got {
			w := c.want(in[i][0], in[i][1], in[i][2])
			if c.typ == "b32" || c.typ == "f32" {
				g, w = g&0xffffffff, w&0xffffffff
			}
			if g != w {
				t.Fatalf("%s with %#x %#x %#x = %#x, want %#x", c.op, in[i][0], in[i][1], in[i][2], g, w)
			}
		}
	}
}

func TestConversions(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	in := make([][3]uint64, 4096)
	for i := range in {
		in[i] = [3]uint64{f32u(f32in(r)), 0, 0}
	}
	sat := func(x float64, lo, hi float64) float64 {
		if x != x {
			return 0
		}
		return math.Max(lo, math.Min(hi, x))
	}
	for _, c := range []struct {
		op, out, typ string
		want         func(f float32) uint64
	}{
		{"cvt.rzi.s32.f32 %r1, %f10", "%r1", "b32", func(f float32) uint64 {
			return uint64(uint32(int32(sat(math.Trunc(float64(f)), math.MinInt32, math.MaxInt32))))
		}},
		{"cvt.rni.s32.f32 %r1, %f10", "%r1", "b32", func(f float32) uint64 {
			return uint64(uint32(int32(sat(math.RoundToEven(float64(f)), math.MinInt32, math.MaxInt32))))
		}},
		{"cvt.rmi.u32.f32 %r1, %f10", "%r1", "b32", func(f float32) uint64 {
			return uint64(uint32(sat(math.Floor(float64(f)), 0, math.MaxUint32)))
		}},
		{"cvt.f64.f32 %fd1, %f10", "%fd1", "f64", func(f float32) uint64 { return f64u(float64(f)) }},
		{"cvt.rzi.f32.f32 %f1, %f10", "%f1", "f32", func(f float32) uint64 { return f32u(float32(math.Trunc(float64(f)))) }},
		{"cvt.sat.f32.f32 %f1, %f10", "%f1", "f32", func(f float32) uint64 { return f32u(float32(sat(float64(f), 0, 1))) }},
		{"cvt.rn.f16.f32 %rs1, %f10", "%rs1", "b16", func(f float32) uint64 { return uint64(kvcache.F32ToF16(f)) }},
	} {
		got := unary(t, c.op, c.out, c.typ, in)
		for i, g := range got {
			f := f32(in[i][0])
			w := c.want(f)
			if c.typ == "b32" || c.typ == "f32" {
				g, w = g&0xffffffff, w&0xffffffff
			}
			if c.typ == "b16" {
				g &= 0xffff
				if g&0x7c00 == 0x7c00 && g&0x3ff != 0 && w&0x7c00 == 0x7c00 && w&0x3ff != 0 {
					continue // both NaN
				}
			}
			if g != w && !(c.typ == "f32" && f32(g) != f32(g) && f32(w) != f32(w)) {
				t.Fatalf("%s of %v (%#x) = %#x, want %#x", c.op, f, in[i][0], g, w)
			}
		}
	}
	// every half
	in = in[:0]
	for h := 0; h < 1<<16; h++ {
		in = append(in, [3]uint64{uint64(h), 0, 0})
	}
	got := unary(t, "cvt.f32.f16 %f1, %rs10", "%f1", "f32", in)
	for h, g := range got {
		if w := kvcache.F16ToF32(uint16(h)); !sameF32(f32(g), w) {
			t.Fatalf("cvt.f32.f16 %#x = %v, want %v", h, f32(g), w)
		}
	}
	// f64 -> f32 rounding, f64 arithmetic
	in = in[:0]
	for i := 0; i < 2048; i++ {
		in = append(in, [3]uint64{f64u(r.NormFloat64() * math.Exp2(float64(r.IntN(300)-150))), f64u(r.NormFloat64()), 0})
	}
	got = unary(t, "cvt.rn.f32.f64 %f1, %fd10", "%f1", "f32", in)
	add := unary(t, "add.f64 %fd1, %fd10, %fd11", "%fd1", "f64", in)
	rcp := unary(t, "rcp.rn.f64 %fd1, %fd11", "%fd1", "f64", in)
	for i := range in {
		x, y := f64(in[i][0]), f64(in[i][1])
		if !sameF32(f32(got[i]), float32(x)) || f64(add[i]) != x+y || f64(rcp[i]) != 1/y {
			t.Fatalf("f64 ops on %v %v: cvt %v add %v rcp %v", x, y, f32(got[i]), f64(add[i]), f64(rcp[i]))
		}
	}
}

// TestWarpOps checks shfl.sync in its four modes with clamps and segments,
// vote.sync.ballot with a partial mask, and atom.shared.add.
func TestWarpOps(t *testing.T) {
	run := func(body string, block int) []uint32 {
		src := `
.visible .entry k(.param .u64 k_p)
{
	.reg .pred %p<8>;
	.reg .b32 %r<16>;
	.reg .b64 %rd<8>;
	.shared .align 4 .b8 cnt[4];
	ld.param.u64 %rd1, [k_p];
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd2, %r1, 4;
	add.s64 %rd3, %rd1, %rd2;
	mul.lo.s32 %r2, %r1, 10;
	` + body + `
	st.global.u32 [%rd3], %r3;
	ret;
}
`
		m := mustParse(t, src)
		mem := &testMem{}
		p := mem.alloc(4 * block)
		if _, err := m.Kernel("k").Run(mem, Launch{Grid: [3]int{1, 1, 1}, Block: [3]int{block, 1, 1}, Params: [][]byte{u64p(p)}}); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		b := mem.bytes(p)
		out := make([]uint32, block)
		for i := range out {
			out[i] = binary.LittleEndian.Uint32(b[4*i:])
		}
		return out
	}
	check := func(name string, got []uint32, want func(i int) uint32) {
		t.Helper()
		for i, g := range got {
			if w := want(i); g != w {
				t.Fatalf("%s: thread %d got %d, want %d", name, i, g, w)
			}
		}
	}
	check("down 3", run("shfl.sync.down.b32 %r3, %r2, 3, 31, -1;", 64), func(i int) uint32 {
		if i%32+3 <= 31 {
			return uint32(10 * (i + 3))
		}
		return uint32(10 * i)
	})
	check("up 2", run("shfl.sync.up.b32 %r3, %r2, 2, 0, -1;", 64), func(i int) uint32 {
		if i%32 >= 2 {
			return uint32(10 * (i - 2))
		}
		return uint32(10 * i)
	})
	check("bfly 16", run("shfl.sync.bfly.b32 %r3, %r2, 16, 31, -1;", 32), func(i int) uint32 { return uint32(10 * (i ^ 16)) })
	check("idx 5 in segments of 8", run("shfl.sync.idx.b32 %r3, %r2, 5, 6175, -1;", 32), func(i int) uint32 { return uint32(10 * (i&^7 | 5)) })
	check("down 1 with predicate", run("shfl.sync.down.b32 %r4|%p1, %r2, 1, 31, -1;\n\tselp.u32 %r3, 1, 0, %p1;", 32), func(i int) uint32 {
		if i < 31 {
			return 1
		}
		return 0
	})
	// ballot of lanes 0..15 only, with their mask
	check("ballot", run(`rem.u32 %r5, %r1, 3;
	setp.eq.u32 %p1, %r5, 0;
	mov.u32 %r3, 7;
	setp.ge.u32 %p2, %r1, 16;
	@%p2 bra $L__out;
	vote.sync.ballot.b32 %r3, %p1, 65535;
$L__out:`, 32), func(i int) uint32 {
		if i >= 16 {
			return 7
		}
		return 0x9249 & 0xffff
	})
	check("atomic add", run(`mov.u64 %rd4, cnt;
	mov.u32 %r6, 0;
	setp.eq.u32 %p3, %r1, 0;
	@%p3 st.shared.u32 [%rd4], %r6;
	bar.sync 0;
	atom.shared.add.u32 %r7, [%rd4], 2;
	bar.sync 0;
	ld.shared.u32 %r3, [%rd4];`, 96), func(int) uint32 { return 192 })
}

// TestPTXLiteral: immediates in the forms PTX allows.
func TestPTXLiteral(t *testing.T) {
	for _, c := range []struct {
		s    string
		kind immKind
		want uint64
	}{
		{"0f3F800000", immF32, 0x3f800000},
		{"0fBF800000", immF32, 0xbf800000},
		{"0d3FF0000000000000", immF64, 0x3ff0000000000000},
		{"-1", immInt, math.MaxUint64},
		{"0x80000000", immInt, 0x80000000},
		{"255", immInt, 255},
		{"010", immInt, 8},
		{"1.5", immF64, math.Float64bits(1.5)},
	} {
		got, ok := parseImm(c.s, c.kind)
		if !ok || got != c.want {
			t.Errorf("%s: %#x %v, want %#x", c.s, got, ok, c.want)
		}
	}
	if _, ok := parseImm("%r1", immInt); ok {
		t.Error("a register parsed as an immediate")
	}
}

// TestVectorAndGenericAccess: ld/st of .v2/.v4 vectors, generic loads and
// stores that resolve to shared or global memory, and the alignment of a
// vector access (its whole size).
func TestVectorAndGenericAccess(t *testing.T) {
	src := `
.visible .entry k(.param .u64 k_p)
{
	.reg .f32 %f<8>;
	.reg .b32 %r<8>;
	.reg .b64 %rd<8>;
	.shared .align 16 .b8 buf[32];
	ld.param.u64 %rd1, [k_p];
	cvta.to.global.u64 %rd1, %rd1;
	ld.global.nc.v4.f32 {%f1, %f2, %f3, %f4}, [%rd1];
	add.f32 %f5, %f1, %f4;
	mov.u64 %rd2, buf;
	cvta.shared.u64 %rd3, %rd2;
	st.f32 [%rd3+4], %f5;
	ld.shared.f32 %f6, [buf+4];
	ld.v2.u32 {%r1, %r2}, [%rd1+8];
	add.s32 %r3, %r1, %r2;
	st.global.v2.f32 [%rd1+16], {%f6, %f2};
	st.u32 [%rd1+24], %r3;
	ret;
}
`
	m := mustParse(t, src)
	mem := &testMem{}
	p := mem.alloc(32)
	b := mem.bytes(p)
	for i, v := range []float32{1.5, 2.25, 3, 4} {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	if _, err := m.Kernel("k").Run(mem, Launch{Grid: [3]int{1, 1, 1}, Block: [3]int{1, 1, 1}, Params: [][]byte{u64p(p)}}); err != nil {
		t.Fatal(err)
	}
	got := []uint32{binary.LittleEndian.Uint32(b[16:]), binary.LittleEndian.Uint32(b[20:]), binary.LittleEndian.Uint32(b[24:])}
	want := []uint32{math.Float32bits(5.5), math.Float32bits(2.25), math.Float32bits(3) + math.Float32bits(4)}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("word %d = %#x, want %#x", i, got[i], want[i])
		}
	}
	// a v4 access is aligned to 16 bytes
	bad := mustParse(t, `
.visible .entry k(.param .u64 k_p)
{
	.reg .f32 %f<8>;
	.reg .b64 %rd<4>;
	ld.param.u64 %rd1, [k_p];
	ld.global.v4.f32 {%f1, %f2, %f3, %f4}, [%rd1+8];
	ret;
}
`)
	_, err := bad.Kernel("k").Run(mem, Launch{Grid: [3]int{1, 1, 1}, Block: [3]int{1, 1, 1}, Params: [][]byte{u64p(p)}})
	var f *Fault
	if !errors.As(err, &f) || f.Class != "misaligned" {
		t.Fatalf("v4 load at +8: %v", err)
	}
}

// TestFtzAndDynamicShared: .ftz flushes subnormal operands of setp, and
// extern shared memory has the launch's size.
func TestFtzAndDynamicShared(t *testing.T) {
	sub := f32u(-1e-40) // a negative subnormal
	lt := unary(t, "setp.lt.f32 %p1, %f10, %f11", "%p1", "pred", [][3]uint64{{sub, 0, 0}})
	ltz := unary(t, "setp.lt.ftz.f32 %p1, %f10, %f11", "%p1", "pred", [][3]uint64{{sub, 0, 0}})
	if lt[0] != 1 || ltz[0] != 0 {
		t.Fatalf("-1e-40 < 0: %d, with ftz %d (want 1, 0)", lt[0], ltz[0])
	}
	src := `
.extern .shared .align 4 .b8 dyn[];
.visible .entry k(.param .u64 k_p)
{
	.reg .b32 %r<4>;
	.reg .b64 %rd<6>;
	ld.param.u64 %rd1, [k_p];
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd2, %r1, 4;
	mov.u64 %rd3, dyn;
	add.s64 %rd4, %rd3, %rd2;
	st.shared.u32 [%rd4], %r1;
	bar.sync 0;
	ld.shared.u32 %r2, [dyn+12];
	add.s64 %rd5, %rd1, %rd2;
	st.global.u32 [%rd5], %r2;
	ret;
}
`
	m := mustParse(t, src)
	mem := &testMem{}
	p := mem.alloc(4 * 16)
	l := Launch{Grid: [3]int{1, 1, 1}, Block: [3]int{16, 1, 1}, SharedBytes: 64, Params: [][]byte{u64p(p)}}
	if _, err := m.Kernel("k").Run(mem, l); err != nil {
		t.Fatal(err)
	}
	if v := binary.LittleEndian.Uint32(mem.bytes(p)[60:]); v != 3 {
		t.Fatalf("thread 15 read dyn[3] = %d, want 3", v)
	}
	l.SharedBytes = 60 // thread 15 stores past the end
	_, err := m.Kernel("k").Run(mem, l)
	var f *Fault
	if !errors.As(err, &f) || f.Class != "out of bounds" || f.Thread != [3]int{15, 0, 0} {
		t.Fatalf("60 bytes of dynamic shared memory for 16 words: %v", err)
	}
}
