package cuda

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Options selects the device that Open uses.
type Options struct {
	// Ordinal is the CUDA device index (0 for the first GPU).
	Ordinal int
	// SyncLaunches makes every kernel launch wait for the kernel to finish,
	// so that a fault (an illegal or misaligned address, an assertion) is
	// reported by the launch of the kernel that caused it. It costs the
	// overlap of kernels with the host; for diagnosis.
	SyncLaunches bool
}

// Device is one GPU's primary context with the backend's kernel module
// loaded and a stream, served by one OS thread. Caches and backends made
// from it share that thread: calls from many goroutines are serialised. Close
// it after every Cache and Backend made from it.
type Device struct {
	api     *api
	ordinal int
	cuDev   int32
	ctx     uintptr
	module  uintptr
	fn      [numKernels]uintptr
	stream  uintptr
	th      *thread
	info    DeviceInfo
	pools   bool // memory comes from the device's stream-ordered pool

	syncLaunches bool // Options.SyncLaunches

	blas    uintptr // cuBLAS handle on stream, or 0
	blasErr error   // why blas is 0

	// mu is held for reading by every do for as long as its closure runs,
	// and for writing by Close: Close waits for the calls in flight, and no
	// call starts after it.
	mu     sync.RWMutex
	closed bool

	// unsynced names the kernels launched since the stream was last known
	// idle and fault-free (device thread only): a fault that a later call
	// reports is blamed on them.
	unsynced []string

	live      atomic.Int64 // device allocations not yet freed
	liveBytes atomic.Int64
	launches  atomic.Int64

	// launchHook, when not nil, runs on the device thread just before
	// (after == false) and just after each kernel launch is queued:
	// tools/gpucheck records CUDA events there to time each kernel.
	launchHook func(k kernel, after bool)
}

// DeviceInfo is what the driver says of a device.
type DeviceInfo struct {
	Name            string
	Driver          int // CUDA driver version, e.g. 12040 for 12.4
	Runtime         int // CUDA runtime version found (0: none, it is not needed)
	Major, Minor    int // compute capability
	SMs             int // multiprocessors
	Memory          uint64
	MemoryClockKHz  int // peak memory clock
	MemoryBusBits   int // memory bus width
	ClockKHz        int // peak SM clock
	L2Bytes         int
	RegistersPerSM  int
	SharedPerSM     int // bytes
	MaxThreadsPerSM int
	MaxBlocksPerSM  int
	MemoryPools     bool // stream-ordered allocation (cuMemAllocAsync)
}

// Bandwidth returns the memory bandwidth the clock and bus width give
// (bytes/s, double data rate), 0 if unknown.
func (i DeviceInfo) Bandwidth() float64 {
	return 2 * float64(i.MemoryClockKHz) * 1e3 * float64(i.MemoryBusBits) / 8
}

// Open loads the CUDA driver (see EnvLibDir for the search), retains the
// primary context of device o.Ordinal and loads the kernels. Without a CUDA
// driver or device it returns an error wrapping ErrNoCUDA that says what was
// tried. The CUDA runtime and cuBLAS are optional: Device.Reason says which
// were found. Cost: the driver's JIT compilation of the PTX on first use
// (cached by the driver afterwards).
func Open(o Options) (*Device, error) {
	a, err := systemAPI()
	if err != nil {
		return nil, err
	}
	return openAPI(a, o)
}

