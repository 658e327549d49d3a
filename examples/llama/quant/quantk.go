package quant

import (
	"encoding/binary"
	"math"
)

// The reference quantizers of the K-quant weight types, quantize_row_q4_K_ref
// and quantize_row_q6_K_ref, step by step: they search for each
// sub-block's scale (and min) minimising a weighted squared error, then
// quantize the scales themselves. Every float operation is a float32
// operation rounded on its own, as in ggml's portable C; explicit
// conversions keep Go from fusing a product and a sum.

// groupMaxEps is ggml's GROUP_MAX_EPS: a group whose largest magnitude is
// below it is all zero.
const groupMaxEps = 1e-15

func clampInt(v, lo, hi int) int { return max(lo, min(hi, v)) }

// makeQX is make_qx_quants with rmse_type 1 and no importance weights:
// values L in [0, 2*nmax) and the scale, for n values.
func makeQX(nmax int, x []float32, L []int8) float32 {
	var mx, amax float32
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax, mx = a, v
		}
	}
	if amax < groupMaxEps {
		clear(L)
		return 0
	}
	fn := float32(nmax)
	iscale := -fn / mx
	var sumlx, suml2 float32
	for i, v := range x {
		l := clampInt(nearestInt(float32(iscale*v)), -nmax, nmax-1)
		L[i] = int8(l + nmax)
		w := float32(v * v)
		fl := float32(l)
		sumlx += float32(float32(w*v) * fl)
		suml2 += float32(float32(w*fl) * fl)
	}
	var scale float32
	if suml2 != 0 {
		scale = sumlx / suml2
	}
	best := float32(scale * sumlx)
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(fn + float32(0.1*float32(is))) / mx
		sumlx, suml2 = 0, 0
		for _, v := range x {
			fl := float32(clampInt(nearestInt(float32(iscale*v)), -nmax, nmax-1))
			w := float32(v * v)
			sumlx += float32(float32(w*v) * fl)
			suml2 += float32(float32(w*fl) * fl)
		}
		if suml2 > 0 && float32(sumlx*sumlx) > float32(best*suml2) {
			for i, v := range x {
				L[i] = int8(nmax + clampInt(nearestInt(float32(iscale*v)), -nmax, nmax-1))
			}
			scale = sumlx / suml2
			best = float32(scale * sumlx)
		}
	}
	return scale
}

