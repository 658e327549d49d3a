//go:build amd64 && !noasm

package quant

import (
	"encoding/binary"
	"math"

	"github.com/klauspost/cpuid/v2"
)

//go:generate go run ./internal/kgen

// The assembly of kernels_amd64.s (tile kernels, written by internal/kgen)
// and convert_amd64.s (activation conversions), chosen once at start from
// the processor's features: AVX-512 (F, BW, VL and VNNI; for BF16 weights
// also AVX512_BF16 where present), else AVX2 with FMA and F16C, else the
// Go of dot.go and convert.go.

var (
	// useAVX2 and useAVX512 select the kernels; tests lower them to check
	// every level on one machine.
	useAVX2   = cpuid.CPU.Supports(cpuid.AVX, cpuid.AVX2, cpuid.FMA3, cpuid.F16C)
	useAVX512 = useAVX2 && cpuid.CPU.Supports(cpuid.AVX512F, cpuid.AVX512BW, cpuid.AVX512VL, cpuid.AVX512VNNI)
	// useBF16 adds VDPBF16PS for BF16 weights at the AVX-512 level.
	useBF16 = cpuid.CPU.Supports(cpuid.AVX512BF16)
)

// KernelLevel names the matrix kernels in use: "avx512", "avx2" or "go".
func KernelLevel() string {
	switch {
	case useAVX512:
		return "avx512"
	case useAVX2:
		return "avx2"
	}
	return "go"
}

// tiles returns the tile kernels of weight type t at the level in use, or
// nil where there are none (Q4_1, Q5_1, and every type in pure Go).
func tiles(t Type) *tileSet {
	switch {
	case useAVX512 && useBF16 && t == BF16:
		return tilesAVX512BF16[t]
	case useAVX512:
		return tilesAVX512[t]
	case useAVX2:
		return tilesAVX2[t]
	}
	return nil
}

// gemvFor returns the decoding kernel of weight type t at the level in use.
func gemvFor(t Type) (gemvKernel, bool) {
	if !useAVX512 {
		return gemvKernel{}, false
	}
	gv, ok := gemvAVX512[t]
	return gv, ok
}

// callGemv runs decoding kernel f on weight rows r0..r0+rows-1 against one
// activation row and its extras.
func callGemv(f gemvFunc, w []byte, r0, rows, rb int, act, ex []byte, out []float32, blocks int) {
	f(&w[r0*rb], uintptr(rb), &act[0], &ex[0], &out[r0], uintptr(rows), uintptr(blocks))
}

// convertActivations is quantize(t, src, dst, true), in assembly for
// Q8_0, Q8_K and F16 where AVX2 is available; the bytes are the same.
func convertActivations(t Type, src []float32, dst []byte) {
	if !useAVX2 || len(src) == 0 {
		quantize(t, src, dst, true)
		return
	}
	switch t {
	case Q8_0:
		quantQ8_0AVX2(&src[0], &dst[0], uintptr(len(src)/32))
	case Q8_K:
		for b := range len(src) / QK_K {
			x, y := src[QK_K*b:QK_K*b+QK_K], dst[292*b:292*b+292]
			hi, lo := rangeQ8_KAVX2(&x[0])
			// The value of largest magnitude, the first where +a and -a
			// tie (left to the Go code), as quantize_row_q8_K_ref takes
			// it; all zero or not finite: the Go code's cases too.
			var mx float32
			switch {
			case hi > -lo:
				mx = hi
			case -lo > hi:
				mx = lo
			}
			if mx == 0 || math.IsInf(float64(mx), 0) || mx != mx {
				quantQ8_K(x, y)
				continue
			}
			iscale := -127 / mx
			quantQ8_KAVX2(&x[0], &y[0], iscale)
			binary.LittleEndian.PutUint32(y, math.Float32bits(1/iscale))
		}
	case F16:
		n := len(src) &^ 7
		if n > 0 {
			f16sAVX2(&dst[0], &src[0], uintptr(n/8))
		}
		quantize(t, src[n:], dst[2*n:], true)
	default:
		quantize(t, src, dst, true)
	}
}

//go:noescape
func quantQ8_0AVX2(x *float32, y *byte, nb uintptr)

//go:noescape
func rangeQ8_KAVX2(x *float32) (hi, lo float32)

//go:noescape
func quantQ8_KAVX2(x *float32, y *byte, iscale float32)

//go:noescape
func f16sAVX2(dst *byte, src *float32, n uintptr)

// callTile runs kernel f on the tile at weight row r and activation row c.
func callTile(f tileFunc, w []byte, r, rb int, act []byte, c, xb int, out []float32, rows, steps int) {
	f(&w[r*rb], uintptr(rb), &act[c*xb], uintptr(xb), &out[c*rows+r], uintptr(4*rows), uintptr(steps))
}