// openAPI opens a device through the table a (the real one or a fake).
func openAPI(a *api, o Options) (*Device, error) {
	d := &Device{api: a, ordinal: o.Ordinal, syncLaunches: o.SyncLaunches}
	var retained, loadedMod, streamMade bool
	undo := func() {
		if streamMade {
			a.cuStreamDestroy(d.stream)
		}
		if loadedMod {
			a.cuModuleUnload(d.module)
		}
		if retained {
			a.cuDevicePrimaryCtxRelease(d.cuDev)
		}
	}
	th, err := startThread(func() error {
		if err := drvErr("cuInit", a.cuInit(0)); err != nil {
			return fmt.Errorf("%w (%w)", err, ErrNoCUDA)
		}
		var n int32
		if err := drvErr("cuDeviceGetCount", a.cuDeviceGetCount(&n)); err != nil {
			return fmt.Errorf("%w (%w)", err, ErrNoCUDA)
		}
		if o.Ordinal < 0 || o.Ordinal >= int(n) {
			return fmt.Errorf("cuda: %w: device %d requested, %d present", ErrNoCUDA, o.Ordinal, n)
		}
		if err := drvErr("cuDeviceGet", a.cuDeviceGet(&d.cuDev, int32(o.Ordinal))); err != nil {
			return err
		}
		if err := d.readInfo(); err != nil {
			return err
		}
		if d.info.Major < 8 {
			return fmt.Errorf("cuda: %w: %s has compute capability %d.%d; the kernels need 8.0 (A100, H100, RTX 30 and later)",
				ErrNoCUDA, d.info.Name, d.info.Major, d.info.Minor)
		}
		if err := drvErr("cuDevicePrimaryCtxRetain", a.cuDevicePrimaryCtxRetain(&d.ctx, d.cuDev)); err != nil {
			return err
		}
		retained = true
		if err := drvErr("cuCtxSetCurrent", a.cuCtxSetCurrent(d.ctx)); err != nil {
			undo()
			return err
		}
		if err := d.loadModule(); err != nil {
			undo()
			return err
		}
		loadedMod = true
		for k, s := range kernelSpecs {
			cname := append([]byte(s.name), 0)
			if err := drvErr("cuModuleGetFunction("+s.name+")", a.cuModuleGetFunction(&d.fn[k], d.module, &cname[0])); err != nil {
				undo()
				return err
			}
		}
		if err := drvErr("cuStreamCreate", a.cuStreamCreate(&d.stream, streamNonBlocking)); err != nil {
			undo()
			return err
		}
		streamMade = true
		d.openBLAS()
		return nil
	})
	if err != nil {
		return nil, err
	}
	d.th = th
	return d, nil
}

// readInfo fills d.info from the driver. On the device thread, after
// cuDeviceGet.
func (d *Device) readInfo() error {
	a := d.api
	var name [256]byte
	if err := drvErr("cuDeviceGetName", a.cuDeviceGetName(&name[0], int32(len(name)), d.cuDev)); err != nil {
		return err
	}
	if i := bytes.IndexByte(name[:], 0); i >= 0 {
		d.info.Name = string(name[:i])
	}
	var v int32
	if a.cuDriverGetVersion(&v) == 0 {
		d.info.Driver = int(v)
	}
	if a.cudaRuntimeGetVersion != nil && a.cudaRuntimeGetVersion(&v) == 0 {
		d.info.Runtime = int(v)
	}
	var mem uintptr
	if err := drvErr("cuDeviceTotalMem_v2", a.cuDeviceTotalMem(&mem, d.cuDev)); err != nil {
		return err
	}
	d.info.Memory = uint64(mem)
	for _, at := range []struct {
		attr int32
		dst  *int
	}{
		{attrCCMajor, &d.info.Major}, {attrCCMinor, &d.info.Minor}, {attrMultiprocessors, &d.info.SMs},
		{attrMemoryClockKHz, &d.info.MemoryClockKHz}, {attrMemoryBusBits, &d.info.MemoryBusBits},
		{attrClockKHz, &d.info.ClockKHz}, {attrL2Bytes, &d.info.L2Bytes}, {attrRegistersPerSM, &d.info.RegistersPerSM},
		{attrSharedPerSM, &d.info.SharedPerSM}, {attrMaxThreadsPerSM, &d.info.MaxThreadsPerSM},
		{attrMaxBlocksPerSM, &d.info.MaxBlocksPerSM},
	} {
		if err := drvErr("cuDeviceGetAttribute", a.cuDeviceGetAttribute(&v, at.attr, d.cuDev)); err != nil {
			return fmt.Errorf("%w (attribute %d)", err, at.attr)
		}
		*at.dst = int(v)
	}
	if a.cuMemAllocAsync != nil && a.cuMemFreeAsync != nil && a.cuDeviceGetAttribute(&v, attrMemoryPools, d.cuDev) == 0 && v != 0 {
		d.info.MemoryPools = true
		d.pools = true
	}
	return nil
}

