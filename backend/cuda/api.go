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
	cuModuleUnload            func(mod uintptr) int32
	cuModuleGetFunction       func(fn *uintptr, mod uintptr, name *byte) int32
	cuLaunchKernel            func(fn uintptr, gx, gy, gz, bx, by, bz, shmem uint32, stream uintptr, params, extra unsafe.Pointer) int32

	runtimePath, driverPath string // where the libraries were found
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
		{1, "cuModuleUnload", &a.cuModuleUnload},
		{1, "cuModuleGetFunction", &a.cuModuleGetFunction},
		{1, "cuLaunchKernel", &a.cuLaunchKernel},
	}
}

// loadAPI finds and opens the runtime and the driver and binds the table.
func loadAPI(sys system, dlsym func(lib uintptr, name string) (uintptr, error), register func(fptr any, sym uintptr)) (*api, error) {
	rt, rtPath, err := openFirst(sys, "CUDA runtime "+fmt.Sprint(runtimeSonames), runtimeSonames)
	if err != nil {
		return nil, err
	}
	drv, drvPath, err := openFirst(sys, "CUDA driver "+fmt.Sprint(driverSonames), driverSonames)
	if err != nil {
		return nil, err
	}
	a := &api{runtimePath: rtPath, driverPath: drvPath}
	libs := [2]uintptr{rt, drv}
	paths := [2]string{rtPath, drvPath}
	for _, s := range a.symbols() {
		sym, err := dlsym(libs[s.lib], s.name)
		if err != nil || sym == 0 {
			return nil, fmt.Errorf("cuda: %w: %s has no symbol %s (too old a CUDA?)", ErrNoCUDA, paths[s.lib], s.name)
		}
		register(s.fptr, sym)
	}
	return a, nil
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
	a, err := loadAPI(osSystem(), dlsym, registerFunc)
	if err != nil {
		return nil, err
	}
	loaded = a
	return a, nil
}
