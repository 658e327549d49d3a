//go:build amd64 && !noasm

package quant

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/compresskv/compresskv/internal/par"
	"github.com/compresskv/compresskv/internal/reftest"
)

// tiledTypes are the weight types with tile kernels.
var tiledTypes = []Type{Q8_0, Q4_0, Q5_0, Q4_K, Q6_K, F32, F16, BF16}

// levels runs f once per kernel level this processor supports, with the
// dispatchers set to it (without the Go level under the race detector:
// CI tests it with the noasm tag).
func levels(t *testing.T, f func(t *testing.T)) {
	saved2, saved5, savedBF := useAVX2, useAVX512, useBF16
	defer func() { useAVX2, useAVX512, useBF16 = saved2, saved5, savedBF }()
	for _, l := range []struct {
		name             string
		on               bool
		avx2, avx5, bf16 bool
	}{
		{"go", !raceEnabled, false, false, false},
		{"avx2", saved2, true, false, false},
		{"avx512", saved5, true, true, false},
		{"avx512bf16", saved5 && savedBF, true, true, true},
	} {
		if !l.on {
			continue
		}
		useAVX2, useAVX512, useBF16 = l.avx2, l.avx5, l.bf16
		t.Run(l.name, f)
	}
}

func TestKernelLevel(t *testing.T) {
	t.Logf("kernels in use: %s", KernelLevel())
	if useAVX512 && KernelLevel() != "avx512" || !useAVX2 && KernelLevel() != "go" {
		t.Errorf("KernelLevel %q with avx2 %v, avx512 %v", KernelLevel(), useAVX2, useAVX512)
	}
}

// unitRows returns rows weight rows of cols values of type t whose scales
// are all 1, so that every dequantized value is an integer: random quants
// over their whole range (and, for the float types, integers in [-8, 8]).
func unitRows(r *rand.Rand, t Type, rows, cols int) []byte {
	if t == F32 || t == F16 || t == BF16 {
		x := make([]float32, rows*cols)
		for i := range x {
			x[i] = float32(r.IntN(17) - 8)
		}
		b := make([]byte, rows*rowBytes(t, cols))
		quantize(t, x, b, false)
		return b
	}
	b := make([]byte, rows*rowBytes(t, cols))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	const one = 0x3C00 // 1 as a half
	for blk := 0; blk < len(b); blk += t.BlockBytes() {
		bb := b[blk : blk+t.BlockBytes()]
		switch t {
		case Q8_0, Q4_0, Q5_0:
			binary.LittleEndian.PutUint16(bb, one)
		case Q4_K:
			binary.LittleEndian.PutUint16(bb, one)
			binary.LittleEndian.PutUint16(bb[2:], one)
		case Q6_K:
			binary.LittleEndian.PutUint16(bb[208:], one)
		}
	}
	return b
}

// unitActivations returns n activation rows of type vt (a VecDotType) of
// cols values with unit scales and integer values in [-a, a].
func unitActivations(r *rand.Rand, vt Type, n, cols, a int) []byte {
	xb := rowBytes(vt, cols)
	b := make([]byte, n*xb)
	val := func() int { return r.IntN(2*a+1) - a }
	switch vt {
	case F32, F16, BF16:
		x := make([]float32, n*cols)
		for i := range x {
			x[i] = float32(val())
		}
		quantize(vt, x, b, false)
	case Q8_0:
		for blk := 0; blk < len(b); blk += 34 {
			binary.LittleEndian.PutUint16(b[blk:], 0x3C00)
			for j := range 32 {
				b[blk+2+j] = byte(int8(val()))
			}
		}
	case Q8_K:
		for blk := 0; blk < len(b); blk += 292 {
			binary.LittleEndian.PutUint32(b[blk:], math.Float32bits(1))
			for g := range 16 {
				s := 0
				for j := range 16 {
					v := val()
					s += v
					b[blk+4+16*g+j] = byte(int8(v))
				}
				binary.LittleEndian.PutUint16(b[blk+260+2*g:], uint16(int16(s)))
			}
		}
	}
	return b
}

func rowBytes(t Type, cols int) int {
	n, err := t.RowBytes(cols)
	if err != nil {
		panic(err)
	}
	return n
}

// sequential runs pieces in order on the caller's goroutine.
func sequential(n int, f func(int)) { par.Workers(n, 1, f) }

