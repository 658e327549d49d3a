package ptx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// runSched launches kernel "k" of src (one pointer parameter to a buffer of
// n words, zeroed) under schedule s with the race detector on or off, and
// returns the buffer and the error.
func runSched(t *testing.T, src string, grid, block, n int, s Schedule, races bool) ([]byte, Stats, error) {
	t.Helper()
	m := mustParse(t, src)
	mem := &testMem{}
	p := mem.alloc(4 * n)
	l := Launch{Grid: [3]int{grid, 1, 1}, Block: [3]int{block, 1, 1}, Params: [][]byte{u64p(p)}, Schedule: s}
	if races {
		l.Races = NewRaces()
	}
	st, err := m.Kernel("k").Run(mem, l)
	return mem.bytes(p), st, err
}

func raceFault(t *testing.T, err error, what string) *Fault {
	t.Helper()
	var f *Fault
	if !errors.As(err, &f) || f.Class != "race" || !strings.Contains(f.Msg, what) {
		t.Fatalf("want a %s race, got %v", what, err)
	}
	t.Log(f)
	return f
}

// exchange: each thread writes its id to buf[tid] and reads the word of
// the thread 32 away (the other warp); BAR is the barrier between.
const exchange = `
.visible .entry k(.param .u64 k_p)
{
	.reg .b32 %r<8>;
	.reg .b64 %rd<8>;
	.shared .align 4 .b8 buf[256];
	ld.param.u64 %rd1, [k_p];
	mov.u32 %r1, %tid.x;
	mul.wide.u32 %rd2, %r1, 4;
	mov.u64 %rd3, buf;
	add.s64 %rd4, %rd3, %rd2;
	st.shared.u32 [%rd4], %r1;
	BAR
	xor.b32 %r2, %r1, 32;
	mul.wide.u32 %rd5, %r2, 4;
	add.s64 %rd6, %rd3, %rd5;
	ld.shared.u32 %r3, [%rd6];
	add.s64 %rd7, %rd1, %rd2;
	st.global.u32 [%rd7], %r3;
	ret;
}
`

// TestRaceSharedMissingBarrier: without the barrier, the race detector
// reports the pair (a read of a word another warp writes later, under both
// warp orders), and without the detector the outputs of forward and
// reversed warps differ, which the fake device's comparison sees.
func TestRaceSharedMissingBarrier(t *testing.T) {
	racy := strings.Replace(exchange, "BAR", "", 1)
	for _, s := range Schedules {
		_, _, err := runSched(t, racy, 1, 64, 64, s, true)
		f := raceFault(t, err, "race on byte")
		if !strings.Contains(f.Msg, "shared buf") || f.Line != lineOf(racy, "st.shared.u32") && f.Line != lineOf(racy, "ld.shared.u32") {
			t.Fatalf("%v: fault %+v", s, f)
		}
	}
	fwd, _, err := runSched(t, racy, 1, 64, 64, Schedules[0], false)
	if err != nil {
		t.Fatal(err)
	}
	rev, _, err := runSched(t, racy, 1, 64, 64, Schedules[1], false)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(fwd, rev) {
		t.Fatal("the racy kernel gives the same output with warps forward and reversed")
	}
	// With the barrier, every schedule gives the same output, race-free.
	clean := strings.Replace(exchange, "BAR", "bar.sync 0;", 1)
	var want []byte
	for _, s := range Schedules {
		out, _, err := runSched(t, clean, 1, 64, 64, s, true)
		if err != nil {
			t.Fatalf("%v: %v", s, err)
		}
		if want == nil {
			want = out
		} else if !bytes.Equal(out, want) {
			t.Fatalf("%v: output differs", s)
		}
	}
	for i := 0; i < 64; i++ {
		if got := binary.LittleEndian.Uint32(want[4*i:]); got != uint32(i^32) {
			t.Fatalf("out[%d] = %d", i, got)
		}
	}
}

// TestRaceSharedWriteWrite: two threads store to one word between the same
// barriers; atomics among themselves are not a race, a plain read of the
// word among them is.
func TestRaceSharedWriteWrite(t *testing.T) {
	src := `
.visible .entry k(.param .u64 k_p)
{
	.reg .b32 %r<8>;
	.reg .b64 %rd<8>;
	.shared .align 4 .b8 buf[4];
	mov.u32 %r1, %tid.x;
	mov.u64 %rd3, buf;
	OP
	ret;
}
`
	_, _, err := runSched(t, strings.Replace(src, "OP", "st.shared.u32 [%rd3], %r1;", 1), 1, 32, 1, Schedules[0], true)
	f := raceFault(t, err, "write-write")
	if f.Thread != [3]int{1, 0, 0} || !strings.Contains(f.Msg, "thread (0,0,0)") {
		t.Fatalf("fault %+v", f)
	}
	if _, _, err := runSched(t, strings.Replace(src, "OP", "atom.shared.add.u32 %r2, [%rd3], 1;", 1), 1, 64, 1, Schedules[3], true); err != nil {
		t.Fatalf("atomics among themselves: %v", err)
	}
	_, _, err = runSched(t, strings.Replace(src, "OP", "atom.shared.add.u32 %r2, [%rd3], 1;\n\tld.shared.u32 %r3, [%rd3];", 1), 1, 64, 1, Schedules[0], true)
	raceFault(t, err, "race on byte 0 of shared buf")
}

