//go:build amd64 && !noasm

package cpu

import (
	"unsafe"

	"github.com/klauspost/cpuid/v2"

	"github.com/compresskv/compresskv/kvcache"
)

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

func sumWords(x []uint64) uint64 {
	n := len(x) &^ 31
	if !useAVX2 || n == 0 {
		return sumWordsGo(x)
	}
	return sumWordsAVX2(x[:n]) + sumWordsGo(x[n:])
}

//go:noescape
func sumWordsAVX2(x []uint64) uint64

// prefetchRows asks for rows [j0, j1) of r to be brought into the caches.
func prefetchRows(r kvcache.Rows, j0, j1 int) {
	if j1 <= j0 {
		return
	}
	if r.DType == kvcache.Float32 {
		s := r.F32[j0*r.D : j1*r.D]
		prefetchBytes(unsafe.Pointer(unsafe.SliceData(s)), len(s)*4)
		return
	}
	s := r.U16[j0*r.D : j1*r.D]
	prefetchBytes(unsafe.Pointer(unsafe.SliceData(s)), len(s)*2)
}

//go:noescape
func prefetchBytes(p unsafe.Pointer, n int)

// logitsQuad writes to dst (4 values a row) the scaled logits of rows
// [j0, j1) of r against the 4 query heads of q (4 rows of r.D values) and
// raises mx to their maxima per head (NaN skipped); buf (blockRows*r.D
// values) holds rows decoded for the Go tail.
func logitsQuad(dst, q []float32, r kvcache.Rows, j0, j1 int, buf []float32, scale float32, mx *[4]float32) {
	d := r.D
	if even := (j1 - j0) &^ 1; useAVX2 && d%8 == 0 && even > 0 {
		e0, e1 := j0*d, (j0+even)*d
		switch r.DType {
		case kvcache.Float32:
			logitsQuadF32AVX2(dst[:even*4], q, r.F32[e0:e1], scale, mx)
		case kvcache.Float16:
			logitsQuadF16AVX2(dst[:even*4], q, r.U16[e0:e1], scale, mx)
		default:
			logitsQuadBF16AVX2(dst[:even*4], q, r.U16[e0:e1], scale, mx)
		}
		dst, j0 = dst[even*4:], j0+even
	}
	if j0 < j1 {
		logitsQuadGo(dst[:(j1-j0)*4], q, rowsBlock(r, j0, j1, buf), scale, mx)
	}
}

// accQuad adds rows [j0, j1) of r, weighted by p (4 values a row), into
// acc (4 rows of r.D values); buf as for logitsQuad.
func accQuad(acc, p []float32, r kvcache.Rows, j0, j1 int, buf []float32) {
	d := r.D
	if !useAVX2 || d%16 != 0 || j1 <= j0 {
		accQuadGo(acc, p[:(j1-j0)*4], rowsBlock(r, j0, j1, buf))
		return
	}
	e0, e1, p := j0*d, j1*d, p[:(j1-j0)*4]
	switch r.DType {
	case kvcache.Float32:
		accQuadF32AVX2(acc[:4*d], p, r.F32[e0:e1])
	case kvcache.Float16:
		accQuadF16AVX2(acc[:4*d], p, r.U16[e0:e1])
	default:
		accQuadBF16AVX2(acc[:4*d], p, r.U16[e0:e1])
	}
}

func expShiftQuad(x []float32, m *[4]float32) [4]float32 {
	var s [4]float32
	if n := len(x) &^ 7; useAVX2 && n > 0 {
		expShiftQuadAVX2(x[:n], m, &s)
		x = x[n:]
	}
	t := expShiftQuadGo(x, m)
	return [4]float32{s[0] + t[0], s[1] + t[1], s[2] + t[2], s[3] + t[3]}
}

//go:noescape
func logitsQuadF32AVX2(dst, q []float32, rows []float32, scale float32, mx *[4]float32)

//go:noescape
func logitsQuadF16AVX2(dst, q []float32, rows []uint16, scale float32, mx *[4]float32)

//go:noescape
func logitsQuadBF16AVX2(dst, q []float32, rows []uint16, scale float32, mx *[4]float32)

//go:noescape
func accQuadF32AVX2(acc, p []float32, rows []float32)

//go:noescape
func accQuadF16AVX2(acc, p []float32, rows []uint16)

//go:noescape
func accQuadBF16AVX2(acc, p []float32, rows []uint16)

//go:noescape
func expShiftQuadAVX2(x []float32, m *[4]float32, sums *[4]float32)
