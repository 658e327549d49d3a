package quant

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/compresskv/compresskv/internal/reftest"
)

var weightTypes = []Type{F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q6_K}

// randomRows returns rows rows of cols values of type t: random floats for
// the float types; random bytes for the quantized types, whose scales are
// set to random positive halfs of moderate size (every bit pattern of the
// quants and of the K-quants' packed scales is reached).
func randomRows(r *rand.Rand, t Type, rows, cols int) []byte {
	rb, _ := t.RowBytes(cols)
	b := make([]byte, rows*rb)
	switch t {
	case F32, F16, BF16:
		x := reftest.Normal(r, rows*cols, 1)
		quantize(t, x, b, false)
		return b
	}
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	half := func() []byte { return binary.LittleEndian.AppendUint16(nil, F32ToF16(float32(0.001+0.05*r.Float64()))) }
	for blk := 0; blk < len(b); blk += t.BlockBytes() {
		bb := b[blk : blk+t.BlockBytes()]
		switch t {
		case Q4_0, Q5_0, Q8_0:
			copy(bb, half())
		case Q4_1, Q5_1:
			copy(bb, half())
			m := half()
			m[1] |= byte(r.Uint32() & 0x80) // a min of either sign
			copy(bb[2:], m)
		case Q4_K:
			copy(bb, half())
			copy(bb[2:], half())
		case Q6_K:
			copy(bb[208:], half())
		}
	}
	return b
}

// split returns the two parts of each dequantized value of a type with
// mins (Q4_1, Q5_1, Q4_K), the scaled quant and the min (d*q and m, or
// d*scale*q and -dmin*min), by dequantizing copies with the min's scale
// and with d zeroed; for other types, the values and zeros.
func split(t Type, row []byte) (a, m []float32) {
	n := len(row) / t.BlockBytes() * t.BlockSize()
	a, m = make([]float32, n), make([]float32, n)
	var scale, min int // byte offsets of d and of the min's scale
	switch t {
	case Q4_1, Q5_1, Q4_K:
		scale, min = 0, 2
	default:
		dequantize(t, row, a)
		return a, m
	}
	c := append([]byte(nil), row...)
	for i := 0; i < len(c); i += t.BlockBytes() {
		c[i+min], c[i+min+1] = 0, 0
	}
	dequantize(t, c, a)
	copy(c, row)
	for i := 0; i < len(c); i += t.BlockBytes() {
		c[i+scale], c[i+scale+1] = 0, 0
	}
	dequantize(t, c, m)
	return a, m
}

// sRounding returns, for a weight row with mins (Q4_1, Q5_1) and Q8_1
// activations, the sum over the blocks of |m| * |s - d*sum(q)|: ggml uses
// the activation block's F16-rounded sum s, so its product departs from
// the dequantized values' by up to this much.
func sRounding(t Type, row, act []byte) float64 {
	if t != Q4_1 && t != Q5_1 {
		return 0
	}
	var e float64
	for b := 0; b < len(act)/36; b++ {
		xb := act[36*b : 36*b+36]
		var sum int
		for _, q := range xb[4:] {
			sum += int(int8(q))
		}
		s := float64(F16ToF32(le16(xb[2:])))
		m := float64(F16ToF32(le16(row[t.BlockBytes()*b+2:])))
		e += math.Abs(m) * math.Abs(s-float64(F16ToF32(le16(xb)))*float64(sum))
	}
	return e
}

// TestMulMat checks every weight type's product against a float64
// reference over the dequantized weights and the dequantized converted
// activations, at odd numbers of blocks and rows. The bound: the block
// scales and the final sum are rounded to float32 (2^-24 each), and so are
// the reference's dequantized values; 6*2^-24 times the sum of the
// magnitudes of the terms covers them. Leaving out the activations'
// conversion (F16 rounding, Q8 quantization) misses it by orders of
// magnitude.
func TestMulMat(t *testing.T) {
	r, _ := reftest.Rand(t)
	for _, typ := range weightTypes {
		for _, blocks := range []int{1, 3, 7} {
			cols := blocks * typ.BlockSize()
			if typ.BlockSize() == 1 {
				cols = 32*blocks + 1 // odd lengths for the float types
			}
			rows, n := 37, 3
			t.Run(fmt.Sprintf("%v/%dx%d", typ, rows, cols), func(t *testing.T) {
				data := randomRows(r, typ, rows, cols)
				m, err := NewMatrix(typ, rows, cols, data)
				if err != nil {
					t.Fatal(err)
				}
				x := reftest.Normal(r, n*cols, 1)
				x[0] = 0 // a zero and a large value in the first block
				x[1] = 30
				out := make([]float32, n*rows)
				m.MulMat(out, x, n)

				vt := typ.VecDotType()
				xb, _ := vt.RowBytes(cols)
				xq := make([]byte, xb)
				xh := make([]float32, cols)
				w := make([]float32, cols)
				var unconverted, worst float64
				for j := range n {
					must(t, QuantizeActivations(vt, x[j*cols:(j+1)*cols], xq))
					must(t, Dequantize(vt, xq, xh))
					for row := range rows {
						rowBytes := data[row*m.RowBytes() : (row+1)*m.RowBytes()]
						m.Row(row, w)
						a, mins := split(typ, rowBytes)
						var ref, mag, raw float64
						for i := range cols {
							ref += float64(w[i]) * float64(xh[i])
							raw += float64(w[i]) * float64(x[j*cols+i])
							mag += math.Abs(float64(xh[i])) * (math.Abs(float64(a[i])) + math.Abs(float64(mins[i])))
						}
						got := float64(out[j*rows+row])
						tol := 6*0x1p-24*mag + sRounding(typ, rowBytes, xq) + 1e-30
						if math.Abs(got-ref) > tol {
							t.Fatalf("x row %d, weight row %d: %v, reference %v (difference %.3g, bound %.3g)", j, row, got, ref, got-ref, tol)
						}
						worst = max(worst, math.Abs(got-ref)/tol)
						unconverted = max(unconverted, math.Abs(raw-ref)/tol)
					}
				}
				if typ != F32 && unconverted < 10 {
					t.Errorf("the activations' conversion moves the result by only %.2g bounds", unconverted)
				}
				t.Logf("largest difference %.2g of the bound; conversion of the activations %.3g bounds", worst, unconverted)
			})
		}
	}
}

