//go:build !amd64 || noasm

package quant

// Without assembly (other architectures, or the noasm tag) every product
// is the Go of dot.go and every conversion the Go of convert.go.

// KernelLevel names the matrix kernels in use: "go" here.
func KernelLevel() string { return "go" }

func tiles(Type) *tileSet { return nil }

func convertActivations(t Type, src []float32, dst []byte) { quantize(t, src, dst, true) }

func callTile(f tileFunc, w []byte, r, rb int, act []byte, c, xb int, out []float32, rows, steps int) {
	panic("quant: no tile kernels")
}

func gemvFor(Type) (gemvKernel, bool) { return gemvKernel{}, false }

func callGemv(f gemvFunc, w []byte, r0, rows, rb int, act, ex []byte, out []float32, blocks int) {
	panic("quant: no decoding kernels")
}
