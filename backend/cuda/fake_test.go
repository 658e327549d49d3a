package cuda

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"unsafe"

	"github.com/compresskv/compresskv/backend/cuda/internal/ptx"
)

// fakeGPU implements the api table in Go memory: allocations are Go slices at
// made-up addresses, copies are copies, cuModuleLoadData parses the PTX image
// and cuLaunchKernel runs the kernel's PTX in the executor
// (internal/ptx) over that memory, with memcheck on. It counts live
// allocations, records launches, executor faults and the OS threads that
// called it.
type fakeGPU struct {
	mu        sync.Mutex
	allocs    map[uintptr][]uint64 // base -> backing (8-byte aligned)
	sizes     map[uintptr]int
	next      uintptr
	failAfter int // cudaMalloc fails with cudaErrorMemoryAllocation once this many succeeded (0: never)
	mallocs   int
	launches  map[string]int
	tids      map[int]bool
	devices   int32

	module       *ptx.Module
	image        string        // when set, the PTX that cuModuleLoadData parses instead of the image it is given
	fns          []*ptx.Kernel // function handle i+1
	faults       []error       // executor errors: a test fails on any (openFake)
	instructions uint64        // thread-instructions executed

	noPools bool      // the device has no memory pools (cuMemAlloc, cuMemFree)
	events  []float64 // event i+1: the clock when it was recorded
	// clock is the fake's model of elapsed time (seconds): each launch adds
	// its thread-instructions / 32 at an H100's 0.92e12 warp instructions
	// per second, and 2 µs of launch latency.
	clock float64

	// Every launch runs with the race detector on, under one schedule of
	// ptx.Schedules in turn; with compare set, under each of compare, from
	// the same memory, and the memory each leaves must be the same bit for
	// bit.
	races    *ptx.Races // nil: the race detector off
	nlaunch  int
	compare  []ptx.Schedule
	compared int // launches checked under every schedule of compare

	// count, when set, runs every launch in lockstep (without the race
	// detector) and adds its figures to counts, per kernel: the
	// instruction-count model (model_test.go).
	count  bool
	counts map[string]*kernelCount
	// dry, with count, records the launches without running them (fresh
	// memory then reads as zeros): the model's launch geometry at full
	// size.
	dry bool
}

// kernelCount is what the launches of one kernel executed.
type kernelCount struct {
	launches, blocks, threads             int
	warpInstr, threadInstr, gmem, sectors uint64
}

func newFakeGPU() *fakeGPU {
	return &fakeGPU{allocs: map[uintptr][]uint64{}, sizes: map[uintptr]int{}, next: 0x7000_0000_0000,
		launches: map[string]int{}, tids: map[int]bool{}, devices: 1, races: ptx.NewRaces()}
}

// garbage is the byte a fresh allocation is filled with, as cudaMalloc
// leaves whatever was there: a float32 or float16 of these bytes is a NaN,
// an int32 is -1.
const garbage = 0xff

// snapshot copies every allocation.
func (f *fakeGPU) snapshot() map[uintptr][]uint64 {
	s := make(map[uintptr][]uint64, len(f.allocs))
	for base, b := range f.allocs {
		s[base] = slices.Clone(b)
	}
	return s
}

// restore puts the contents of a snapshot back.
func (f *fakeGPU) restore(s map[uintptr][]uint64) {
	for base, b := range s {
		copy(f.allocs[base], b)
	}
}

// diff describes the first difference between memory and a snapshot, or
// returns "".
func (f *fakeGPU) diff(s map[uintptr][]uint64) string {
	for base, b := range s {
		cur := f.allocs[base]
		if i := slices.Compare(b, cur); i != 0 {
			for w := range b {
				if b[w] != cur[w] {
					return fmt.Sprintf("allocation %#x (%d bytes), bytes %d..%d: %#016x, then %#016x", base, f.sizes[base], 8*w, 8*w+7, b[w], cur[w])
				}
			}
		}
	}
	return ""
}

// rotation returns the schedules launches take in turn: all of
// ptx.Schedules, or with -short (the race detector's run) the Serial ones,
// which cost no more than the first.
func rotation() []ptx.Schedule {
	if !testing.Short() {
		return ptx.Schedules
	}
	var s []ptx.Schedule
	for _, x := range ptx.Schedules {
		if x.Lanes == ptx.Serial {
			s = append(s, x)
		}
	}
	return s
}

