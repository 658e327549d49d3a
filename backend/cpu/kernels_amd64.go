//go:build amd64 && !noasm

package cpu

import (
	"math"
	"os"

	"github.com/klauspost/cpuid/v2"

	"github.com/compresskv/compresskv/kvcache"
)

// The assembly kernels of kernels_amd64.s (shared), kernels2_amd64.s (AVX2
// with FMA and F16C) and kernels512_amd64.s (AVX-512 F and VL). The
// processor's features set the highest level at start; the environment
// variable COMPRESSKV_CPU (avx2 or go) lowers it. The logit and
// weighted-sum kernels take their level as an argument: they are the
// candidates the plan (plan.go) chooses among, and every level's kernel
// returns the same bits for the same input. The other dispatchers use the
// highest level and finish in Go what the vector width does not divide.

var (
	// useAVX2 and useAVX512 are the levels in use; tests lower them to
	// check every level on one machine.
	useAVX2, useAVX512 = detectLevels(os.Getenv("COMPRESSKV_CPU"))
)

// detectLevels returns the levels the processor supports, capped by the
// value of COMPRESSKV_CPU ("go", "avx2"; anything else caps nothing).
func detectLevels(cap string) (avx2, avx512 bool) {
	avx2 = cpuid.CPU.Supports(cpuid.AVX, cpuid.AVX2, cpuid.FMA3, cpuid.F16C)
	avx512 = avx2 && cpuid.CPU.Supports(cpuid.AVX512F, cpuid.AVX512VL)
	switch cap {
	case "go":
		return false, false
	case "avx2":
		return avx2, false
	}
	return avx2, avx512
}

// prefetchDistance is how many rows ahead of the rows they read the
// four-head assembly kernels ask the second-level cache for. Measured on
// AMD Zen 4 at 8, 16, 32 and 48 rows: 16 is best in float32 and as good as
// 32 in bfloat16 (docs/RESULTS.md).
const prefetchDistance = 16

// topLevel is the highest level in use.
func topLevel() level {
	switch {
	case useAVX512:
		return levelAVX512
	case useAVX2:
		return levelAVX2
	}
	return levelGo
}

// kernelLevels returns the levels whose logit and weighted-sum kernels
// are candidates for head dimension d, highest first: the assembly levels
// in use where d is a multiple of 8, else Go alone.
func kernelLevels(d int) []level {
	switch {
	case d <= 0 || d%8 != 0 || !useAVX2:
		return []level{levelGo}
	case useAVX512:
		return []level{levelAVX512, levelAVX2}
	}
	return []level{levelAVX2}
}

// kernelLevel names the highest level in use: "avx512", "avx2" or "go".
func kernelLevel() string { return topLevel().String() }

// asm reports whether level l runs rows of d values in assembly.
func asm(l level, d int) bool { return l != levelGo && d > 0 && d%8 == 0 }

// dotsAt is dotsGo at level l.
func dotsAt(l level, dst, q, rows []float32, scale float32) {
	d := len(q)
	if len(dst) == 0 || !asm(l, d) {
		dotsGo(dst, q, rows, scale)
		return
	}
	_ = rows[len(dst)*d-1]
	if l == levelAVX512 {
		dotsAVX512(dst, q, rows, scale)
	} else {
		dotsAVX2(dst, q, rows, scale)
	}
}

// dots is dotsGo at the highest level.
func dots(dst, q, rows []float32, scale float32) { dotsAt(topLevel(), dst, q, rows, scale) }

// accRowsAt is accRowsGo at level l.
func accRowsAt(l level, acc, p, rows []float32) {
	d := len(acc)
	if len(p) == 0 || !asm(l, d) {
		accRowsGo(acc, p, rows)
		return
	}
	_ = rows[len(p)*d-1]
	if l == levelAVX512 {
		accRowsAVX512(acc, p, rows)
	} else {
		accRowsAVX2(acc, p, rows)
	}
}

// accRows is accRowsGo at the highest level.
func accRows(acc, p, rows []float32) { accRowsAt(topLevel(), acc, p, rows) }

