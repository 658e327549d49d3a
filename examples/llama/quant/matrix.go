package quant

import (
	"encoding/binary"
	"fmt"
	"math"
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

// rowChunk is the number of weight rows one worker takes at a time in the
// Go products: the chunk's rows stay in cache while every activation row
// passes over them.
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
// Where the processor has them (KernelLevel), assembly kernels compute
// tiles of weight rows by activation rows, so that a weight block loaded
// once serves several activation rows (a prompt's tokens); with one row
// (decoding) they stream the weights once. Each output is accumulated in
// eight float32 lanes, block after block, as ggml's AVX2 code does, and
// reduced in a fixed order: the result does not depend on the tiles, on n,
// or on the number of cores, and at the AVX2 and AVX-512 levels the
// integer types give the same bits.
//
// Large products run on all cores (internal/par), split by the shape alone
// into tiles of weight rows and activation rows; each output is computed
// by one goroutine in a fixed order, so the result does not depend on the
// number of cores. Several MulMat calls may run at once on one Matrix.
// MulMat panics when len(x) != n*Cols or len(out) != n*Rows, a programming
// error.
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
		convertActivations(vt, x[j*m.Cols:(j+1)*m.Cols], act[j*xb:(j+1)*xb])
	})
	if ts := tiles(m.Type); ts != nil && m.Cols/ts.step > 0 {
		if gv, ok := gemvFor(m.Type); ok && n < ts.C {
			m.mulGemv(gv, out, act, xb, n, run)
			return
		}
		m.mulTiles(ts, out, act, xb, n, run)
		return
	}
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

// tileFunc is a tile kernel: the dot products of R weight rows (at w,
// ws bytes apart) with C activation rows (at x, xs bytes apart) over n
// steps, into out[c*os/4 + r].
type tileFunc func(w *byte, ws uintptr, x *byte, xs uintptr, out *float32, os uintptr, n uintptr)

// tileSet is a weight type's tile kernels: full for R x C tiles, rows for
// R x 1, cols for 1 x C and one for 1 x 1; step is the number of values a
// kernel step takes (the block size, or 8 or 16 for the float types).
type tileSet struct {
	R, C, step            int
	full, rows, cols, one tileFunc
}

// Tile sizes: a worker takes tileRows weight rows (about) by the activation
// rows whose converted values fit tileBytes, so that both stay in its
// core's cache while the kernels pass over them. With at most C activation
// rows (decoding), the weights are read once, from memory: a worker then
// takes streamRows weight rows and reads them one after the other (the
// processor's prefetcher follows one stream; a kernel reading R rows at
// once, R streams, measured at less than half the bandwidth).
const (
	tileRows   = 16
	tileBytes  = 128 << 10
	streamRows = 64
)

// mulTiles is MulMat's product with the tile kernels ts.
func (m Matrix) mulTiles(ts *tileSet, out []float32, act []byte, xb, n int, run func(int, func(int))) {
	R, C := ts.R, ts.C
	rb := m.RowBytes()
	steps := m.Cols / ts.step
	rowsPer := R * max(1, tileRows/R)
	if n <= C {
		R, rowsPer = 1, streamRows
	}
	colsPer := C * max(1, tileBytes/(C*xb))
	nr := (m.Rows + rowsPer - 1) / rowsPer
	nc := (n + colsPer - 1) / colsPer
	tail := m.Cols - steps*ts.step // float types only
	run(nr*nc, func(t int) {
		r0, c0 := t/nc*rowsPer, t%nc*colsPer
		r1, c1 := min(m.Rows, r0+rowsPer), min(n, c0+colsPer)
		for c := c0; c < c1; c += C {
			cc := min(C, c1-c)
			for r := r0; r < r1; r += R {
				rr := min(R, r1-r)
				switch {
				case rr == ts.R && cc == C:
					callTile(ts.full, m.Data, r, rb, act, c, xb, out, m.Rows, steps)
				case rr == ts.R:
					for j := c; j < c+cc; j++ {
						callTile(ts.rows, m.Data, r, rb, act, j, xb, out, m.Rows, steps)
					}
				case cc == C:
					for i := r; i < r+rr; i++ {
						callTile(ts.cols, m.Data, i, rb, act, c, xb, out, m.Rows, steps)
					}
				default:
					for j := c; j < c+cc; j++ {
						for i := r; i < r+rr; i++ {
							callTile(ts.one, m.Data, i, rb, act, j, xb, out, m.Rows, steps)
						}
					}
				}
			}
		}
		if tail > 0 {
			k := steps * ts.step
			for j := c0; j < c1; j++ {
				for i := r0; i < r1; i++ {
					o := &out[j*m.Rows+i]
					*o = float32(float64(*o) + floatDot(m.Type, m.Data[i*rb:(i+1)*rb], act[j*xb:(j+1)*xb], k, m.Cols))
				}
			}
		}
	})
}

