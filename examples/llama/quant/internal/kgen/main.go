// Command kgen writes package quant's amd64 matrix kernels:
// kernels_amd64.s (Go assembly) and kernels_gen_amd64.go (their
// declarations and the table that names them). Run it through go generate
// in package quant; a test there checks that the committed files are what
// it writes.
//
// Every kernel computes a tile of outputs, R weight rows by C activation
// rows, over whole rows: out[c*os + 4r] (bytes) is the dot product of
// weight row r (at w + r*ws) with activation row c (at x + c*xs), over n
// steps (blocks of the weight type, or groups of 8 values for the float
// types). The arithmetic of one output does not depend on R, C or the
// tile's place: each output has its own accumulator of eight float32
// lanes, updated once per block in the same order, and reduced to one
// value in the same order at the end. So a product is the same, bit for
// bit, whichever tiles compute it, on any number of cores.
//
// Two levels: AVX2 (with FMA and F16C) and AVX-512 (F, BW, VL with VNNI:
// 32 vector registers for larger tiles and VPDPBUSD/VPDPWSSD for the
// integer products). Both use ymm lanes, so that the integer types give the
// same bits at both levels; the integer partial sums are exact in either.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"log"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	dir := flag.String("dir", ".", "directory of package quant")
	check := flag.Bool("check", false, "report whether the files differ instead of writing them")
	flag.Parse()
	s, g := generate()
	files := map[string][]byte{"kernels_amd64.s": s, "kernels_gen_amd64.go": g}
	stale := false
	for name, b := range files {
		path := filepath.Join(*dir, name)
		if *check {
			old, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(old, b) {
				fmt.Printf("%s is stale\n", path)
				stale = true
			}
			continue
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			log.Fatal(err)
		}
	}
	if stale {
		os.Exit(1)
	}
}

// level is an instruction set the kernels are written for.
type level struct {
	name   string // AVX2 or AVX512
	avx512 bool   // 32 registers, EVEX forms, VNNI
}

var levels = []level{{"AVX2", false}, {"AVX512", true}}

// kernel describes one weight type's tile kernels at one level.
type kernel struct {
	typ   string // quant.Type constant
	name  string // function name prefix
	R, C  int    // the full tile
	frame int    // bytes of stack scratch
	// step is the number of values per step (block) and wb, xb the bytes
	// of a weight and an activation step.
	step, wb, xb int
	body         func(k *kgen)
}

// kgen emits one kernel function.
type kgen struct {
	out  *bytes.Buffer
	lv   level
	R, C int
	nlo  int // next free register below 16
	nhi  int // next free register from 16 (AVX-512)
	acc  [][]int
	name string
}

func (k *kgen) op(format string, a ...any) {
	fmt.Fprintf(k.out, "\t"+format+"\n", a...)
}

// lo allocates a register that VEX instructions can name.
func (k *kgen) lo() int {
	if k.nlo >= 16 {
		panic(k.name + ": out of low vector registers")
	}
	k.nlo++
	return k.nlo - 1
}

// hi allocates a register for values only EVEX instructions touch
// (accumulators); at the AVX2 level, a low one.
func (k *kgen) hi() int {
	if !k.lv.avx512 {
		return k.lo()
	}
	if k.nhi >= 32 {
		return k.lo()
	}
	k.nhi++
	return k.nhi - 1
}

func Y(i int) string { return fmt.Sprintf("Y%d", i) }
func X(i int) string { return fmt.Sprintf("X%d", i) }

// evex reports whether an operand names a register only EVEX encodes.
func evex(ops ...string) bool {
	for _, o := range ops {
		var n int
		if (strings.HasPrefix(o, "Y") || strings.HasPrefix(o, "X")) && len(o) > 1 {
			if _, err := fmt.Sscanf(o[1:], "%d", &n); err == nil && n >= 16 {
				return true
			}
		}
	}
	return false
}

// logic emits a bitwise operation (AND, OR, XOR, ANDN), in its EVEX
// spelling when a register needs it.
func (k *kgen) logic(op, src, a, dst string) {
	name := "VP" + op
	if evex(src, a, dst) {
		name += "D"
	}
	k.op("%s %s, %s, %s", name, src, a, dst)
}

// mov emits an unaligned 256-bit integer move.
func (k *kgen) mov(src, dst string) {
	if evex(src, dst) {
		k.op("VMOVDQU32 %s, %s", src, dst)
	} else {
		k.op("VMOVDQU %s, %s", src, dst)
	}
}

func (k *kgen) zero(r int) { k.logic("XOR", Y(r), Y(r), Y(r)) }

// row returns the address of byte off of weight row r's current step:
// rows 0 and 1 from SI, 2 and 3 from R10, stride R8.
func row(r, off int) string {
	base := []string{"(SI)", "(SI)(R8*1)", "(R10)", "(R10)(R8*1)"}[r]
	return fmt.Sprintf("%d%s", off, base)
}

// col returns the address of byte off of activation row c's current step:
// 0 and 1 from DI, 2 and 3 from R11, 4 and 5 from R12, stride R9.
func col(c, off int) string {
	base := []string{"(DI)", "(DI)(R9*1)", "(R11)", "(R11)(R9*1)", "(R12)", "(R12)(R9*1)"}[c]
	return fmt.Sprintf("%d%s", off, base)
}

func sp(off int) string { return fmt.Sprintf("%d(SP)", off) }

// f16bcast loads the half at mem, converted, into all lanes of y (lane 0
// is the scalar).
func (k *kgen) f16bcast(mem string, y int) {
	k.op("VPBROADCASTW %s, %s", mem, X(y))
	k.op("VCVTPH2PS %s, %s", X(y), Y(y))
}

