package cuda

import (
	"fmt"
	"sync"
	"unsafe"
)

// api is the table of CUDA functions the backend calls. Everything goes
// through the driver (libcuda.so.1, the library every NVIDIA driver
// installs): devices, the primary context, memory (stream-ordered where the
// device has memory pools), copies, streams, events, the PTX module, kernel
// launches and the JIT's figures per kernel. The runtime (libcudart) is
// optional and only reports its version; cuBLAS (blas) is optional too.
// Every field is a plain function value, bound with purego.RegisterFunc to
// the C symbol named in symbols (the _v2 entry points where the driver has
// them), or replaced by a fake in tests. Device pointers are uintptr, host
// pointers unsafe.Pointer.
type api struct {
	// driver (CUresult results)
	cuInit                                      func(flags uint32) int32
	cuDriverGetVersion                          func(v *int32) int32
	cuDeviceGetCount                            func(n *int32) int32
	cuDeviceGet                                 func(dev *int32, ordinal int32) int32
	cuDeviceGetName                             func(name *byte, n int32, dev int32) int32
	cuDeviceGetAttribute                        func(v *int32, attr int32, dev int32) int32
	cuDeviceTotalMem                            func(bytes *uintptr, dev int32) int32
	cuDevicePrimaryCtxRetain                    func(ctx *uintptr, dev int32) int32
	cuDevicePrimaryCtxRelease                   func(dev int32) int32
	cuCtxSetCurrent                             func(ctx uintptr) int32
	cuMemAlloc                                  func(p *uintptr, size uintptr) int32
	cuMemFree                                   func(p uintptr) int32
	cuMemAllocAsync                             func(p *uintptr, size uintptr, stream uintptr) int32 // nil before CUDA 11.2
	cuMemFreeAsync                              func(p uintptr, stream uintptr) int32                // nil before CUDA 11.2
	cuMemcpyHtoD                                func(dst uintptr, src unsafe.Pointer, n uintptr, stream uintptr) int32
	cuMemcpyDtoH                                func(dst unsafe.Pointer, src uintptr, n uintptr, stream uintptr) int32
	cuMemcpyDtoD                                func(dst, src uintptr, n uintptr, stream uintptr) int32
	cuMemsetD8                                  func(p uintptr, value uint8, n uintptr, stream uintptr) int32
	cuMemGetInfo                                func(free, total *uintptr) int32
	cuStreamCreate                              func(s *uintptr, flags uint32) int32
	cuStreamDestroy                             func(s uintptr) int32
	cuStreamSynchronize                         func(s uintptr) int32
	cuStreamQuery                               func(s uintptr) int32
	cuEventCreate                               func(e *uintptr, flags uint32) int32
	cuEventRecord                               func(e, s uintptr) int32
	cuEventSynchronize                          func(e uintptr) int32
	cuEventElapsedTime                          func(ms *float32, start, end uintptr) int32
	cuEventDestroy                              func(e uintptr) int32
	cuModuleLoadData                            func(mod *uintptr, image unsafe.Pointer) int32
	cuModuleLoadDataEx                          func(mod *uintptr, image unsafe.Pointer, n uint32, options *int32, values *uintptr) int32
	cuModuleUnload                              func(mod uintptr) int32
	cuModuleGetFunction                         func(fn *uintptr, mod uintptr, name *byte) int32
	cuLaunchKernel                              func(fn uintptr, gx, gy, gz, bx, by, bz, shmem uint32, stream uintptr, params, extra unsafe.Pointer) int32
	cuFuncGetAttribute                          func(v *int32, attr int32, fn uintptr) int32
	cuOccupancyMaxActiveBlocksPerMultiprocessor func(n *int32, fn uintptr, blockSize int32, dynamicSmem uintptr) int32

	// runtime (optional: only its version is read)
	cudaRuntimeGetVersion func(v *int32) int32

	driverPath  string // where the driver was found
	runtimePath string // where the runtime was found, or ""
	runtimeErr  error  // why there is no runtime

	blas    *blasAPI // cuBLAS, or nil
	blasErr error    // why blas is nil
}

// CU_STREAM_NON_BLOCKING: the stream does not synchronise with stream 0.
const streamNonBlocking = 1

// CUdevice_attribute values the backend reads.
const (
	attrMultiprocessors    = 16  // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
	attrMemoryClockKHz     = 36  // CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE
	attrMemoryBusBits      = 37  // CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH
	attrCCMajor            = 75  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
	attrCCMinor            = 76  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR
	attrMemoryPools        = 115 // CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED
	attrRegistersPerSM     = 82  // CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR
	attrSharedPerSM        = 81  // CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR
	attrMaxThreadsPerSM    = 39  // CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR
	attrClockKHz           = 13  // CU_DEVICE_ATTRIBUTE_CLOCK_RATE
	attrL2Bytes            = 38  // CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE
	attrMaxBlocksPerSM     = 106 // CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR
	attrMaxSharedPerBlock  = 8   // CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK
	attrMaxThreadsPerBlock = 1   // CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK
)

// CUfunction_attribute values: what the driver's JIT made of a kernel.
const (
	funcMaxThreads  = 0 // CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK
	funcSharedBytes = 1 // CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES (static)
	funcLocalBytes  = 3 // CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES (per thread: spills and stack)
	funcNumRegs     = 4 // CU_FUNC_ATTRIBUTE_NUM_REGS
	funcPTXVersion  = 5 // CU_FUNC_ATTRIBUTE_PTX_VERSION
	funcBinVersion  = 6 // CU_FUNC_ATTRIBUTE_BINARY_VERSION
)

