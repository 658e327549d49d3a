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

// dots is dotsGo, in assembly where d = len(q) is a multiple of 16
// (AVX-512) or 8 (AVX2).
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

// maxOf is maxOfGo, in assembly on the multiple of 8 it can.
func maxOf(x []float32) float32 {
	n := len(x) &^ 7
	if !useAVX2 || n == 0 {
		return maxOfGo(x)
	}
	return max(maxOfAVX2(x[:n]), maxOfGo(x[n:]))
}

// expShift is expShiftGo, in assembly on the multiple of 16 or 8 it can.
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

// accRows is accRowsGo, in assembly where d = len(acc) is a multiple of 16
// (AVX-512) or 8 (AVX2).
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

// axpy is axpyGo, in assembly on the multiple of 8 it can.
func axpy(y []float32, a float32, x []float32) {
	x = x[:len(y)]
	n := len(y) &^ 7
	if useAVX2 && n > 0 {
		axpyAVX2(y[:n], a, x[:n])
		y, x = y[n:], x[n:]
	}
	axpyGo(y, a, x)
}

// decodeF16 is decodeF16Go, in assembly on the multiple of 16 or 8 it can.
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

// decodeBF16 is decodeBF16Go, in assembly on the multiple of 8 it can.
func decodeBF16(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	if n := len(src) &^ 7; useAVX2 && n > 0 {
		decodeBF16AVX2(dst[:n], src[:n])
		dst, src = dst[n:], src[n:]
	}
	decodeBF16Go(dst, src)
}

// Assembly, kernels_amd64.s, laid out as gonum's internal/asm: each
// declaration says, as its comment, which Go loop it computes (the Go twin
// of kernels.go is that loop) and the lengths it requires, which the
// dispatchers above guarantee.

// dotsAVX2 is dotsGo for d = len(q) a multiple of 8, len(dst) >= 1:
//
//	for j := range dst {
//		dst[j] = scale * dot(q, rows[j*d:(j+1)*d])
//	}
//
//go:noescape
func dotsAVX2(dst, q, rows []float32, scale float32)

// dotsAVX512 is dotsAVX2 for d a multiple of 16.
//
//go:noescape
func dotsAVX512(dst, q, rows []float32, scale float32)

// maxOfAVX2 is maxOfGo for len(x) a positive multiple of 8:
//
//	m := -Inf
//	for _, v := range x {
//		if v > m { // NaN skipped
//			m = v
//		}
//	}
//
//go:noescape
func maxOfAVX2(x []float32) float32

// expShiftAVX2 is expShiftGo for len(x) a positive multiple of 8 and
// x[i]-m <= 88:
//
//	for i, v := range x {
//		x[i] = exp(v - m)
//		s += x[i]
//	}
//
//go:noescape
func expShiftAVX2(x []float32, m float32) float32

// expShiftAVX512 is expShiftAVX2 for len(x) a multiple of 16.
//
//go:noescape
func expShiftAVX512(x []float32, m float32) float32

// accRowsAVX2 is accRowsGo for d = len(acc) a multiple of 8, len(p) >= 1:
//
//	for j, pj := range p {
//		for i := range acc {
//			acc[i] += pj * rows[j*d+i]
//		}
//	}
//
//go:noescape
func accRowsAVX2(acc, p, rows []float32)

// accRowsAVX512 is accRowsAVX2 for d a multiple of 16.
//
//go:noescape
func accRowsAVX512(acc, p, rows []float32)

// axpyAVX2 is axpyGo for len(y) == len(x) a positive multiple of 8:
//
//	for i := range y {
//		y[i] += a * x[i]
//	}
//
//go:noescape
func axpyAVX2(y []float32, a float32, x []float32)

// decodeF16AVX2 is decodeF16Go for len(src) a positive multiple of 8:
//
//	for i, h := range src {
//		dst[i] = kvcache.F16ToF32(h)
//	}
//
//go:noescape
func decodeF16AVX2(dst []float32, src []uint16)

