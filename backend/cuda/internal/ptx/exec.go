package ptx

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"unsafe"
)

// Memory is the device's global memory: Region returns the allocation that
// holds addr, as its base address and its bytes.
type Memory interface {
	Region(addr uint64) (base uint64, data []byte, ok bool)
}

// Launch describes one kernel launch.
type Launch struct {
	Grid, Block [3]int
	SharedBytes int      // dynamic shared memory
	Params      [][]byte // one per parameter, of the parameter's size
	// Schedule is the order the threads and blocks run in (the zero value:
	// blocks and warps forward, each thread alone to its next
	// synchronisation point).
	Schedule Schedule
	// Races, when not nil, turns the race detector on: shared memory per
	// barrier interval within each block, global memory across the blocks
	// and intervals of the launch (see Races).
	Races *Races
	// Sectors counts the distinct 32-byte sectors of global memory the
	// launch touched (Stats.Sectors): the least it moves from DRAM.
	Sectors bool
}

// Stats counts what a launch executed.
type Stats struct {
	Instructions uint64 // thread-instructions (predicated-off ones included)
	// WarpInstructions counts warp instructions issued: one per step of a
	// warp in the Lockstep schedule (0 in the others).
	WarpInstructions uint64
	// GlobalBytes counts the bytes of global memory the threads loaded and
	// stored (atomics count once), each thread's access separately.
	GlobalBytes uint64
	// Sectors is the number of distinct 32-byte sectors of global memory
	// touched, with Launch.Sectors (0 otherwise).
	Sectors uint64
}

// Fault is an error found while running a kernel: the memcheck classes
// (out of bounds, misaligned, uninitialised register, barrier) and others.
type Fault struct {
	Kernel        string
	Line          int    // PTX line, 0 if none
	Text          string // the instruction
	Block, Thread [3]int
	Class         string // "out of bounds", "misaligned", "uninitialized register", "barrier", "warp sync", "fault"
	Msg           string
}

// Error names the class, kernel, PTX line and instruction, block and thread.
func (f *Fault) Error() string {
	return fmt.Sprintf("ptx: %s: %s: line %d (%s), block (%d,%d,%d) thread (%d,%d,%d): %s",
		f.Kernel, f.Class, f.Line, f.Text, f.Block[0], f.Block[1], f.Block[2], f.Thread[0], f.Thread[1], f.Thread[2], f.Msg)
}

// MaxBranches bounds the branches a launch may take, so that a kernel that
// never ends fails instead of hanging the tests.
var MaxBranches int64 = 1 << 31

const maxStaticShared = 48 << 10

const (
	stRun uint8 = iota
	stBar
	stWarp
	stExit
)

type region struct {
	lo, hi uint64
	data   []byte
}

type exec struct {
	k           *Kernel
	mem         Memory
	params      []byte
	grid, block [3]int
	ctaid       [3]int
	nthreads, n int
	regs        []uint64
	valid       []byte
	pc          []int32
	state       []uint8
	shared      [][]byte
	cache       []region
	hits        []uint64
	branches    int64
	initR       []uint64
	initV       []byte

	sched      Schedule
	rng        *rand.Rand
	race       *raceState // nil: race detector off
	gcache     gcacheEntry
	warpIssues uint64
	gbytes     uint64
	runnable   []int               // Interleaved: the threads that may run
	blockOrder []int               // linear block indices in the order they run
	sectors    map[uint64][]uint64 // Launch.Sectors: per allocation, a bit per 32-byte sector touched
}

// Run executes one launch of k over mem. It returns the first fault.
//
// A launch runs on the caller's goroutine alone, over memory the caller owns
// for its duration, so the interpreter's functions are marked go:norace:
// the race detector then checks the code that calls it (the fake device and
// the backend's threads) at a tolerable cost instead of every emulated load.
func (k *Kernel) Run(mem Memory, l Launch) (Stats, error) {
	x := &exec{k: k, mem: mem, grid: l.Grid, block: l.Block}
	for i := 0; i < 3; i++ {
		if l.Grid[i] <= 0 || l.Block[i] <= 0 {
			return Stats{}, fmt.Errorf("ptx: %s: empty grid %v or block %v", k.Name, l.Grid, l.Block)
		}
	}
	x.nthreads = l.Block[0] * l.Block[1] * l.Block[2]
	if x.nthreads > 1024 {
		return Stats{}, fmt.Errorf("ptx: %s: block %v has more than 1024 threads", k.Name, l.Block)
	}
	if k.maxTid > 0 && x.nthreads > k.maxTid {
		return Stats{}, fmt.Errorf("ptx: %s: block of %d threads, the kernel allows %d (.maxntid)", k.Name, x.nthreads, k.maxTid)
	}
	if len(l.Params) != len(k.params) {
		return Stats{}, fmt.Errorf("ptx: %s: %d parameters, the kernel has %d", k.Name, len(l.Params), len(k.params))
	}
	size := 0
	if n := len(k.params); n > 0 {
		size = k.params[n-1].offset + k.params[n-1].siz
	}
	x.params = make([]byte, size)
	for i, p := range k.params {
		if len(l.Params[i]) != p.siz {
			return Stats{}, fmt.Errorf("ptx: %s: parameter %d (%s) has %d bytes, want %d", k.Name, i, p.name, len(l.Params[i]), p.siz)
		}
		copy(x.params[p.offset:], l.Params[i])
	}
	// shared memory: one slice per variable, poisoned at each block start
	static := 0
	for i, v := range k.shared {
		sz := v.size
		if i == k.dynIdx {
			sz = l.SharedBytes
		} else {
			static += sz
		}
		x.shared = append(x.shared, make([]byte, sz))
	}
	if static > maxStaticShared {
		return Stats{}, fmt.Errorf("ptx: %s: %d bytes of static shared memory, more than 48 KiB", k.Name, static)
	}
	x.n = k.nregs
	x.regs, x.valid = getFile(x.nthreads*x.n + 1<<16)
	defer putFile(x.regs, x.valid)
	x.pc = make([]int32, x.nthreads)
	x.state = make([]uint8, x.nthreads)
	x.cache = make([]region, k.nmem)
	x.hits = make([]uint64, len(k.code))
	x.initR = k.consts
	x.initV = make([]byte, x.n)
	for i, c := range k.constValid {
		if c {
			x.initV[i] = 1
		}
	}
	if l.Sectors {
		x.sectors = map[uint64][]uint64{}
	}
	x.sched = l.Schedule
	x.rng = rand.New(rand.NewPCG(l.Schedule.Seed, 0x9e3779b97f4a7c15))
	nblocks := l.Grid[0] * l.Grid[1] * l.Grid[2]
	if l.Races != nil {
		x.newRaceState(l.Races, nblocks)
	}
	var err error
	x.blockOrder = order(l.Schedule.Blocks, nblocks, x.rng)
	for i, b := range x.blockOrder {
		x.ctaid = [3]int{b % l.Grid[0], b / l.Grid[0] % l.Grid[1], b / (l.Grid[0] * l.Grid[1])}
		if x.race != nil {
			x.race.serial = x.race.firstSerial + uint32(i)
		}
		if err = x.runBlock(); err != nil {
			break
		}
	}
	st := Stats{WarpInstructions: x.warpIssues, GlobalBytes: x.gbytes}
	for _, b := range x.sectors {
		for _, w := range b {
			st.Sectors += uint64(bits.OnesCount64(w))
		}
	}
	for _, h := range x.hits {
		st.Instructions += h
	}
	k.cov.add(x.hits)
	return st, err
}