// emit writes the function for a kernel at a tile size.
func emit(out *bytes.Buffer, lv level, kn kernel, R, C int) string {
	name := fmt.Sprintf("%s%sR%dC%d", kn.name, lv.name, R, C)
	k := &kgen{out: out, lv: lv, R: R, C: C, nlo: 0, nhi: 16, name: name}
	fmt.Fprintf(out, "\n// func %s(w *byte, ws uintptr, x *byte, xs uintptr, out *float32, os uintptr, n uintptr)\n", name)
	if kn.frame > 0 {
		fmt.Fprintf(out, "TEXT ·%s(SB), 0, $%d-56\n", name, kn.frame)
	} else {
		fmt.Fprintf(out, "TEXT ·%s(SB), NOSPLIT, $0-56\n", name)
	}
	k.op("MOVQ w+0(FP), SI")
	k.op("MOVQ ws+8(FP), R8")
	k.op("MOVQ x+16(FP), DI")
	k.op("MOVQ xs+24(FP), R9")
	k.op("MOVQ n+48(FP), CX")
	if R > 2 {
		k.op("LEAQ (SI)(R8*2), R10")
	}
	if C > 2 {
		k.op("LEAQ (DI)(R9*2), R11")
	}
	if C > 4 {
		k.op("LEAQ (R11)(R9*2), R12")
	}
	// Accumulators first, so that they get the registers only EVEX reaches.
	k.acc = make([][]int, R)
	for r := range R {
		k.acc[r] = make([]int, C)
		for c := range C {
			k.acc[r][c] = k.hi()
			k.zero(k.acc[r][c])
		}
	}
	fmt.Fprintf(out, "loop:\n")
	kn.body(k)
	k.op("ADDQ $%d, SI", kn.wb)
	if R > 2 {
		k.op("ADDQ $%d, R10", kn.wb)
	}
	k.op("ADDQ $%d, DI", kn.xb)
	if C > 2 {
		k.op("ADDQ $%d, R11", kn.xb)
	}
	if C > 4 {
		k.op("ADDQ $%d, R12", kn.xb)
	}
	k.op("DECQ CX")
	k.op("JNZ loop")
	// Reduce each accumulator in one fixed order:
	// ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)).
	k.op("MOVQ out+32(FP), AX")
	k.op("MOVQ os+40(FP), BX")
	if C > 2 {
		k.op("LEAQ (AX)(BX*2), DX")
	}
	if C > 4 {
		k.op("LEAQ (DX)(BX*2), R13")
	}
	// Two low registers that hold no accumulator.
	used := map[int]bool{}
	for r := range R {
		for c := range C {
			used[k.acc[r][c]] = true
		}
	}
	var tmp []int
	for i := 0; len(tmp) < 2; i++ {
		if !used[i] {
			tmp = append(tmp, i)
		}
	}
	t0, t1 := tmp[0], tmp[1]
	for c := range C {
		for r := range R {
			a := k.acc[r][c]
			k.op("VMOVAPS %s, %s", Y(a), Y(t0))
			k.op("VEXTRACTF128 $1, %s, %s", Y(t0), X(t1))
			k.op("VADDPS %s, %s, %s", X(t1), X(t0), X(t0))
			k.op("VMOVHLPS %s, %s, %s", X(t0), X(t0), X(t1))
			k.op("VADDPS %s, %s, %s", X(t1), X(t0), X(t0))
			k.op("VMOVSHDUP %s, %s", X(t0), X(t1))
			k.op("VADDSS %s, %s, %s", X(t1), X(t0), X(t0))
			base := []string{"(AX)", "(AX)(BX*1)", "(DX)", "(DX)(BX*1)", "(R13)", "(R13)(BX*1)"}[c]
			k.op("VMOVSS %s, %d%s", X(t0), 4*r, base)
		}
	}
	k.op("VZEROUPPER")
	k.op("RET")
	// Local labels are scoped to the function in Go assembly.
	return name
}

// Kernels of the types with Q8_0 activations: Q8_0, Q4_0, Q5_0. The block
// term of a pair is (d_w*d_x) * sum(w*x), the sum in eight int32 lanes
// (four products each), converted to float32 (exact: at most 4*128*127)
// and multiplied-added into the accumulator, as ggml's AVX2 code does.
// The scale products d_w*d_x of a block's tile are computed once, into
// the scratch, and read as a broadcast operand of the multiply-add.
//
// AVX-512: each weight is decoded to an unsigned byte u = w + k (k = 128
// for Q8_0, 8 for Q4_0, 16 for Q5_0: the nibbles as stored), and
// sum(w*x) = VPDPBUSD(u, x) - k*sum(x), the second term once per
// activation block. AVX2: sum(w*x) = VPMADDWD(VPMADDUBSW(|w|, sign(x,
// w)), 1) (|w| <= 128, so the pairs fit int16).
//
// The d_w of the rows are gathered into one vector (not through memory: a
// wide load of several narrow stores would wait for them to retire), and
// the products d_x*d_w of activation row c stored at 16c + 4r of the
// scratch.
func q8family(wb int, unsigned func(k *kgen, r, u, t, ck int), k8 string, signed func(k *kgen, r, w, t int)) func(k *kgen) {
	return func(k *kgen) {
		R, C := k.R, k.C
		prod := func(c, r int) string { return sp(16*c + 4*r) }
		if k.lv.avx512 {
			u := make([]int, R)
			for r := range R {
				u[r] = k.lo()
			}
			ns := make([]int, C)
			for c := range C {
				ns[c] = k.lo()
			}
			t, f, ck := k.lo(), k.lo(), k.lo()
			k.mov(k8+"<>(SB)", Y(ck))
			// The four d_w (or fewer) as halves in the lanes of f, then
			// converted.
			k.zero(f)
			for r := range R {
				unsigned(k, r, u[r], t, ck)
				k.op("VPINSRW $%d, %s, %s, %s", r, row(r, 0), X(f), X(f))
			}
			k.op("VCVTPH2PS %s, %s", X(f), X(f))
			for c := range C {
				// ns = -k*sum(x) in four-byte groups.
				k.zero(t)
				k.op("VPDPBUSD %s, %s, %s", col(c, 2), Y(ck), Y(t))
				k.zero(ns[c])
				k.op("VPSUBD %s, %s, %s", Y(t), Y(ns[c]), Y(ns[c]))
				k.f16bcast(col(c, 0), t)
				k.op("VMULPS %s, %s, %s", X(f), X(t), X(t))
				k.op("VMOVUPS %s, %s", X(t), sp(16*c))
			}
			for c := range C {
				k.mov(col(c, 2), Y(f))
				for r := range R {
					k.mov(Y(ns[c]), Y(t))
					k.op("VPDPBUSD %s, %s, %s", Y(f), Y(u[r]), Y(t))
					k.op("VCVTDQ2PS %s, %s", Y(t), Y(t))
					k.op("VFMADD231PS.BCST %s, %s, %s", prod(c, r), Y(t), Y(k.acc[r][c]))
				}
			}
			return
		}
		w := make([]int, R)
		a := make([]int, R)
		for r := range R {
			w[r], a[r] = k.lo(), k.lo()
		}
		xv, t, sc := k.lo(), k.lo(), k.lo()
		k.zero(sc)
		for r := range R {
			signed(k, r, w[r], t)
			k.op("VPABSB %s, %s", Y(w[r]), Y(a[r]))
			k.op("VPINSRW $%d, %s, %s, %s", r, row(r, 0), X(sc), X(sc))
		}
		k.op("VCVTPH2PS %s, %s", X(sc), X(sc))
		for c := range C {
			k.f16bcast(col(c, 0), t)
			k.op("VMULPS %s, %s, %s", X(sc), X(t), X(t))
			k.op("VMOVUPS %s, %s", X(t), sp(16*c))
		}
		for c := range C {
			k.mov(col(c, 2), Y(xv))
			for r := range R {
				k.op("VPSIGNB %s, %s, %s", Y(w[r]), Y(xv), Y(t))
				k.op("VPMADDUBSW %s, %s, %s", Y(t), Y(a[r]), Y(t))
				k.op("VPMADDWD ones16<>(SB), %s, %s", Y(t), Y(t))
				k.op("VCVTDQ2PS %s, %s", Y(t), Y(t))
				k.op("VBROADCASTSS %s, %s", prod(c, r), Y(sc))
				k.op("VFMADD231PS %s, %s, %s", Y(t), Y(sc), Y(k.acc[r][c]))
			}
		}
	}
}

