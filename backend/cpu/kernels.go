package cpu

import "math"

// The kernels below are the portable reference implementations of the inner
// loops, each a small function over flat slices. The names without the Go
// suffix (dots, maxOf, expShift, accRows, axpy, decodeF16, decodeBF16) are
// the dispatchers the backend calls: kernels_amd64.go sends them to assembly
// chosen once at start from the processor's features, kernels_noasm.go (other
// architectures, or the noasm build tag) to the functions here. The logit
// and weighted-sum dispatchers with an At suffix take the level to run at:
// they are the candidates the plan (plan.go) measures.

// level is a set of kernels: the portable Go ones, or assembly for AVX2
// (with FMA and F16C) or AVX-512.
type level uint8

const (
	levelGo level = iota
	levelAVX2
	levelAVX512
)

func (l level) String() string {
	switch l {
	case levelAVX2:
		return "avx2"
	case levelAVX512:
		return "avx512"
	}
	return "go"
}

// dot returns the inner product of a and b[:len(a)], summing even and odd
// terms apart (the order dot4 uses, so that both give the same bits).
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1 float32
	i := 0
	for ; i+2 <= len(a); i += 2 {
		aa, bb := a[i:i+2:i+2], b[i:i+2:i+2]
		s0 += aa[0] * bb[0]
		s1 += aa[1] * bb[1]
	}
	if i < len(a) {
		s0 += a[i] * b[i]
	}
	return s0 + s1
}

// dotsGo writes to dst[j] the inner product of q with row j of rows (rows of
// d = len(q) values, len(dst) of them), multiplied by scale:
//
//	for j := range dst {
//		dst[j] = scale * dot(q, rows[j*d:(j+1)*d])
//	}
func dotsGo(dst, q, rows []float32, scale float32) {
	d := len(q)
	rows = rows[:len(dst)*d]
	j := 0
	for ; j+4 <= len(dst); j += 4 {
		r := rows[j*d : (j+4)*d]
		a0, a1, a2, a3 := dot4(q, r[:d], r[d:2*d], r[2*d:3*d], r[3*d:4*d])
		dd := dst[j : j+4 : j+4]
		dd[0], dd[1], dd[2], dd[3] = a0*scale, a1*scale, a2*scale, a3*scale
	}
	for ; j < len(dst); j++ {
		dst[j] = dot(q, rows[j*d:(j+1)*d]) * scale
	}
}

// dot4 returns the inner products of q with k0, k1, k2 and k3, each summed
// in the same order as dot: two rows of a block get the same logit whether
// they go through dot4 or dot.
func dot4(q, k0, k1, k2, k3 []float32) (float32, float32, float32, float32) {
	n := len(q)
	k0, k1, k2, k3 = k0[:n], k1[:n], k2[:n], k3[:n]
	var a0, a1, b0, b1, c0, c1, e0, e1 float32
	i := 0
	for ; i+2 <= n; i += 2 {
		qq := q[i : i+2 : i+2]
		r0, r1, r2, r3 := k0[i:i+2:i+2], k1[i:i+2:i+2], k2[i:i+2:i+2], k3[i:i+2:i+2]
		x0, x1 := qq[0], qq[1]
		a0 += x0 * r0[0]
		a1 += x1 * r0[1]
		b0 += x0 * r1[0]
		b1 += x1 * r1[1]
		c0 += x0 * r2[0]
		c1 += x1 * r2[1]
		e0 += x0 * r3[0]
		e1 += x1 * r3[1]
	}
	if i < n {
		x := q[i]
		a0 += x * k0[i]
		b0 += x * k1[i]
		c0 += x * k2[i]
		e0 += x * k3[i]
	}
	return a0 + a1, b0 + b1, c0 + c1, e0 + e1
}

// axpyGo adds a*x to y (len(y) == len(x)):
//
//	for i := range y {
//		y[i] += a * x[i]
//	}
func axpyGo(y []float32, a float32, x []float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += a * x[i]
	}
}