// TestRaceWarpSync: a lane's store read by the other lanes of its warp is
// ordered by bar.warp.sync, not by a shuffle.
func TestRaceWarpSync(t *testing.T) {
	src := `
.visible .entry k(.param .u64 k_p)
{
	.reg .pred %p<2>;
	.reg .b32 %r<8>;
	.reg .b64 %rd<8>;
	.shared .align 4 .b8 buf[4];
	ld.param.u64 %rd1, [k_p];
	mov.u32 %r1, %tid.x;
	mov.u64 %rd3, buf;
	setp.eq.u32 %p1, %r1, 0;
	@%p1 st.shared.u32 [%rd3], 7;
	SYNC
	ld.shared.u32 %r3, [%rd3];
	mul.wide.u32 %rd2, %r1, 4;
	add.s64 %rd4, %rd1, %rd2;
	st.global.u32 [%rd4], %r3;
	ret;
}
`
	// ... and so is a store after loads by several lanes: lane 0 stores
	// again once every lane has read.
	src = strings.Replace(src, "\tmul.wide.u32 %rd2", "\tbar.warp.sync -1;\n\t@%p1 st.shared.u32 [%rd3], 8;\n\tmul.wide.u32 %rd2", 1)
	for _, s := range Schedules {
		out, _, err := runSched(t, strings.Replace(src, "SYNC", "bar.warp.sync -1;", 1), 1, 32, 32, s, true)
		if err != nil {
			t.Fatalf("%v: %v", s, err)
		}
		if binary.LittleEndian.Uint32(out[4*31:]) != 7 {
			t.Fatalf("%v: lane 31 read %d", s, binary.LittleEndian.Uint32(out[4*31:]))
		}
	}
	_, _, err := runSched(t, strings.Replace(src, "SYNC", "shfl.sync.bfly.b32 %r4, %r1, 1, 31, -1;", 1), 1, 32, 32, Schedules[0], true)
	raceFault(t, err, "read-after-write")
}

// TestRaceGlobal: two blocks storing to one word race; so does a thread
// reading a word another thread of its block stored between the same
// barriers, and a barrier orders them.
func TestRaceGlobal(t *testing.T) {
	src := `
.visible .entry k(.param .u64 k_p)
{
	.reg .pred %p<2>;
	.reg .b32 %r<8>;
	.reg .b64 %rd<8>;
	ld.param.u64 %rd1, [k_p];
	mov.u32 %r1, %tid.x;
	mov.u32 %r2, %ctaid.x;
	setp.eq.u32 %p1, %r1, 0;
	@%p1 st.global.u32 [%rd1], %r2;
	BAR
	ld.global.u32 %r3, [%rd1];
	mul.wide.u32 %rd2, %r1, 4;
	add.s64 %rd3, %rd1, %rd2;
	@!%p1 st.global.u32 [%rd3+4], %r3;
	ret;
}
`
	// one block: the read races with thread 0's store unless a barrier
	// separates them
	_, _, err := runSched(t, strings.Replace(src, "BAR", "", 1), 1, 32, 64, Schedules[0], true)
	raceFault(t, err, "read-after-write race on global byte")
	out, _, err := runSched(t, strings.Replace(src, "BAR", "bar.sync 0;", 1), 1, 32, 64, Schedules[3], true)
	if err != nil || binary.LittleEndian.Uint32(out[8:]) != 0 {
		t.Fatalf("with the barrier: %v", err)
	}
	// two blocks: their thread 0s store to the same word
	_, _, err = runSched(t, strings.Replace(src, "BAR", "bar.sync 0;", 1), 2, 32, 64, Schedules[1], true)
	f := raceFault(t, err, "in block (1,0,0)")
	if f.Line != lineOf(src, "@%p1 st.global.u32") && f.Line != lineOf(src, "ld.global.u32") {
		t.Fatalf("fault %+v", f)
	}
}