// symbol binds one function value of the table to a C symbol.
type symbol struct {
	lib      int // 0 runtime, 1 driver, 2 cuBLAS
	name     string
	fptr     any
	optional bool // a driver too old to have it leaves the field nil
}

func (a *api) symbols() []symbol {
	return []symbol{
		{1, "cuInit", &a.cuInit, false},
		{1, "cuDriverGetVersion", &a.cuDriverGetVersion, false},
		{1, "cuDeviceGetCount", &a.cuDeviceGetCount, false},
		{1, "cuDeviceGet", &a.cuDeviceGet, false},
		{1, "cuDeviceGetName", &a.cuDeviceGetName, false},
		{1, "cuDeviceGetAttribute", &a.cuDeviceGetAttribute, false},
		{1, "cuDeviceTotalMem_v2", &a.cuDeviceTotalMem, false},
		{1, "cuDevicePrimaryCtxRetain", &a.cuDevicePrimaryCtxRetain, false},
		{1, "cuDevicePrimaryCtxRelease_v2", &a.cuDevicePrimaryCtxRelease, false},
		{1, "cuCtxSetCurrent", &a.cuCtxSetCurrent, false},
		{1, "cuMemAlloc_v2", &a.cuMemAlloc, false},
		{1, "cuMemFree_v2", &a.cuMemFree, false},
		{1, "cuMemAllocAsync", &a.cuMemAllocAsync, true},
		{1, "cuMemFreeAsync", &a.cuMemFreeAsync, true},
		{1, "cuMemcpyHtoDAsync_v2", &a.cuMemcpyHtoD, false},
		{1, "cuMemcpyDtoHAsync_v2", &a.cuMemcpyDtoH, false},
		{1, "cuMemcpyDtoDAsync_v2", &a.cuMemcpyDtoD, false},
		{1, "cuMemsetD8Async", &a.cuMemsetD8, false},
		{1, "cuMemGetInfo_v2", &a.cuMemGetInfo, false},
		{1, "cuStreamCreate", &a.cuStreamCreate, false},
		{1, "cuStreamDestroy_v2", &a.cuStreamDestroy, false},
		{1, "cuStreamSynchronize", &a.cuStreamSynchronize, false},
		{1, "cuStreamQuery", &a.cuStreamQuery, false},
		{1, "cuEventCreate", &a.cuEventCreate, false},
		{1, "cuEventRecord", &a.cuEventRecord, false},
		{1, "cuEventSynchronize", &a.cuEventSynchronize, false},
		{1, "cuEventElapsedTime", &a.cuEventElapsedTime, false},
		{1, "cuEventDestroy_v2", &a.cuEventDestroy, false},
		{1, "cuModuleLoadData", &a.cuModuleLoadData, false},
		{1, "cuModuleLoadDataEx", &a.cuModuleLoadDataEx, false},
		{1, "cuModuleUnload", &a.cuModuleUnload, false},
		{1, "cuModuleGetFunction", &a.cuModuleGetFunction, false},
		{1, "cuLaunchKernel", &a.cuLaunchKernel, false},
		{1, "cuFuncGetAttribute", &a.cuFuncGetAttribute, false},
		{1, "cuOccupancyMaxActiveBlocksPerMultiprocessor", &a.cuOccupancyMaxActiveBlocksPerMultiprocessor, false},
		{0, "cudaRuntimeGetVersion", &a.cudaRuntimeGetVersion, false},
	}
}

// loadAPI finds and opens the driver and binds the table, then looks for the
// optional libraries: the runtime (for its version) and cuBLAS. Each driver
// candidate is tried in turn until one binds every required symbol; the
// error, when none does, lists every attempt and why it failed. A missing
// runtime or cuBLAS is not an error: runtimeErr and blasErr say why.
func loadAPI(sys system, dlsym func(lib uintptr, name string) (uintptr, error), register func(fptr any, sym uintptr)) (*api, error) {
	a := &api{}
	bind := func(which int, lib uintptr) error {
		syms := a.symbols()
		addrs := make([]uintptr, len(syms))
		for i, s := range syms {
			if s.lib != which {
				continue
			}
			sym, err := dlsym(lib, s.name)
			if err != nil || sym == 0 {
				if s.optional {
					continue
				}
				return fmt.Errorf("no symbol %s: too old a CUDA driver?", s.name)
			}
			addrs[i] = sym
		}
		for i, s := range syms {
			if s.lib == which && addrs[i] != 0 {
				register(s.fptr, addrs[i])
			}
		}
		return nil
	}
	drvPath, err := openEach(sys, "CUDA driver "+fmt.Sprint(driverSonames), driverSonames, func(lib uintptr, _ string) error {
		return bind(1, lib)
	})
	if err != nil {
		return nil, err
	}
	a.driverPath = drvPath
	a.runtimePath, a.runtimeErr = openEach(sys, "CUDA runtime "+fmt.Sprint(runtimeSonames), runtimeSonames, func(lib uintptr, _ string) error {
		return bind(0, lib)
	})
	if a.runtimeErr != nil {
		a.cudaRuntimeGetVersion = nil
	}
	var drv int32
	if a.cuDriverGetVersion != nil {
		a.cuDriverGetVersion(&drv)
	}
	a.blas, a.blasErr = loadBLAS(sys, dlsym, register, blasSonames(a.runtimePath, int(drv)))
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
