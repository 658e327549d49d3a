package cuda

import (
	"fmt"
	"math"
	"runtime"
	"unsafe"
)

// devptr is a device address.
type devptr uintptr

// argKind is the C type of one kernel parameter.
type argKind uint8

const (
	argPtr argKind = iota // a device pointer (8 bytes)
	argI32                // int
	argU64                // unsigned long long
	argF32                // float
)

// kernel identifies one function of the PTX module.
type kernel int

const (
	kWindowPass     kernel = iota // d <= 256
	kWindowPassD128               // window_pass for d <= 128
	kWindowPassD64                // window_pass for d <= 64
	kWindowMerge
	kAttendPartial       // d <= 256, 4 query heads a block
	kAttendPartialD128   // d <= 128, 4 heads
	kAttendPartialD128H8 // d <= 128, 8 heads
	kAttendPartialD64    // d <= 64, 8 heads
	kAttendMerge
	kWidenRows
	kRowsSoftmax
	kColsumRows
	kPoolMean
	kTopKHist
	kTopKWrite
	kGatherRows
	numKernels
)

// kernelSpec is a kernel's name in the module and its parameter types, in the
// order of the .cu source.
type kernelSpec struct {
	name string
	args []argKind
}

var (
	windowPassArgs = []argKind{argPtr, argU64, argI32, argI32, argF32,
		argPtr, argPtr, argPtr, argPtr, argPtr, argPtr, argPtr, argU64, argI32, argI32}
	attendPartialArgs = []argKind{argPtr, argPtr, argU64, argI32, argI32, argF32, argPtr, argPtr, argI32, argI32, argI32, argPtr}
	topkArgs          = []argKind{argPtr, argI32, argI32, argI32, argI32, argI32, argPtr, argPtr}
)

var kernelSpecs = [numKernels]kernelSpec{
	kWindowPass:          {"window_pass", windowPassArgs},
	kWindowPassD128:      {"window_pass_d128", windowPassArgs},
	kWindowPassD64:       {"window_pass_d64", windowPassArgs},
	kWindowMerge:         {"window_merge", []argKind{argPtr, argPtr, argI32, argI32}},
	kAttendPartial:       {"attend_partial", attendPartialArgs},
	kAttendPartialD128:   {"attend_partial_d128", attendPartialArgs},
	kAttendPartialD128H8: {"attend_partial_d128_h8", attendPartialArgs},
	kAttendPartialD64:    {"attend_partial_d64", attendPartialArgs},
	kAttendMerge:         {"attend_merge", []argKind{argPtr, argI32, argI32, argPtr}},
	kWidenRows:           {"widen_rows", []argKind{argPtr, argPtr, argU64, argI32}},
	kRowsSoftmax:         {"rows_softmax", []argKind{argPtr, argI32, argI32, argI32, argI32, argI32, argPtr}},
	kColsumRows:          {"colsum_rows", []argKind{argPtr, argI32, argI32, argI32, argI32, argPtr, argPtr, argI32}},
	kPoolMean:            {"pool_mean", []argKind{argPtr, argPtr, argI32, argI32, argI32, argI32, argI32, argI32, argI32}},
	kTopKHist:            {"topk_hist", append(append([]argKind(nil), topkArgs...), argI32)},
	kTopKWrite:           {"topk_write", append(append([]argKind(nil), topkArgs...), argPtr, argI32, argPtr)},
	kGatherRows: {"gather_rows", []argKind{argPtr, argPtr, argPtr, argPtr, argU64, argU64, argI32, argPtr, argI32,
		argPtr, argI32, argI32, argI32}},
}

// Geometry constants shared with kernels/compresskv.cu.
const (
	warps       = 8    // warps of the one-warp-a-row kernels (window_merge, rows_softmax)
	attendWarps = 4    // AW: warps per attend_partial block
	tileRows    = 128  // WT: key rows per window_pass block (a thread each)
	foldMaxRows = 64   // FOLDMAX: rows a window_pass block folds the statistics of itself
	maxHeadDim  = 256  // DMAX
	topkThreads = 1024 // TK
	topkBins    = 2048 // BINS
	topkPasses  = 3    // NPASS
	topkChunk   = 4096 // scores a topk block takes (at least)
	topkBlocks  = 64   // at most, per row
	gatherRows  = 8    // GR: rows per gather_rows block
	poolThreads = 256
)

// log2e is log2(e): the softmax kernels work in base 2 (ex2.approx), with
// logits scaled by it.
const log2e = 1.4426950408889634

// windowPassFor returns the window_pass variant for head dimension d: the
// ones for d <= 64 and d <= 128 run shorter loops.
func windowPassFor(d int) kernel {
	switch {
	case d <= 64:
		return kWindowPassD64
	case d <= 128:
		return kWindowPassD128
	}
	return kWindowPass
}