// decodeF16AVX512 is decodeF16AVX2 for len(src) a multiple of 16.
//
//go:noescape
func decodeF16AVX512(dst []float32, src []uint16)

// decodeBF16AVX2 is decodeBF16Go for len(src) a positive multiple of 8:
//
//	for i, h := range src {
//		dst[i] = math.Float32frombits(uint32(h) << 16)
//	}
//
//go:noescape
func decodeBF16AVX2(dst []float32, src []uint16)

// sumWords is sumWordsGo, in assembly on the multiple of 32 it can.
func sumWords(x []uint64) uint64 {
	n := len(x) &^ 31
	if !useAVX2 || n == 0 {
		return sumWordsGo(x)
	}
	return sumWordsAVX2(x[:n]) + sumWordsGo(x[n:])
}

// sumWordsAVX2 is sumWordsGo for len(x) a positive multiple of 32:
//
//	for _, v := range x {
//		s += v
//	}
//
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

// prefetchBytes asks for the n > 0 bytes at p to be brought into the
// caches, one request per 64-byte line; it reads nothing and cannot fault.
// It has no Go twin: without assembly prefetchRows does nothing.
//
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

// expShiftQuad is expShiftQuadGo, in assembly on the multiple of 8 it can.
func expShiftQuad(x []float32, m *[4]float32) [4]float32 {
	var s [4]float32
	if n := len(x) &^ 7; useAVX2 && n > 0 {
		expShiftQuadAVX2(x[:n], m, &s)
		x = x[n:]
	}
	t := expShiftQuadGo(x, m)
	return [4]float32{s[0] + t[0], s[1] + t[1], s[2] + t[2], s[3] + t[3]}
}

// logitsQuadF32AVX2 is logitsQuadGo for d = len(q)/4 a multiple of 8 and
// an even number n = len(dst)/4 >= 2 of rows:
//
//	for j := range n {
//		for h := range 4 {
//			dst[j*4+h] = scale * dot(q[h*d:(h+1)*d], rows[j*d:(j+1)*d])
//			mx[h] = max(mx[h], dst[j*4+h]) // NaN may be skipped
//		}
//	}
//
//go:noescape
func logitsQuadF32AVX2(dst, q []float32, rows []float32, scale float32, mx *[4]float32)

// logitsQuadF16AVX2 is logitsQuadF32AVX2 over float16 rows, each converted
// in registers once for the four heads.
//
//go:noescape
func logitsQuadF16AVX2(dst, q []float32, rows []uint16, scale float32, mx *[4]float32)

// logitsQuadBF16AVX2 is logitsQuadF32AVX2 over bfloat16 rows.
//
//go:noescape
func logitsQuadBF16AVX2(dst, q []float32, rows []uint16, scale float32, mx *[4]float32)

// accQuadF32AVX2 is accQuadGo for d = len(acc)/4 a multiple of 16 and
// n = len(p)/4 >= 1 rows:
//
//	for j := range n {
//		for h := range 4 {
//			for i := range d {
//				acc[h*d+i] += p[j*4+h] * rows[j*d+i]
//			}
//		}
//	}
//
//go:noescape
func accQuadF32AVX2(acc, p []float32, rows []float32)

// accQuadF16AVX2 is accQuadF32AVX2 over float16 rows, each converted in
// registers once for the four heads.
//
//go:noescape
func accQuadF16AVX2(acc, p []float32, rows []uint16)

// accQuadBF16AVX2 is accQuadF32AVX2 over bfloat16 rows.
//
//go:noescape
func accQuadBF16AVX2(acc, p []float32, rows []uint16)

// expShiftQuadAVX2 is expShiftQuadGo for len(x) a positive multiple of 8
// and x[i]-m[i%4] <= 88:
//
//	for i := range x {
//		x[i] = exp(x[i] - m[i%4])
//		sums[i%4] += x[i]
//	}
//
//go:noescape
func expShiftQuadAVX2(x []float32, m *[4]float32, sums *[4]float32)
