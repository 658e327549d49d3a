package cuda

import (
	"errors"
	"fmt"
)

// ErrNoCUDA is wrapped by the error Open returns when no usable CUDA library
// or device is found; the message lists every path tried.
var ErrNoCUDA = errors.New("no CUDA driver found")

// ErrClosed is wrapped by errors from a Device, Cache or Backend used after
// its Close.
var ErrClosed = errors.New("use after Close")

// Error is a failed CUDA call: the function, its result code and the CUDA
// name of the code (CUresult for the driver, cublasStatus_t for cuBLAS).
type Error struct {
	Func string // the CUDA function, e.g. "cuMemAllocAsync"
	Code int    // the result code
	Name string // the code's CUDA name, e.g. "CUDA_ERROR_OUT_OF_MEMORY"
}

// Error returns "cuda: <func>: <name> (<code>)".
func (e *Error) Error() string {
	return fmt.Sprintf("cuda: %s: %s (%d)", e.Func, e.Name, e.Code)
}

// driverNames holds the CUresult names of the common codes.
var driverNames = map[int]string{
	0:   "CUDA_SUCCESS",
	1:   "CUDA_ERROR_INVALID_VALUE",
	2:   "CUDA_ERROR_OUT_OF_MEMORY",
	3:   "CUDA_ERROR_NOT_INITIALIZED",
	4:   "CUDA_ERROR_DEINITIALIZED",
	34:  "CUDA_ERROR_STUB_LIBRARY",
	46:  "CUDA_ERROR_DEVICE_UNAVAILABLE",
	100: "CUDA_ERROR_NO_DEVICE",
	101: "CUDA_ERROR_INVALID_DEVICE",
	200: "CUDA_ERROR_INVALID_IMAGE",
	201: "CUDA_ERROR_INVALID_CONTEXT",
	209: "CUDA_ERROR_NO_BINARY_FOR_GPU",
	218: "CUDA_ERROR_INVALID_PTX",
	221: "CUDA_ERROR_JIT_COMPILER_NOT_FOUND",
	222: "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
	223: "CUDA_ERROR_JIT_COMPILATION_DISABLED",
	301: "CUDA_ERROR_FILE_NOT_FOUND",
	400: "CUDA_ERROR_INVALID_HANDLE",
	500: "CUDA_ERROR_NOT_FOUND",
	600: "CUDA_ERROR_NOT_READY",
	700: "CUDA_ERROR_ILLEGAL_ADDRESS",
	701: "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
	702: "CUDA_ERROR_LAUNCH_TIMEOUT",
	710: "CUDA_ERROR_ASSERT",
	714: "CUDA_ERROR_HARDWARE_STACK_ERROR",
	715: "CUDA_ERROR_ILLEGAL_INSTRUCTION",
	716: "CUDA_ERROR_MISALIGNED_ADDRESS",
	717: "CUDA_ERROR_INVALID_ADDRESS_SPACE",
	718: "CUDA_ERROR_INVALID_PC",
	719: "CUDA_ERROR_LAUNCH_FAILED",
	999: "CUDA_ERROR_UNKNOWN",
}

// isFault reports whether code is a fault of
// a kernel: an error that the device reports asynchronously, after the
// launch returned, and that leaves the context unusable.
func isFault(code int) bool { return code >= 700 && code <= 720 && code != 701 }

// drvErr maps a CUresult returned by fn to nil or an *Error.
func drvErr(fn string, code int32) error {
	if code == 0 {
		return nil
	}
	name, ok := driverNames[int(code)]
	if !ok {
		name = "CUresult(unknown code)"
	}
	return &Error{Func: fn, Code: int(code), Name: name}
}