// logitsQuadAt writes to dst (4 values a row) the scaled logits of rows
// [j0, j1) of r against the 4 query heads of q (4 rows of r.D values) and
// raises mx to their maxima per head (NaN skipped), at level l; buf
// (blockRows*r.D values) holds rows decoded for Go.
func logitsQuadAt(l level, dst, q []float32, r kvcache.Rows, j0, j1 int, buf []float32, scale float32, mx *[4]float32) {
	d, n := r.D, j1-j0
	if n <= 0 {
		return
	}
	if !asm(l, d) {
		logitsQuadGo(dst[:n*4], q, rowsBlock(r, j0, j1, buf), scale, mx)
		return
	}
	dst, q = dst[:n*4], q[:4*d]
	e0, e1 := j0*d, j1*d
	pf := prefetchDistance * d * r.DType.Size()
	switch {
	case r.DType == kvcache.Float32 && l == levelAVX512:
		logitsQuadF32AVX512(dst, q, r.F32[e0:e1], scale, mx, pf)
	case r.DType == kvcache.Float32:
		logitsQuadF32AVX2(dst, q, r.F32[e0:e1], scale, mx, pf)
	case r.DType == kvcache.Float16 && l == levelAVX512:
		logitsQuadF16AVX512(dst, q, r.U16[e0:e1], scale, mx, pf)
	case r.DType == kvcache.Float16:
		logitsQuadF16AVX2(dst, q, r.U16[e0:e1], scale, mx, pf)
	case l == levelAVX512:
		logitsQuadBF16AVX512(dst, q, r.U16[e0:e1], scale, mx, pf)
	default:
		logitsQuadBF16AVX2(dst, q, r.U16[e0:e1], scale, mx, pf)
	}
}

// accQuadAt adds rows [j0, j1) of r, weighted by p (4 values a row), into
// acc (4 rows of r.D values), row after row, at level l; buf as for
// logitsQuadAt.
func accQuadAt(l level, acc, p []float32, r kvcache.Rows, j0, j1 int, buf []float32) {
	d, n := r.D, j1-j0
	if n <= 0 {
		return
	}
	if !asm(l, d) {
		accQuadGo(acc[:4*d], p[:n*4], rowsBlock(r, j0, j1, buf))
		return
	}
	acc, p = acc[:4*d], p[:n*4]
	e0, e1 := j0*d, j1*d
	pf := prefetchDistance * d * r.DType.Size()
	switch {
	case r.DType == kvcache.Float32 && l == levelAVX512:
		accQuadF32AVX512(acc, p, r.F32[e0:e1], pf)
	case r.DType == kvcache.Float32:
		accQuadF32AVX2(acc, p, r.F32[e0:e1], pf)
	case r.DType == kvcache.Float16 && l == levelAVX512:
		accQuadF16AVX512(acc, p, r.U16[e0:e1], pf)
	case r.DType == kvcache.Float16:
		accQuadF16AVX2(acc, p, r.U16[e0:e1], pf)
	case l == levelAVX512:
		accQuadBF16AVX512(acc, p, r.U16[e0:e1], pf)
	default:
		accQuadBF16AVX2(acc, p, r.U16[e0:e1], pf)
	}
}

// expQuad replaces x[i] by exp(x[i]-m[i%4]) (x[i]-m[i%4] <= 88), at the
// highest level; the last partial vector goes through the assembly padded,
// so that every element gets the same arithmetic wherever it sits.
func expQuad(x []float32, m *[4]float32) {
	switch {
	case useAVX512:
		n := len(x) &^ 15
		if n > 0 {
			expQuadAVX512(x[:n], m)
		}
		if t := x[n:]; len(t) > 0 {
			var buf [16]float32
			copy(buf[:], t)
			expQuadAVX512(buf[:], m)
			copy(t, buf[:])
		}
	case useAVX2:
		n := len(x) &^ 7
		var s [4]float32
		if n > 0 {
			expShiftQuadAVX2(x[:n], m, &s)
		}
		if t := x[n:]; len(t) > 0 {
			var buf [8]float32
			copy(buf[:], t)
			expShiftQuadAVX2(buf[:], m, &s)
			copy(t, buf[:])
		}
	default:
		expQuadGo(x, m)
	}
}