// makeQKX2 is make_qkx2_quants with rmin -1, rdelta 0.1, 20 steps and
// squared errors: values L in [0, nmax], the scale, and the min (returned
// negated, as ggml's the_min).
func makeQKX2(nmax int, x, weights []float32, L, aux []uint8) (scale, theMin float32) {
	mn, mx := x[0], x[0]
	sumW := weights[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < len(x); i++ {
		// Comparisons as ggml's, not min and max: they keep the first of
		// two zeros of either sign.
		if x[i] < mn {
			mn = x[i]
		}
		if x[i] > mx {
			mx = x[i]
		}
		w := weights[i]
		sumW += w
		sumX += float32(w * x[i])
	}
	if mn > 0 {
		mn = 0
	}
	if mx == mn {
		clear(L)
		return 0, -mn
	}
	fn := float32(nmax)
	iscale := fn / (mx - mn)
	scale = 1 / iscale
	var bestErr float32
	for i, v := range x {
		l := clampInt(nearestInt(float32(iscale*(v-mn))), 0, nmax)
		L[i] = uint8(l)
		diff := float32(float32(scale*float32(l))+mn) - v
		bestErr += float32(weights[i] * float32(diff*diff))
	}
	for is := 0; is <= 20; is++ {
		iscale = (float32(-1+float32(0.1*float32(is))) + fn) / (mx - mn)
		var sumL, sumL2, sumXL float32
		for i, v := range x {
			l := clampInt(nearestInt(float32(iscale*(v-mn))), 0, nmax)
			aux[i] = uint8(l)
			w, fl := weights[i], float32(l)
			sumL += float32(w * fl)
			sumL2 += float32(float32(w*fl) * fl)
			sumXL += float32(float32(w*fl) * v)
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if D <= 0 {
			continue
		}
		thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
		thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
		if thisMin > 0 {
			thisMin = 0
			thisScale = sumXL / sumL2
		}
		var cur float32
		for i, v := range x {
			diff := float32(float32(thisScale*float32(aux[i]))+thisMin) - v
			cur += float32(weights[i] * float32(diff*diff))
		}
		if cur < bestErr {
			copy(L, aux)
			bestErr, scale, mn = cur, thisScale, thisMin
		}
	}
	return scale, -mn
}

// quantQ4_K is quantize_row_q4_K_ref for one block of 256 values.
func quantQ4_K(x []float32, b []byte) {
	var L [QK_K]uint8
	var aux [32]uint8
	var weights [32]float32
	var scales, mins [8]float32
	var maxScale, maxMin float32
	for j := range 8 {
		xs := x[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range xs {
			sumX2 += float32(v * v)
		}
		av := float32(math.Sqrt(float64(sumX2 / 32)))
		for l, v := range xs {
			weights[l] = av + abs32(v)
		}
		scales[j], mins[j] = makeQKX2(15, xs, weights[:], L[32*j:32*j+32], aux[:])
		if scales[j] > maxScale {
			maxScale = scales[j]
		}
		if mins[j] > maxMin {
			maxMin = mins[j]
		}
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	sc := b[4:16]
	clear(sc)
	for j := range 8 {
		ls := min(63, uint8(nearestInt(float32(invScale*scales[j]))))
		lm := min(63, uint8(nearestInt(float32(invMin*mins[j]))))
		if j < 4 {
			sc[j], sc[j+4] = ls, lm
		} else {
			sc[j+4] = ls&15 | (lm&15)<<4
			sc[j-4] |= (ls >> 4) << 6
			sc[j] |= (lm >> 4) << 6
		}
	}
	binary.LittleEndian.PutUint16(b, F32ToF16(maxScale/63))
	binary.LittleEndian.PutUint16(b[2:], F32ToF16(maxMin/63))
	d, dmin := f16[le16(b)], f16[le16(b[2:])]
	for j := range 8 {
		s, m := scaleMinK4(j, sc)
		dj := d * float32(s)
		if dj == 0 {
			continue
		}
		dm := float32(dmin * float32(m))
		for i, v := range x[32*j : 32*j+32] {
			L[32*j+i] = uint8(clampInt(nearestInt(float32(v+dm)/dj), 0, 15))
		}
	}
	q := b[16:144]
	for j := 0; j < QK_K; j += 64 {
		for l := range 32 {
			q[j/2+l] = L[j+l] | L[j+l+32]<<4
		}
	}
}

// quantQ6_K is quantize_row_q6_K_ref for one block of 256 values.
func quantQ6_K(x []float32, b []byte) {
	var L [QK_K]int8
	var scales [16]float32
	var maxScale, maxAbs float32
	for ib := range 16 {
		s := makeQX(32, x[16*ib:16*ib+16], L[16*ib:16*ib+16])
		scales[ib] = s
		if a := abs32(s); a > maxAbs {
			maxAbs, maxScale = a, s
		}
	}
	if maxAbs < groupMaxEps {
		clear(b)
		return
	}
	iscale := -128 / maxScale
	binary.LittleEndian.PutUint16(b[208:], F32ToF16(1/iscale))
	sc := b[192:208]
	for ib := range 16 {
		sc[ib] = uint8(int8(min(127, nearestInt(float32(iscale*scales[ib])))))
	}
	d := f16[le16(b[208:])]
	for j := range 16 {
		dj := d * float32(int8(sc[j]))
		if dj == 0 {
			continue
		}
		for i, v := range x[16*j : 16*j+16] {
			L[16*j+i] = int8(clampInt(nearestInt(v/dj), -32, 31) + 32)
		}
	}
	ql, qh := b[0:128], b[128:192]
	for j := 0; j < QK_K; j += 128 {
		l4, h := ql[j/2:j/2+64], qh[j/4:j/4+32]
		for l := range 32 {
			q1, q2, q3, q4 := uint8(L[j+l]), uint8(L[j+l+32]), uint8(L[j+l+64]), uint8(L[j+l+96])
			l4[l] = q1&15 | (q3&15)<<4
			l4[l+32] = q2&15 | (q4&15)<<4
			h[l] = q1>>4 | (q2>>4)<<2 | (q3>>4)<<4 | (q4>>4)<<6
		}
	}
}