// launch runs k under the fake's schedules (see fakeGPU.races). The caller
// holds f.mu.
func (f *fakeGPU) launch(k *ptx.Kernel, l ptx.Launch) (ptx.Stats, error) {
	if f.count {
		l.Schedule = ptx.Schedule{Lanes: ptx.Lockstep}
		l.Sectors = true
		var st ptx.Stats
		var err error
		if !f.dry {
			st, err = k.Run(f, l)
		}
		if f.counts == nil {
			f.counts = map[string]*kernelCount{}
		}
		c := f.counts[k.Name]
		if c == nil {
			c = &kernelCount{}
			f.counts[k.Name] = c
		}
		c.launches++
		c.blocks += l.Grid[0] * l.Grid[1] * l.Grid[2]
		c.threads = l.Block[0] * l.Block[1] * l.Block[2]
		c.warpInstr += st.WarpInstructions
		c.threadInstr += st.Instructions
		c.gmem += st.GlobalBytes
		c.sectors += st.Sectors
		return st, err
	}
	l.Races = f.races
	if len(f.compare) < 2 {
		l.Schedule = rotation()[f.nlaunch%len(rotation())]
		f.nlaunch++
		return k.Run(f, l)
	}
	before := f.snapshot()
	l.Schedule = f.compare[0]
	st, err := k.Run(f, l)
	if err != nil {
		return st, err
	}
	after := f.snapshot()
	defer f.restore(after)
	for _, s := range f.compare[1:] {
		f.restore(before)
		l.Schedule = s
		if _, err := k.Run(f, l); err != nil {
			return st, fmt.Errorf("under schedule (%v): %w", s, err)
		}
		if d := f.diff(after); d != "" {
			return st, fmt.Errorf("ptx: %s: the output depends on the schedule: (%v) and (%v) leave different memory: %s",
				k.Name, f.compare[0], s, d)
		}
	}
	f.compared++
	return st, nil
}

func (f *fakeGPU) live() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.allocs)
}

func (f *fakeGPU) enter() {
	f.tids[syscall.Gettid()] = true
}

// mem returns n bytes of device memory at p, panicking (an error on the
// device thread) when they are not inside one allocation.
func (f *fakeGPU) mem(p uintptr, n int) []byte {
	for base, b := range f.allocs {
		size := f.sizes[base]
		if p >= base && p+uintptr(n) <= base+uintptr(size) {
			all := unsafe.Slice((*byte)(unsafe.Pointer(&b[0])), len(b)*8)
			return all[p-base : p-base+uintptr(n)]
		}
	}
	panic(fmt.Sprintf("fake GPU: %d bytes at %#x are not inside an allocation", n, p))
}

// Region implements ptx.Memory: the allocation holding addr. The caller
// holds f.mu.
func (f *fakeGPU) Region(addr uint64) (uint64, []byte, bool) {
	for base, b := range f.allocs {
		size := f.sizes[base]
		if uint64(base) <= addr && addr < uint64(base)+uint64(size) {
			return uint64(base), unsafe.Slice((*byte)(unsafe.Pointer(&b[0])), size), true
		}
	}
	return 0, nil, false
}

var (
	modulesMu sync.Mutex
	modules   = map[string]*ptx.Module{}
)

// loadModule parses a PTX image once per test binary, so that the
// executor's line coverage adds up over every fake device.
func loadModule(src string) (*ptx.Module, error) {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	if m, ok := modules[src]; ok {
		return m, nil
	}
	m, err := ptx.Parse(src)
	if err != nil {
		return nil, err
	}
	modules[src] = m
	return m, nil
}

