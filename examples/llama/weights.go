package llama

import (
	"encoding/binary"
	"math"
	"runtime"
	"unsafe"

	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/examples/llama/quant"
	"github.com/compresskv/compresskv/internal/par"
)

// matrix is a weight matrix of rows outputs by cols inputs (GGUF dimensions
// [cols, rows]) in any type package quant computes with, read in place:
// from a GGUF file's memory mapping, or from a llama2.c checkpoint's bytes.
//
// Products go through quant.Matrix.MulMat, which converts activations as
// ggml does, except for float32 weights: those need no conversion, and the
// runner multiplies them itself in float32 (as ggml's float32 kernels
// accumulate), over the file's bytes seen as float32 values — several
// times faster than quant's portable byte-decoding product, which the
// project's own float32 models would otherwise pay.
type matrix struct {
	q   quant.Matrix
	f32 []float32 // q.Data as float32 values when q.Type is F32
}

// newMatrix returns the matrix of type t over data, without copying it
// (except float32 data that is misaligned, or on a big-endian host).
func newMatrix(t quant.Type, rows, cols int, data []byte) (matrix, error) {
	q, err := quant.NewMatrix(t, rows, cols, data)
	if err != nil {
		return matrix{}, err
	}
	m := matrix{q: q}
	if t == quant.F32 {
		m.f32 = viewF32(data)
	}
	return m, nil
}

// f32Matrix returns the matrix of little-endian float32 values b, which
// must hold exactly rows*cols of them.
func f32Matrix(rows, cols int, b []byte) matrix {
	return matrix{q: quant.Matrix{Type: quant.F32, Rows: rows, Cols: cols, Data: b}, f32: viewF32(b)}
}

// viewF32 returns the little-endian float32 values of b: b itself, seen as
// []float32, where the host is little-endian and b 4-byte aligned (a memory
// mapping, a buffer from the allocator); a decoded copy otherwise.
func viewF32(b []byte) []float32 {
	if len(b) == 0 {
		return nil
	}
	if littleEndian && uintptr(unsafe.Pointer(&b[0]))%4 == 0 {
		return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
	}
	return f32s(b)
}

var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// rows returns the number of output rows (0 for an absent matrix).
func (w matrix) rows() int { return w.q.Rows }

// cols returns the number of inputs.
func (w matrix) cols() int { return w.q.Cols }

// row returns row i of w, dequantized, in dst (grown if short).
func (w matrix) row(i int, dst []float32) []float32 {
	if cap(dst) < w.q.Cols {
		dst = make([]float32, w.q.Cols)
	}
	dst = dst[:w.q.Cols]
	if w.f32 != nil {
		copy(dst, w.f32[i*w.q.Cols:])
	} else {
		w.q.Row(i, dst)
	}
	return dst
}

// mulMat computes out[n][rows] = x[n][cols] . W^T as ggml's CPU backend
// does (activations converted to the weight type's dot-product type): one
// call per weight per chunk of tokens. Float32 products run on the CPU
// backend's row-dot kernels (cpu.MatVec: assembly on AVX2 and AVX-512), or,
// with lanes, sum in the 16 lanes of llamafile's tinyBLAS (dot16: the same
// bits as llama.cpp).
func (w matrix) mulMat(out, x []float32, n int, lanes bool) {
	if w.f32 == nil {
		w.q.MulMat(out, x, n)
		return
	}
	rows, cols := w.q.Rows, w.q.Cols
	work := func(r0, r1 int) {
		for i := 0; i < n; i++ {
			xi := x[i*cols : (i+1)*cols]
			oi := out[i*rows : (i+1)*rows]
			if !lanes {
				// The CPU backend's row-dot kernels: each output one call's,
				// so the split over cores changes no bit.
				if err := cpu.MatVec(oi[r0:r1], xi, w.f32[r0*cols:r1*cols]); err != nil {
					panic(err) // the shapes are the model's own
				}
				continue
			}
			for r := r0; r < r1; r++ {
				oi[r] = dot16(xi, w.f32[r*cols:(r+1)*cols])
			}
		}
	}
	workers := runtime.GOMAXPROCS(0)
	if n*cols*rows < 1<<16 || workers == 1 {
		work(0, rows)
		return
	}
	per := (rows + workers - 1) / workers
	par.For((rows+per-1)/per, func(i int) { work(i*per, min(rows, (i+1)*per)) })
}

// f32s decodes little-endian float32 values.
func f32s(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// f32Bytes returns x as little-endian bytes.
func f32Bytes(x []float32) []byte {
	b := make([]byte, 0, 4*len(x))
	for _, v := range x {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}
