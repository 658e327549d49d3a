package cuda

import (
	"fmt"
	"sync"
	"unsafe"
)

// api is the table of CUDA functions the backend calls: the runtime
// (libcudart) for devices, memory, streams and events; the driver (libcuda)
// for the primary context, the PTX module and kernel launches. Every field is
// a plain function value, bound with purego.RegisterFunc to the C symbol of
// the same name, or replaced by a fake in tests. Device pointers are uintptr,
// host pointers unsafe.Pointer, so the one C function cudaMemcpyAsync is
// bound three times, once per direction.
type api struct {
	// runtime (cudaError_t results)
	cudaGetDeviceCount        func(count *int32) int32
	cudaSetDevice             func(dev int32) int32
	cudaMalloc                func(p *uintptr, size uintptr) int32
	cudaFree                  func(p uintptr) int32
	cudaMemcpyHtoD            func(dst uintptr, src unsafe.Pointer, n uintptr, kind int32, stream uintptr) int32
	cudaMemcpyDtoH            func(dst unsafe.Pointer, src uintptr, n uintptr, kind int32, stream uintptr) int32
	cudaMemcpyDtoD            func(dst, src uintptr, n uintptr, kind int32, stream uintptr) int32
	cudaMemsetAsync           func(p uintptr, value int32, n uintptr, stream uintptr) int32
	cudaStreamCreate          func(s *uintptr, flags uint32) int32
	cudaStreamDestroy         func(s uintptr) int32
	cudaStreamSynchronize     func(s uintptr) int32
	cudaStreamQuery           func(s uintptr) int32
	cudaEventCreate           func(e *uintptr) int32
	cudaEventRecord           func(e, s uintptr) int32
	cudaEventSynchronize      func(e uintptr) int32
	cudaEventElapsedTime      func(ms *float32, start, end uintptr) int32
	cudaEventDestroy          func(e uintptr) int32
	cudaMemGetInfo            func(free, total *uintptr) int32
	cudaRuntimeGetVersion     func(v *int32) int32
	cudaGetLastError          func() int32
	cuInit                    func(flags uint32) int32
	cuDriverGetVersion        func(v *int32) int32
	cuDeviceGet               func(dev *int32, ordinal int32) int32
	cuDeviceGetName           func(name *byte, n int32, dev int32) int32
	cuDevicePrimaryCtxRetain  func(ctx *uintptr, dev int32) int32
	cuDevicePrimaryCtxRelease func(dev int32) int32
	cuCtxSetCurrent           func(ctx uintptr) int32
	cuModuleLoadData          func(mod *uintptr, image unsafe.Pointer) int32
	cuModuleLoadDataEx        func(mod *uintptr, image unsafe.Pointer, n uint32, options *int32, values *uintptr) int32
	cuModuleUnload            func(mod uintptr) int32
	cuModuleGetFunction       func(fn *uintptr, mod uintptr, name *byte) int32
	cuLaunchKernel            func(fn uintptr, gx, gy, gz, bx, by, bz, shmem uint32, stream uintptr, params, extra unsafe.Pointer) int32

	runtimePath, driverPath string // where the libraries were found

	blas    *blasAPI // cuBLAS, or nil
	blasErr error    // why blas is nil
}

// cudaMemcpyKind values.
const (
	memcpyHtoD = 1
	memcpyDtoH = 2
	memcpyDtoD = 3
)

// cudaStreamNonBlocking: the stream does not synchronise with stream 0.
const streamNonBlocking = 1

// symbol binds one function value of the table to a C symbol.
type symbol struct {
	lib  int // 0 runtime, 1 driver
	name string
	fptr any
}