// accRowsGo adds sum_j p[j]*rows[j] to acc, row after row; rows holds
// len(p) rows of d = len(acc) values:
//
//	for j, pj := range p {
//		for i := range acc {
//			acc[i] += pj * rows[j*d+i]
//		}
//	}
//
// It is axpyGo row by row, as accQuadGo, so that both give the same bits.
func accRowsGo(acc, p, rows []float32) {
	d := len(acc)
	rows = rows[:len(p)*d]
	for j, pj := range p {
		axpyGo(acc, pj, rows[j*d:(j+1)*d])
	}
}

// scaleGo multiplies x by a in place.
func scaleGo(x []float32, a float32) {
	for i := range x {
		x[i] *= a
	}
}

// maxOfGo returns the largest value of x (-Inf for an empty x); NaN values are
// skipped.
func maxOfGo(x []float32) float32 {
	m := float32(math.Inf(-1))
	for _, v := range x {
		if v > m {
			m = v
		}
	}
	return m
}

// expShiftGo replaces x[i] by exp(x[i]-m) and returns the sum of the
// results:
//
//	for i, v := range x {
//		x[i] = exp(v - m)
//		s += x[i]
//	}
func expShiftGo(x []float32, m float32) float32 {
	var s float32
	for i, v := range x {
		e := expf(v - m)
		x[i] = e
		s += e
	}
	return s
}

// Constants of expf (Cephes' expf): ln 2 split in two for an exact range
// reduction, and the minimax polynomial of exp on [-ln2/2, ln2/2].
const (
	expLog2e   = 1.44269504088896341
	expC1      = 0.693359375
	expC2      = -2.12194440e-4
	expRound   = 12582912 // 1.5 * 2^23: adding it rounds to an integer
	expHi      = 88.72283905206835
	expLoLimit = -87.33654475055310898 // below it the result is not a normal float32
)

// expf returns e**x in float32 with an error of about one unit in the last
// place for results in the normal range; results below the smallest normal
// float32 are flushed to 0, x above ln(MaxFloat32) gives +Inf, NaN gives NaN.
func expf(x float32) float32 {
	if !(x >= expLoLimit) {
		if x != x {
			return x
		}
		return 0
	}
	if x > expHi {
		return float32(math.Inf(1))
	}
	t := x*expLog2e + expRound
	fx := t - expRound
	x -= fx * expC1
	x -= fx * expC2
	z := x * x
	y := ((((1.9875691500e-4*x+1.3981999507e-3)*x+8.3334519073e-3)*x+4.1665795894e-2)*x+1.6666665459e-1)*x + 5.0000001201e-1
	y = y*z + x + 1
	// fx is in [-126, 128]; scale by 2^fx in two steps so that 2^128 and
	// 2^-126 stay representable.
	n := int32(fx)
	h := n / 2
	y *= math.Float32frombits(uint32(h+127) << 23)
	return y * math.Float32frombits(uint32(n-h+127)<<23)
}

// decodeF16Go converts IEEE binary16 bits to float32 (len(dst) >= len(src)),
// exactly as kvcache.F16ToF32.
func decodeF16Go(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	const magic = (254 - 15) << 23 // 2^112 as float32 bits
	for i, h := range src {
		o := uint32(h&0x7fff) << 13 // exponent and mantissa in place
		e := o & (0x1f << 23)
		switch e {
		case 0x1f << 23: // Inf or NaN
			o |= 0xff << 23
		case 0: // zero or subnormal: scale the bits by 2^112 as a float
			o = math.Float32bits(math.Float32frombits(o) * math.Float32frombits(magic))
		default:
			o += (127 - 15) << 23
		}
		dst[i] = math.Float32frombits(o | uint32(h&0x8000)<<16)
	}
}

// decodeBF16Go converts bfloat16 bits to float32 (len(dst) >= len(src)).
func decodeBF16Go(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, h := range src {
		dst[i] = math.Float32frombits(uint32(h) << 16)
	}
}

// sumWordsGo returns the wrapping sum of x:
//
//	for _, v := range x {
//		s += v
//	}
//
// with eight accumulators, so that loads, not additions, set the pace.
func sumWordsGo(x []uint64) uint64 {
	var s [8]uint64
	for len(x) >= 8 {
		v := x[:8:8]
		s[0] += v[0]
		s[1] += v[1]
		s[2] += v[2]
		s[3] += v[3]
		s[4] += v[4]
		s[5] += v[5]
		s[6] += v[6]
		s[7] += v[7]
		x = x[8:]
	}
	for _, v := range x {
		s[0] += v
	}
	return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7]
}

