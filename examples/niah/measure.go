package niah

import (
	"fmt"
	"math"
)

// SignTest returns the exact two-sided p-value of a sign test with b
// successes in b+c trials of a fair coin (McNemar's exact test on the
// discordant pairs b and c of a paired comparison).
func SignTest(b, c int) float64 {
	n := b + c
	if n == 0 {
		return 1
	}
	k := min(b, c)
	// P(X <= k) for X ~ Binomial(n, 1/2), in logs for large n.
	p := 0.0
	for i := 0; i <= k; i++ {
		lg, _ := math.Lgamma(float64(n + 1))
		l1, _ := math.Lgamma(float64(i + 1))
		l2, _ := math.Lgamma(float64(n - i + 1))
		p += math.Exp(lg - l1 - l2 - float64(n)*math.Ln2)
	}
	return min(1, 2*p)
}

// Encoder is what cutting text samples needs of a tokenizer.
type Encoder interface {
	Encode(text string, bos, eos bool) ([]int, error)
}

// TextSamples returns samples token sequences of n tokens each (bos, the
// model's opening tokens, first) from text, at evenly spaced offsets. Each
// is encoded from a slice of the text just long enough (subword merging
// costs more than linear time in the length of what it encodes).
func TextSamples(tok Encoder, bos []int, text string, samples, n int) ([][]int, error) {
	if samples < 1 || n <= len(bos) {
		return nil, fmt.Errorf("niah: %d samples of %d tokens", samples, n)
	}
	out := make([][]int, samples)
	for i := range out {
		off := i * len(text) / samples
		for span := 2 * n; ; span *= 2 {
			ids, err := tok.Encode(text[off:min(len(text), off+span)], false, false)
			if err != nil {
				return nil, err
			}
			if len(ids) >= n-len(bos) {
				out[i] = append(append([]int(nil), bos...), ids[:n-len(bos)]...)
				break
			}
			if off+span >= len(text) {
				return nil, fmt.Errorf("niah: the text is too short for %d samples of %d tokens", samples, n)
			}
		}
	}
	return out, nil
}