// jitLogBytes is the size of the buffer the driver's JIT writes its error
// log to.
const jitLogBytes = 16 << 10

// CUjit_option values of cuModuleLoadDataEx.
const (
	jitErrorLogBuffer     = 5 // CU_JIT_ERROR_LOG_BUFFER: char *
	jitErrorLogBufferSize = 6 // CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES: in: the buffer's size; out: the log's
)

// loadModule loads the embedded PTX with cuModuleLoadDataEx, so that a JIT
// failure comes back with the compiler's error log, and says what a failure
// most likely means. On the device thread.
func (d *Device) loadModule() error {
	img := ptxImage()
	logBuf := make([]byte, jitLogBytes)
	opts := []int32{jitErrorLogBuffer, jitErrorLogBufferSize}
	// optionValues holds a pointer and a size in pointer-sized slots; the
	// driver writes the log's length back into the size slot.
	// The buffer is pinned, so its address may be held as a uintptr.
	vals := []uintptr{uintptr(unsafe.Pointer(&logBuf[0])), uintptr(len(logBuf))}
	var pin runtime.Pinner
	pin.Pin(&logBuf[0])
	pin.Pin(&img[0])
	pin.Pin(&opts[0])
	pin.Pin(&vals[0])
	code := d.api.cuModuleLoadDataEx(&d.module, unsafe.Pointer(&img[0]), uint32(len(opts)), &opts[0], &vals[0])
	pin.Unpin()
	err := drvErr("cuModuleLoadDataEx", code)
	if err == nil {
		return nil
	}
	n := min(int(vals[1]), len(logBuf))
	if i := bytes.IndexByte(logBuf[:n], 0); i >= 0 {
		n = i
	}
	msg := strings.TrimSpace(string(logBuf[:n]))
	why := "the driver could not JIT the bundled PTX (sm_80, PTX 7.0)"
	switch code {
	case 221:
		why += ": the driver's PTX JIT compiler (libnvidia-ptxjitcompiler) is missing; install the full driver, not only its kernel module"
	case 223:
		why += ": JIT compilation is disabled (CUDA_DISABLE_PTX_JIT is set?); the backend ships PTX only"
	case 222:
		why += ": the driver is older than the PTX version; CUDA 11.0 or newer is needed"
	case 209, 218:
		why += ": is the driver older than CUDA 11.0 or the GPU older than sm_80?"
	}
	if msg != "" {
		why += "; JIT log: " + msg
	}
	return fmt.Errorf("%w: %s", err, why)
}

// Name returns the GPU's name as the driver reports it.
func (d *Device) Name() string { return d.info.Name }

// Info returns what the driver says of the device.
func (d *Device) Info() DeviceInfo { return d.info }

// DriverVersion returns the CUDA driver version (e.g. 12040 for 12.4).
func (d *Device) DriverVersion() int { return d.info.Driver }

// RuntimeVersion returns the version of the CUDA runtime found (e.g. 12080),
// or 0: the backend does not need one.
func (d *Device) RuntimeVersion() int { return d.info.Runtime }

// Libraries returns the paths of the runtime ("" if none was found) and
// driver libraries.
func (d *Device) Libraries() (runtime, driver string) { return d.api.runtimePath, d.api.driverPath }

// Reason says, in a line, what the backend runs on and what it does
// without: "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79 GiB, driver 12.4; no
// cuBLAS: long windows run on the fused kernels; no CUDA runtime, not
// needed)".
func (d *Device) Reason() string {
	var extra []string
	if _, err := d.BLAS(); err != nil {
		why := "not found"
		if !errors.Is(err, ErrNoCUDA) {
			why = firstLine(err.Error())
		}
		extra = append(extra, "no cuBLAS ("+why+"): long windows run on the fused kernels")
	}
	if d.api.runtimePath == "" {
		extra = append(extra, "no CUDA runtime (libcudart), not needed")
	}
	if !d.pools {
		extra = append(extra, "no memory pools: allocations synchronise")
	}
	s := fmt.Sprintf("%s (sm_%d%d, %d SMs, %d GiB, driver %d.%d", d.info.Name, d.info.Major, d.info.Minor, d.info.SMs,
		d.info.Memory>>30, d.info.Driver/1000, d.info.Driver%1000/10)
	for _, e := range extra {
		s += "; " + e
	}
	return s + ")"
}