// gemvFunc is a decoding kernel: the dot products of rows weight rows (at
// w, ws bytes apart) with one activation row x and its extras ex (see
// q8Extras, q6Extras) over n blocks, into out[0:rows].
type gemvFunc func(w *byte, ws uintptr, x *byte, ex *byte, out *float32, rows uintptr, n uintptr)

// gemvKernel is a type's decoding kernel, the k of its extras (Q8_0
// activations) and their size per activation block.
type gemvKernel struct {
	f       gemvFunc
	k       int32
	exBytes int
}

var extrasPool sync.Pool // *[]byte: q8Extras

// q8Extras writes, for each Q8_0 block of x, -k times the sum of each four
// values (eight int32) and the block's d as float32: 36 bytes a block.
func q8Extras(x, ex []byte, k int32) {
	for b := range len(x) / 34 {
		xb, eb := x[34*b:34*b+34], ex[36*b:36*b+36]
		for l := range 8 {
			var s int32
			for _, q := range xb[2+4*l : 6+4*l] {
				s += int32(int8(q))
			}
			binary.LittleEndian.PutUint32(eb[4*l:], uint32(-k*s))
		}
		binary.LittleEndian.PutUint32(eb[32:], math.Float32bits(f16[le16(xb)]))
	}
}

// q6Extras writes, for each Q8_K block of x, 32 times the sum of each two
// values (int16: what the Q6_K kernels subtract for the quants' offset of
// 32) and the block's d (float32): 260 bytes a block.
func q6Extras(x, ex []byte) {
	for b := range len(x) / 292 {
		xb, eb := x[292*b:292*b+292], ex[260*b:260*b+260]
		for i := range 128 {
			s := 32 * (int32(int8(xb[4+2*i])) + int32(int8(xb[5+2*i])))
			binary.LittleEndian.PutUint16(eb[2*i:], uint16(int16(s)))
		}
		copy(eb[256:260], xb[0:4])
	}
}

// mulGemv is MulMat's product for fewer activation rows than a tile has
// columns (decoding) with a decoding kernel: each worker takes streamRows
// weight rows and runs them, one after the other, against each
// activation row.
func (m Matrix) mulGemv(gv gemvKernel, out []float32, act []byte, xb, n int, run func(int, func(int))) {
	blocks := m.Cols / m.Type.BlockSize()
	eb := gv.exBytes * blocks // extras of one activation row
	p, _ := extrasPool.Get().(*[]byte)
	if p == nil {
		p = new([]byte)
	}
	if cap(*p) < n*eb {
		*p = make([]byte, n*eb)
	}
	ex := (*p)[:n*eb]
	defer extrasPool.Put(p)
	for j := range n {
		x, e := act[j*xb:(j+1)*xb], ex[j*eb:(j+1)*eb]
		if m.Type.VecDotType() == Q8_K {
			q6Extras(x, e)
		} else {
			q8Extras(x, e, gv.k)
		}
	}
	rb := m.RowBytes()
	run((m.Rows+streamRows-1)/streamRows, func(t int) {
		r0, r1 := t*streamRows, min(m.Rows, (t+1)*streamRows)
		for j := range n {
			callGemv(gv.f, m.Data, r0, r1-r0, rb, act[j*xb:], ex[j*eb:], out[j*m.Rows:], blocks)
		}
	})
}

// floatDot returns the float64 sum of the products of values k..n-1 of a
// float-type weight row and its activation row (the tail the tile kernels
// leave when the rows are not a whole number of 8-value steps).
func floatDot(t Type, w, x []byte, k, n int) float64 {
	var s float64
	for i := k; i < n; i++ {
		switch t {
		case F32:
			s += float64(lef32(w[4*i:])) * float64(lef32(x[4*i:]))
		case F16:
			s += float64(f16[le16(w[2*i:])]) * float64(f16[le16(x[2*i:])])
		case BF16:
			s += bf16(w[2*i:]) * bf16(x[2*i:])
		}
	}
	return s
}