// nibbles loads the 16 bytes at mem as 32 values, low nibbles then high.
func (k *kgen) nibbles(mem string, w, t int) {
	k.op("VMOVDQU %s, %s", mem, X(w))
	k.op("VPSRLW $4, %s, %s", X(w), X(t))
	k.op("VINSERTI128 $1, %s, %s, %s", X(t), Y(w), Y(w))
	k.logic("AND", "m0F<>(SB)", Y(w), Y(w))
}

// Signed decoders (AVX2): the 32 values of row r's block as int8.

func signedQ8_0(k *kgen, r, w, _ int) { k.mov(row(r, 2), Y(w)) }

func signedQ4_0(k *kgen, r, w, t int) {
	k.nibbles(row(r, 2), w, t)
	k.op("VPSUBB c8<>(SB), %s, %s", Y(w), Y(w))
}

// signedQ5_0 ORs 0xF0 into the values whose fifth bit is clear: q - 16
// as a signed byte.
func signedQ5_0(k *kgen, r, w, t int) {
	k.nibbles(row(r, 6), w, t)
	k.op("VPBROADCASTD %s, %s", row(r, 2), Y(t))
	k.op("VPSHUFB shufQH<>(SB), %s, %s", Y(t), Y(t))
	k.op("VPOR bitSel<>(SB), %s, %s", Y(t), Y(t))
	k.op("VPCMPEQB allFF<>(SB), %s, %s", Y(t), Y(t))
	k.op("VPANDN cF0<>(SB), %s, %s", Y(t), Y(t))
	k.op("VPOR %s, %s, %s", Y(t), Y(w), Y(w))
}

// Unsigned decoders (AVX-512): the values plus 128, 8 or 16, as uint8.

func unsignedQ8_0(k *kgen, r, u, _, c128 int) { k.logic("XOR", row(r, 2), Y(c128), Y(u)) }

func unsignedQ4_0(k *kgen, r, u, t, _ int) { k.nibbles(row(r, 2), u, t) }

func unsignedQ5_0(k *kgen, r, u, t, _ int) {
	k.nibbles(row(r, 6), u, t)
	k.op("KMOVD %s, K1", row(r, 2))
	k.op("VPMOVM2B K1, %s", Y(t))
	// u | (t & 0x10)
	k.op("VPTERNLOGD $0xF8, c16<>(SB), %s, %s", Y(t), Y(u))
}

// stage3 adds each pair's block term: acc += (d_w*d_x) * float(iacc),
// with d_w a float32 at dOff + rowStride*r in the scratch and d_x the
// activation block's leading float32.
func (k *kgen) blockTerm(iacc [][]int, dOff, rowStride int, t1, t2 int, sub bool) {
	for c := range k.C {
		for r := range k.R {
			ia := iacc[r][c]
			k.op("VCVTDQ2PS %s, %s", Y(ia), Y(ia))
			k.op("VBROADCASTSS %s, %s", col(c, 0), Y(t1))
			if k.lv.avx512 {
				k.op("VMULPS.BCST %s, %s, %s", sp(dOff+rowStride*r), Y(t1), Y(t1))
			} else {
				k.op("VBROADCASTSS %s, %s", sp(dOff+rowStride*r), Y(t2))
				k.op("VMULPS %s, %s, %s", Y(t2), Y(t1), Y(t1))
			}
			if sub {
				k.op("VFNMADD231PS %s, %s, %s", Y(ia), Y(t1), Y(k.acc[r][c]))
			} else {
				k.op("VFMADD231PS %s, %s, %s", Y(ia), Y(t1), Y(k.acc[r][c]))
			}
		}
	}
}