// The quad kernels serve four query heads of one KV group at once, so that
// each key and value row is read (and, in 16-bit storage, converted) once
// for the four. Logits and probabilities are laid out row-major, four per
// row: x[j*4+h] is row j, head h.

// logitsQuadGo writes the scaled logits of rows against 4 query heads
// (q holds 4 rows of d values) and raises mx[h] to the largest logit of
// head h (NaN skipped):
//
//	for j := range len(dst) / 4 {
//		for h := range 4 {
//			dst[j*4+h] = scale * dot(q[h*d:(h+1)*d], rows[j*d:(j+1)*d])
//			mx[h] = max(mx[h], dst[j*4+h])
//		}
//	}
func logitsQuadGo(dst, q, rows []float32, scale float32, mx *[4]float32) {
	d := len(q) / 4
	n := len(dst) / 4
	rows = rows[:n*d]
	for j := range n {
		r := rows[j*d : (j+1)*d]
		o := dst[j*4 : j*4+4 : j*4+4]
		o[0] = dot(q[:d], r) * scale
		o[1] = dot(q[d:2*d], r) * scale
		o[2] = dot(q[2*d:3*d], r) * scale
		o[3] = dot(q[3*d:4*d], r) * scale
		for h, v := range o {
			if v > mx[h] {
				mx[h] = v
			}
		}
	}
}

// accQuadGo adds the rows weighted by p into the 4 accumulators of acc
// (4 rows of d values):
//
//	for j := range len(p) / 4 {
//		for h := range 4 {
//			for i := range d {
//				acc[h*d+i] += p[j*4+h] * rows[j*d+i]
//			}
//		}
//	}
func accQuadGo(acc, p, rows []float32) {
	d := len(acc) / 4
	n := len(p) / 4
	rows = rows[:n*d]
	a0, a1, a2, a3 := acc[:d], acc[d:2*d], acc[2*d:3*d], acc[3*d:4*d]
	for j := range n {
		r := rows[j*d : (j+1)*d]
		pp := p[j*4 : j*4+4 : j*4+4]
		axpyGo(a0, pp[0], r)
		axpyGo(a1, pp[1], r)
		axpyGo(a2, pp[2], r)
		axpyGo(a3, pp[3], r)
	}
}

// expQuadGo replaces each value of x by its exponential relative to the
// maximum of its head:
//
//	for i := range x {
//		x[i] = exp(x[i] - m[i%4])
//	}
func expQuadGo(x []float32, m *[4]float32) {
	for i, v := range x {
		x[i] = expf(v - m[i%4])
	}
}

// blockSum returns the sum of x in the order every path of Attend shares:
// four partial sums, x[i] into s[i%4] in order, then (s0+s2)+(s1+s3).
func blockSum(x []float32) float32 {
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		v := x[i : i+4 : i+4]
		s0 += v[0]
		s1 += v[1]
		s2 += v[2]
		s3 += v[3]
	}
	switch len(x) - i {
	case 3:
		s2 += x[i+2]
		fallthrough
	case 2:
		s1 += x[i+1]
		fallthrough
	case 1:
		s0 += x[i]
	}
	return (s0 + s2) + (s1 + s3)
}

// blockSumQuad returns, per head, blockSum of the values of x laid out
// four a row (x[j*4+h] is row j, head h).
func blockSumQuad(x []float32) [4]float32 {
	var s [4][4]float32 // s[r][h]: rows j with j%4 == r
	n := len(x) / 4
	j := 0
	for ; j+4 <= n; j += 4 {
		v := x[j*4 : j*4+16 : j*4+16]
		for r := range 4 {
			for h := range 4 {
				s[r][h] += v[r*4+h]
			}
		}
	}
	for r := 0; j < n; j, r = j+1, r+1 {
		for h := range 4 {
			s[r][h] += x[j*4+h]
		}
	}
	var out [4]float32
	for h := range 4 {
		out[h] = (s[0][h] + s[2][h]) + (s[1][h] + s[3][h])
	}
	return out
}
