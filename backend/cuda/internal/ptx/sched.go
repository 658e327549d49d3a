package ptx

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"unsafe"
)

// Order is the order in which a schedule runs the warps of a block (between
// two barriers) or the blocks of a grid.
type Order uint8

const (
	Forward Order = iota // 0, 1, 2, ...
	Reverse              // ..., 2, 1, 0
	Random               // a permutation drawn from the schedule's seed
)

// String names the order: "forward", "reversed" or "random".
func (o Order) String() string {
	switch o {
	case Forward:
		return "forward"
	case Reverse:
		return "reversed"
	}
	return "random"
}

// Lanes says how the threads of a block interleave between synchronisation
// points.
type Lanes uint8

const (
	// Serial runs each thread alone up to its next synchronisation point
	// (a barrier, a warp-synchronous instruction, its exit), warp after
	// warp in the schedule's warp order; within a warp the lanes follow the
	// same order (0..31, 31..0 or permuted).
	Serial Lanes = iota
	// Lockstep runs a warp as SIMT hardware does: at each step the lanes
	// whose next instruction has the lowest address execute it together
	// (which reconverges structured code after a branch), one warp after
	// the other up to the next barrier. Each step is one warp instruction
	// issued (Stats.WarpInstructions).
	Lockstep
	// Interleaved picks, over the whole block, a seeded-random runnable
	// thread and runs it for a random 1..16 instructions, until every
	// thread waits.
	Interleaved
)

// String names the mode: "serial", "lockstep" or "interleaved".
func (l Lanes) String() string {
	switch l {
	case Serial:
		return "serial"
	case Lockstep:
		return "lockstep"
	}
	return "interleaved"
}

// Schedule is the order in which a launch runs its threads. Every schedule is
// a legal execution of the PTX memory model for race-free code, so a kernel
// whose output depends on the schedule has a race (or reads memory no one
// wrote): the fake device compares the outputs of several schedules bit for
// bit.
type Schedule struct {
	Warps  Order
	Lanes  Lanes
	Blocks Order
	Seed   uint64 // of the Random orders and the Interleaved mode
}

// String describes the schedule, as the fake device's reports name it.
func (s Schedule) String() string {
	return fmt.Sprintf("warps %v, lanes %v, blocks %v, seed %d", s.Warps, s.Lanes, s.Blocks, s.Seed)
}

// Schedules is the set the fake device checks: the executor's historical
// order first, then warps (and lanes) reversed, seeded-random, in lockstep
// and interleaved, with blocks forward, reversed and in random order. The
// Serial ones cost about what the first does; Lockstep and Interleaved
// about twice as much.
var Schedules = []Schedule{
	{Warps: Forward, Lanes: Serial, Blocks: Forward},
	{Warps: Reverse, Lanes: Serial, Blocks: Reverse},
	{Warps: Random, Lanes: Lockstep, Blocks: Random, Seed: 1},
	{Warps: Random, Lanes: Interleaved, Blocks: Random, Seed: 2},
	{Warps: Random, Lanes: Serial, Blocks: Random, Seed: 3},
}

// Races is the race detector's memory of global memory between launches:
// for every 2-byte granule of the allocations a launch wrote, the last
// writer (the block, thread, barrier interval and PTX instruction), and a
// count of the blocks run, which tells this launch's entries from older
// ones. A launch with a non-nil Launch.Races also tracks shared memory, per
// barrier interval, within each block. Races is safe for use by several
// launches at once only if they touch different allocations.
type Races struct {
	mu      sync.Mutex
	serial  uint32
	shadows map[uint64]*gshadow
}

// gshadow is the writer record of one allocation, tied to its bytes (a new
// allocation at the same address gets a fresh record).
type gshadow struct {
	data *byte
	w    []uint64 // per granule: serial(32) | tid(11) | atomic(1) | interval(20)
	pc   []int32
}

// NewRaces returns an empty race detector.
func NewRaces() *Races { return &Races{shadows: map[uint64]*gshadow{}} }

// Forget drops the record of the allocation at base (freed). A nil Races
// has nothing to forget.
func (r *Races) Forget(base uint64) {
	if r == nil {
		return
	}
	r.mu.Lock()
	delete(r.shadows, base)
	r.mu.Unlock()
}

// blocks reserves n block serial numbers and returns the first.
func (r *Races) blocks(n int) uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	first := r.serial + 1
	r.serial += uint32(n)
	return first
}