// scaled adds the int16 pair products of t and the scales at mem to the
// int32 lanes of acc: VPDPWSSD at AVX-512 (mem a broadcast dword when
// bcast), VPMADDWD and VPADDD at AVX2 (mem a whole vector).
func (k *kgen) scaled(mem string, bcast bool, t, acc int) {
	if k.lv.avx512 {
		if bcast {
			k.op("VPDPWSSD.BCST %s, %s, %s", mem, Y(t), Y(acc))
		} else {
			k.op("VPDPWSSD %s, %s, %s", mem, Y(t), Y(acc))
		}
		return
	}
	k.op("VPMADDWD %s, %s, %s", mem, Y(t), Y(t))
	k.op("VPADDD %s, %s, %s", Y(t), Y(acc), Y(acc))
}

// Q4_K x Q8_K. Per block and pair: sumi = sum_j sc_j * sum(q*y) over the
// eight sub-blocks, in int32 lanes (VPMADDUBSW of the nibbles with the
// activations, then the scale: at most 8*63*4*15*127 < 2^24 a lane, so
// the conversion to float32 is exact), and summ = sum_j m_j * (bsum_2j +
// bsum_2j+1); acc += (d*d_x)*sumi - (dmin*d_x)*summ.
//
// Scratch per row r at 64r: d, dmin (float32) at +0, +4; the mins (8
// int16) at +16; at AVX-512 the scales as dwords sc|sc<<16 at +32; at
// AVX2, 256 bytes at 64R + 256r: each scale in sixteen int16 lanes. Per
// activation row c at 64R (+256R): the eight pair sums of its bsums
// (int16).
func q4K(k *kgen) {
	R, C := k.R, k.C
	scaleOff := func(r, j int) (string, bool) {
		if k.lv.avx512 {
			return sp(64*r + 32 + 4*j), true
		}
		return sp(64*R + 256*r + 32*j), false
	}
	bsOff := 64 * R
	if !k.lv.avx512 {
		bsOff += 256 * R
	}
	iacc := make([][]int, R)
	for r := range R {
		iacc[r] = make([]int, C)
		for c := range C {
			iacc[r][c] = k.hi()
		}
	}
	lo, hi := make([]int, R), make([]int, R)
	for r := range R {
		lo[r], hi[r] = k.lo(), k.lo()
	}
	t, m0F, ylo, yhi := k.lo(), k.lo(), k.lo(), k.lo()
	t1, t2 := lo[0], hi[0] // free outside the sub-block loop
	for r := range R {
		// The eight 6-bit scales and mins: with A, B, C the three words of
		// the 12 scale bytes, scales 0-3 are A&0x3f3f3f3f, mins 0-3
		// B&0x3f3f3f3f, scales 4-7 (C&0x0f0f0f0f) | ((A>>6)&0x03030303)<<4
		// and mins 4-7 ((C>>4)&0x0f0f0f0f) | ((B>>6)&0x03030303)<<4.
		k.op("MOVL %s, AX", row(r, 4))
		k.op("MOVL %s, BX", row(r, 8))
		k.op("MOVL %s, DX", row(r, 12))
		k.op("MOVL AX, R13")
		k.op("SHRL $6, R13")
		k.op("ANDL $0x03030303, R13")
		k.op("SHLL $4, R13")
		k.op("MOVL DX, R12")
		k.op("ANDL $0x0f0f0f0f, R12")
		k.op("ORL R13, R12")
		k.op("ANDL $0x3f3f3f3f, AX")
		k.op("SHLQ $32, R12")
		k.op("ORQ R12, AX")
		k.op("MOVL BX, R13")
		k.op("SHRL $6, R13")
		k.op("ANDL $0x03030303, R13")
		k.op("SHLL $4, R13")
		k.op("SHRL $4, DX")
		k.op("ANDL $0x0f0f0f0f, DX")
		k.op("ORL R13, DX")
		k.op("ANDL $0x3f3f3f3f, BX")
		k.op("SHLQ $32, DX")
		k.op("ORQ DX, BX")
		k.op("VMOVQ AX, %s", X(t1))
		k.op("VPMOVZXBD %s, %s", X(t1), Y(t1))
		k.op("VPSLLD $16, %s, %s", Y(t1), Y(t2))
		k.op("VPOR %s, %s, %s", Y(t2), Y(t1), Y(t1))
		if k.lv.avx512 {
			k.op("VMOVDQU %s, %s", Y(t1), sp(64*r+32))
		} else {
			k.op("VMOVDQU %s, %s", Y(t1), sp(64*r+32))
			for j := range 8 {
				s, _ := scaleOff(r, j)
				k.op("VPBROADCASTD %s, %s", sp(64*r+32+4*j), Y(t2))
				k.op("VMOVDQU %s, %s", Y(t2), s)
			}
		}
		k.op("VMOVQ BX, %s", X(t1))
		k.op("VPMOVZXBW %s, %s", X(t1), X(t1))
		k.op("VMOVDQU %s, %s", X(t1), sp(64*r+16))
		k.op("VMOVD %s, %s", row(r, 0), X(t1))
		k.op("VCVTPH2PS %s, %s", X(t1), X(t1))
		k.op("VMOVQ %s, %s", X(t1), sp(64*r))
	}
	for c := range C {
		k.op("VMOVDQU %s, %s", col(c, 260), Y(t1))
		k.op("VEXTRACTI128 $1, %s, %s", Y(t1), X(t2))
		k.op("VPHADDW %s, %s, %s", X(t2), X(t1), X(t1))
		k.op("VMOVDQU %s, %s", X(t1), sp(bsOff+16*c))
	}
	for r := range R {
		for c := range C {
			k.zero(iacc[r][c])
		}
	}
	k.mov("m0F<>(SB)", Y(m0F))
	for j := range 4 {
		for r := range R {
			k.mov(row(r, 16+32*j), Y(lo[r]))
			k.op("VPSRLW $4, %s, %s", Y(lo[r]), Y(hi[r]))
			k.logic("AND", Y(m0F), Y(lo[r]), Y(lo[r]))
			k.logic("AND", Y(m0F), Y(hi[r]), Y(hi[r]))
		}
		for c := range C {
			k.mov(col(c, 4+64*j), Y(ylo))
			k.mov(col(c, 4+64*j+32), Y(yhi))
			for r := range R {
				s, b := scaleOff(r, 2*j)
				k.op("VPMADDUBSW %s, %s, %s", Y(ylo), Y(lo[r]), Y(t))
				k.scaled(s, b, t, iacc[r][c])
				s, b = scaleOff(r, 2*j+1)
				k.op("VPMADDUBSW %s, %s, %s", Y(yhi), Y(hi[r]), Y(t))
				k.scaled(s, b, t, iacc[r][c])
			}
		}
	}
	k.blockTerm(iacc, 0, 64, t1, t2, false)
	// The mins: four int32 lanes of m*bsum pairs (the upper four zero).
	for c := range C {
		for r := range R {
			ia := iacc[r][c]
			k.mov(sp(64*r+16), X(ia))
			k.op("VPMADDWD %s, %s, %s", sp(bsOff+16*c), X(ia), X(ia))
		}
	}
	k.blockTerm(iacc, 4, 64, t1, t2, true)
}