// TestTileKernelsExact: with unit scales every product is an integer
// computation; where the sum of the magnitudes of the terms stays below
// 2^24, every float32 operation on them is exact too, and the kernels, the
// Go dot products and the int64 sum must agree exactly, at odd sizes and
// every tile shape (full tiles, edge rows and columns).
func TestTileKernelsExact(t *testing.T) {
	levels(t, func(t *testing.T) {
		r, seed := reftest.Rand(t)
		for _, typ := range tiledTypes {
			ts := tiles(typ)
			if ts == nil {
				if useAVX2 {
					t.Fatalf("no tile kernels for %v", typ)
				}
				return
			}
			a := map[Type]int{Q4_K: 7, Q6_K: 5}[typ]
			if a == 0 {
				a = 127
			}
			steps := []int{1, 2, 3, 5}
			if typ.BlockSize() == QK_K {
				steps = []int{1, 2, 3}
			}
			for _, s := range steps {
				cols := s * ts.step
				if typ.BlockSize() == 1 {
					cols += s % 3 * 3 // a tail the kernels leave to Go
				}
				for _, rows := range []int{1, 2, 3, 4, 5, 7, 13} {
					for _, n := range []int{1, 2, 3, 4, 5, 6, 7, 9} {
						checkExact(t, seed, r, typ, ts, rows, cols, n, a)
					}
				}
			}
		}
	})
}

func checkExact(t *testing.T, seed uint64, r *rand.Rand, typ Type, ts *tileSet, rows, cols, n, a int) {
	t.Helper()
	vt := typ.VecDotType()
	w := unitRows(r, typ, rows, cols)
	act := unitActivations(r, vt, n, cols, a)
	m, err := NewMatrix(typ, rows, cols, w)
	if err != nil {
		t.Fatal(err)
	}
	xb := rowBytes(vt, cols)
	// Guards around the output: the kernels write only their tile.
	buf := make([]float32, n*rows+8)
	for i := range buf {
		buf[i] = 12345
	}
	out := buf[4 : 4+n*rows]
	m.mulTiles(ts, out, act, xb, n, sequential)
	for i := range 4 {
		if buf[i] != 12345 || buf[len(buf)-1-i] != 12345 {
			t.Fatalf("%v %dx%d n=%d: wrote outside the output (seed %d)", typ, rows, cols, n, seed)
		}
	}
	wv, xv := make([]float32, cols), make([]float32, cols)
	for j := range n {
		must(t, Dequantize(vt, act[j*xb:(j+1)*xb], xv))
		for i := range rows {
			m.Row(i, wv)
			var exact, mag int64
			for k := range cols {
				p := int64(wv[k]) * int64(xv[k])
				if float32(int64(wv[k])) != wv[k] {
					t.Fatalf("%v: weight %v is not an integer", typ, wv[k])
				}
				exact += p
				mag += max(p, -p)
			}
			if mag >= 1<<24 {
				t.Fatalf("%v %dx%d: terms of magnitude %d, not exact in float32: the test's ranges are too wide", typ, rows, cols, mag)
			}
			goDot := dots[typ](w[i*m.RowBytes():(i+1)*m.RowBytes()], act[j*xb:(j+1)*xb], cols)
			got := out[j*rows+i]
			if got != float32(exact) || goDot != float32(exact) {
				t.Fatalf("%v %dx%d n=%d (tile %dx%d): output (%d, %d) kernel %v, Go %v, exact %d (seed %d)",
					typ, rows, cols, n, ts.R, ts.C, j, i, got, goDot, exact, seed)
			}
		}
	}
}

// TestTileKernelsBound: on random weights (every bit pattern of the quants
// and packed scales, random block scales) and activations converted from
// random floats as MulMat converts them, each kernel output is within
// (L+5)*2^-24*S of the float64 sum of ggml's block terms that the Go dot
// products compute (themselves within 2^-24 of it): L is the number of
// float32 roundings into one of the eight lanes (one per block; two for
// the K-quants, whose mins are a second term; one per 8 values for the
// float types, two per 16 with VDPBF16PS), 4 the reduction of the lanes
// and the float types' tail,
// and S the sum of the magnitudes of the products of the dequantized
// values (scale and min parts apart). Also with extreme values: quants
// and activations at the ends of their ranges, where an int16
// intermediate would overflow if the kernels let it.
func TestTileKernelsBound(t *testing.T) {
	levels(t, func(t *testing.T) {
		r, seed := reftest.Rand(t)
		for _, typ := range tiledTypes {
			ts := tiles(typ)
			if ts == nil {
				return
			}
			for _, blocks := range []int{1, 4, 11, 33} {
				cols := blocks * typ.BlockSize()
				if typ.BlockSize() == 1 {
					cols = 32*blocks + 5
				}
				for _, extreme := range []bool{false, true} {
					for _, n := range []int{1, 5} { // decoding kernels, tiles
						rows := 7
						data := randomRows(r, typ, rows, cols)
						x := reftest.Normal(r, n*cols, 1)
						if extreme {
							extremes(r, typ, data, x)
						}
						worst := checkBound(t, seed, typ, ts, data, x, rows, cols, n)
						t.Logf("%v %d values, %d activation rows (extreme %v): largest difference %.3g of the bound", typ, cols, n, extreme, worst)
					}
				}
			}
		}
	})
}

