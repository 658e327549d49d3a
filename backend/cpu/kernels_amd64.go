//go:build amd64 && !noasm

package cpu

import "github.com/klauspost/cpuid/v2"

// The assembly kernels of kernels_amd64.s, chosen once at start from the
// processor's features: AVX-512 (F, with VL for the ymm forms it mixes in),
// else AVX2 with FMA and F16C, else the Go references of kernels.go. Each
// dispatcher hands the assembly the part of its input the vector width
// divides and finishes the rest in Go.

var (
	// useAVX2 and useAVX512 select the kernels; tests lower them to check
	// every level on one machine.
	useAVX2   = cpuid.CPU.Supports(cpuid.AVX, cpuid.AVX2, cpuid.FMA3, cpuid.F16C)
	useAVX512 = useAVX2 && cpuid.CPU.Supports(cpuid.AVX512F, cpuid.AVX512VL)
)

// kernelLevel names the kernels in use: "avx512", "avx2" or "go".
func kernelLevel() string {
	switch {
	case useAVX512:
		return "avx512"
	case useAVX2:
		return "avx2"
	}
	return "go"
}

// dots: rows of d values, d a multiple of 16 (AVX-512) or 8 (AVX2).
func dots(dst, q, rows []float32, scale float32) {
	d := len(q)
	if len(dst) == 0 || d == 0 {
		dotsGo(dst, q, rows, scale)
		return
	}
	_ = rows[len(dst)*d-1]
	switch {
	case useAVX512 && d%16 == 0:
		dotsAVX512(dst, q, rows, scale)
	case useAVX2 && d%8 == 0 && d > 0:
		dotsAVX2(dst, q, rows, scale)
	default:
		dotsGo(dst, q, rows, scale)
	}
}

func maxOf(x []float32) float32 {
	n := len(x) &^ 7
	if !useAVX2 || n == 0 {
		return maxOfGo(x)
	}
	return max(maxOfAVX2(x[:n]), maxOfGo(x[n:]))
}

func expShift(x []float32, m float32) float32 {
	var s float32
	switch {
	case useAVX512 && len(x) >= 16:
		n := len(x) &^ 15
		s = expShiftAVX512(x[:n], m)
		x = x[n:]
	case useAVX2 && len(x) >= 8:
		n := len(x) &^ 7
		s = expShiftAVX2(x[:n], m)
		x = x[n:]
	}
	return s + expShiftGo(x, m)
}

func accRows(acc, p, rows []float32) {
	d := len(acc)
	if len(p) == 0 || d == 0 {
		return
	}
	_ = rows[len(p)*d-1]
	switch {
	case useAVX512 && d%16 == 0:
		accRowsAVX512(acc, p, rows)
	case useAVX2 && d%8 == 0 && d > 0:
		accRowsAVX2(acc, p, rows)
	default:
		accRowsGo(acc, p, rows)
	}
}

func axpy(y []float32, a float32, x []float32) {
	x = x[:len(y)]
	n := len(y) &^ 7
	if useAVX2 && n > 0 {
		axpyAVX2(y[:n], a, x[:n])
		y, x = y[n:], x[n:]
	}
	axpyGo(y, a, x)
}

func decodeF16(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	switch {
	case useAVX512 && len(src) >= 16:
		n := len(src) &^ 15
		decodeF16AVX512(dst[:n], src[:n])
		dst, src = dst[n:], src[n:]
	case useAVX2 && len(src) >= 8:
		n := len(src) &^ 7
		decodeF16AVX2(dst[:n], src[:n])
		dst, src = dst[n:], src[n:]
	}
	decodeF16Go(dst, src)
}

func decodeBF16(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	if n := len(src) &^ 7; useAVX2 && n > 0 {
		decodeBF16AVX2(dst[:n], src[:n])
		dst, src = dst[n:], src[n:]
	}
	decodeBF16Go(dst, src)
}

// Assembly, kernels_amd64.s. Lengths are as the dispatchers above pass them:
// dst non-empty and len(rows) >= len(dst)*len(q) (dots), len(p) >= 1 and
// len(rows) >= len(p)*len(acc) (accRows), other lengths multiples of the
// vector width (8 for AVX2, 16 for AVX-512) and equal between operands.

//go:noescape
func dotsAVX2(dst, q, rows []float32, scale float32)

//go:noescape
func dotsAVX512(dst, q, rows []float32, scale float32)

//go:noescape
func maxOfAVX2(x []float32) float32

//go:noescape
func expShiftAVX2(x []float32, m float32) float32

//go:noescape
func expShiftAVX512(x []float32, m float32) float32

//go:noescape
func accRowsAVX2(acc, p, rows []float32)

//go:noescape
func accRowsAVX512(acc, p, rows []float32)

//go:noescape
func axpyAVX2(y []float32, a float32, x []float32)

//go:noescape
func decodeF16AVX2(dst []float32, src []uint16)

//go:noescape
func decodeF16AVX512(dst []float32, src []uint16)

//go:noescape
func decodeBF16AVX2(dst []float32, src []uint16)
