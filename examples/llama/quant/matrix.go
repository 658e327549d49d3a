package quant

import (
	"fmt"
	"sync"

	"github.com/compresskv/compresskv/internal/par"
)

// Matrix is a weight matrix of Rows rows of Cols values of type Type, row
// after row, each row RowBytes(Cols) bytes: a GGUF weight with dims
// [Cols, Rows]. Data is read only; it may be a memory-mapped file.
type Matrix struct {
	Type       Type
	Rows, Cols int
	Data       []byte
}

// NewMatrix returns the matrix of rows rows of cols values of type t held
// in data. It fails, wrapping ErrUnsupported, for a type without a product
// here (F32, F16, BF16, Q4_0, Q8_0, Q4_K and Q6_K have one) and, wrapping
// ErrSize, when cols is not a whole number of blocks or data is not exactly
// rows rows.
func NewMatrix(t Type, rows, cols int, data []byte) (Matrix, error) {
	if dots[t] == nil {
		return Matrix{}, fmt.Errorf("%w: no matrix product for %v weights", ErrUnsupported, t)
	}
	rb, err := t.RowBytes(cols)
	if err != nil {
		return Matrix{}, err
	}
	if rows < 0 || (rb > 0 && rows > maxInt/rb) || len(data) != rows*rb {
		return Matrix{}, fmt.Errorf("%w: %d rows of %d %v values take %d bytes each, data has %d", ErrSize, rows, cols, t, rb, len(data))
	}
	return Matrix{Type: t, Rows: rows, Cols: cols, Data: data}, nil
}

// RowBytes returns the size in bytes of one row.
func (m Matrix) RowBytes() int {
	rb, _ := m.Type.RowBytes(m.Cols)
	return rb
}

// Row dequantizes row i into dst, which must hold Cols values (an
// embedding lookup). It panics when i is out of range or dst has another
// length: a programming error, as an index out of range is.
func (m Matrix) Row(i int, dst []float32) {
	if i < 0 || i >= m.Rows || len(dst) != m.Cols {
		panic(fmt.Sprintf("quant: Row(%d) into %d values of a %dx%d matrix", i, len(dst), m.Rows, m.Cols))
	}
	rb := m.RowBytes()
	dequantize(m.Type, m.Data[i*rb:(i+1)*rb], dst)
}

// rowChunk is the number of weight rows one worker takes at a time: the
// chunk's rows stay in cache while every activation row passes over them.
const rowChunk = 16

// parallelWork is the number of multiply-adds below which MulMat runs on
// the caller's goroutine alone.
const parallelWork = 1 << 18

var actPool sync.Pool // *[]byte: converted activations

// MulMat computes out = x W^T for n rows of x: out[j*Rows+r] is the dot
// product of row j of x (x[j*Cols:(j+1)*Cols]) with row r of W. It computes
// as ggml's CPU backend does: each row of x is converted once to the
// weight type's VecDotType (QuantizeActivations: F16 or BF16 rounding, Q8_0
// or Q8_K blocks; F32 stays F32), then each output is the type's dot
// product of the two rows; see the package's notes on accumulation for how
// the float rounding compares with ggml's.
//
// Large products run on all cores (internal/par), split into chunks of
// weight rows; each output is computed by one goroutine in a fixed order,
// so the result does not depend on the number of cores. Several MulMat
// calls may run at once on one Matrix. MulMat panics when len(x) != n*Cols
// or len(out) != n*Rows, a programming error.
func (m Matrix) MulMat(out, x []float32, n int) {
	if n < 0 || len(x) != n*m.Cols || len(out) != n*m.Rows {
		panic(fmt.Sprintf("quant: MulMat of a %dx%d matrix with %d values for %d rows into %d values", m.Rows, m.Cols, len(x), n, len(out)))
	}
	if n == 0 || m.Rows == 0 {
		return
	}
	vt := m.Type.VecDotType()
	xb, _ := vt.RowBytes(m.Cols)
	p, _ := actPool.Get().(*[]byte)
	if p == nil {
		p = new([]byte)
	}
	if cap(*p) < n*xb {
		*p = make([]byte, n*xb)
	}
	act := (*p)[:n*xb]
	defer actPool.Put(p)

	workers := 1
	if m.Rows*m.Cols*n >= parallelWork {
		workers = 0 // par's default: GOMAXPROCS
	}
	run := func(pieces int, f func(int)) {
		if workers == 1 {
			par.Workers(pieces, 1, f)
		} else {
			par.For(pieces, f)
		}
	}
	run(n, func(j int) {
		quantize(vt, x[j*m.Cols:(j+1)*m.Cols], act[j*xb:(j+1)*xb], true)
	})
	dot := dots[m.Type]
	rb := m.RowBytes()
	chunks := (m.Rows + rowChunk - 1) / rowChunk
	run(chunks, func(c int) {
		r0, r1 := c*rowChunk, min((c+1)*rowChunk, m.Rows)
		for j := range n {
			xr := act[j*xb : (j+1)*xb]
			o := out[j*m.Rows : (j+1)*m.Rows]
			for r := r0; r < r1; r++ {
				o[r] = dot(m.Data[r*rb:(r+1)*rb], xr, m.Cols)
			}
		}
	})
}