// TestSchedulesRunCleanKernels: a reduction with barriers, shuffles and
// ballots gives the same bits under every schedule, with the race detector
// quiet, and lockstep counts the warp instructions issued: one per step,
// divergent branches included.
func TestSchedulesRunCleanKernels(t *testing.T) {
	src := `
.visible .entry k(.param .u64 k_p)
{
	.reg .pred %p<4>;
	.reg .b32 %r<16>;
	.reg .f32 %f<8>;
	.reg .b64 %rd<8>;
	.shared .align 4 .b8 part[32];
	ld.param.u64 %rd1, [k_p];
	mov.u32 %r1, %tid.x;
	and.b32 %r2, %r1, 31;
	shr.u32 %r3, %r1, 5;
	cvt.rn.f32.u32 %f1, %r1;
	mul.rn.f32 %f1, %f1, 0f3DCCCCCD;
	shfl.sync.bfly.b32 %r4, %f1, 16, 31, -1;
	mov.b32 %f2, %r4;
	add.rn.f32 %f1, %f1, %f2;
	shfl.sync.bfly.b32 %r4, %f1, 8, 31, -1;
	mov.b32 %f2, %r4;
	add.rn.f32 %f1, %f1, %f2;
	setp.ne.u32 %p1, %r2, 0;
	mul.wide.u32 %rd2, %r3, 4;
	mov.u64 %rd3, part;
	add.s64 %rd4, %rd3, %rd2;
	@%p1 bra $L__skip;
	st.shared.f32 [%rd4], %f1;
$L__skip:
	bar.sync 0;
	setp.ne.u32 %p2, %r1, 0;
	@%p2 bra $L__out;
	mov.f32 %f3, 0f00000000;
	mov.u32 %r5, 0;
$L__loop:
	mul.wide.u32 %rd5, %r5, 4;
	add.s64 %rd6, %rd3, %rd5;
	ld.shared.f32 %f4, [%rd6];
	add.rn.f32 %f3, %f3, %f4;
	add.s32 %r5, %r5, 1;
	setp.lt.u32 %p3, %r5, 8;
	@%p3 bra $L__loop;
	mov.u32 %r6, %ctaid.x;
	mul.wide.u32 %rd7, %r6, 4;
	add.s64 %rd7, %rd1, %rd7;
	st.global.f32 [%rd7], %f3;
$L__out:
	ret;
}
`
	var want []byte
	var thread uint64
	for _, s := range Schedules {
		out, st, err := runSched(t, src, 3, 256, 3, s, true)
		if err != nil {
			t.Fatalf("%v: %v", s, err)
		}
		if want == nil {
			want, thread = out, st.Instructions
		} else if !bytes.Equal(out, want) || st.Instructions != thread {
			t.Fatalf("%v: output %x (%d instructions), first schedule %x (%d)", s, out, st.Instructions, want, thread)
		}
		if s.Lanes == Lockstep {
			// per block: 8 warps x 19 steps up to the barrier (lane 0's
			// store is a step of its own), then warps 1..7 take 3 (setp,
			// bra, ret), warp 0 2 + 2 + 8 turns of 7 + 4 (the store and
			// its address) + 1 (ret, where lanes 1..31 wait)
			perBlock := uint64(8*19 + 7*3 + 2 + 2 + 8*7 + 4 + 1)
			if st.WarpInstructions != 3*perBlock {
				t.Fatalf("lockstep: %d warp instructions, want %d", st.WarpInstructions, 3*perBlock)
			}
		} else if st.WarpInstructions != 0 {
			t.Fatalf("%v counts %d warp instructions", s, st.WarpInstructions)
		}
	}
}

// TestMatchAny: match.any.sync gives each lane the mask of the lanes of its
// member mask holding the same value.
func TestMatchAny(t *testing.T) {
	src := `
.visible .entry k(.param .u64 k_p)
{
	.reg .b32 %r<8>;
	.reg .b64 %rd<8>;
	ld.param.u64 %rd1, [k_p];
	mov.u32 %r1, %tid.x;
	rem.u32 %r2, %r1, 3;
	match.any.sync.b32 %r3, %r2, -1;
	mul.wide.u32 %rd2, %r1, 4;
	add.s64 %rd3, %rd1, %rd2;
	st.global.u32 [%rd3], %r3;
	ret;
}
`
	for _, s := range Schedules {
		out, _, err := runSched(t, src, 1, 32, 32, s, true)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 32; i++ {
			var want uint32
			for j := 0; j < 32; j++ {
				if j%3 == i%3 {
					want |= 1 << j
				}
			}
			if got := binary.LittleEndian.Uint32(out[4*i:]); got != want {
				t.Fatalf("%v: lane %d: %#x, want %#x", s, i, got, want)
			}
		}
	}
}

// TestEx2ApproxBound: the model of ex2.approx stays within 2 ulp of 2^a
// (float64), uses the whole range of that bound, and is exact for integers.
func TestEx2ApproxBound(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	seen := map[int]bool{}
	for i := 0; i < 100000; i++ {
		a := float32(r.Float64()*200 - 120)
		got := ex2Approx(a)
		exact := math.Exp2(float64(a))
		ulp := float64(math.Nextafter32(float32(exact), float32(math.Inf(1))) - float32(exact))
		d := (float64(got) - exact) / ulp
		if math.Abs(d) > 2.5 {
			t.Fatalf("ex2(%v) = %v, 2^a = %v: %.2f ulp", a, got, exact, d)
		}
		seen[int(math.Round(d))] = true
	}
	if len(seen) < 5 {
		t.Fatalf("errors seen %v, want -2..2", seen)
	}
	for _, a := range []float32{0, 1, -1, 10, -126, 127} {
		if got := ex2Approx(a); float64(got) != math.Exp2(float64(a)) {
			t.Fatalf("ex2(%v) = %v", a, got)
		}
	}
	if got := ex2Approx(float32(math.Inf(-1))); got != 0 {
		t.Fatalf("ex2(-Inf) = %v", got)
	}
}
