package cuda

import _ "embed"

// The module is built with -ffp-contract=off: clang's CUDA default (fast)
// fuses multiply-adds against the source's pragmas and leaves float ops
// without .rn, which the driver's JIT may fuse too; off keeps every float
// operation rounding where the Go code's does (TestPTXContractionOff).
//
//go:generate clang-16 -x cuda --cuda-device-only --cuda-gpu-arch=sm_80 -nocudainc -nocudalib -O3 -S -Xclang -target-feature -Xclang +ptx70 -ffp-contract=off -o kernels/compresskv.ptx kernels/compresskv.cu

// ptxSource is the kernel module, generated from kernels/compresskv.cu.
//
//go:embed kernels/compresskv.ptx
var ptxSource string

// ptxImage returns the module NUL-terminated, as cuModuleLoadDataEx reads it.
func ptxImage() []byte {
	b := make([]byte, len(ptxSource)+1)
	copy(b, ptxSource)
	return b
}