func (a *api) symbols() []symbol {
	return []symbol{
		{0, "cudaGetDeviceCount", &a.cudaGetDeviceCount},
		{0, "cudaSetDevice", &a.cudaSetDevice},
		{0, "cudaMalloc", &a.cudaMalloc},
		{0, "cudaFree", &a.cudaFree},
		{0, "cudaMemcpyAsync", &a.cudaMemcpyHtoD},
		{0, "cudaMemcpyAsync", &a.cudaMemcpyDtoH},
		{0, "cudaMemcpyAsync", &a.cudaMemcpyDtoD},
		{0, "cudaMemsetAsync", &a.cudaMemsetAsync},
		{0, "cudaStreamCreateWithFlags", &a.cudaStreamCreate},
		{0, "cudaStreamDestroy", &a.cudaStreamDestroy},
		{0, "cudaStreamSynchronize", &a.cudaStreamSynchronize},
		{0, "cudaStreamQuery", &a.cudaStreamQuery},
		{0, "cudaEventCreate", &a.cudaEventCreate},
		{0, "cudaEventRecord", &a.cudaEventRecord},
		{0, "cudaEventSynchronize", &a.cudaEventSynchronize},
		{0, "cudaEventElapsedTime", &a.cudaEventElapsedTime},
		{0, "cudaEventDestroy", &a.cudaEventDestroy},
		{0, "cudaMemGetInfo", &a.cudaMemGetInfo},
		{0, "cudaRuntimeGetVersion", &a.cudaRuntimeGetVersion},
		{0, "cudaGetLastError", &a.cudaGetLastError},
		{1, "cuInit", &a.cuInit},
		{1, "cuDriverGetVersion", &a.cuDriverGetVersion},
		{1, "cuDeviceGet", &a.cuDeviceGet},
		{1, "cuDeviceGetName", &a.cuDeviceGetName},
		{1, "cuDevicePrimaryCtxRetain", &a.cuDevicePrimaryCtxRetain},
		{1, "cuDevicePrimaryCtxRelease_v2", &a.cuDevicePrimaryCtxRelease},
		{1, "cuCtxSetCurrent", &a.cuCtxSetCurrent},
		{1, "cuModuleLoadData", &a.cuModuleLoadData},
		{1, "cuModuleLoadDataEx", &a.cuModuleLoadDataEx},
		{1, "cuModuleUnload", &a.cuModuleUnload},
		{1, "cuModuleGetFunction", &a.cuModuleGetFunction},
		{1, "cuLaunchKernel", &a.cuLaunchKernel},
	}
}

// loadAPI finds and opens the driver and the runtime and binds the table,
// and cuBLAS when it is found (its absence is not an error: a.blasErr says
// why).
// Each candidate library is tried in turn until one binds every symbol the
// table needs and, for the runtime, passes probe (it initialises against the
// driver found): a libcudart.so.13 that a 12.x driver cannot serve, or one
// missing a symbol, is skipped for the next candidate. The error, when none
// is usable, lists every attempt and why it failed.
func loadAPI(sys system, dlsym func(lib uintptr, name string) (uintptr, error), register func(fptr any, sym uintptr),
	probe func(*api) error) (*api, error) {
	a := &api{}
	bind := func(which int, lib uintptr, path string) error {
		syms := a.symbols()
		addrs := make([]uintptr, len(syms))
		for i, s := range syms {
			if s.lib != which {
				continue
			}
			sym, err := dlsym(lib, s.name)
			if err != nil || sym == 0 {
				return fmt.Errorf("no symbol %s: too old a CUDA?", s.name)
			}
			addrs[i] = sym
		}
		for i, s := range syms {
			if s.lib == which {
				register(s.fptr, addrs[i])
			}
		}
		return nil
	}
	drvPath, err := openEach(sys, "CUDA driver "+fmt.Sprint(driverSonames), driverSonames, func(lib uintptr, path string) error {
		return bind(1, lib, path)
	})
	if err != nil {
		return nil, err
	}
	rtPath, err := openEach(sys, "CUDA runtime "+fmt.Sprint(runtimeSonames), runtimeSonames, func(lib uintptr, path string) error {
		if err := bind(0, lib, path); err != nil {
			return err
		}
		return probe(a)
	})
	if err != nil {
		return nil, fmt.Errorf("%w (driver %s)", err, drvPath)
	}
	a.runtimePath, a.driverPath = rtPath, drvPath
	a.blas, a.blasErr = loadBLAS(sys, dlsym, register, rtPath)
	return a, nil
}

// probeRuntime checks that the runtime just bound initialises against the
// driver: cudaGetDeviceCount fails with cudaErrorInsufficientDriver when the
// runtime is newer than the driver, cudaErrorStubLibrary for a stub.
// cudaErrorNoDevice passes: the runtime works, and Open says there is no
// device.
func probeRuntime(a *api) error {
	var n int32
	code := a.cudaGetDeviceCount(&n)
	if code == 0 || code == 100 {
		return nil
	}
	return rtErr("cudaGetDeviceCount", code)
}

var (
	loadOnce sync.Mutex
	loaded   *api
)

// systemAPI returns the table bound to the system's CUDA libraries, loaded
// once per process (a failure is retried on the next call).
func systemAPI() (*api, error) {
	loadOnce.Lock()
	defer loadOnce.Unlock()
	if loaded != nil {
		return loaded, nil
	}
	a, err := loadAPI(osSystem(), dlsym, registerFunc, probeRuntime)
	if err != nil {
		return nil, err
	}
	loaded = a
	return a, nil
}