// extremes sets the quants of data to the ends of their ranges (-128 and
// 127 for Q8_0, 0 and 15 for the nibbles, 0 and 63 for Q6_K, the K-quants'
// scales and mins at 63 or -128/127) and x to +-1 with one large value per
// block, so that the activations quantize to +-127.
func extremes(r *rand.Rand, t Type, data []byte, x []float32) {
	bb := t.BlockBytes()
	for blk := 0; blk < len(data); blk += bb {
		b := data[blk : blk+bb]
		pick := func(lo, hi byte) byte {
			if r.IntN(2) == 0 {
				return lo
			}
			return hi
		}
		switch t {
		case Q8_0:
			for j := 2; j < 34; j++ {
				b[j] = pick(0x80, 0x7F)
			}
		case Q4_0:
			for j := 2; j < 18; j++ {
				b[j] = pick(0x00, 0xFF)
			}
		case Q5_0:
			for j := 2; j < 22; j++ {
				b[j] = pick(0x00, 0xFF)
			}
		case Q4_K:
			for j := 4; j < 144; j++ {
				b[j] = pick(0x00, 0xFF)
			}
		case Q6_K:
			for j := 0; j < 192; j++ {
				b[j] = pick(0x00, 0xFF)
			}
			for j := 192; j < 208; j++ {
				b[j] = pick(0x80, 0x7F)
			}
		}
	}
	for i := range x {
		x[i] = float32(2*r.IntN(2) - 1)
	}
}

func checkBound(t *testing.T, seed uint64, typ Type, ts *tileSet, data []byte, x []float32, rows, cols, n int) float64 {
	t.Helper()
	m, err := NewMatrix(typ, rows, cols, data)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, n*rows)
	m.MulMat(out, x, n)
	vt := typ.VecDotType()
	xb := rowBytes(vt, cols)
	xq := make([]byte, xb)
	xh := make([]float32, cols)
	// Roundings per lane and step: two for the K-quants (scales, mins) and
	// for VDPBF16PS (two products a lane), one otherwise.
	adds := 1
	if typ.BlockSize() == QK_K || ts.step == 16 {
		adds = 2
	}
	lanes := cols / ts.step * adds
	worst := 0.0
	for j := range n {
		quantize(vt, x[j*cols:(j+1)*cols], xq, true)
		must(t, Dequantize(vt, xq, xh))
		for i := range rows {
			row := data[i*m.RowBytes() : (i+1)*m.RowBytes()]
			a, mins := split(typ, row)
			var mag float64
			for k := range cols {
				mag += math.Abs(float64(xh[k])) * (math.Abs(float64(a[k])) + math.Abs(float64(mins[k])))
			}
			ref := float64(dots[typ](row, xq, cols))
			got := float64(out[j*rows+i])
			tol := float64(lanes+5)*0x1p-24*mag + 1e-30
			if math.Abs(got-ref) > tol {
				t.Fatalf("%v %dx%d: output (%d, %d) %v, Go %v (difference %.3g, bound %.3g, seed %d)", typ, rows, cols, j, i, got, ref, got-ref, tol, seed)
			}
			worst = max(worst, math.Abs(got-ref)/tol)
		}
	}
	return worst
}

// TestTileLevelsAgree: the integer types give the same bits at the AVX2
// and AVX-512 levels (the same lane sums, the same float operations).
func TestTileLevelsAgree(t *testing.T) {
	if !useAVX512 {
		t.Skip("no AVX-512 here")
	}
	saved2, saved5 := useAVX2, useAVX512
	defer func() { useAVX2, useAVX512 = saved2, saved5 }()
	r, seed := reftest.Rand(t)
	for _, typ := range []Type{Q8_0, Q4_0, Q5_0, Q4_K, Q6_K} {
		rows, cols, n := 29, 3*QK_K, 11
		m, err := NewMatrix(typ, rows, cols, randomRows(r, typ, rows, cols))
		if err != nil {
			t.Fatal(err)
		}
		x := reftest.Normal(r, n*cols, 1)
		got := map[bool][]float32{}
		for _, big := range []bool{false, true} {
			useAVX512 = big
			got[big] = make([]float32, n*rows)
			m.MulMat(got[big], x, n)
		}
		for i := range got[true] {
			if math.Float32bits(got[true][i]) != math.Float32bits(got[false][i]) {
				t.Fatalf("%v output %d: avx512 %v, avx2 %v (seed %d)", typ, i, got[true][i], got[false][i], seed)
			}
		}
	}
}