// Q6_K x Q8_K. Per block and pair: sumi = sum_g sc_g * sum((q-32)*y) over
// the sixteen groups of 16 values, in int32 lanes: VPMADDUBSW of the
// 6-bit q (0..63) with y, less VPMADDUBSW(32, y) (once per activation),
// in int16 (at most 2*32*127), then VPMADDWD with the scales (at most
// 8*4*32*127*127 < 2^24 a lane: exact in float32); acc += (d*d_x)*sumi.
//
// Scratch: per row r at 288r: d (float32) at +0, the scales of each
// 32-value unit u at +32+32u (sixteen int16: eight of group 2u, eight of
// 2u+1); per activation row c at 288R + 256c: 32*(y_2i + y_2i+1) of unit u
// at +32u (int16).
func q6K(k *kgen) {
	R, C := k.R, k.C
	iacc := make([][]int, R)
	for r := range R {
		iacc[r] = make([]int, C)
		for c := range C {
			iacc[r][c] = k.hi()
		}
	}
	q := make([]int, R)
	for r := range R {
		q[r] = k.lo()
	}
	t, h, m0F, c30, yv, ys := k.lo(), k.lo(), k.lo(), k.lo(), k.lo(), k.lo()
	sOff := func(r, u int) string { return sp(288*r + 32 + 32*u) }
	yOff := func(c, u int) string { return sp(288*R + 256*c + 32*u) }
	for r := range R {
		k.op("VPBROADCASTW %s, %s", row(r, 208), X(t))
		k.op("VCVTPH2PS %s, %s", X(t), X(t))
		k.op("VMOVSS %s, %s", X(t), sp(288*r))
		k.op("VPMOVSXBW %s, %s", row(r, 192), Y(t))
		k.op("VPERMQ $0x44, %s, %s", Y(t), Y(h))
		k.op("VPERMQ $0xEE, %s, %s", Y(t), Y(m0F))
		for u := range 8 {
			src := h
			if u >= 4 {
				src = m0F
			}
			k.op("VPSHUFB shufS%d<>(SB), %s, %s", u%4, Y(src), Y(c30))
			k.op("VMOVDQU %s, %s", Y(c30), sOff(r, u))
		}
	}
	k.mov("c32<>(SB)", Y(h))
	for c := range C {
		for u := range 8 {
			k.op("VPMADDUBSW %s, %s, %s", col(c, 4+32*u), Y(h), Y(t))
			k.op("VMOVDQU %s, %s", Y(t), yOff(c, u))
		}
	}
	for r := range R {
		for c := range C {
			k.zero(iacc[r][c])
		}
	}
	k.mov("m0F<>(SB)", Y(m0F))
	k.mov("c30<>(SB)", Y(c30))
	for half := range 2 {
		for kk := range 4 {
			u := 4*half + kk
			for r := range R {
				// Unit kk of the half: low nibbles of ql[0:32] (kk 0) or
				// ql[32:64] (1), high nibbles of them (2, 3); its two high
				// bits are bits 2*kk, 2*kk+1 of qh.
				k.mov(row(r, 64*half+32*(kk&1)), Y(q[r]))
				if kk >= 2 {
					k.op("VPSRLW $4, %s, %s", Y(q[r]), Y(q[r]))
				}
				k.logic("AND", Y(m0F), Y(q[r]), Y(q[r]))
				k.mov(row(r, 128+32*half), Y(h))
				switch kk {
				case 0:
					k.op("VPSLLW $4, %s, %s", Y(h), Y(h))
				case 1:
					k.op("VPSLLW $2, %s, %s", Y(h), Y(h))
				case 3:
					k.op("VPSRLW $2, %s, %s", Y(h), Y(h))
				}
				k.logic("AND", Y(c30), Y(h), Y(h))
				k.logic("OR", Y(h), Y(q[r]), Y(q[r]))
			}
			for c := range C {
				k.mov(col(c, 4+32*u), Y(yv))
				k.mov(yOff(c, u), Y(ys))
				for r := range R {
					k.op("VPMADDUBSW %s, %s, %s", Y(yv), Y(q[r]), Y(t))
					k.op("VPSUBW %s, %s, %s", Y(ys), Y(t), Y(t))
					k.scaled(sOff(r, u), false, t, iacc[r][c])
				}
			}
		}
	}
	k.blockTerm(iacc, 0, 288, t, h, false)
}

// Float kernels: eight values a step, converted to float32 and
// multiplied-added into the accumulators (ggml accumulates F16 and BF16
// products in float32 lanes too).
func floats(load func(k *kgen, mem string, dst int)) func(k *kgen) {
	return func(k *kgen) {
		w := make([]int, k.R)
		for r := range k.R {
			w[r] = k.lo()
			load(k, row(r, 0), w[r])
		}
		xv := k.lo()
		for c := range k.C {
			load(k, col(c, 0), xv)
			for r := range k.R {
				k.op("VFMADD231PS %s, %s, %s", Y(xv), Y(w[r]), Y(k.acc[r][c]))
			}
		}
	}
}

