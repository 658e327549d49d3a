package ptx

import (
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// testMem is a global memory of a few allocations for the tests.
type testMem struct {
	allocs []testAlloc
}

type testAlloc struct {
	base uint64
	data []byte
}

func (m *testMem) alloc(n int) uint64 {
	base := uint64(0x10_0000_0000) + uint64(len(m.allocs))<<32
	m.allocs = append(m.allocs, testAlloc{base, make([]byte, n)})
	return base
}

func (m *testMem) bytes(p uint64) []byte {
	for _, a := range m.allocs {
		if a.base == p {
			return a.data
		}
	}
	panic("no allocation")
}

func (m *testMem) Region(addr uint64) (uint64, []byte, bool) {
	for _, a := range m.allocs {
		if addr >= a.base && addr < a.base+uint64(len(a.data)) {
			return a.base, a.data, true
		}
	}
	return 0, nil, false
}

func u64p(v uint64) []byte { b := make([]byte, 8); binary.LittleEndian.PutUint64(b, v); return b }
func u32p(v uint32) []byte { b := make([]byte, 4); binary.LittleEndian.PutUint32(b, v); return b }

const header = ".version 7.0\n.target sm_80\n.address_size 64\n"

func mustParse(t *testing.T, src string) *Module {
	t.Helper()
	m, err := Parse(header + src)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// run launches kernel "k" of src with one pointer parameter to a buffer of n
// float32 and returns the fault.
func runFault(t *testing.T, src string, block, n int) *Fault {
	t.Helper()
	m := mustParse(t, src)
	mem := &testMem{}
	p := mem.alloc(4 * n)
	_, err := m.Kernel("k").Run(mem, Launch{Grid: [3]int{1, 1, 1}, Block: [3]int{block, 1, 1}, Params: [][]byte{u64p(p)}})
	var f *Fault
	if !errors.As(err, &f) {
		t.Fatalf("no fault: %v", err)
	}
	t.Log(f)
	return f
}

// lineOf returns the 1-based line of the module (header included) that
// contains s.
func lineOf(src, s string) int {
	for i, l := range strings.Split(header+src, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	return -1
}

// The memcheck classes, each from a kernel that makes the mistake.

const oobGlobal = `
.visible .entry k(.param .u64 k_p)
{
	.reg .b32 %r<4>;
	.reg .b64 %rd<4>;
	ld.param.u64 %rd1, [k_p];
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd2, %r1, 4;
	add.s64 %rd3, %rd1, %rd2;
	st.global.u32 [%rd3], %r1; // thread 16 writes past 16 floats
	ret;
}
`

func TestMemcheckOutOfBoundsGlobal(t *testing.T) {
	f := runFault(t, oobGlobal, 32, 16)
	if f.Class != "out of bounds" || f.Line != lineOf(oobGlobal, "st.global.u32") || f.Thread != [3]int{16, 0, 0} || f.Kernel != "k" {
		t.Fatalf("fault %+v", f)
	}
}

const oobShared = `
.visible .entry k(.param .u64 k_p)
{
	.reg .b32 %r<4>;
	.reg .b64 %rd<4>;
	.shared .align 4 .b8 buf[64];
	.shared .align 4 .b8 next[64];
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd2, %r1, 4;
	mov.u64 %rd1, buf;
	add.s64 %rd3, %rd1, %rd2;
	st.shared.u32 [%rd3], %r1; // 16 words: thread 16 is past buf
	ret;
}
`

func TestMemcheckOutOfBoundsShared(t *testing.T) {
	f := runFault(t, oobShared, 17, 1)
	if f.Class != "out of bounds" || f.Line != lineOf(oobShared, "st.shared.u32") || f.Thread != [3]int{16, 0, 0} || !strings.Contains(f.Msg, "buf") {
		t.Fatalf("fault %+v", f)
	}
}

const misaligned = `
.visible .entry k(.param .u64 k_p)
{
	.reg .f32 %f<2>;
	.reg .b64 %rd<4>;
	ld.param.u64 %rd1, [k_p];
	ld.global.f32 %f1, [%rd1+2];
	st.global.f32 [%rd1], %f1;
	ret;
}
`

func TestMemcheckMisaligned(t *testing.T) {
	f := runFault(t, misaligned, 1, 4)
	if f.Class != "misaligned" || f.Line != lineOf(misaligned, "ld.global.f32") {
		t.Fatalf("fault %+v", f)
	}
}

const uninit = `
.visible .entry k(.param .u64 k_p)
{
	.reg .pred %p<2>;
	.reg .f32 %f<4>;
	.reg .b32 %r<2>;
	.reg .b64 %rd<4>;
	ld.param.u64 %rd1, [k_p];
	mov.u32 %r1, %tid.x;
	setp.eq.s32 %p1, %r1, 3;
	@%p1 bra $L__skip;
	mov.f32 %f1, 0f3F800000;
$L__skip:
	add.f32 %f2, %f1, %f1; // thread 3 never wrote %f1
	st.global.f32 [%rd1], %f2;
	ret;
}
`

func TestMemcheckUninitializedRegister(t *testing.T) {
	f := runFault(t, uninit, 8, 4)
	if f.Class != "uninitialized register" || f.Line != lineOf(uninit, "add.f32") || f.Thread != [3]int{3, 0, 0} || !strings.Contains(f.Msg, "%f1") {
		t.Fatalf("fault %+v", f)
	}
}

const barrier = `
.visible .entry k(.param .u64 k_p)
{
	.reg .pred %p<2>;
	.reg .b32 %r<2>;
	mov.u32 %r1, %tid.x;
	setp.ge.u32 %p1, %r1, 40;
	@%p1 bra $L__out; // threads 40.. leave before the barrier
	bar.sync 0;
$L__out:
	ret;
}
`

func TestMemcheckBarrier(t *testing.T) {
	f := runFault(t, barrier, 64, 1)
	if f.Class != "barrier" || f.Line != lineOf(barrier, "bar.sync") || !strings.Contains(f.Msg, "40 of 64") || !strings.Contains(f.Msg, "(40,0,0) exited") {
		t.Fatalf("fault %+v", f)
	}
}

const shflExited = `
.visible .entry k(.param .u64 k_p)
{
	.reg .pred %p<2>;
	.reg .b32 %r<4>;
	mov.u32 %r1, %tid.x;
	setp.eq.u32 %p1, %r1, 5;
	@%p1 bra $L__out; // lane 5 leaves; the others shuffle with a full mask
	shfl.sync.bfly.b32 %r2, %r1, 1, 31, -1;
$L__out:
	ret;
}
`

func TestMemcheckWarpSync(t *testing.T) {
	f := runFault(t, shflExited, 32, 1)
	if f.Class != "warp sync" || f.Line != lineOf(shflExited, "shfl.sync") || !strings.Contains(f.Msg, "lane 5") {
		t.Fatalf("fault %+v", f)
	}
}

// A kernel that makes none of the mistakes runs clean: the same code paths
// with the bugs fixed.
func TestMemcheckCleanKernel(t *testing.T) {
	src := `
.visible .entry k(.param .u64 k_p)
{
	.reg .pred %p<2>;
	.reg .b32 %r<4>;
	.reg .b64 %rd<4>;
	.shared .align 4 .b8 buf[128];
	ld.param.u64 %rd1, [k_p];
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd2, %r1, 4;
	mov.u64 %rd3, buf;
	add.s64 %rd3, %rd3, %rd2;
	st.shared.u32 [%rd3], %r1;
	bar.sync 0;
	xor.b32 %r2, %r1, 1;
	mul.wide.u32 %rd2, %r2, 4;
	mov.u64 %rd3, buf;
	add.s64 %rd3, %rd3, %rd2;
	ld.shared.u32 %r3, [%rd3];
	shfl.sync.bfly.b32 %r2, %r3, 1, 31, -1;
	mul.wide.u32 %rd2, %r1, 4;
	add.s64 %rd1, %rd1, %rd2;
	st.global.u32 [%rd1], %r2;
	ret;
}
`
	mod := mustParse(t, src)
	mem := &testMem{}
	p := mem.alloc(4 * 32)
	st, err := mod.Kernel("k").Run(mem, Launch{Grid: [3]int{1, 1, 1}, Block: [3]int{32, 1, 1}, Params: [][]byte{u64p(p)}})
	if err != nil {
		t.Fatal(err)
	}
	out := unsafe.Slice((*uint32)(unsafe.Pointer(&mem.bytes(p)[0])), 32)
	for i, v := range out {
		if v != uint32(i) { // thread i reads buf[i^1] = i^1, shuffles with lane i^1
			t.Fatalf("out[%d] = %d", i, v)
		}
	}
	if st.Instructions != 32*17 {
		t.Fatalf("%d thread-instructions, want %d", st.Instructions, 32*17)
	}
}

func TestUnknownInstructionFailsAtLoad(t *testing.T) {
	for _, c := range []struct{ ins, name string }{
		{"sin.approx.f32 %f1, %f1;", "sin.approx.f32"},
		{"add.rz.f32 %f1, %f1, %f1;", "add.rz.f32"},
		{"cvt.rz.f32.f64 %f1, %fd1;", "cvt.rz.f32.f64"},
		{"shfl.sync.bfly.b64 %fd1, %fd1, 1, 31, -1;", "shfl.sync.bfly.b64"},
		{"tex.2d.v4.f32.f32 {%f1, %f1, %f1, %f1}, [%rd1, {%f1, %f1}];", "tex.2d.v4.f32.f32"},
	} {
		src := `
.visible .entry k(.param .u64 k_p)
{
	.reg .f32 %f<2>;
	.reg .f64 %fd<2>;
	.reg .b64 %rd<2>;
	` + c.ins + `
	ret;
}
`
		_, err := Parse(header + src)
		want := "line " + strconv.Itoa(lineOf(src, c.ins))
		if err == nil || !strings.Contains(err.Error(), c.name) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "not implemented") {
			t.Fatalf("%s: %v (want the name and %q)", c.ins, err, want)
		}
	}
}

func TestLaunchChecks(t *testing.T) {
	m := mustParse(t, `
.visible .entry k(.param .u64 k_p, .param .u32 k_n)
.maxntid 64, 1, 1
{
	ret;
}
`)
	k := m.Kernel("k")
	if k.NumParams() != 2 || k.ParamSize(0) != 8 || k.ParamSize(1) != 4 {
		t.Fatalf("params %+v", k.params)
	}
	mem := &testMem{}
	ok := Launch{Grid: [3]int{1, 1, 1}, Block: [3]int{64, 1, 1}, Params: [][]byte{u64p(0), u32p(0)}}
	if _, err := k.Run(mem, ok); err != nil {
		t.Fatal(err)
	}
	bad := ok
	bad.Block = [3]int{65, 1, 1}
	if _, err := k.Run(mem, bad); err == nil || !strings.Contains(err.Error(), "maxntid") {
		t.Fatalf("65 threads: %v", err)
	}
	bad = ok
	bad.Params = [][]byte{u64p(0), u64p(0)}
	if _, err := k.Run(mem, bad); err == nil || !strings.Contains(err.Error(), "parameter 1") {
		t.Fatalf("8-byte int parameter: %v", err)
	}
	bad = ok
	bad.Params = bad.Params[:1]
	if _, err := k.Run(mem, bad); err == nil {
		t.Fatal("missing parameter accepted")
	}
}