func (x *exec) fault(t int, pc int32, class, format string, args ...any) error {
	f := &Fault{Kernel: x.k.Name, Block: x.ctaid, Class: class, Msg: fmt.Sprintf(format, args...)}
	if t >= 0 {
		f.Thread = x.tid(t)
	}
	if pc >= 0 && int(pc) < len(x.k.code) {
		f.Line, f.Text = int(x.k.code[pc].line), x.k.code[pc].text
	}
	return f
}

func (x *exec) tid(t int) [3]int {
	return [3]int{t % x.block[0], t / x.block[0] % x.block[1], t / (x.block[0] * x.block[1])}
}

//go:norace
func (x *exec) runBlock() error {
	n := x.n
	for t := 0; t < x.nthreads; t++ {
		r := x.regs[t*n : t*n+n]
		copy(r, x.initR)
		copy(x.valid[t*n:t*n+n], x.initV)
		tid := x.tid(t)
		lane := t % 32
		for _, s := range x.k.special {
			var v uint64
			switch s.kind {
			case "tid.x", "tid.y", "tid.z":
				v = uint64(tid[s.kind[4]-'x'])
			case "ntid.x", "ntid.y", "ntid.z":
				v = uint64(x.block[s.kind[5]-'x'])
			case "ctaid.x", "ctaid.y", "ctaid.z":
				v = uint64(x.ctaid[s.kind[6]-'x'])
			case "nctaid.x", "nctaid.y", "nctaid.z":
				v = uint64(x.grid[s.kind[7]-'x'])
			case "laneid":
				v = uint64(lane)
			case "warpid":
				v = uint64(t / 32)
			case "nwarpid":
				v = 64
			case "warpsize":
				v = 32
			case "lanemask_lt":
				v = uint64(uint32(1)<<lane - 1)
			case "lanemask_le":
				v = uint64(uint32(2)<<lane - 1)
			case "lanemask_eq":
				v = uint64(uint32(1) << lane)
			case "lanemask_gt":
				v = uint64(^(uint32(2)<<lane - 1))
			case "lanemask_ge":
				v = uint64(^(uint32(1)<<lane - 1))
			}
			r[s.slot] = v
		}
		x.pc[t] = 0
		x.state[t] = stRun
	}
	for _, s := range x.shared {
		for i := range s {
			s[i] = 0xff // poison: reads before writes see NaN
		}
	}
	if x.race != nil {
		x.race.epoch++
		x.race.interval = 0
	}
	nwarps := (x.nthreads + 31) / 32
	for {
		var err error
		switch x.sched.Lanes {
		case Serial:
			err = x.runSerial(nwarps)
		case Lockstep:
			err = x.runLockstep(nwarps)
		default:
			err = x.runInterleaved()
		}
		if err != nil {
			return err
		}
		atBar, exited := 0, -1
		barPC := int32(-1)
		for t := 0; t < x.nthreads; t++ {
			switch x.state[t] {
			case stBar:
				if barPC >= 0 && x.pc[t] != barPC {
					return x.fault(t, x.pc[t], "barrier", "threads wait at different barriers (this one and line %d)", x.k.code[barPC].line)
				}
				barPC = x.pc[t]
				atBar++
			case stExit:
				if exited < 0 {
					exited = t
				}
			}
		}
		if atBar == 0 {
			return nil
		}
		if atBar < x.nthreads {
			e := x.tid(exited)
			return x.fault(-1, barPC, "barrier", "bar.sync reached by %d of %d threads of the block; thread (%d,%d,%d) exited at line %d",
				atBar, x.nthreads, e[0], e[1], e[2], x.k.code[x.pc[exited]].line)
		}
		for t := 0; t < x.nthreads; t++ {
			x.pc[t]++
			x.state[t] = stRun
		}
		if x.race != nil {
			x.race.epoch++
			x.race.interval++
		}
	}
}

// runSerial runs, warp after warp in the schedule's order, each runnable
// thread alone to its next synchronisation point (lanes in the same
// direction), until every thread of the block waits at a barrier or has
// exited.
//
//go:norace
func (x *exec) runSerial(nwarps int) error {
	for _, w := range order(x.sched.Warps, nwarps, x.rng) {
		lo, hi := w*32, min(w*32+32, x.nthreads)
		lanes := order(x.sched.Warps, hi-lo, x.rng)
		for {
			for _, l := range lanes {
				if t := lo + l; x.state[t] == stRun {
					if err := x.run(t, math.MaxInt); err != nil {
						return err
					}
				}
			}
			ok, err := x.resolveWarp(lo, hi)
			if err != nil {
				return err
			}
			if !ok {
				break
			}
		}
	}
	return nil
}