// bf16Dot is BF16 x BF16 at the AVX-512 level where AVX512_BF16 is
// present: sixteen values a step, VDPBF16PS adding the products of each
// pair of values to a float32 lane (two roundings, the odd value's
// product first; it treats subnormal inputs and results as zero).
func bf16Dot(k *kgen) {
	w := make([]int, k.R)
	for r := range k.R {
		w[r] = k.lo()
		k.mov(row(r, 0), Y(w[r]))
	}
	xv := k.lo()
	for c := range k.C {
		k.mov(col(c, 0), Y(xv))
		for r := range k.R {
			k.op("%s // VDPBF16PS %s, %s, %s", vdpbf16ps(k.acc[r][c], w[r], xv), Y(xv), Y(w[r]), Y(k.acc[r][c]))
		}
	}
}

// vdpbf16ps encodes VDPBF16PS ymm(src2), ymm(src1), ymm(dst) (dst +=
// products of src1 and src2), which the Go assembler does not know:
// EVEX.256.F3.0F38.W0 52 /r.
func vdpbf16ps(dst, src1, src2 int) string {
	inv := func(v, bit int) int { return ^(v >> bit) & 1 }
	p0 := 0x02 | inv(dst, 3)<<7 | inv(src2, 4)<<6 | inv(src2, 3)<<5 | inv(dst, 4)<<4
	p1 := 0x06 | (^src1&15)<<3
	p2 := 0x20 | inv(src1, 4)<<3
	modrm := 0xC0 | (dst&7)<<3 | src2&7
	return fmt.Sprintf("BYTE $0x62; BYTE $0x%02x; BYTE $0x%02x; BYTE $0x%02x; BYTE $0x52; BYTE $0x%02x", p0, p1, p2, modrm)
}

func loadF32(k *kgen, mem string, dst int) { k.op("VMOVUPS %s, %s", mem, Y(dst)) }
func loadF16(k *kgen, mem string, dst int) { k.op("VCVTPH2PS %s, %s", mem, Y(dst)) }
func loadBF16(k *kgen, mem string, dst int) {
	k.op("VPMOVZXWD %s, %s", mem, Y(dst))
	k.op("VPSLLD $16, %s, %s", Y(dst), Y(dst))
}

// gemv describes a one-row kernel for decoding (AVX-512, the types with
// Q8_0 activations): it runs over rows weight rows one after the other
// (one stream for the prefetcher), each against one activation row whose
// per-block constants the caller computed once (the extras: -k*sum(x) in
// the eight four-byte groups, int32, then d_x as float32; 36 bytes a
// block), so that a block costs the weight's decoding and four vector
// operations. Each output's arithmetic is the tile kernels' (the same
// integer lanes, scale product, multiply-add and reduction): the same bits.
type gemv struct {
	typ, name string
	wb, k     int
	unsigned  func(k *kgen, r, u, t, ck int)
	ck        string
}

var gemvs = []gemv{
	{"Q8_0", "q8_0", 34, 128, unsignedQ8_0, "c128"},
	{"Q4_0", "q4_0", 18, 8, unsignedQ4_0, "c8"},
	{"Q5_0", "q5_0", 22, 16, unsignedQ5_0, "c16"},
}

// emitGemv writes a gemv kernel:
//
//	func name(w *byte, ws uintptr, x *byte, ex *byte, out *float32, rows uintptr, n uintptr)
//
// out[r] = row r (at w + r*ws) . x over n blocks, for r < rows.
func emitGemv(out *bytes.Buffer, gv gemv) string {
	name := gv.name + "GemvAVX512"
	k := &kgen{out: out, lv: levels[1], R: 1, C: 1, name: name}
	fmt.Fprintf(out, "\n// func %s(w *byte, ws uintptr, x *byte, ex *byte, out *float32, rows uintptr, n uintptr)\n", name)
	fmt.Fprintf(out, "TEXT ·%s(SB), NOSPLIT, $0-56\n", name)
	k.op("MOVQ w+0(FP), R10")
	k.op("MOVQ ws+8(FP), R8")
	k.op("MOVQ out+32(FP), AX")
	k.op("MOVQ rows+40(FP), BX")
	k.mov(gv.ck+"<>(SB)", Y(7))
	fmt.Fprintf(out, "rowloop:\n")
	k.op("MOVQ R10, SI")
	k.op("MOVQ x+16(FP), DI")
	k.op("MOVQ ex+24(FP), DX")
	k.op("MOVQ n+48(FP), CX")
	k.zero(16)
	fmt.Fprintf(out, "blockloop:\n")
	gv.unsigned(k, 0, 0, 1, 7)
	k.mov("(DX)", Y(2))
	k.op("VPDPBUSD 2(DI), Y0, Y2")
	k.op("VCVTDQ2PS Y2, Y2")
	k.f16bcast("(SI)", 3)
	k.op("VMULPS.BCST 32(DX), Y3, Y3")
	k.op("VFMADD231PS Y2, Y3, Y16")
	k.op("ADDQ $%d, SI", gv.wb)
	k.op("ADDQ $34, DI")
	k.op("ADDQ $36, DX")
	k.op("DECQ CX")
	k.op("JNZ blockloop")
	k.op("VMOVAPS Y16, Y0")
	k.op("VEXTRACTF128 $1, Y0, X1")
	k.op("VADDPS X1, X0, X0")
	k.op("VMOVHLPS X0, X0, X1")
	k.op("VADDPS X1, X0, X0")
	k.op("VMOVSHDUP X0, X1")
	k.op("VADDSS X1, X0, X0")
	k.op("VMOVSS X0, (AX)")
	k.op("ADDQ $4, AX")
	k.op("ADDQ R8, R10")
	k.op("DECQ BX")
	k.op("JNZ rowloop")
	k.op("VZEROUPPER")
	k.op("RET")
	return name
}

