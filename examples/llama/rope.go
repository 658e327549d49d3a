package llama

import "math"

// ropeAngles writes into cs the cosine and sine of each rotated pair of a
// head at position pos, [RotaryDims/2][2], as ggml's CPU rope computes them:
// the angle of pair j is pos * base^(-2j/n), built by repeated float32
// multiplication by base^(-2/n), divided by the pair's frequency factor
// (rope_freqs) and multiplied by the linear scale, then cosine and sine are
// taken of the float32 angle.
func (m *Model) ropeAngles(pos int, cs []float32) {
	nd := m.RotaryDims()
	thetaScale := float32(math.Pow(float64(m.ropeBase()), float64(float32(-2)/float32(nd))))
	scale := m.ropeScale()
	theta := float32(pos)
	for j := 0; j < nd/2; j++ {
		t := theta
		if m.ropeFactors != nil {
			t /= m.ropeFactors[j]
		}
		t *= scale
		cs[2*j] = float32(math.Cos(float64(t)))
		cs[2*j+1] = float32(math.Sin(float64(t)))
		theta *= thetaScale
	}
}

// rotate applies rotary embeddings with the angles cs (from ropeAngles) to
// x, a vector of whole heads. The values of a head beyond RotaryDims stay as
// they are.
func (m *Model) rotate(x, cs []float32) {
	hs, nd := m.HeadDim(), m.RotaryDims()
	half := nd / 2
	for h := 0; h+hs <= len(x); h += hs {
		head := x[h : h+hs]
		for j := 0; j < half; j++ {
			c, s := cs[2*j], cs[2*j+1]
			i0, i1 := 2*j, 2*j+1
			if m.Rope == RopeNeox {
				i0, i1 = j, j+half
			}
			// As ggml's rotate_pairs compiles for x86 (GCC contracts
			// a*c - b*s into one fused multiply-add over the rounded b*s).
			a, b := head[i0], head[i1]
			head[i0] = fma32(a, c, -(b * s))
			head[i1] = fma32(a, s, b*c)
		}
	}
}