// runLockstep steps each warp, in the schedule's order, as SIMT hardware
// does: the runnable lanes whose next instruction has the lowest address
// execute it, one instruction each, and that is one warp instruction
// issued. Lanes that branched ahead wait for the others, so the warp
// reconverges after structured branches.
//
//go:norace
func (x *exec) runLockstep(nwarps int) error {
	for _, w := range order(x.sched.Warps, nwarps, x.rng) {
		lo, hi := w*32, min(w*32+32, x.nthreads)
		for {
			minPC := int32(math.MaxInt32)
			for t := lo; t < hi; t++ {
				if x.state[t] == stRun && x.pc[t] < minPC {
					minPC = x.pc[t]
				}
			}
			if minPC == math.MaxInt32 {
				ok, err := x.resolveWarp(lo, hi)
				if err != nil {
					return err
				}
				if !ok {
					break
				}
				continue
			}
			x.warpIssues++
			for t := lo; t < hi; t++ {
				if x.state[t] == stRun && x.pc[t] == minPC {
					if err := x.run(t, 1); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// runInterleaved runs a seeded-random runnable thread of the block for a
// random 1..16 instructions at a time, resolving a warp-synchronous
// instruction once its lanes all wait, until every thread waits at a
// barrier or has exited.
//
//go:norace
func (x *exec) runInterleaved() error {
	x.runnable = x.runnable[:0]
	for t := 0; t < x.nthreads; t++ {
		if x.state[t] == stRun {
			x.runnable = append(x.runnable, t)
		}
	}
	for len(x.runnable) > 0 {
		i := x.rng.IntN(len(x.runnable))
		t := x.runnable[i]
		if err := x.run(t, 1+x.rng.IntN(16)); err != nil {
			return err
		}
		if x.state[t] == stRun {
			continue
		}
		last := len(x.runnable) - 1
		x.runnable[i] = x.runnable[last]
		x.runnable = x.runnable[:last]
		// Once no lane of t's warp can run, a warp-synchronous
		// instruction its lanes wait at resolves (or is a fault).
		lo, hi := t/32*32, min(t/32*32+32, x.nthreads)
		if slices.Contains(x.state[lo:hi], stRun) {
			continue
		}
		ok, err := x.resolveWarp(lo, hi)
		if err != nil {
			return err
		}
		if ok {
			for u := lo; u < hi; u++ {
				if x.state[u] == stRun {
					x.runnable = append(x.runnable, u)
				}
			}
		}
	}
	return nil
}

// resolveWarp performs the warp-synchronous instruction that lanes of the
// warp [lo, hi) wait at, once every lane of its member mask is there.
//
//go:norace
func (x *exec) resolveWarp(lo, hi int) (bool, error) {
	first := -1
	for t := lo; t < hi; t++ {
		if x.state[t] == stWarp {
			first = t
			break
		}
	}
	if first < 0 {
		return false, nil
	}
	n := x.n
	pc := x.pc[first]
	in := &x.k.code[pc]
	mslot := in.e
	if in.op == opBarWarp {
		mslot = in.a
	}
	if x.valid[first*n+int(mslot)] == 0 {
		return false, x.fault(first, pc, "uninitialized register", "the member mask was never written")
	}
	mask := uint32(x.regs[first*n+int(mslot)])
	if mask>>(first-lo)&1 == 0 {
		return false, x.fault(first, pc, "warp sync", "member mask %#x does not include the lane itself", mask)
	}
	for l := 0; l < 32; l++ {
		if mask>>l&1 == 0 {
			continue
		}
		t := lo + l
		if t >= hi {
			return false, x.fault(first, pc, "warp sync", "member mask %#x names lane %d, which the block does not have", mask, l)
		}
		if x.state[t] != stWarp || x.pc[t] != pc {
			where := map[uint8]string{stBar: "waits at bar.sync", stExit: "exited", stWarp: "waits at another warp-synchronous instruction"}[x.state[t]]
			return false, x.fault(first, pc, "warp sync", "lane %d of the member mask %#x %s at line %d", l, mask, where, x.k.code[x.pc[t]].line)
		}
		if uint32(x.regs[t*n+int(mslot)]) != mask {
			return false, x.fault(t, pc, "warp sync", "lanes disagree on the member mask (%#x, %#x)", mask, uint32(x.regs[t*n+int(mslot)]))
		}
	}
	switch in.op {
	case opShfl:
		var vals [32]uint32
		var preds [32]bool
		for l := 0; l < 32; l++ {
			if mask>>l&1 == 0 {
				continue
			}
			r := x.regs[(lo+l)*n:]
			b, c := uint32(r[in.b])&31, uint32(r[in.c])
			seg := (c >> 8) & 31
			maxLane := (uint32(l) & seg) | (c & 31 &^ seg)
			minLane := uint32(l) & seg
			var j int32
			var p bool
			switch in.aux {
			case 0: // up
				j = int32(l) - int32(b)
				p = j >= int32(maxLane)
			case 1: // down
				j = int32(l) + int32(b)
				p = j <= int32(maxLane)
			case 2: // bfly
				j = int32(uint32(l) ^ b)
				p = j <= int32(maxLane)
			case 3: // idx
				j = int32(minLane | (b &^ seg))
				p = j <= int32(maxLane)
			}
			if !p {
				j = int32(l)
			}
			if mask>>j&1 == 0 {
				return false, x.fault(lo+l, pc, "warp sync", "lane %d reads lane %d, outside the member mask %#x", l, j, mask)
			}
			vals[l] = uint32(x.regs[(lo+int(j))*n+int(in.a)])
			preds[l] = p
		}
		for l := 0; l < 32; l++ {
			if mask>>l&1 == 0 {
				continue
			}
			t := lo + l
			x.regs[t*n+int(in.d)] = uint64(vals[l])
			x.valid[t*n+int(in.d)] = 1
			if in.d2 != 0 {
				x.regs[t*n+int(in.d2)] = b2u(preds[l])
				x.valid[t*n+int(in.d2)] = 1
			}
		}
	case opMatch:
		for l := 0; l < 32; l++ {
			if mask>>l&1 == 0 {
				continue
			}
			var same uint32
			v := uint32(x.regs[(lo+l)*n+int(in.a)])
			for m := 0; m < 32; m++ {
				if mask>>m&1 != 0 && uint32(x.regs[(lo+m)*n+int(in.a)]) == v {
					same |= 1 << m
				}
			}
			x.regs[(lo+l)*n+int(in.d)] = uint64(same)
		}
		for l := 0; l < 32; l++ {
			if mask>>l&1 != 0 {
				x.valid[(lo+l)*n+int(in.d)] = 1
			}
		}
	case opBarWarp:
		// bar.warp.sync orders the memory accesses of its lanes.
		if x.race != nil {
			w := lo / 32
			x.race.wgen[w]++
			for l := 0; l < 32; l++ {
				if mask>>l&1 != 0 {
					x.race.lastSync[lo+l] = x.race.wgen[w]
				}
			}
		}
	case opVote:
		var ballot uint32
		for l := 0; l < 32; l++ {
			if mask>>l&1 != 0 && (x.regs[(lo+l)*n+int(in.a)] != 0) != in.cneg {
				ballot |= 1 << l
			}
		}
		var v uint64
		switch in.aux {
		case 0:
			v = uint64(ballot)
		case 1:
			v = b2u(ballot == mask)
		case 2:
			v = b2u(ballot != 0)
		case 3:
			v = b2u(ballot == 0 || ballot == mask)
		}
		for l := 0; l < 32; l++ {
			if mask>>l&1 != 0 {
				x.regs[(lo+l)*n+int(in.d)] = v
				x.valid[(lo+l)*n+int(in.d)] = 1
			}
		}
	}
	for l := 0; l < 32; l++ {
		if mask>>l&1 != 0 {
			x.pc[lo+l]++
			x.state[lo+l] = stRun
		}
	}
	return true, nil
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// access returns the bytes of a size-byte access at addr.
//
//go:norace
func (x *exec) access(t int, pc int32, in *inst, addr uint64, size int, kind uint8) ([]byte, error) {
	if addr%uint64(size) != 0 {
		return nil, x.fault(t, pc, "misaligned", "%d-byte access at %#x", size, addr)
	}
	space := in.aux
	if space == spGeneric {
		space = spGlobal
		if addr >= sharedWindowLo && addr < sharedWindowHi {
			space = spShared
		}
	}
	if space == spShared {
		i := int(addr>>24) - 1
		off := int(addr & (1<<24 - 1))
		if i < 0 || i >= len(x.shared) || off+size > len(x.shared[i]) {
			where := "no shared variable"
			if i >= 0 && i < len(x.shared) {
				where = fmt.Sprintf("byte %d of %s[%d]", off, x.k.shared[i].name, len(x.shared[i]))
			}
			return nil, x.fault(t, pc, "out of bounds", "%d-byte shared access at %#x: %s", size, addr, where)
		}
		if x.race != nil {
			if err := x.raceShared(t, pc, kind, i, off, size); err != nil {
				return nil, err
			}
		}
		return x.shared[i][off : off+size], nil
	}
	x.gbytes += uint64(size)
	c := &x.cache[in.mem]
	if addr >= c.lo && addr+uint64(size) <= c.hi {
		if x.sectors != nil {
			x.touch(c.lo, len(c.data), addr, size)
		}
		if x.race != nil {
			if err := x.raceGlobal(t, pc, kind, c.lo, c.data, int(addr-c.lo), size); err != nil {
				return nil, err
			}
		}
		return c.data[addr-c.lo : addr-c.lo+uint64(size)], nil
	}
	base, data, ok := x.mem.Region(addr)
	if !ok || addr+uint64(size) > base+uint64(len(data)) {
		msg := "outside every allocation"
		if ok {
			msg = fmt.Sprintf("past the end of the allocation at %#x of %d bytes", base, len(data))
		}
		return nil, x.fault(t, pc, "out of bounds", "%d-byte global access at %#x: %s", size, addr, msg)
	}
	*c = region{base, base + uint64(len(data)), data}
	if x.sectors != nil {
		x.touch(base, len(data), addr, size)
	}
	if x.race != nil {
		if err := x.raceGlobal(t, pc, kind, base, data, int(addr-base), size); err != nil {
			return nil, err
		}
	}
	return data[addr-base : addr-base+uint64(size)], nil
}

// touch marks the 32-byte sectors of an access to global memory, in the
// allocation at base of n bytes.
func (x *exec) touch(base uint64, n int, addr uint64, size int) {
	b := x.sectors[base]
	if b == nil {
		b = make([]uint64, (n+32*64-1)/(32*64))
		x.sectors[base] = b
	}
	for s := (addr - base) / 32; s <= (addr-base+uint64(size)-1)/32; s++ {
		b[s/64] |= 1 << (s % 64)
	}
}

func f32(u uint64) float32  { return math.Float32frombits(uint32(u)) }
func f32u(f float32) uint64 { return uint64(math.Float32bits(f)) }
func f64(u uint64) float64  { return math.Float64frombits(u) }
func f64u(f float64) uint64 { return math.Float64bits(f) }

// ftz flushes a float32 subnormal to a zero of the same sign.
func ftz(f float32) float32 {
	if b := math.Float32bits(f); b&0x7f800000 == 0 {
		return math.Float32frombits(b & 0x80000000)
	}
	return f
}

func (x *exec) uninit(t int, pc int32, in *inst, v []byte) error {
	var bad []string
	seen := map[int32]bool{}
	for _, s := range []int32{in.a, in.b, in.c} {
		if v[s] == 0 && !seen[s] {
			seen[s] = true
			bad = append(bad, x.k.operandName(in, s))
		}
	}
	if in.guard != 0 && v[in.guard] == 0 {
		bad = append(bad, "the guard predicate")
	}
	for _, s := range in.vec {
		if in.op == opSt && v[s] == 0 {
			bad = append(bad, x.k.operandName(in, s))
		}
	}
	return x.fault(t, pc, "uninitialized register", "read of %s, never written", strings.Join(bad, ", "))
}

// operandName names a register slot by the instruction's operand text.
func (k *Kernel) operandName(in *inst, s int32) string {
	if k.slotName != nil {
		if n, ok := k.slotName[s]; ok {
			return n
		}
	}
	return fmt.Sprintf("register slot %d", s)
}

// run executes thread t from its saved pc until it waits (a barrier, a
// warp-synchronous instruction), exits, or has executed budget
// instructions.
//
//go:norace
func (x *exec) run(t int, budget int) error {
	n := x.n
	r := x.regs[t*n : t*n+n]
	v := x.valid[t*n : t*n+n]
	// Slot indices were checked at decode (< nregs <= 1<<16) and the
	// register file has 1<<16 slots of padding past the last thread, so
	// the hot path indexes without bounds checks.
	R := (*[1 << 16]uint64)(unsafe.Pointer(&x.regs[t*n]))
	V := (*[1 << 16]byte)(unsafe.Pointer(&x.valid[t*n]))
	pc := x.pc[t]
	code := x.k.code
	hits := x.hits
	for ; ; budget-- {
		if budget == 0 {
			x.pc[t] = pc
			return nil
		}
		in := &code[pc]
		hits[pc]++
		if in.guard != 0 {
			if V[uint16(in.guard)] == 0 {
				return x.uninit(t, pc, in, v)
			}
			if (R[uint16(in.guard)] != 0) == in.gneg {
				pc++
				continue
			}
		}
		if V[uint16(in.a)]&V[uint16(in.b)]&V[uint16(in.c)] == 0 {
			return x.uninit(t, pc, in, v)
		}
		switch in.op {
		case opNop:
		case opAdd16:
			R[uint16(in.d)] = uint64(uint16(R[uint16(in.a)]) + uint16(R[uint16(in.b)]))
		case opSub16:
			R[uint16(in.d)] = uint64(uint16(R[uint16(in.a)]) - uint16(R[uint16(in.b)]))
		case opAdd32:
			R[uint16(in.d)] = uint64(uint32(R[uint16(in.a)]) + uint32(R[uint16(in.b)]))
		case opSub32:
			R[uint16(in.d)] = uint64(uint32(R[uint16(in.a)]) - uint32(R[uint16(in.b)]))
		case opMulLo32:
			R[uint16(in.d)] = uint64(uint32(R[uint16(in.a)]) * uint32(R[uint16(in.b)]))
		case opMulHiS32:
			R[uint16(in.d)] = uint64(uint32(uint64(int64(int32(R[uint16(in.a)]))*int64(int32(R[uint16(in.b)]))) >> 32))
		case opMulHiU32:
			R[uint16(in.d)] = (R[uint16(in.a)] & 0xffffffff) * (R[uint16(in.b)] & 0xffffffff) >> 32
		case opMulWideS32:
			R[uint16(in.d)] = uint64(int64(int32(R[uint16(in.a)])) * int64(int32(R[uint16(in.b)])))
		case opMulWideU32:
			R[uint16(in.d)] = (R[uint16(in.a)] & 0xffffffff) * (R[uint16(in.b)] & 0xffffffff)
		case opMadLo32:
			R[uint16(in.d)] = uint64(uint32(R[uint16(in.a)])*uint32(R[uint16(in.b)]) + uint32(R[uint16(in.c)]))
		case opMadWideS32:
			R[uint16(in.d)] = uint64(int64(int32(R[uint16(in.a)]))*int64(int32(R[uint16(in.b)]))) + R[uint16(in.c)]
		case opMadWideU32:
			R[uint16(in.d)] = (R[uint16(in.a)]&0xffffffff)*(R[uint16(in.b)]&0xffffffff) + R[uint16(in.c)]
		case opDivS32, opDivU32, opRemS32, opRemU32:
			if uint32(R[uint16(in.b)]) == 0 {
				return x.fault(t, pc, "fault", "integer division by zero")
			}
			a, b := uint32(R[uint16(in.a)]), uint32(R[uint16(in.b)])
			switch in.op {
			case opDivS32:
				R[uint16(in.d)] = uint64(uint32(int32(a) / int32(b)))
			case opDivU32:
				R[uint16(in.d)] = uint64(a / b)
			case opRemS32:
				R[uint16(in.d)] = uint64(uint32(int32(a) % int32(b)))
			case opRemU32:
				R[uint16(in.d)] = uint64(a % b)
			}
		case opMinS32:
			R[uint16(in.d)] = uint64(uint32(min(int32(R[uint16(in.a)]), int32(R[uint16(in.b)]))))
		case opMaxS32:
			R[uint16(in.d)] = uint64(uint32(max(int32(R[uint16(in.a)]), int32(R[uint16(in.b)]))))
		case opMinU32:
			R[uint16(in.d)] = uint64(min(uint32(R[uint16(in.a)]), uint32(R[uint16(in.b)])))
		case opMaxU32:
			R[uint16(in.d)] = uint64(max(uint32(R[uint16(in.a)]), uint32(R[uint16(in.b)])))
		case opAnd32:
			R[uint16(in.d)] = uint64(uint32(R[uint16(in.a)] & R[uint16(in.b)]))
		case opOr32:
			R[uint16(in.d)] = uint64(uint32(R[uint16(in.a)] | R[uint16(in.b)]))
		case opXor32:
			R[uint16(in.d)] = uint64(uint32(R[uint16(in.a)] ^ R[uint16(in.b)]))
		case opNot32:
			R[uint16(in.d)] = uint64(^uint32(R[uint16(in.a)]))
		case opNot16:
			R[uint16(in.d)] = uint64(^uint16(R[uint16(in.a)]))
		case opNeg32:
			R[uint16(in.d)] = uint64(-uint32(R[uint16(in.a)]))
		case opAbs32:
			a := int32(R[uint16(in.a)])
			if a < 0 {
				a = -a
			}
			R[uint16(in.d)] = uint64(uint32(a))
		case opShl32:
			if s := uint32(R[uint16(in.b)]); s < 32 {
				R[uint16(in.d)] = uint64(uint32(R[uint16(in.a)]) << s)
			} else {
				R[uint16(in.d)] = 0
			}
		case opShrU32:
			if s := uint32(R[uint16(in.b)]); s < 32 {
				R[uint16(in.d)] = uint64(uint32(R[uint16(in.a)]) >> s)
			} else {
				R[uint16(in.d)] = 0
			}
		case opShrS32:
			s := min(uint32(R[uint16(in.b)]), 31)
			R[uint16(in.d)] = uint64(uint32(int32(R[uint16(in.a)]) >> s))
		case opPopc32:
			R[uint16(in.d)] = uint64(bits.OnesCount32(uint32(R[uint16(in.a)])))
		case opClz32:
			R[uint16(in.d)] = uint64(bits.LeadingZeros32(uint32(R[uint16(in.a)])))
		case opBrev32:
			R[uint16(in.d)] = uint64(bits.Reverse32(uint32(R[uint16(in.a)])))
		case opBfeU32, opBfeS32:
			a, pos, ln := uint32(R[uint16(in.a)]), uint32(R[uint16(in.b)])&0xff, uint32(R[uint16(in.c)])&0xff
			var res uint32
			if ln > 0 {
				sbit := a >> 31
				if pos+ln-1 < 32 {
					sbit = a >> (pos + ln - 1) & 1
				}
				for i := uint32(0); i < 32; i++ {
					var bit uint32
					if i < ln && pos+i < 32 {
						bit = a >> (pos + i) & 1
					} else if i >= ln && in.op == opBfeS32 {
						bit = sbit
					}
					res |= bit << i
				}
			}
			R[uint16(in.d)] = uint64(res)
		case opAdd64:
			R[uint16(in.d)] = R[uint16(in.a)] + R[uint16(in.b)]
		case opSub64:
			R[uint16(in.d)] = R[uint16(in.a)] - R[uint16(in.b)]
		case opMulLo64:
			R[uint16(in.d)] = R[uint16(in.a)] * R[uint16(in.b)]
		case opMadLo64:
			R[uint16(in.d)] = R[uint16(in.a)]*R[uint16(in.b)] + R[uint16(in.c)]
		case opDivS64, opDivU64, opRemS64, opRemU64:
			a, b := R[uint16(in.a)], R[uint16(in.b)]
			if b == 0 {
				return x.fault(t, pc, "fault", "integer division by zero")
			}
			switch in.op {
			case opDivS64:
				R[uint16(in.d)] = uint64(int64(a) / int64(b))
			case opDivU64:
				R[uint16(in.d)] = a / b
			case opRemS64:
				R[uint16(in.d)] = uint64(int64(a) % int64(b))
			case opRemU64:
				R[uint16(in.d)] = a % b
			}
		case opMinS64:
			R[uint16(in.d)] = uint64(min(int64(R[uint16(in.a)]), int64(R[uint16(in.b)])))
		case opMaxS64:
			R[uint16(in.d)] = uint64(max(int64(R[uint16(in.a)]), int64(R[uint16(in.b)])))
		case opMinU64:
			R[uint16(in.d)] = min(R[uint16(in.a)], R[uint16(in.b)])
		case opMaxU64:
			R[uint16(in.d)] = max(R[uint16(in.a)], R[uint16(in.b)])
		case opAnd64:
			R[uint16(in.d)] = R[uint16(in.a)] & R[uint16(in.b)]
		case opOr64:
			R[uint16(in.d)] = R[uint16(in.a)] | R[uint16(in.b)]
		case opXor64:
			R[uint16(in.d)] = R[uint16(in.a)] ^ R[uint16(in.b)]
		case opNot64:
			R[uint16(in.d)] = ^R[uint16(in.a)]
		case opNeg64:
			R[uint16(in.d)] = -R[uint16(in.a)]
		case opShl64:
			if s := uint32(R[uint16(in.b)]); s < 64 {
				R[uint16(in.d)] = R[uint16(in.a)] << s
			} else {
				R[uint16(in.d)] = 0
			}
		case opShrU64:
			if s := uint32(R[uint16(in.b)]); s < 64 {
				R[uint16(in.d)] = R[uint16(in.a)] >> s
			} else {
				R[uint16(in.d)] = 0
			}
		case opShrS64:
			s := min(uint32(R[uint16(in.b)]), 63)
			R[uint16(in.d)] = uint64(int64(R[uint16(in.a)]) >> s)
		case opPopc64:
			R[uint16(in.d)] = uint64(bits.OnesCount64(R[uint16(in.a)]))
		case opClz64:
			R[uint16(in.d)] = uint64(bits.LeadingZeros64(R[uint16(in.a)]))
		case opAndPred:
			R[uint16(in.d)] = R[uint16(in.a)] & R[uint16(in.b)]
		case opOrPred:
			R[uint16(in.d)] = R[uint16(in.a)] | R[uint16(in.b)]
		case opXorPred:
			R[uint16(in.d)] = R[uint16(in.a)] ^ R[uint16(in.b)]
		case opNotPred:
			R[uint16(in.d)] = R[uint16(in.a)] ^ 1
		case opAddF32, opSubF32, opMulF32, opDivF32, opMinF32, opMaxF32:
			a, b := f32(R[uint16(in.a)]), f32(R[uint16(in.b)])
			if in.ftz {
				a, b = ftz(a), ftz(b)
			}
			var res float32
			switch in.op {
			case opAddF32:
				res = float32(a + b)
			case opSubF32:
				res = float32(a - b)
			case opMulF32:
				res = float32(a * b)
			case opDivF32:
				res = float32(a / b)
			case opMinF32:
				res = minF32(a, b)
			case opMaxF32:
				res = maxF32(a, b)
			}
			if in.ftz {
				res = ftz(res)
			}
			R[uint16(in.d)] = f32u(res)
		case opFmaF32:
			a, b, c := f32(R[uint16(in.a)]), f32(R[uint16(in.b)]), f32(R[uint16(in.c)])
			if in.ftz {
				a, b, c = ftz(a), ftz(b), ftz(c)
			}
			res := fma32(a, b, c)
			if in.ftz {
				res = ftz(res)
			}
			R[uint16(in.d)] = f32u(res)
		case opNegF32:
			R[uint16(in.d)] = uint64(uint32(R[uint16(in.a)]) ^ 0x80000000)
			if in.ftz {
				R[uint16(in.d)] = f32u(ftz(f32(R[uint16(in.d)])))
			}
		case opAbsF32:
			R[uint16(in.d)] = uint64(uint32(R[uint16(in.a)]) &^ 0x80000000)
			if in.ftz {
				R[uint16(in.d)] = f32u(ftz(f32(R[uint16(in.d)])))
			}
		case opRcpF32, opSqrtF32, opRsqrtF32, opEx2F32, opLg2F32:
			a := f32(R[uint16(in.a)])
			if in.ftz {
				a = ftz(a)
			}
			var res float32
			switch in.op {
			case opRcpF32:
				res = float32(1 / a)
			case opSqrtF32:
				res = float32(math.Sqrt(float64(a)))
			case opRsqrtF32:
				res = float32(1 / math.Sqrt(float64(a)))
			case opEx2F32:
				res = ex2Approx(a)
			case opLg2F32:
				res = float32(math.Log2(float64(a)))
			}
			if in.ftz {
				res = ftz(res)
			}
			R[uint16(in.d)] = f32u(res)
		case opAddF64:
			R[uint16(in.d)] = f64u(float64(f64(R[uint16(in.a)]) + f64(R[uint16(in.b)])))
		case opSubF64:
			R[uint16(in.d)] = f64u(float64(f64(R[uint16(in.a)]) - f64(R[uint16(in.b)])))
		case opMulF64:
			R[uint16(in.d)] = f64u(float64(f64(R[uint16(in.a)]) * f64(R[uint16(in.b)])))
		case opDivF64:
			R[uint16(in.d)] = f64u(float64(f64(R[uint16(in.a)]) / f64(R[uint16(in.b)])))
		case opFmaF64:
			R[uint16(in.d)] = f64u(math.FMA(f64(R[uint16(in.a)]), f64(R[uint16(in.b)]), f64(R[uint16(in.c)])))
		case opNegF64:
			R[uint16(in.d)] = R[uint16(in.a)] ^ 1<<63
		case opAbsF64:
			R[uint16(in.d)] = R[uint16(in.a)] &^ (1 << 63)
		case opMinF64:
			R[uint16(in.d)] = f64u(minF64(f64(R[uint16(in.a)]), f64(R[uint16(in.b)])))
		case opMaxF64:
			R[uint16(in.d)] = f64u(maxF64(f64(R[uint16(in.a)]), f64(R[uint16(in.b)])))
		case opRcpF64:
			R[uint16(in.d)] = f64u(float64(1 / f64(R[uint16(in.a)])))
		case opSqrtF64:
			R[uint16(in.d)] = f64u(math.Sqrt(f64(R[uint16(in.a)])))
		case opSetpS32, opSetpU32, opSetpS64, opSetpU64, opSetpF32, opSetpF64:
			p := x.compare(in, R[uint16(in.a)], R[uint16(in.b)])
			if in.aux2 != 0 {
				c := (R[uint16(in.c)] != 0) != in.cneg
				switch in.aux2 {
				case 1:
					p = p && c
				case 2:
					p = p || c
				case 3:
					p = p != c
				}
			}
			R[uint16(in.d)] = b2u(p)
			if in.d2 != 0 {
				q := !x.compare(in, R[uint16(in.a)], R[uint16(in.b)])
				if in.aux2 != 0 {
					c := (R[uint16(in.c)] != 0) != in.cneg
					switch in.aux2 {
					case 1:
						q = q && c
					case 2:
						q = q || c
					case 3:
						q = q != c
					}
				}
				R[uint16(in.d2)] = b2u(q)
				V[uint16(in.d2)] = 1
			}
		case opSelp:
			if R[uint16(in.c)] != 0 {
				R[uint16(in.d)] = R[uint16(in.a)]
			} else {
				R[uint16(in.d)] = R[uint16(in.b)]
			}
		case opMov:
			R[uint16(in.d)] = R[uint16(in.a)]
		case opPack64:
			R[uint16(in.d)] = R[uint16(in.a)]&0xffffffff | R[uint16(in.b)]<<32
		case opPack32:
			R[uint16(in.d)] = R[uint16(in.a)]&0xffff | (R[uint16(in.b)]&0xffff)<<16
		case opUnpack64:
			a := R[uint16(in.a)]
			R[uint16(in.d)], R[uint16(in.d2)] = a&0xffffffff, a>>32
			V[uint16(in.d2)] = 1
		case opUnpack32:
			a := R[uint16(in.a)]
			R[uint16(in.d)], R[uint16(in.d2)] = a&0xffff, a>>16&0xffff
			V[uint16(in.d2)] = 1
		case opCvtS64S32:
			R[uint16(in.d)] = uint64(int64(int32(R[uint16(in.a)])))
		case opCvtU64U32, opCvtTrunc32:
			R[uint16(in.d)] = R[uint16(in.a)] & 0xffffffff
		case opCvtTrunc16:
			R[uint16(in.d)] = R[uint16(in.a)] & 0xffff
		case opCvtSext16:
			R[uint16(in.d)] = uint64(uint32(int32(int16(R[uint16(in.a)]))))
		case opCvtF32F16:
			R[uint16(in.d)] = f32u(halfToFloat(uint16(R[uint16(in.a)])))
		case opCvt:
			R[uint16(in.d)] = convert(in.cvt, in.ftz, R[uint16(in.a)])
		case opLd:
			if err := x.load(t, pc, in, r, v); err != nil {
				return err
			}
		case opSt:
			if err := x.store(t, pc, in, r, v); err != nil {
				return err
			}
		case opAtom:
			if err := x.atomic(t, pc, in, r); err != nil {
				return err
			}
		case opBra:
			x.branches++
			if x.branches > MaxBranches {
				return x.fault(t, pc, "fault", "more than %d branches in one launch: a loop that does not end?", MaxBranches)
			}
			pc = in.target
			continue
		case opExit:
			x.state[t], x.pc[t] = stExit, pc
			return nil
		case opBar:
			x.state[t], x.pc[t] = stBar, pc
			return nil
		case opShfl, opVote, opBarWarp, opMatch:
			x.state[t], x.pc[t] = stWarp, pc
			return nil
		default:
			return x.fault(t, pc, "fault", "opcode %d has no semantics", in.op)
		}
		V[uint16(in.d)] = 1
		pc++
	}
}

//go:norace
func (x *exec) load(t int, pc int32, in *inst, r []uint64, v []byte) error {
	size := int(in.size)
	if in.aux == spParam {
		off := int(in.imm)
		if off < 0 || off+size > len(x.params) {
			return x.fault(t, pc, "out of bounds", "parameter read at offset %d of %d bytes", off, len(x.params))
		}
		r[in.d] = readLE(x.params[off:off+size], size, in.aux2 != 0)
		return nil
	}
	addr := r[in.a] + uint64(in.imm)
	if in.vec != nil {
		b, err := x.access(t, pc, in, addr, size*len(in.vec), accRead)
		if err != nil {
			return err
		}
		for i, d := range in.vec {
			r[d] = readLE(b[i*size:], size, in.aux2 != 0)
			v[d] = 1
		}
		return nil
	}
	b, err := x.access(t, pc, in, addr, size, accRead)
	if err != nil {
		return err
	}
	r[in.d] = readLE(b, size, in.aux2 != 0)
	return nil
}

//go:norace
func (x *exec) store(t int, pc int32, in *inst, r []uint64, v []byte) error {
	size := int(in.size)
	addr := r[in.a] + uint64(in.imm)
	if in.vec != nil {
		for _, s := range in.vec {
			if v[s] == 0 {
				return x.uninit(t, pc, in, v)
			}
		}
		b, err := x.access(t, pc, in, addr, size*len(in.vec), accWrite)
		if err != nil {
			return err
		}
		for i, s := range in.vec {
			writeLE(b[i*size:], size, r[s])
		}
		return nil
	}
	b, err := x.access(t, pc, in, addr, size, accWrite)
	if err != nil {
		return err
	}
	writeLE(b, size, r[in.b])
	return nil
}

//go:norace
func (x *exec) atomic(t int, pc int32, in *inst, r []uint64) error {
	size := int(in.size)
	b, err := x.access(t, pc, in, r[in.a]+uint64(in.imm), size, accAtomic)
	if err != nil {
		return err
	}
	old := readLE(b, size, false)
	val := r[in.b]
	var nw uint64
	switch in.aop {
	case 1: // add
		switch in.aux2 {
		case 5:
			nw = f32u(float32(f32(old) + f32(val)))
		case 6:
			nw = f64u(float64(f64(old) + f64(val)))
		default:
			nw = old + val
		}
	case 2, 3: // min, max
		less := false
		switch in.aux2 {
		case 1:
			less = uint32(val) < uint32(old)
		case 2:
			less = int32(val) < int32(old)
		case 3:
			less = val < old
		case 4:
			less = int64(val) < int64(old)
		}
		nw = old
		if less == (in.aop == 2) && val != old {
			nw = val
		}
	case 4:
		nw = val
	case 5:
		nw = old & val
	case 6:
		nw = old | val
	case 7:
		nw = old ^ val
	case 8: // cas
		nw = old
		if old == val&(1<<(8*size)-1) {
			nw = r[in.c]
		}
	}
	writeLE(b, size, nw)
	r[in.d] = old
	return nil
}

//go:norace
func readLE(b []byte, size int, signed bool) uint64 {
	switch size {
	case 1:
		if signed {
			return uint64(int64(int8(b[0])))
		}
		return uint64(b[0])
	case 2:
		u := binary.LittleEndian.Uint16(b)
		if signed {
			return uint64(int64(int16(u)))
		}
		return uint64(u)
	case 4:
		u := binary.LittleEndian.Uint32(b)
		if signed {
			return uint64(int64(int32(u)))
		}
		return uint64(u)
	}
	return binary.LittleEndian.Uint64(b)
}

//go:norace
func writeLE(b []byte, size int, v uint64) {
	switch size {
	case 1:
		b[0] = byte(v)
	case 2:
		binary.LittleEndian.PutUint16(b, uint16(v))
	case 4:
		binary.LittleEndian.PutUint32(b, uint32(v))
	default:
		binary.LittleEndian.PutUint64(b, v)
	}
}

//go:norace
func (x *exec) compare(in *inst, ua, ub uint64) bool {
	c := in.aux
	switch in.op {
	case opSetpS32:
		return cmpOrdered(c, int64(int32(ua)), int64(int32(ub)))
	case opSetpU32:
		return cmpOrdered(c, uint32(ua), uint32(ub))
	case opSetpS64:
		return cmpOrdered(c, int64(ua), int64(ub))
	case opSetpU64:
		return cmpOrdered(c, ua, ub)
	case opSetpF32:
		a, b := f32(ua), f32(ub)
		if in.ftz {
			a, b = ftz(a), ftz(b)
		}
		return cmpFloat(c, float64(a), float64(b))
	}
	return cmpFloat(c, f64(ua), f64(ub))
}

func cmpOrdered[T int64 | uint32 | uint64](c uint8, a, b T) bool {
	switch c {
	case cmpEQ:
		return a == b
	case cmpNE:
		return a != b
	case cmpLT:
		return a < b
	case cmpLE:
		return a <= b
	case cmpGT:
		return a > b
	}
	return a >= b
}

func cmpFloat(c uint8, a, b float64) bool {
	nan := a != a || b != b
	switch c {
	case cmpEQ:
		return !nan && a == b
	case cmpNE:
		return !nan && a != b
	case cmpLT:
		return !nan && a < b
	case cmpLE:
		return !nan && a <= b
	case cmpGT:
		return !nan && a > b
	case cmpGE:
		return !nan && a >= b
	case cmpEQU:
		return nan || a == b
	case cmpNEU:
		return nan || a != b
	case cmpLTU:
		return nan || a < b
	case cmpLEU:
		return nan || a <= b
	case cmpGTU:
		return nan || a > b
	case cmpGEU:
		return nan || a >= b
	case cmpNUM:
		return !nan
	}
	return nan
}

// minF32 and maxF32 follow PTX: a NaN operand yields the other one, both
// NaN give the canonical NaN, and -0 < +0.
func minF32(a, b float32) float32 {
	if a != a && b != b {
		return math.Float32frombits(0x7fffffff)
	}
	if a != a {
		return b
	}
	if b != b {
		return a
	}
	if a == b {
		if math.Signbit(float64(a)) {
			return a
		}
		return b
	}
	if a < b {
		return a
	}
	return b
}

func maxF32(a, b float32) float32 {
	if a != a && b != b {
		return math.Float32frombits(0x7fffffff)
	}
	if a != a {
		return b
	}
	if b != b {
		return a
	}
	if a == b {
		if math.Signbit(float64(a)) {
			return b
		}
		return a
	}
	if a > b {
		return a
	}
	return b
}

func minF64(a, b float64) float64 {
	if a != a && b != b {
		return math.Float64frombits(0x7fffffffffffffff)
	}
	if a != a {
		return b
	}
	if b != b {
		return a
	}
	if a == b {
		if math.Signbit(a) {
			return a
		}
		return b
	}
	return math.Min(a, b)
}

func maxF64(a, b float64) float64 {
	if a != a && b != b {
		return math.Float64frombits(0x7fffffffffffffff)
	}
	if a != a {
		return b
	}
	if b != b {
		return a
	}
	if a == b {
		if math.Signbit(a) {
			return b
		}
		return a
	}
	return math.Max(a, b)
}

// fma32 is the float32 fused multiply-add with a single rounding: the
// product is exact in float64, the sum's rounding error is recovered with
// TwoSum and decides the float32 rounding when the float64 sum lies exactly
// halfway between two float32 values.
//
//go:norace
func fma32(a, b, c float32) float32 {
	p := float64(float64(a) * float64(b)) // exact
	cc := float64(c)
	s := float64(p + cc)
	if math.IsInf(s, 0) || math.IsNaN(s) {
		return float32(s)
	}
	bb := float64(s - p)
	e := float64(float64(p-float64(s-bb)) + float64(cc-bb))
	r := float32(s)
	if e == 0 || float64(r) == s {
		return r
	}
	var lo, hi float32
	if float64(r) < s {
		lo, hi = r, math.Nextafter32(r, float32(math.Inf(1)))
	} else {
		lo, hi = math.Nextafter32(r, float32(math.Inf(-1))), r
	}
	if s-float64(lo) != float64(hi)-s {
		return r
	}
	if e > 0 {
		return hi
	}
	return lo
}

// ex2Approx models ex2.approx.f32: 2^a rounded to float32, then, for a
// non-integer a with a finite non-zero result, moved by 0, 1 or 2 units in
// the last place up or down, chosen from a's bits. The CUDA Math API gives
// exp2f, which compiles to ex2.approx, a maximum error of 2 ulp; moving the
// results this way makes the tests meet the hardware's worst case instead
// of a correctly rounded exp2. Integer arguments give exact powers of two.
func ex2Approx(a float32) float32 {
	r := float32(math.Exp2(float64(a)))
	if float32(math.Trunc(float64(a))) == a || r == 0 || math.IsInf(float64(r), 0) || r != r {
		return r
	}
	h := math.Float32bits(a) * 0x9e3779b1
	steps := int(h>>28)%5 - 2 // -2..2
	for ; steps > 0; steps-- {
		r = math.Nextafter32(r, float32(math.Inf(1)))
	}
	for ; steps < 0; steps++ {
		r = math.Nextafter32(r, 0)
	}
	return r
}

func halfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0 && man == 0:
		return math.Float32frombits(sign)
	case exp == 0:
		// subnormal: man * 2^-24
		f := float32(man) * (1.0 / (1 << 24))
		if sign != 0 {
			f = -f
		}
		return f
	case exp == 31:
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
}

// floatToHalf rounds to nearest even.
func floatToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	if f != f {
		return sign | 0x7e00
	}
	a := math.Abs(float64(f))
	if a >= 65520 { // rounds to infinity
		return sign | 0x7c00
	}
	if a < 1.0/(1<<24)/2 {
		return sign
	}
	// scale to an integer of the half's precision at its exponent
	e := math.Floor(math.Log2(a))
	if e < -14 {
		e = -14
	}
	q := math.RoundToEven(a / math.Exp2(e-10)) // 11 significant bits
	v := q * math.Exp2(e-10)
	if v >= 65520 {
		return sign | 0x7c00
	}
	// encode v exactly
	if v < 1.0/(1<<14) {
		return sign | uint16(v*(1<<24))
	}
	ex := math.Floor(math.Log2(v))
	m := v/math.Exp2(ex) - 1
	return sign | uint16(ex+15)<<10 | uint16(math.Round(m*1024))
}

// convert implements the general cvt.
func convert(s *cvtSpec, doFtz bool, u uint64) uint64 {
	dF, sF := isFloat(s.dst), isFloat(s.src)
	sw := typeSize(s.src) * 8
	dw := typeSize(s.dst) * 8
	if !dF && !sF {
		signedSrc := strings.HasPrefix(s.src, "s")
		var v int64
		var uv uint64
		if sw < 64 {
			uv = u & (1<<sw - 1)
		} else {
			uv = u
		}
		if signedSrc {
			v = int64(uv<<(64-sw)) >> (64 - sw)
		}
		if s.sat {
			lo, hi := intRange(s.dst)
			if signedSrc {
				v = max(lo, min(hi, v))
				return uint64(v) & mask(dw)
			}
			if uv > uint64(hi) {
				uv = uint64(hi)
			}
			return uv & mask(dw)
		}
		if signedSrc {
			return uint64(v) & mask(dw)
		}
		return uv & mask(dw)
	}
	if !sF { // int -> float, rn
		signedSrc := strings.HasPrefix(s.src, "s")
		uv := u
		if sw < 64 {
			uv = u & (1<<sw - 1)
		}
		if s.dst == "f32" {
			var f float32
			if signedSrc {
				f = float32(int64(uv<<(64-sw)) >> (64 - sw))
			} else {
				f = float32(uv)
			}
			if s.sat {
				f = sat32(f)
			}
			return f32u(f)
		}
		var f float64
		if signedSrc {
			f = float64(int64(uv<<(64-sw)) >> (64 - sw))
		} else {
			f = float64(uv)
		}
		return f64u(f)
	}
	// float source
	var x float64
	switch s.src {
	case "f16":
		x = float64(halfToFloat(uint16(u)))
	case "f32":
		f := f32(u)
		if doFtz {
			f = ftz(f)
		}
		x = float64(f)
	default:
		x = f64(u)
	}
	if dF {
		switch s.rnd {
		case "rni":
			x = math.RoundToEven(x)
		case "rzi":
			x = math.Trunc(x)
		case "rmi":
			x = math.Floor(x)
		case "rpi":
			x = math.Ceil(x)
		}
		switch s.dst {
		case "f16":
			return uint64(floatToHalf(float32(x)))
		case "f32":
			f := float32(x)
			if doFtz {
				f = ftz(f)
			}
			if s.sat {
				f = sat32(f)
			}
			return f32u(f)
		}
		if s.sat {
			x = float64(sat32(float32(x)))
		}
		return f64u(x)
	}
	// float -> int
	if x != x {
		return 0
	}
	switch s.rnd {
	case "rni":
		x = math.RoundToEven(x)
	case "rzi":
		x = math.Trunc(x)
	case "rmi":
		x = math.Floor(x)
	case "rpi":
		x = math.Ceil(x)
	}
	lo, hi := intRange(s.dst)
	if strings.HasPrefix(s.dst, "s") {
		var v int64
		switch {
		case x <= float64(lo):
			v = lo
		case x >= float64(hi):
			v = hi
		default:
			v = int64(x)
		}
		return uint64(v) & mask(dw)
	}
	var v uint64
	switch {
	case x <= 0:
		v = 0
	case x >= float64(uint64(hi)):
		v = uint64(hi)
		if dw == 64 {
			v = math.MaxUint64
		}
	default:
		v = uint64(x)
	}
	return v & mask(dw)
}

func mask(w int) uint64 {
	if w >= 64 {
		return math.MaxUint64
	}
	return 1<<w - 1
}

func intRange(t string) (int64, int64) {
	w := typeSize(t) * 8
	if strings.HasPrefix(t, "s") {
		return -1 << (w - 1), 1<<(w-1) - 1
	}
	if w == 64 {
		return 0, math.MaxInt64
	}
	return 0, 1<<w - 1
}

func sat32(f float32) float32 {
	if f != f || f <= 0 { // NaN and -0 give +0
		return 0
	}
	if f > 1 {
		return 1
	}
	return f
}

// files recycles register files between launches: every block writes the
// slots it reads (constants copied, registers marked unwritten), so a
// recycled file needs no clearing.
var files sync.Pool

type file struct {
	regs  []uint64
	valid []byte
}

func getFile(n int) ([]uint64, []byte) {
	if f, ok := files.Get().(*file); ok && len(f.regs) >= n {
		return f.regs[:n], f.valid[:n]
	}
	return make([]uint64, n), make([]byte, n)
}

func putFile(regs []uint64, valid []byte) { files.Put(&file{regs, valid}) }

// coverage records which instructions ran, across launches.
type coverage struct {
	mu   sync.Mutex
	hits []uint64
}

func newCoverage(k *Kernel) *coverage { return &coverage{hits: make([]uint64, len(k.code))} }

func (c *coverage) add(h []uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, v := range h {
		c.hits[i] += v
	}
}

// LineCoverage returns the PTX lines of the kernel's instructions, and
// those that never executed across every launch so far, each with its text.
func (k *Kernel) LineCoverage() (lines int, missed []Line) {
	k.cov.mu.Lock()
	defer k.cov.mu.Unlock()
	ran := map[int32]bool{}
	all := map[int32]string{}
	for i, in := range k.code {
		if in.line < 0 {
			continue
		}
		all[in.line] = in.text
		if k.cov.hits[i] > 0 {
			ran[in.line] = true
		}
	}
	for l, t := range all {
		if !ran[l] {
			missed = append(missed, Line{int(l), t})
		}
	}
	sort.Slice(missed, func(i, j int) bool { return missed[i].N < missed[j].N })
	return len(all), missed
}

// Line is one line of PTX.
type Line struct {
	N    int
	Text string
}