// emitGemvQ6K writes the Q6_K decoding kernel (signature of emitGemv).
// Its extras are the tile kernel's per-activation vectors, computed once:
// 32*(y_2i + y_2i+1) of each 32-value unit as int16 (256 bytes), then d_x
// (float32); 260 bytes a block. The scale vectors stay in registers.
func emitGemvQ6K(out *bytes.Buffer) string {
	name := "q6_KGemvAVX512"
	k := &kgen{out: out, lv: levels[1], R: 1, C: 1, name: name}
	fmt.Fprintf(out, "\n// func %s(w *byte, ws uintptr, x *byte, ex *byte, out *float32, rows uintptr, n uintptr)\n", name)
	fmt.Fprintf(out, "TEXT ·%s(SB), NOSPLIT, $0-56\n", name)
	k.op("MOVQ w+0(FP), R10")
	k.op("MOVQ ws+8(FP), R8")
	k.op("MOVQ out+32(FP), AX")
	k.op("MOVQ rows+40(FP), BX")
	fmt.Fprintf(out, "rowloop:\n")
	k.op("MOVQ R10, SI")
	k.op("MOVQ x+16(FP), DI")
	k.op("MOVQ ex+24(FP), DX")
	k.op("MOVQ n+48(FP), CX")
	k.zero(16)
	fmt.Fprintf(out, "blockloop:\n")
	// Scale vectors of the eight units in Y8..Y15.
	k.op("VPMOVSXBW 192(SI), Y4")
	k.op("VPERMQ $0x44, Y4, Y5")
	k.op("VPERMQ $0xEE, Y4, Y6")
	for u := range 8 {
		src := 5
		if u >= 4 {
			src = 6
		}
		k.op("VPSHUFB shufS%d<>(SB), Y%d, Y%d", u%4, src, 8+u)
	}
	k.mov("m0F<>(SB)", Y(5))
	k.mov("c30<>(SB)", Y(6))
	k.zero(3)
	for half := range 2 {
		for kk := range 4 {
			u := 4*half + kk
			k.mov(row(0, 64*half+32*(kk&1)), Y(0))
			if kk >= 2 {
				k.op("VPSRLW $4, Y0, Y0")
			}
			k.op("VPAND Y5, Y0, Y0")
			k.mov(row(0, 128+32*half), Y(1))
			switch kk {
			case 0:
				k.op("VPSLLW $4, Y1, Y1")
			case 1:
				k.op("VPSLLW $2, Y1, Y1")
			case 3:
				k.op("VPSRLW $2, Y1, Y1")
			}
			k.op("VPAND Y6, Y1, Y1")
			k.op("VPOR Y1, Y0, Y0")
			k.op("VPMADDUBSW %d(DI), Y0, Y2", 4+32*u)
			k.op("VPSUBW %d(DX), Y2, Y2", 32*u)
			k.op("VPDPWSSD Y%d, Y2, Y3", 8+u)
		}
	}
	k.op("VCVTDQ2PS Y3, Y3")
	k.f16bcast(row(0, 208), 4)
	k.op("VMULPS.BCST 256(DX), Y4, Y4")
	k.op("VFMADD231PS Y3, Y4, Y16")
	k.op("ADDQ $210, SI")
	k.op("ADDQ $292, DI")
	k.op("ADDQ $260, DX")
	k.op("DECQ CX")
	k.op("JNZ blockloop")
	k.op("VMOVAPS Y16, Y0")
	k.op("VEXTRACTF128 $1, Y0, X1")
	k.op("VADDPS X1, X0, X0")
	k.op("VMOVHLPS X0, X0, X1")
	k.op("VADDPS X1, X0, X0")
	k.op("VMOVSHDUP X0, X1")
	k.op("VADDSS X1, X0, X0")
	k.op("VMOVSS X0, (AX)")
	k.op("ADDQ $4, AX")
	k.op("ADDQ R8, R10")
	k.op("DECQ BX")
	k.op("JNZ rowloop")
	k.op("VZEROUPPER")
	k.op("RET")
	return name
}

// kernels lists the tile kernels of each level.
func kernels(lv level) []kernel {
	big := lv.avx512
	pick := func(avx2, avx512 int) int {
		if big {
			return avx512
		}
		return avx2
	}
	return []kernel{
		{typ: "Q8_0", name: "q8_0", R: pick(2, 4), C: pick(4, 4), step: 32, wb: 34, xb: 34, body: q8family(34, unsignedQ8_0, "c128", signedQ8_0)},
		{typ: "Q4_0", name: "q4_0", R: pick(2, 4), C: pick(4, 4), step: 32, wb: 18, xb: 34, body: q8family(18, unsignedQ4_0, "c8", signedQ4_0)},
		{typ: "Q5_0", name: "q5_0", R: pick(2, 4), C: pick(4, 4), step: 32, wb: 22, xb: 34, body: q8family(22, unsignedQ5_0, "c16", signedQ5_0)},
		{typ: "Q4_K", name: "q4_K", R: pick(2, 3), C: pick(2, 3), frame: 0, step: 256, wb: 144, xb: 292, body: q4K},
		{typ: "Q6_K", name: "q6_K", R: pick(2, 3), C: pick(2, 3), frame: 0, step: 256, wb: 210, xb: 292, body: q6K},
		{typ: "F32", name: "f32", R: pick(3, 4), C: pick(4, 6), step: 8, wb: 32, xb: 32, body: floats(loadF32)},
		{typ: "F16", name: "f16", R: pick(3, 4), C: pick(4, 6), step: 8, wb: 16, xb: 16, body: floats(loadF16)},
		{typ: "BF16", name: "bf16", R: pick(3, 4), C: pick(4, 6), step: 8, wb: 16, xb: 16, body: floats(loadBF16)},
	}
}

// bf16Kernel is the BF16 kernel that needs AVX512_BF16 besides the
// AVX-512 level's features.
var bf16Kernel = kernel{typ: "BF16", name: "bf16dp", R: 4, C: 6, step: 16, wb: 32, xb: 32, body: bf16Dot}

// frameFor returns the scratch a kernel needs at a tile size.
func frameFor(lv level, kn kernel, R, C int) int {
	switch kn.typ {
	case "Q4_K":
		f := 64*R + 16*C
		if !lv.avx512 {
			f += 256 * R
		}
		return f
	case "Q6_K":
		return 288*R + 256*C
	case "Q8_0", "Q4_0", "Q5_0":
		return 16 * C
	}
	return kn.frame
}