// LiveAllocations returns the number of device allocations made through d
// and not yet freed, and their bytes: zero once every Cache and Backend made
// from d is closed.
func (d *Device) LiveAllocations() (n, bytes int64) { return d.live.Load(), d.liveBytes.Load() }

// Launches returns the number of kernels launched through d.
func (d *Device) Launches() int64 { return d.launches.Load() }

// MemInfo returns the device's free and total memory (cuMemGetInfo).
func (d *Device) MemInfo() (free, total uint64, err error) {
	err = d.do(func() error {
		var f, t uintptr
		if err := drvErr("cuMemGetInfo_v2", d.api.cuMemGetInfo(&f, &t)); err != nil {
			return err
		}
		free, total = uint64(f), uint64(t)
		return nil
	})
	return free, total, err
}

// Close releases the stream, the module and the primary context. It fails,
// changing nothing, while allocations made through d are live (a Cache or
// Backend not closed). Closing twice is a no-op.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	if n, b := d.LiveAllocations(); n != 0 {
		return fmt.Errorf("cuda: Device.Close: %d allocations (%d bytes) still live: close every Cache and Backend first", n, b)
	}
	err := d.th.do(func() error {
		// A stream destroyed with work queued (a stream-ordered free)
		// releases its resources once that work is done.
		e0 := d.closeBLAS()
		e1 := drvErr("cuStreamDestroy_v2", d.api.cuStreamDestroy(d.stream))
		e2 := drvErr("cuModuleUnload", d.api.cuModuleUnload(d.module))
		e3 := drvErr("cuDevicePrimaryCtxRelease_v2", d.api.cuDevicePrimaryCtxRelease(d.cuDev))
		return errors.Join(e0, e1, e2, e3)
	})
	d.th.stop()
	d.closed = true
	return err
}

// do runs f on the device thread, or returns ErrClosed. It holds d.mu for
// reading while f runs, so that Close never tears the device down under a
// call (f must not call do).
func (d *Device) do(f func() error) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return fmt.Errorf("cuda: device: %w", ErrClosed)
	}
	return d.th.do(f)
}

// The helpers below run on the device thread.

// alloc allocates n bytes (at least 1) and counts the allocation: from the
// device's memory pool in stream order (cuMemAllocAsync: no synchronisation,
// usable by the work queued after it), or with cuMemAlloc where the device
// has no pools.
func (d *Device) alloc(n int64) (devptr, error) {
	if n < 1 {
		n = 1
	}
	var p uintptr
	var err error
	if d.pools {
		err = d.blame(drvErr("cuMemAllocAsync", d.api.cuMemAllocAsync(&p, uintptr(n), d.stream)))
	} else {
		err = drvErr("cuMemAlloc_v2", d.api.cuMemAlloc(&p, uintptr(n)))
	}
	if err != nil {
		return 0, fmt.Errorf("%w (%d bytes)", err, n)
	}
	d.live.Add(1)
	d.liveBytes.Add(n)
	return devptr(p), nil
}

// free releases an allocation of n bytes made by alloc; 0 is a no-op. With
// pools the free is stream-ordered (cuMemFreeAsync): the memory goes back
// to the pool once the work queued before it is done, without waiting.
// Without pools, cuMemFree first waits for the work queued on the device.
func (d *Device) free(p devptr, n int64) error {
	if p == 0 {
		return nil
	}
	if n < 1 {
		n = 1
	}
	d.live.Add(-1)
	d.liveBytes.Add(-n)
	if d.pools {
		return d.blame(drvErr("cuMemFreeAsync", d.api.cuMemFreeAsync(uintptr(p), d.stream)))
	}
	return drvErr("cuMemFree_v2", d.api.cuMemFree(uintptr(p)))
}

func (d *Device) upload(dst devptr, src unsafe.Pointer, n int) error {
	if n == 0 {
		return nil
	}
	return d.blame(drvErr("cuMemcpyHtoDAsync_v2", d.api.cuMemcpyHtoD(uintptr(dst), src, uintptr(n), d.stream)))
}

