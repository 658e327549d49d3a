package llama

import "math"

// Argmax returns the index of the largest logit, the lowest on ties.
func Argmax(logits []float32) int {
	best := 0
	for i, v := range logits {
		if v > logits[best] {
			best = i
		}
	}
	return best
}

// KL returns KL(softmax(p) || softmax(q)) in nats, computed in float64: how
// far the next-token distribution of logits q is from that of logits p.
func KL(p, q []float32) float64 {
	lp, lq := logSoftmax(p), logSoftmax(q)
	kl := 0.0
	for i := range lp {
		kl += math.Exp(lp[i]) * (lp[i] - lq[i])
	}
	return max(0, kl)
}

func logSoftmax(x []float32) []float64 {
	mx := math.Inf(-1)
	for _, v := range x {
		mx = math.Max(mx, float64(v))
	}
	z := 0.0
	for _, v := range x {
		z += math.Exp(float64(v) - mx)
	}
	out := make([]float64, len(x))
	lz := mx + math.Log(z)
	for i, v := range x {
		out[i] = float64(v) - lz
	}
	return out
}

// Feed runs tokens one at a time (teacher forcing: the given tokens, not
// the model's choices) and returns the logits after each.
func (s *Session) Feed(tokens []int) ([][]float32, error) {
	out := make([][]float32, len(tokens))
	for i, t := range tokens {
		lg, err := s.Forward([]int{t})
		if err != nil {
			return nil, err
		}
		out[i] = lg
	}
	return out, nil
}