func generate() (asm, decl []byte) {
	var s bytes.Buffer
	s.WriteString(asmHeader)
	var d bytes.Buffer
	d.WriteString(declHeader)
	var table bytes.Buffer
	for _, lv := range levels {
		fmt.Fprintf(&table, "\nvar tiles%s = map[Type]*tileSet{\n", lv.name)
		for _, kn := range kernels(lv) {
			sizes := [][2]int{{kn.R, kn.C}, {kn.R, 1}, {1, kn.C}, {1, 1}}
			names := make([]string, 4)
			for i, rc := range sizes {
				kk := kn
				kk.frame = frameFor(lv, kn, rc[0], rc[1])
				names[i] = emit(&s, lv, kk, rc[0], rc[1])
				fmt.Fprintf(&d, "\n//go:noescape\nfunc %s(w *byte, ws uintptr, x *byte, xs uintptr, out *float32, os uintptr, n uintptr)\n", names[i])
			}
			fmt.Fprintf(&table, "\t%s: {R: %d, C: %d, step: %d, full: %s, rows: %s, cols: %s, one: %s},\n",
				kn.typ, kn.R, kn.C, kn.step, names[0], names[1], names[2], names[3])
		}
		table.WriteString("}\n")
	}
	// The kernels that need AVX512_BF16 too.
	lv := levels[1]
	fmt.Fprintf(&table, "\nvar tiles%sBF16 = map[Type]*tileSet{\n", lv.name)
	kn := bf16Kernel
	sizes := [][2]int{{kn.R, kn.C}, {kn.R, 1}, {1, kn.C}, {1, 1}}
	names := make([]string, 4)
	for i, rc := range sizes {
		names[i] = emit(&s, lv, kn, rc[0], rc[1])
		fmt.Fprintf(&d, "\n//go:noescape\nfunc %s(w *byte, ws uintptr, x *byte, xs uintptr, out *float32, os uintptr, n uintptr)\n", names[i])
	}
	fmt.Fprintf(&table, "\t%s: {R: %d, C: %d, step: %d, full: %s, rows: %s, cols: %s, one: %s},\n}\n",
		kn.typ, kn.R, kn.C, kn.step, names[0], names[1], names[2], names[3])
	// The decoding kernels.
	table.WriteString("\nvar gemvAVX512 = map[Type]gemvKernel{\n")
	for _, gv := range gemvs {
		name := emitGemv(&s, gv)
		fmt.Fprintf(&d, "\n//go:noescape\nfunc %s(w *byte, ws uintptr, x *byte, ex *byte, out *float32, rows uintptr, n uintptr)\n", name)
		fmt.Fprintf(&table, "\t%s: {f: %s, k: %d, exBytes: 36},\n", gv.typ, name, gv.k)
	}
	name := emitGemvQ6K(&s)
	fmt.Fprintf(&d, "\n//go:noescape\nfunc %s(w *byte, ws uintptr, x *byte, ex *byte, out *float32, rows uintptr, n uintptr)\n", name)
	fmt.Fprintf(&table, "\tQ6_K: {f: %s, exBytes: 260},\n", name)
	table.WriteString("}\n")
	d.Write(table.Bytes())
	src, err := format.Source(d.Bytes())
	if err != nil {
		log.Fatalf("formatting the declarations: %v\n%s", err, d.Bytes())
	}
	s.WriteString(constants)
	return s.Bytes(), src
}

const declHeader = `// Code generated by internal/kgen; DO NOT EDIT.

//go:build amd64 && !noasm

package quant

// The tile kernels of kernels_amd64.s, four tile sizes per type and level
// (R x C, R x 1, 1 x C, 1 x 1); see internal/kgen for what they compute.
`

const asmHeader = `// Code generated by internal/kgen; DO NOT EDIT.

//go:build amd64 && !noasm

#include "textflag.h"
`

// constants are the kernels' read-only vectors.
var constants = func() string {
	var b strings.Builder
	vec := func(name string, bytes [32]byte) {
		b.WriteString("\n")
		for i := 0; i < 32; i += 8 {
			var v uint64
			for j := 7; j >= 0; j-- {
				v = v<<8 | uint64(bytes[i+j])
			}
			fmt.Fprintf(&b, "DATA %s<>+%d(SB)/8, $0x%016x\n", name, i, v)
		}
		fmt.Fprintf(&b, "GLOBL %s<>(SB), RODATA|NOPTR, $32\n", name)
	}
	fill := func(v byte) (a [32]byte) {
		for i := range a {
			a[i] = v
		}
		return a
	}
	vec("c128", fill(0x80))
	vec("m0F", fill(0x0F))
	vec("c8", fill(0x08))
	vec("cF0", fill(0xF0))
	vec("c30", fill(0x30))
	vec("c32", fill(0x20))
	vec("c16", fill(0x10))
	vec("allFF", fill(0xFF))
	var ones16 [32]byte
	for i := 0; i < 32; i += 2 {
		ones16[i] = 1
	}
	vec("ones16", ones16)
	// Byte j of the low lane takes byte j/8 of the broadcast qh, of the
	// high lane byte 2 + (j-16)/8; bitSel clears all but bit j%8.
	var shufQH, bitSel [32]byte
	for j := range 32 {
		shufQH[j] = byte(j / 8)
		bitSel[j] = ^byte(1 << (j % 8))
	}
	vec("shufQH", shufQH)
	vec("bitSel", bitSel)
	// shufS<k>: word 2k of each lane in the low lane, word 2k+1 in the
	// high lane, eight times each.
	for kk := range 4 {
		var s [32]byte
		for i := range 8 {
			s[2*i], s[2*i+1] = byte(4*kk), byte(4*kk+1)
			s[16+2*i], s[16+2*i+1] = byte(4*kk+2), byte(4*kk+3)
		}
		vec(fmt.Sprintf("shufS%d", kk), s)
	}
	return b.String()
}()