// expSumQuad replaces x[i] by exp(x[i]-m[i%4]) as expQuad and returns per
// head the sum of the results in blockSumQuad's order; the last partial
// vector goes through the assembly padded with -Inf, whose exponential 0
// leaves the sums as they are.
func expSumQuad(x []float32, m *[4]float32) [4]float32 {
	if !useAVX2 {
		expQuadGo(x, m)
		return blockSumQuad(x)
	}
	var part [16]float32
	n := len(x) &^ 15
	if n > 0 {
		expSumQuadAt(x[:n], m, &part)
	}
	if t := x[n:]; len(t) > 0 {
		var buf [16]float32
		for i := range buf {
			buf[i] = float32(math.Inf(-1))
		}
		copy(buf[:], t)
		expSumQuadAt(buf[:], m, &part)
		copy(t, buf[:])
	}
	var s [4]float32
	for h := range s {
		s[h] = (part[h] + part[8+h]) + (part[4+h] + part[12+h])
	}
	return s
}

// expSumQuadAt calls the assembly of the highest level (directly, so that
// its arguments stay on the stack).
func expSumQuadAt(x []float32, m *[4]float32, part *[16]float32) {
	if useAVX512 {
		expSumQuadAVX512(x, m, part)
	} else {
		expSumQuadAVX2(x, m, part)
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

// scale is scaleGo, in assembly on the multiple of 8 it can (one rounded
// product a value either way).
func scale(x []float32, a float32) {
	n := len(x) &^ 7
	if useAVX2 && n > 0 {
		scaleAVX2(x[:n], a)
		x = x[n:]
	}
	scaleGo(x, a)
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

// decodeBF16 is decodeBF16Go, in assembly on the multiple of 16 or 8 it
// can.
func decodeBF16(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	switch {
	case useAVX512 && len(src) >= 16:
		n := len(src) &^ 15
		decodeBF16AVX512(dst[:n], src[:n])
		dst, src = dst[n:], src[n:]
	case useAVX2 && len(src) >= 8:
		n := len(src) &^ 7
		decodeBF16AVX2(dst[:n], src[:n])
		dst, src = dst[n:], src[n:]
	}
	decodeBF16Go(dst, src)
}

// sumWords is sumWordsGo, in assembly on the multiple of 32 it can.
func sumWords(x []uint64) uint64 {
	n := len(x) &^ 31
	if !useAVX2 || n == 0 {
		return sumWordsGo(x)
	}
	return sumWordsAVX2(x[:n]) + sumWordsGo(x[n:])
}

// Assembly, laid out as gonum's internal/asm: each declaration says, as
// its comment, which Go loop it computes (the Go twin of kernels.go is that
// loop) and the lengths it requires, which the dispatchers above
// guarantee. The logit kernels sum in the order kernels512_amd64.s
// describes, the same at both levels.

// dotsAVX2 is dotsGo for d = len(q) a multiple of 8, len(dst) >= 1:
//
//	for j := range dst {
//		dst[j] = scale * dot(q, rows[j*d:(j+1)*d])
//	}
//
//go:noescape
func dotsAVX2(dst, q, rows []float32, scale float32)

// dotsAVX512 is dotsAVX2 in AVX-512, with the same result.
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

// accRowsAVX512 is accRowsAVX2 in AVX-512, with the same result.
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

// scaleAVX2 is scaleGo for len(x) a positive multiple of 8:
//
//	for i := range x {
//		x[i] *= a
//	}
//
//go:noescape
func scaleAVX2(x []float32, a float32)

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

// decodeBF16AVX512 is decodeBF16AVX2 for len(src) a multiple of 16.
//
//go:noescape
func decodeBF16AVX512(dst []float32, src []uint16)

// sumWordsAVX2 is sumWordsGo for len(x) a positive multiple of 32:
//
//	for _, v := range x {
//		s += v
//	}
//
//go:noescape
func sumWordsAVX2(x []uint64) uint64

// logitsQuadF32AVX2 is logitsQuadGo for d = len(q)/4 a multiple of 8 and
// n = len(dst)/4 >= 1 rows, reading the rows in order and asking the
// caches for the bytes pf ahead of them (prefetch; no fault past the end):
//
//	for j := range n {
//		for h := range 4 {
//			dst[j*4+h] = scale * dot(q[h*d:(h+1)*d], rows[j*d:(j+1)*d])
//			mx[h] = max(mx[h], dst[j*4+h]) // NaN skipped
//		}
//	}
//
//go:noescape
func logitsQuadF32AVX2(dst, q []float32, rows []float32, scale float32, mx *[4]float32, pf int)

// logitsQuadF16AVX2 is logitsQuadF32AVX2 over float16 rows, each converted
// in registers once for the four heads.
//
//go:noescape
func logitsQuadF16AVX2(dst, q []float32, rows []uint16, scale float32, mx *[4]float32, pf int)

// logitsQuadBF16AVX2 is logitsQuadF32AVX2 over bfloat16 rows.
//
//go:noescape
func logitsQuadBF16AVX2(dst, q []float32, rows []uint16, scale float32, mx *[4]float32, pf int)

// logitsQuadF32AVX512 is logitsQuadF32AVX2 in AVX-512, four rows at a time,
// with the same result.
//
//go:noescape
func logitsQuadF32AVX512(dst, q []float32, rows []float32, scale float32, mx *[4]float32, pf int)

// logitsQuadF16AVX512 is logitsQuadF16AVX2 in AVX-512.
//
//go:noescape
func logitsQuadF16AVX512(dst, q []float32, rows []uint16, scale float32, mx *[4]float32, pf int)

// logitsQuadBF16AVX512 is logitsQuadBF16AVX2 in AVX-512.
//
//go:noescape
func logitsQuadBF16AVX512(dst, q []float32, rows []uint16, scale float32, mx *[4]float32, pf int)

// accQuadF32AVX2 is accQuadGo for d = len(acc)/4 a multiple of 8 and
// n = len(p)/4 >= 1 rows, row after row (each row read once for the four
// heads), asking the caches for the bytes pf ahead of the rows:
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
func accQuadF32AVX2(acc, p []float32, rows []float32, pf int)

// accQuadF16AVX2 is accQuadF32AVX2 over float16 rows, each converted in
// registers once for the four heads.
//
//go:noescape
func accQuadF16AVX2(acc, p []float32, rows []uint16, pf int)

// accQuadBF16AVX2 is accQuadF32AVX2 over bfloat16 rows.
//
//go:noescape
func accQuadBF16AVX2(acc, p []float32, rows []uint16, pf int)

// accQuadF32AVX512 is accQuadF32AVX2 in AVX-512, four rows at a time, with
// the same result.
//
//go:noescape
func accQuadF32AVX512(acc, p []float32, rows []float32, pf int)

// accQuadF16AVX512 is accQuadF16AVX2 in AVX-512.
//
//go:noescape
func accQuadF16AVX512(acc, p []float32, rows []uint16, pf int)

// accQuadBF16AVX512 is accQuadBF16AVX2 in AVX-512.
//
//go:noescape
func accQuadBF16AVX512(acc, p []float32, rows []uint16, pf int)

// expShiftQuadAVX2 is expQuadGo, also summing per head, for len(x) a
// positive multiple of 8 and x[i]-m[i%4] <= 88:
//
//	for i := range x {
//		x[i] = exp(x[i] - m[i%4])
//		sums[i%4] += x[i]
//	}
//
//go:noescape
func expShiftQuadAVX2(x []float32, m *[4]float32, sums *[4]float32)

// expQuadAVX512 is the exponential of expShiftQuadAVX2 (the same bits,
// no sums) for len(x) a positive multiple of 16:
//
//	for i := range x {
//		x[i] = exp(x[i] - m[i%4])
//	}
//
//go:noescape
func expQuadAVX512(x []float32, m *[4]float32)

// expSumQuadAVX512 is expQuadAVX512 that also adds the results into the
// partial sums of blockSumQuad, for len(x) a positive multiple of 16:
//
//	for i := range x {
//		x[i] = exp(x[i] - m[i%4])
//		part[(i/4%4)*4+i%4] += x[i]
//	}
//
//go:noescape
func expSumQuadAVX512(x []float32, m *[4]float32, part *[16]float32)

// expSumQuadAVX2 is expSumQuadAVX512 in AVX2, with the same result.
//
//go:noescape
func expSumQuadAVX2(x []float32, m *[4]float32, part *[16]float32)