// shadow returns the writer record of the allocation (base, data), making
// it when create is set.
func (r *Races) shadow(base uint64, data []byte, create bool) *gshadow {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.shadows[base]
	if s != nil && (len(data) == 0 || s.data == unsafe.SliceData(data)) && len(s.w) == (len(data)+1)/2 {
		return s
	}
	if !create {
		return nil
	}
	s = &gshadow{data: unsafe.SliceData(data), w: make([]uint64, (len(data)+1)/2), pc: make([]int32, (len(data)+1)/2)}
	r.shadows[base] = s
	return s
}

// access kinds for the race detector
const (
	accRead uint8 = iota
	accWrite
	accAtomic
)

// Packed shadow entries. Global: serial(32) | tid(11) | atomic(1) |
// interval(20). Shared: epoch(32) | tid(11) | flag(1) | warp-sync
// generation(20); for readers the flag means "several readers", and tid
// then holds 1024+warp when they were all of one warp, 2047 otherwise.
const (
	tidShift  = 32
	flagBit   = 1 << 43
	lowShift  = 44
	lowMask   = 1<<20 - 1
	tidMask   = 1<<11 - 1
	manyMixed = 2047
)

func pack(hi uint32, tid int, flag bool, low uint32) uint64 {
	e := uint64(hi) | uint64(tid&tidMask)<<tidShift | uint64(low&lowMask)<<lowShift
	if flag {
		e |= flagBit
	}
	return e
}

func entHi(e uint64) uint32  { return uint32(e) }
func entTid(e uint64) int    { return int(e >> tidShift & tidMask) }
func entFlag(e uint64) bool  { return e&flagBit != 0 }
func entLow(e uint64) uint32 { return uint32(e >> lowShift & lowMask) }

// sshadow is the race record of one shared variable for a launch.
type sshadow struct {
	w, r     []uint64 // per granule: last writer, readers
	wpc, rpc []int32
}

// raceState is a launch's race detector.
type raceState struct {
	races       *Races
	firstSerial uint32 // this launch's blocks have serials >= firstSerial
	serial      uint32 // the running block's
	epoch       uint32 // barrier interval, unique over the launch
	interval    uint32 // barrier interval within the running block
	shared      []sshadow
	wgen        []uint32 // per warp: bar.warp.sync generation
	lastSync    []uint32 // per thread: the generation of its last bar.warp.sync
}

func (x *exec) newRaceState(r *Races, nblocks int) {
	rs := &raceState{races: r, firstSerial: r.blocks(nblocks)}
	for _, s := range x.shared {
		n := (len(s) + 1) / 2
		rs.shared = append(rs.shared, sshadow{w: make([]uint64, n), r: make([]uint64, n), wpc: make([]int32, n), rpc: make([]int32, n)})
	}
	rs.wgen = make([]uint32, (x.nthreads+31)/32)
	rs.lastSync = make([]uint32, x.nthreads)
	x.race = rs
}

// warpOrdered reports whether an access by thread a at warp-sync
// generation gen and a later one by thread b of the same warp are ordered by
// a bar.warp.sync both passed since. a < 0 stands for several threads of
// b's warp (the caller checked the warp), of which only b is looked at.
func (x *exec) warpOrdered(a, b int, gen uint32) bool {
	rs := x.race
	if a >= 0 && a/32 != b/32 {
		return false
	}
	return rs.lastSync[b]&lowMask > gen && (a < 0 || rs.lastSync[a]&lowMask > gen)
}

