package cuda

import (
	"fmt"
	"strings"
)

// blasAPI is the part of cuBLAS the backend calls, bound like the runtime
// (purego.RegisterFunc on the C symbols, replaceable by fakes in tests).
// cuBLAS is optional: without it every product runs in the fused kernels.
type blasAPI struct {
	cublasCreate    func(handle *uintptr) int32
	cublasDestroy   func(handle uintptr) int32
	cublasSetStream func(handle, stream uintptr) int32
	// cublasSgemmStridedBatched computes, for b < batch, C_b = alpha *
	// op(A_b) op(B_b) + beta * C_b in column-major storage, X_b = X +
	// b*strideX (in elements); alpha and beta are host pointers.
	cublasSgemmStridedBatched func(handle uintptr, transa, transb int32, m, n, k int32,
		alpha *float32, a uintptr, lda int32, strideA int64, b uintptr, ldb int32, strideB int64,
		beta *float32, c uintptr, ldc int32, strideC int64, batch int32) int32

	path string // where the library was found
}

// cublasOperation_t values.
const (
	blasOpN = 0
	blasOpT = 1
)

func (b *blasAPI) symbols() []symbol {
	return []symbol{
		{2, "cublasCreate_v2", &b.cublasCreate, false},
		{2, "cublasDestroy_v2", &b.cublasDestroy, false},
		{2, "cublasSetStream_v2", &b.cublasSetStream, false},
		{2, "cublasSgemmStridedBatched", &b.cublasSgemmStridedBatched, false},
	}
}

// blasSonames returns the cuBLAS sonames to try: the runtime's major
// version when a runtime was found (at rtPath), else the newest major the
// driver (version drv, e.g. 12040) can serve, newest first: cuBLAS 13 needs a
// CUDA 13 driver.
func blasSonames(rtPath string, drv int) []string {
	for _, major := range []string{"13", "12"} {
		if strings.HasSuffix(rtPath, ".so."+major) {
			return []string{"libcublas.so." + major}
		}
	}
	if drv >= 13000 {
		return []string{"libcublas.so.13", "libcublas.so.12"}
	}
	return []string{"libcublas.so.12"}
}

// loadBLAS finds cuBLAS under one of sonames, searched like the driver, and
// binds it: the first candidate that has every symbol wins. The error wraps
// ErrNoCUDA and lists every attempt.
func loadBLAS(sys system, dlsym func(lib uintptr, name string) (uintptr, error), register func(fptr any, sym uintptr),
	sonames []string) (*blasAPI, error) {
	b := &blasAPI{}
	path, err := openEach(sys, "cuBLAS "+fmt.Sprint(sonames), sonames, func(lib uintptr, _ string) error {
		syms := b.symbols()
		addrs := make([]uintptr, len(syms))
		for i, s := range syms {
			sym, err := dlsym(lib, s.name)
			if err != nil || sym == 0 {
				return fmt.Errorf("no symbol %s: too old a cuBLAS?", s.name)
			}
			addrs[i] = sym
		}
		for i, s := range syms {
			register(s.fptr, addrs[i])
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	b.path = path
	return b, nil
}

// blasNames holds the cublasStatus_t names.
var blasNames = map[int]string{
	0:  "CUBLAS_STATUS_SUCCESS",
	1:  "CUBLAS_STATUS_NOT_INITIALIZED",
	3:  "CUBLAS_STATUS_ALLOC_FAILED",
	7:  "CUBLAS_STATUS_INVALID_VALUE",
	8:  "CUBLAS_STATUS_ARCH_MISMATCH",
	11: "CUBLAS_STATUS_MAPPING_ERROR",
	13: "CUBLAS_STATUS_EXECUTION_FAILED",
	14: "CUBLAS_STATUS_INTERNAL_ERROR",
	15: "CUBLAS_STATUS_NOT_SUPPORTED",
	16: "CUBLAS_STATUS_LICENSE_ERROR",
}

// blasErr maps a cublasStatus_t returned by fn to nil or an *Error.
func blasErr(fn string, code int32) error {
	if code == 0 {
		return nil
	}
	name, ok := blasNames[int(code)]
	if !ok {
		name = "cublasStatus(unknown code)"
	}
	return &Error{Func: fn, Code: int(code), Name: name}
}

// openBLAS creates the device's cuBLAS handle on its stream, or records why
// there is none. On the device thread, after the stream exists.
func (d *Device) openBLAS() {
	a := d.api
	if a.blas == nil {
		d.blasErr = a.blasErr
		if d.blasErr == nil {
			d.blasErr = fmt.Errorf("cuda: %w: cuBLAS not loaded", ErrNoCUDA)
		}
		return
	}
	var h uintptr
	if err := blasErr("cublasCreate_v2", a.blas.cublasCreate(&h)); err != nil {
		d.blasErr = fmt.Errorf("%w (%s)", err, a.blas.path)
		return
	}
	if err := blasErr("cublasSetStream_v2", a.blas.cublasSetStream(h, d.stream)); err != nil {
		a.blas.cublasDestroy(h)
		d.blasErr = err
		return
	}
	d.blas = h
}

// closeBLAS destroys the cuBLAS handle, if any. On the device thread.
func (d *Device) closeBLAS() error {
	if d.blas == 0 {
		return nil
	}
	h := d.blas
	d.blas, d.blasErr = 0, fmt.Errorf("cuda: device: %w", ErrClosed)
	return blasErr("cublasDestroy_v2", d.api.blas.cublasDestroy(h))
}

// BLAS returns the path of the cuBLAS library the device uses for the
// products that pay for one (see Backend.WindowScores), or the reason it
// has none; without cuBLAS the fused kernels compute everything.
func (d *Device) BLAS() (path string, err error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.blas == 0 {
		return "", d.blasErr
	}
	return d.api.blas.path, nil
}

// sgemmBatched runs cublasSgemmStridedBatched on the device's stream. On
// the device thread.
func (d *Device) sgemmBatched(transa, transb int32, m, n, k int, alpha float32, a devptr, lda int, strideA int64,
	b devptr, ldb int, strideB int64, beta float32, c devptr, ldc int, strideC int64, batch int) error {
	code := d.api.blas.cublasSgemmStridedBatched(d.blas, transa, transb, int32(m), int32(n), int32(k),
		&alpha, uintptr(a), int32(lda), strideA, uintptr(b), int32(ldb), strideB,
		&beta, uintptr(c), int32(ldc), strideC, int32(batch))
	if err := blasErr("cublasSgemmStridedBatched", code); err != nil {
		return d.blame(err)
	}
	d.unsynced = append(d.unsynced, "cublasSgemmStridedBatched")
	return nil
}
