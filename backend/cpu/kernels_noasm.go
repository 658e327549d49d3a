//go:build !amd64 || noasm

package cpu

import "github.com/compresskv/compresskv/kvcache"

// Without assembly (other architectures, or the noasm build tag) every
// kernel is its portable Go reference.

// kernelLevels returns the levels whose kernels are candidates: Go alone.
func kernelLevels(d int) []level { return []level{levelGo} }

// kernelLevel names the kernels in use: "go" here.
func kernelLevel() string { return "go" }

func dots(dst, q, rows []float32, scale float32) { dotsGo(dst, q, rows, scale) }
func maxOf(x []float32) float32                  { return maxOfGo(x) }
func expShift(x []float32, m float32) float32    { return expShiftGo(x, m) }
func accRows(acc, p, rows []float32)             { accRowsGo(acc, p, rows) }
func axpy(y []float32, a float32, x []float32)   { axpyGo(y, a, x) }
func scale(x []float32, a float32)               { scaleGo(x, a) }
func decodeF16(dst []float32, src []uint16)      { decodeF16Go(dst, src) }
func decodeBF16(dst []float32, src []uint16)     { decodeBF16Go(dst, src) }
func sumWords(x []uint64) uint64                 { return sumWordsGo(x) }
func expQuad(x []float32, m *[4]float32)         { expQuadGo(x, m) }

func expSumQuad(x []float32, m *[4]float32) [4]float32 {
	expQuadGo(x, m)
	return blockSumQuad(x)
}

func dotsAt(_ level, dst, q, rows []float32, scale float32) { dotsGo(dst, q, rows, scale) }
func accRowsAt(_ level, acc, p, rows []float32)             { accRowsGo(acc, p, rows) }

func logitsQuadAt(_ level, dst, q []float32, r kvcache.Rows, j0, j1 int, buf []float32, scale float32, mx *[4]float32) {
	if j1 > j0 {
		logitsQuadGo(dst[:(j1-j0)*4], q, rowsBlock(r, j0, j1, buf), scale, mx)
	}
}

func accQuadAt(_ level, acc, p []float32, r kvcache.Rows, j0, j1 int, buf []float32) {
	if j1 > j0 {
		accQuadGo(acc, p[:(j1-j0)*4], rowsBlock(r, j0, j1, buf))
	}
}