// raceShared records an access of size bytes at offset off of shared
// variable v by thread t and reports a race with an earlier access of the
// same barrier interval by another thread: write-write, read-after-write or
// write-after-read (atomics among themselves excepted).
//
//go:norace
func (x *exec) raceShared(t int, pc int32, kind uint8, v, off, size int) error {
	rs := x.race
	sh := &rs.shared[v]
	gen := rs.wgen[t/32] & lowMask
	for g := off / 2; g < (off+size+1)/2; g++ {
		w := sh.w[g]
		if entHi(w) == rs.epoch {
			if a := entTid(w); a != t && !(kind == accAtomic && entFlag(w)) && !x.warpOrdered(a, t, entLow(w)) {
				what := "write-write"
				if kind == accRead {
					what = "read-after-write"
				}
				return x.raceFault(t, pc, what, fmt.Sprintf("byte %d of shared %s", 2*g, x.k.shared[v].name), a, sh.wpc[g], "between the same barriers")
			}
		}
		if kind == accRead {
			r := sh.r[g]
			switch {
			case entHi(r) != rs.epoch:
				sh.r[g], sh.rpc[g] = pack(rs.epoch, t, false, gen), pc
			case !entFlag(r) && entTid(r) == t:
				sh.r[g] = pack(rs.epoch, t, false, gen)
			case !entFlag(r):
				many := manyMixed
				if entTid(r)/32 == t/32 {
					many = 1024 + t/32
				}
				sh.r[g] = pack(rs.epoch, many, true, max(entLow(r), gen))
			case entTid(r) != manyMixed && entTid(r)-1024 != t/32:
				sh.r[g] = pack(rs.epoch, manyMixed, true, max(entLow(r), gen))
			}
			continue
		}
		if r := sh.r[g]; entHi(r) == rs.epoch {
			a := entTid(r)
			conflict := false
			switch {
			case !entFlag(r):
				conflict = a != t && !x.warpOrdered(a, t, entLow(r))
			case a == manyMixed:
				conflict = true
			default: // several readers, all of warp a-1024
				conflict = a-1024 != t/32 || !x.warpOrdered(-1, t, entLow(r))
			}
			if conflict {
				if a >= 1024 {
					a = -1
				}
				return x.raceFault(t, pc, "write-after-read", fmt.Sprintf("byte %d of shared %s", 2*g, x.k.shared[v].name), a, sh.rpc[g], "between the same barriers")
			}
		}
		sh.w[g], sh.wpc[g] = pack(rs.epoch, t, kind == accAtomic, gen), pc
	}
	return nil
}

// raceGlobal records an access of size bytes at offset off of the
// allocation (base, data) by thread t of the running block, and reports a
// write-write or read-after-write race with an earlier access of this
// launch: by another block, or by another thread of this block in the same
// barrier interval (atomics among themselves excepted). A read followed by
// another block's write is not tracked (the schedule comparison sees it).
//
//go:norace
func (x *exec) raceGlobal(t int, pc int32, kind uint8, base uint64, data []byte, off, size int) error {
	rs := x.race
	c := &x.gcache
	if c.base != base || c.sh == nil || c.sh.data != unsafe.SliceData(data) {
		sh := rs.races.shadow(base, data, kind != accRead)
		if sh == nil {
			return nil // nothing written there by this launch yet
		}
		*c = gcacheEntry{base, sh}
	}
	sh := c.sh
	for g := off / 2; g < (off+size+1)/2; g++ {
		w := sh.w[g]
		if s := entHi(w); s >= rs.firstSerial && s != 0 {
			sameBlock := s == rs.serial
			if (!sameBlock || (entLow(w) == rs.interval&lowMask && entTid(w) != t)) && !(kind == accAtomic && entFlag(w)) {
				what := "write-write"
				if kind == accRead {
					what = "read-after-write"
				}
				where := "between the same barriers"
				if !sameBlock {
					b := x.blockOrder[s-rs.firstSerial]
					where = fmt.Sprintf("in block (%d,%d,%d)", b%x.grid[0], b/x.grid[0]%x.grid[1], b/(x.grid[0]*x.grid[1]))
				}
				return x.raceFault(t, pc, what, fmt.Sprintf("global byte %#x (offset %d of the allocation at %#x)", base+uint64(2*g), 2*g, base), entTid(w), sh.pc[g], where)
			}
		}
		if kind != accRead {
			sh.w[g], sh.pc[g] = pack(rs.serial, t, kind == accAtomic, rs.interval), pc
		}
	}
	return nil
}

type gcacheEntry struct {
	base uint64
	sh   *gshadow
}

// raceFault names both accesses: the current one (thread t at pc) and the
// earlier one (thread other, -1 if several, at line of pc0).
func (x *exec) raceFault(t int, pc int32, what, where string, other int, pc0 int32, when string) error {
	who := "several threads"
	if other >= 0 {
		o := x.tid(other)
		who = fmt.Sprintf("thread (%d,%d,%d)", o[0], o[1], o[2])
	}
	line, text := 0, ""
	if pc0 >= 0 && int(pc0) < len(x.k.code) {
		line, text = int(x.k.code[pc0].line), x.k.code[pc0].text
	}
	return x.fault(t, pc, "race", "%s race on %s with %s at line %d (%s), %s", what, where, who, line, text, when)
}

// order returns 0..n-1 in order o, drawing from rng for Random.
func order(o Order, n int, rng *rand.Rand) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
		if o == Reverse {
			p[i] = n - 1 - i
		}
	}
	if o == Random {
		rng.Shuffle(n, func(i, j int) { p[i], p[j] = p[j], p[i] })
	}
	return p
}