func (d *Device) download(dst unsafe.Pointer, src devptr, n int) error {
	if n == 0 {
		return nil
	}
	if err := drvErr("cuMemcpyDtoHAsync_v2", d.api.cuMemcpyDtoH(dst, uintptr(src), uintptr(n), d.stream)); err != nil {
		return d.blame(err)
	}
	return d.sync()
}

func (d *Device) copyD(dst, src devptr, n int) error {
	if n == 0 {
		return nil
	}
	return d.blame(drvErr("cuMemcpyDtoDAsync_v2", d.api.cuMemcpyDtoD(uintptr(dst), uintptr(src), uintptr(n), d.stream)))
}

func (d *Device) memset(p devptr, n int) error {
	if n == 0 {
		return nil
	}
	return d.blame(drvErr("cuMemsetD8Async", d.api.cuMemsetD8(uintptr(p), 0, uintptr(n), d.stream)))
}

// sync waits for the stream and reports an asynchronous kernel error.
func (d *Device) sync() error {
	err := d.blame(drvErr("cuStreamSynchronize", d.api.cuStreamSynchronize(d.stream)))
	if err == nil {
		d.unsynced = d.unsynced[:0]
	}
	return err
}

// blame returns err, naming the kernels launched since the stream was last
// known fault-free when err is a kernel fault that a later call (a copy, a
// synchronisation) reported. On the device thread.
func (d *Device) blame(err error) error {
	if err == nil {
		return nil
	}
	var ce *Error
	if errors.As(err, &ce) && isFault(ce.Code) && len(d.unsynced) > 0 {
		return fmt.Errorf("%w: an asynchronous fault of a kernel launched since the last synchronisation: %s",
			err, strings.Join(d.unsynced, ", "))
	}
	return err
}

// uploadI32 and uploadF32 copy host slices to device memory.
func (d *Device) uploadI32(dst devptr, s []int32) error {
	if len(s) == 0 {
		return nil
	}
	return d.upload(dst, unsafe.Pointer(&s[0]), 4*len(s))
}

func (d *Device) uploadF32(dst devptr, s []float32) error {
	if len(s) == 0 {
		return nil
	}
	return d.upload(dst, unsafe.Pointer(&s[0]), 4*len(s))
}

func (d *Device) downloadF32(dst []float32, src devptr) error {
	if len(dst) == 0 {
		return nil
	}
	return d.download(unsafe.Pointer(&dst[0]), src, 4*len(dst))
}

func (d *Device) downloadI32(dst []int32, src devptr) error {
	if len(dst) == 0 {
		return nil
	}
	return d.download(unsafe.Pointer(&dst[0]), src, 4*len(dst))
}

// arena holds named scratch buffers that only grow, for the calls of one
// Backend or Cache; it is used on the device thread only.
type arena struct {
	d    *Device
	bufs map[string]arenaBuf
}

type arenaBuf struct {
	p    devptr
	size int64
}

// get returns a buffer of at least n bytes named name, growing it (without
// keeping its contents) when short.
func (a *arena) get(name string, n int64) (devptr, error) {
	if a.bufs == nil {
		a.bufs = map[string]arenaBuf{}
	}
	b := a.bufs[name]
	if b.size >= n && b.p != 0 {
		return b.p, nil
	}
	if err := a.d.free(b.p, b.size); err != nil {
		return 0, err
	}
	delete(a.bufs, name)
	size := max(n, b.size+b.size/4, 256)
	p, err := a.d.alloc(size)
	if err != nil {
		return 0, err
	}
	a.bufs[name] = arenaBuf{p, size}
	return p, nil
}

// release frees every buffer.
func (a *arena) release() error {
	var first error
	for name, b := range a.bufs {
		if err := a.d.free(b.p, b.size); err != nil && first == nil {
			first = err
		}
		delete(a.bufs, name)
	}
	return first
}

var (
	availOnce sync.Once
	availErr  error
)

// Available reports, once per process, whether a CUDA device can be opened:
// nil, or the error that Open returned (it wraps ErrNoCUDA and says what was
// tried). It opens and closes device 0 the first time.
func Available() error {
	availOnce.Do(func() {
		d, err := Open(Options{})
		if err != nil {
			availErr = err
			return
		}
		availErr = d.Close()
	})
	return availErr
}