// attendPartialFor returns the attend_partial variant for head dimension d
// and a group of query heads per KV head, the number of query heads one of
// its blocks serves (grid.z covers the group in chunks of that many), and
// the blocks per SM its launch bounds guarantee.
func attendPartialFor(d, group int) (k kernel, heads, blocksPerSM int) {
	switch {
	case d <= 64:
		return kAttendPartialD64, 8, 2
	case d <= 128 && group > 4:
		return kAttendPartialD128H8, 8, 2
	case d <= 128:
		return kAttendPartialD128, 4, 3
	}
	return kAttendPartial, 4, 3
}

// dim3 is a grid or block size.
type dim3 struct{ x, y, z uint32 }

// check returns an error unless d is a valid grid (block == false) or block
// size: every dimension positive, within CUDA's limits.
func (d dim3) check(block bool) error {
	if d.x == 0 || d.y == 0 || d.z == 0 {
		return fmt.Errorf("empty %v", d)
	}
	if block {
		if d.x > 1024 || d.y > 1024 || d.z > 64 || d.x*d.y*d.z > 1024 {
			return fmt.Errorf("block %v beyond 1024 threads", d)
		}
		return nil
	}
	if d.x > math.MaxInt32 || d.y > 65535 || d.z > 65535 {
		return fmt.Errorf("grid %v beyond (2^31-1, 65535, 65535)", d)
	}
	return nil
}

// ceilDiv returns ceil(a/b) for a >= 0, b > 0.
func ceilDiv(a, b int) int { return (a + b - 1) / b }

// packArgs lays out kernel arguments as cuLaunchKernel wants them: one 8-byte
// slot per argument holding its value, and an array of pointers to the slots.
// Both are Go heap memory that the caller keeps alive until the launch
// returns. The values must match spec's kinds exactly.
func packArgs(spec kernelSpec, args []any) (slots []uint64, ptrs []unsafe.Pointer, err error) {
	if len(args) != len(spec.args) {
		return nil, nil, fmt.Errorf("cuda: %s: %d arguments, want %d", spec.name, len(args), len(spec.args))
	}
	slots = make([]uint64, len(args))
	ptrs = make([]unsafe.Pointer, len(args))
	for i, a := range args {
		kind := spec.args[i]
		ok := false
		switch v := a.(type) {
		case devptr:
			ok = kind == argPtr
			slots[i] = uint64(v)
		case int32:
			ok = kind == argI32
			*(*int32)(unsafe.Pointer(&slots[i])) = v
		case uint64:
			ok = kind == argU64
			slots[i] = v
		case float32:
			ok = kind == argF32
			*(*float32)(unsafe.Pointer(&slots[i])) = v
		}
		if !ok {
			return nil, nil, fmt.Errorf("cuda: %s: argument %d is %T, want kind %d", spec.name, i, a, kind)
		}
		ptrs[i] = unsafe.Pointer(&slots[i])
	}
	return slots, ptrs, nil
}

// CUDA_ERROR_NOT_READY: cuStreamQuery's answer while work is pending.
const errNotReady = 600

// launch starts kernel k on the device's stream. It must run on the device
// thread. The parameter slots are pinned for the call (kernelParams is a C
// array of pointers into them). After the launch, the stream is queried
// (without waiting) so that a fault already raised is reported here, naming
// the kernels launched since the last synchronisation; with
// Options.SyncLaunches the launch waits for the kernel.
func (d *Device) launch(k kernel, grid, block dim3, args ...any) error {
	spec := kernelSpecs[k]
	if err := grid.check(false); err != nil {
		return fmt.Errorf("cuda: %s: %v", spec.name, err)
	}
	if err := block.check(true); err != nil {
		return fmt.Errorf("cuda: %s: %v", spec.name, err)
	}
	slots, ptrs, err := packArgs(spec, args)
	if err != nil {
		return err
	}
	var pin runtime.Pinner
	pin.Pin(&slots[0])
	pin.Pin(&ptrs[0])
	if d.launchHook != nil {
		d.launchHook(k, false)
	}
	code := d.api.cuLaunchKernel(d.fn[k], grid.x, grid.y, grid.z, block.x, block.y, block.z, 0, d.stream,
		unsafe.Pointer(&ptrs[0]), nil)
	pin.Unpin()
	runtime.KeepAlive(slots)
	if err := drvErr("cuLaunchKernel("+spec.name+")", code); err != nil {
		return d.blame(err)
	}
	if d.launchHook != nil {
		d.launchHook(k, true)
	}
	d.launches.Add(1)
	d.unsynced = append(d.unsynced, spec.name)
	if d.syncLaunches {
		return d.sync()
	}
	switch q := d.api.cuStreamQuery(d.stream); q {
	case 0:
		d.unsynced = d.unsynced[:0]
	case errNotReady:
	default:
		return d.blame(drvErr("cuStreamQuery", q))
	}
	return nil
}