func (f *fakeGPU) api() *api {
	a := &api{runtimePath: "fake/libcudart.so.12", driverPath: "fake/libcuda.so.1"}
	lock := func() func() { f.mu.Lock(); f.enter(); return f.mu.Unlock }
	a.cuDeviceGetCount = func(n *int32) int32 { defer lock()(); *n = f.devices; return 0 }
	alloc := func(p *uintptr, n uintptr) int32 {
		defer lock()()
		if f.failAfter > 0 && f.mallocs >= f.failAfter {
			return 2 // CUDA_ERROR_OUT_OF_MEMORY
		}
		f.mallocs++
		base := f.next
		f.allocs[base] = make([]uint64, (n+7)/8)
		if !f.dry {
			for i := range f.allocs[base] {
				f.allocs[base][i] = garbage * 0x0101010101010101
			}
		}
		f.sizes[base] = int(n)
		f.next += (n + 511) &^ 255
		*p = base
		return 0
	}
	free := func(p uintptr) int32 {
		defer lock()()
		if _, ok := f.allocs[p]; !ok {
			return 1
		}
		delete(f.allocs, p)
		delete(f.sizes, p)
		f.races.Forget(uint64(p))
		return 0
	}
	a.cuMemAlloc, a.cuMemFree = alloc, free
	// The fake runs every call at once, so stream order is call order.
	a.cuMemAllocAsync = func(p *uintptr, n uintptr, _ uintptr) int32 { return alloc(p, n) }
	a.cuMemFreeAsync = func(p uintptr, _ uintptr) int32 { return free(p) }
	a.cuMemcpyHtoD = func(dst uintptr, src unsafe.Pointer, n uintptr, _ uintptr) int32 {
		defer lock()()
		copy(f.mem(dst, int(n)), unsafe.Slice((*byte)(src), n))
		return 0
	}
	a.cuMemcpyDtoH = func(dst unsafe.Pointer, src uintptr, n uintptr, _ uintptr) int32 {
		defer lock()()
		copy(unsafe.Slice((*byte)(dst), n), f.mem(src, int(n)))
		return 0
	}
	a.cuMemcpyDtoD = func(dst, src uintptr, n uintptr, _ uintptr) int32 {
		defer lock()()
		copy(f.mem(dst, int(n)), f.mem(src, int(n)))
		return 0
	}
	a.cuMemsetD8 = func(p uintptr, v uint8, n uintptr, _ uintptr) int32 {
		defer lock()()
		b := f.mem(p, int(n))
		for i := range b {
			b[i] = v
		}
		return 0
	}
	a.cuStreamCreate = func(s *uintptr, _ uint32) int32 { defer lock()(); *s = 0x5; return 0 }
	a.cuStreamDestroy = func(uintptr) int32 { defer lock()(); return 0 }
	a.cuStreamSynchronize = func(uintptr) int32 { defer lock()(); return 0 }
	a.cuStreamQuery = func(uintptr) int32 { defer lock()(); return 0 }
	// Events read the fake's clock, which each launch moves on by the
	// executor's instruction count at an H100's issue rate (see
	// fakeGPU.clock): a model, not a measurement.
	a.cuEventCreate = func(e *uintptr, _ uint32) int32 {
		defer lock()()
		f.events = append(f.events, 0)
		*e = uintptr(len(f.events))
		return 0
	}
	a.cuEventRecord = func(e, _ uintptr) int32 { defer lock()(); f.events[e-1] = f.clock; return 0 }
	a.cuEventSynchronize = func(uintptr) int32 { return 0 }
	a.cuEventElapsedTime = func(ms *float32, start, end uintptr) int32 {
		defer lock()()
		*ms = float32((f.events[end-1] - f.events[start-1]) * 1e3)
		return 0
	}
	a.cuEventDestroy = func(uintptr) int32 { return 0 }
	a.cuMemGetInfo = func(fr, tot *uintptr) int32 {
		defer lock()()
		used := 0
		for _, s := range f.sizes {
			used += s
		}
		*tot = 1 << 30
		*fr = uintptr(1<<30 - used)
		return 0
	}
	a.cudaRuntimeGetVersion = func(v *int32) int32 { *v = 12080; return 0 }
	a.cuDeviceTotalMem = func(b *uintptr, _ int32) int32 { *b = 1 << 30; return 0 }
	a.cuDeviceGetAttribute = func(v *int32, attr int32, _ int32) int32 {
		// An H100 SXM's figures; memory pools as f.noPools says.
		vals := map[int32]int32{attrMultiprocessors: 132, attrCCMajor: 9, attrCCMinor: 0, attrMemoryClockKHz: 2619000,
			attrMemoryBusBits: 5120, attrClockKHz: 1755000, attrL2Bytes: 50 << 20, attrRegistersPerSM: 65536,
			attrSharedPerSM: 228 << 10, attrMaxThreadsPerSM: 2048, attrMaxBlocksPerSM: 32, attrMaxSharedPerBlock: 48 << 10,
			attrMaxThreadsPerBlock: 1024, attrMemoryPools: 1}
		if f.noPools {
			vals[attrMemoryPools] = 0
		}
		x, ok := vals[attr]
		if !ok {
			return 1 // CUDA_ERROR_INVALID_VALUE
		}
		*v = x
		return 0
	}
	a.cuFuncGetAttribute = func(v *int32, attr int32, fn uintptr) int32 {
		defer lock()()
		if fn == 0 || int(fn) > len(f.fns) {
			return 400
		}
		k := f.fns[fn-1]
		switch attr {
		case funcNumRegs, funcLocalBytes:
			*v = 0 // only the driver's JIT knows
		case funcSharedBytes:
			*v = int32(k.StaticShared())
		case funcMaxThreads:
			*v = 1024
			if m := k.MaxThreads(); m > 0 {
				*v = int32(m)
			}
		case funcPTXVersion, funcBinVersion:
			*v = 80
		default:
			return 1
		}
		return 0
	}
	a.cuOccupancyMaxActiveBlocksPerMultiprocessor = func(n *int32, fn uintptr, block int32, dyn uintptr) int32 {
		defer lock()()
		if fn == 0 || int(fn) > len(f.fns) || block <= 0 {
			return 1
		}
		// Threads and shared memory only: the fake knows no registers.
		k := f.fns[fn-1]
		blocks := min(32, 2048/int(block))
		if sh := k.StaticShared() + int(dyn); sh > 0 {
			blocks = min(blocks, (228<<10)/sh)
		}
		*n = int32(blocks)
		return 0
	}
	a.cuInit = func(uint32) int32 { defer lock()(); return 0 }
	a.cuDriverGetVersion = func(v *int32) int32 { *v = 12080; return 0 }
	a.cuDeviceGet = func(d *int32, o int32) int32 { *d = o; return 0 }
	a.cuDeviceGetName = func(name *byte, n int32, _ int32) int32 {
		copy(unsafe.Slice(name, n), "Fake GPU\x00")
		return 0
	}
	a.cuDevicePrimaryCtxRetain = func(c *uintptr, _ int32) int32 { defer lock()(); *c = 0xc0; return 0 }
	a.cuDevicePrimaryCtxRelease = func(int32) int32 { defer lock()(); return 0 }
	a.cuCtxSetCurrent = func(uintptr) int32 { defer lock()(); return 0 }
	a.cuModuleLoadDataEx = func(m *uintptr, img unsafe.Pointer, _ uint32, _ *int32, _ *uintptr) int32 {
		return a.cuModuleLoadData(m, img)
	}
	a.cuModuleLoadData = func(m *uintptr, img unsafe.Pointer) int32 {
		defer lock()()
		// The image must be NUL-terminated PTX; the executor parses it.
		var n int
		for p := img; *(*byte)(p) != 0; p = unsafe.Add(p, 1) {
			n++
		}
		src := string(unsafe.Slice((*byte)(img), n))
		if f.image != "" {
			src = f.image
		}
		mod, err := loadModule(src)
		if err != nil {
			f.faults = append(f.faults, err)
			return 218 // CUDA_ERROR_INVALID_PTX
		}
		f.module = mod
		*m = 0x3
		return 0
	}
	a.cuModuleUnload = func(uintptr) int32 { return 0 }
	a.cuModuleGetFunction = func(fn *uintptr, _ uintptr, name *byte) int32 {
		defer lock()()
		var s []byte
		for p := unsafe.Pointer(name); *(*byte)(p) != 0; p = unsafe.Add(p, 1) {
			s = append(s, *(*byte)(p))
		}
		if f.module == nil {
			return 400
		}
		k := f.module.Kernel(string(s))
		if k == nil {
			return 500 // CUDA_ERROR_NOT_FOUND
		}
		f.fns = append(f.fns, k)
		*fn = uintptr(len(f.fns))
		return 0
	}
	a.cuLaunchKernel = func(fn uintptr, gx, gy, gz, bx, by, bz, shmem uint32, _ uintptr, params, extra unsafe.Pointer) int32 {
		defer lock()()
		if fn == 0 || int(fn) > len(f.fns) || extra != nil {
			return 400
		}
		k := f.fns[fn-1]
		// As the driver does, read one pointer per parameter of the
		// kernel and as many bytes at each as the PTX declares.
		ptrs := unsafe.Slice((*unsafe.Pointer)(params), k.NumParams())
		args := make([][]byte, len(ptrs))
		for i, p := range ptrs {
			args[i] = unsafe.Slice((*byte)(p), k.ParamSize(i))
		}
		f.launches[k.Name]++
		st, err := f.launch(k, ptx.Launch{Grid: [3]int{int(gx), int(gy), int(gz)}, Block: [3]int{int(bx), int(by), int(bz)},
			SharedBytes: int(shmem), Params: args})
		f.instructions += st.Instructions
		f.clock += float64(st.Instructions)/32/0.92e12 + 2e-6
		if err != nil {
			f.faults = append(f.faults, err)
			var fault *ptx.Fault
			if errors.As(err, &fault) && fault.Class == "out of bounds" {
				return 700 // CUDA_ERROR_ILLEGAL_ADDRESS
			}
			return 719 // CUDA_ERROR_LAUNCH_FAILED
		}
		return 0
	}
	return a
}
