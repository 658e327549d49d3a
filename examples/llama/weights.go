package llama

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"

	"github.com/compresskv/compresskv/examples/llama/quant"
	"github.com/compresskv/compresskv/internal/par"
)

// matrix is a weight matrix of rows outputs by cols inputs, stored row by
// row (GGUF's ne = [cols, rows]).
type matrix struct {
	rows, cols int
	f32        []float32
}

// f32Matrix returns the matrix of little-endian float32 values b.
func f32Matrix(rows, cols int, b []byte) matrix {
	return matrix{rows: rows, cols: cols, f32: f32s(b)}
}

// f32s decodes little-endian float32 values.
func f32s(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// Rows returns the number of output rows.
func (w matrix) Rows() int { return w.rows }

// row returns row i of w in dst (grown if short).
func (w matrix) row(i int, dst []float32) []float32 {
	if cap(dst) < w.cols {
		dst = make([]float32, w.cols)
	}
	dst = dst[:w.cols]
	copy(dst, w.f32[i*w.cols:(i+1)*w.cols])
	return dst
}

// mulMat computes out[n][rows] = x[n][cols] . W^T, splitting the rows of W
// over cores when the work is large: one call per weight per chunk of
// tokens.
func (w matrix) mulMat(out, x []float32, n int) {
	rows, cols := w.rows, w.cols
	work := func(r0, r1 int) {
		for i := 0; i < n; i++ {
			xi := x[i*cols : (i+1)*cols]
			oi := out[i*rows : (i+1)*rows]
			for r := r0; r < r1; r++ {
				oi[r] = dot(xi, w.f32[r*cols:(r+1)*cols])
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

func dot(a, b []float32) float32 {
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// newMatrix returns the matrix of type t over data.
func newMatrix(t quant.Type, rows, cols int, data []byte) (matrix, error) {
	if t != quant.F32 {
		return matrix{}, fmt.Errorf("%w: %v weights", quant.ErrUnsupported, t)
	}
	if len(data) != 4*rows*cols {
		return matrix{}, fmt.Errorf("%w: %d bytes for %d x %d float32", quant.ErrSize, len(data), rows, cols)
	}
	return f32Matrix(rows, cols, data), nil
}

// dequantize converts data of type t to float32 into out.
func dequantize(t quant.Type, out []float32, data []byte) error {
	if t != quant.F32 {
		return fmt.Errorf("%w: %v values", quant.ErrUnsupported, t)
	}
	if len(data) != 4*len(out) {
		return fmt.Errorf("%w: %d bytes for %d float32", quant.ErrSize, len(data), len(out))
	}
	copy(out, f32s(data))
	return nil
}

// f32Bytes returns the matrix as little-endian float32 rows.
func (w matrix) f32Bytes() ([]byte, error) { return f32Bytes(w.f32), nil }

func appendF32(b []byte, v float32) []byte {
	return binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
}