// TestConvertActivationsAsm: the assembly conversions write the bytes the
// Go conversions write, on random values of every scale, zeros, subnormals,
// ties between +a and -a (Q8_K takes the first), and rows with a tail.
func TestConvertActivationsAsm(t *testing.T) {
	if !useAVX2 {
		t.Skip("no AVX2 here")
	}
	r, seed := reftest.Rand(t)
	cases := map[string]func(n int) []float32{
		"normal": func(n int) []float32 { return reftest.Normal(r, n, 1) },
		"scales": func(n int) []float32 {
			x := reftest.Normal(r, n, 1)
			for i := range x {
				x[i] *= float32(math.Pow(10, float64(r.IntN(16)-8)))
			}
			return x
		},
		"zeros": func(n int) []float32 {
			x := make([]float32, n)
			for i := 0; i < n; i += 7 {
				x[i] = float32(r.NormFloat64())
			}
			for i := 0; i < n/2; i++ { // whole zero blocks too
				x[i] = 0
			}
			return x
		},
		"subnormal": func(n int) []float32 {
			x := reftest.Normal(r, n, 1e-6) // F16 subnormals, Q8 scales below F16's range
			return x
		},
		"ties": func(n int) []float32 {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(r.IntN(9) - 4)
			}
			return x
		},
		"halves": func(n int) []float32 {
			// Values whose scaled quants land on .5: rounding to even.
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(r.IntN(255)-127) / 2
				if i%32 == 0 {
					x[i] = 127
				}
			}
			return x
		},
	}
	for name, gen := range cases {
		for _, vt := range []Type{Q8_0, Q8_K, F16} {
			for _, blocks := range []int{1, 2, 5} {
				n := blocks * vt.BlockSize()
				if vt == F16 {
					n = 8*blocks + blocks%3 // a tail
				}
				for range 20 {
					x := gen(n)
					want, got := make([]byte, rowBytes(vt, n)), make([]byte, rowBytes(vt, n))
					quantize(vt, x, want, true)
					convertActivations(vt, x, got)
					if !bytes.Equal(got, want) {
						i := 0
						for got[i] == want[i] {
							i++
						}
						t.Fatalf("%s %v %d values: byte %d is %#x, Go writes %#x (seed %d)", name, vt, n, i, got[i], want[i], seed)
					}
				}
			}
		}
	}
}

// TestTileKernelsReadOnlyTheirRows: with the weights and the activations
// ending where a page that cannot be read begins, no kernel reads past the
// last row (a memory-mapped file may end there).
func TestTileKernelsReadOnlyTheirRows(t *testing.T) {
	levels(t, func(t *testing.T) {
		r, _ := reftest.Rand(t)
		for _, typ := range tiledTypes {
			ts := tiles(typ)
			if ts == nil {
				return
			}
			vt := typ.VecDotType()
			for _, rows := range []int{1, 5} {
				cols := 2 * ts.step
				if typ.BlockSize() == 1 {
					cols += 3
				}
				n := 3
				w := atPageEnd(t, randomRows(r, typ, rows, cols))
				x := reftest.Normal(r, n*cols, 1)
				xb := rowBytes(vt, cols)
				act := make([]byte, n*xb)
				for j := range n {
					convertActivations(vt, x[j*cols:(j+1)*cols], act[j*xb:(j+1)*xb])
				}
				act = atPageEnd(t, act)
				m, err := NewMatrix(typ, rows, cols, w)
				if err != nil {
					t.Fatal(err)
				}
				out := make([]float32, n*rows)
				m.mulTiles(ts, out, act, xb, n, sequential)
				for j := range n {
					for i := range rows {
						want := dots[typ](w[i*m.RowBytes():(i+1)*m.RowBytes()], act[j*xb:(j+1)*xb], cols)
						if d := math.Abs(float64(out[j*rows+i] - want)); d > 1e-3*math.Abs(float64(want))+1e-6 {
							t.Fatalf("%v: output (%d, %d) %v, want %v", typ, j, i, out[j*rows+i], want)
						}
					}
				}
			}
		}
	})
}

func TestTileSetsComplete(t *testing.T) {
	for _, set := range []map[Type]*tileSet{tilesAVX2, tilesAVX512, tilesAVX512BF16} {
		for _, typ := range tiledTypes {
			ts := set[typ]
			if len(set) == 1 && typ != BF16 {
				continue
			}
			if ts == nil || ts.full == nil || ts.rows == nil || ts.cols == nil || ts.one == nil {
				t.Fatalf("%v: incomplete tile set %+v", typ, ts)
			}
			if ts.step != typ.BlockSize() && !(typ.BlockSize() == 1 && ts.step%8 == 0) {
				t.Errorf("%v: step %d", typ, ts.step)
			}
		}
	}
}