// TestMulMatDeterministic: the product on one core and on all cores is
// the same, bit for bit, at a size that runs in parallel.
func TestMulMatDeterministic(t *testing.T) {
	r, _ := reftest.Rand(t)
	for _, typ := range []Type{Q8_0, Q4_K, F16} {
		rows, cols, n := 301, 512, 5
		m, err := NewMatrix(typ, rows, cols, randomRows(r, typ, rows, cols))
		if err != nil {
			t.Fatal(err)
		}
		if rows*cols*n < parallelWork {
			t.Fatal("size too small to run in parallel")
		}
		x := reftest.Normal(r, n*cols, 1)
		all := make([]float32, n*rows)
		m.MulMat(all, x, n)
		prev := runtime.GOMAXPROCS(1)
		one := make([]float32, n*rows)
		m.MulMat(one, x, n)
		runtime.GOMAXPROCS(prev)
		for i := range all {
			if math.Float32bits(all[i]) != math.Float32bits(one[i]) {
				t.Fatalf("%v output %d: %v on all cores, %v on one", typ, i, all[i], one[i])
			}
		}
		// One row at a time gives the same as the rows together.
		row := make([]float32, rows)
		for j := range n {
			m.MulMat(row, x[j*cols:(j+1)*cols], 1)
			for i := range row {
				if row[i] != all[j*rows+i] {
					t.Fatalf("%v row %d output %d: %v alone, %v with the others", typ, j, i, row[i], all[j*rows+i])
				}
			}
		}
	}
}

// TestMatrixErrors: NewMatrix refuses what it cannot multiply; MulMat and
// Row panic on lengths that do not fit (programming errors).
func TestMatrixErrors(t *testing.T) {
	for _, c := range []struct {
		t          Type
		rows, cols int
		n          int
		want       error
	}{
		{Q8_0, 2, 48, 68, ErrSize},
		{Q8_0, 2, 32, 67, ErrSize},
		{Q8_0, -1, 32, 0, ErrSize},
		{Q8_K, 1, 256, 292, ErrUnsupported},
		{Q5_K, 1, 256, 176, ErrUnsupported},
		{Type(77), 1, 1, 1, ErrUnsupported},
	} {
		if _, err := NewMatrix(c.t, c.rows, c.cols, make([]byte, c.n)); !errors.Is(err, c.want) {
			t.Errorf("NewMatrix(%v, %d, %d, %d bytes): %v, want %v", c.t, c.rows, c.cols, c.n, err, c.want)
		}
	}
	m, err := NewMatrix(F32, 2, 3, make([]byte, 24))
	if err != nil {
		t.Fatal(err)
	}
	panics := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", name)
			}
		}()
		f()
	}
	panics("MulMat short x", func() { m.MulMat(make([]float32, 2), make([]float32, 2), 1) })
	panics("MulMat short out", func() { m.MulMat(make([]float32, 1), make([]float32, 3), 1) })
	panics("Row out of range", func() { m.Row(2, make([]float32, 3)) })
	panics("Row short", func() { m.Row(0, make([]float32, 2)) })
	m.MulMat(nil, nil, 0) // nothing to do
}

// BenchmarkMulMat times the portable products on a 2048x2048 weight for
// one activation row (decoding) and 16 (a prompt chunk): GB/s of weights
// read and GFLOP/s.
func BenchmarkMulMat(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	const rows, cols = 2048, 2048
	for _, typ := range weightTypes {
		data := randomRows(r, typ, rows, cols)
		m, err := NewMatrix(typ, rows, cols, data)
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range []int{1, 16} {
			x := reftest.Normal(r, n*cols, 1)
			out := make([]float32, n*rows)
			b.Run(fmt.Sprintf("%v/n=%d", typ, n), func(b *testing.B) {
				for b.Loop() {
					m.MulMat(out, x, n)
				}
				s := b.Elapsed().Seconds() / float64(b.N)
				b.ReportMetric(float64(len(data))/s/1e9, "GB/s")
				b.ReportMetric(2*float64(rows*cols*n)/s/1e9, "GFLOP/s")
			})
		}
	}
}

// TestMulMatConcurrent: goroutines multiplying with one matrix at once get
// what one call alone gets (run with -race).
func TestMulMatConcurrent(t *testing.T) {
	r, _ := reftest.Rand(t)
	rows, cols, n := 64, 512, 9
	m, err := NewMatrix(Q4_K, rows, cols, randomRows(r, Q4_K, rows, cols))
	if err != nil {
		t.Fatal(err)
	}
	x := reftest.Normal(r, n*cols, 1)
	want := make([]float32, n*rows)
	m.MulMat(want, x, n)
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			out := make([]float32, (g%n+1)*rows)
			for range 20 {
				m.MulMat(out, x[:(g%n+1)*cols], g%n+1)
				for i, v := range out {
					if v != want[i] {
						errs <- fmt.Errorf("goroutine %d output %d: %v, want %v", g, i, v, want[i])
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
