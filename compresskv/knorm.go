package compresskv

import (
	"context"
	"fmt"
	"math"
)

// KNormScorer scores each KV head's rows by the L2 norm of their keys,
// smallest first: the score of a row is -||k|| ("A Simple and Effective L2
// Norm-Based Strategy for KV Cache Compression", Devoto et al. 2024, as
// kvpress's KnormPress). It reads no query, so it ranks a row the same
// before a question exists and after; it needs the stored keys in host
// memory (kvcache.HostReader).
type KNormScorer struct{}

// Name implements Scorer.
func (KNormScorer) Name() string { return "knorm" }

// QueryRows implements Scorer: none.
func (KNormScorer) QueryRows(_, _ int) int { return 0 }

// Score implements Scorer: one row per KV head, of its own rows but the
// window (heads may hold different numbers). Cost: O(rows * d) per KV head.
func (s KNormScorer) Score(ctx context.Context, in *ScoreInput) ([][]float32, error) {
	hr, err := hostRows(s.Name(), in.Cache)
	if err != nil {
		return nil, err
	}
	G := in.Cache.Shape().KVHeads
	out := make([][]float32, G)
	var buf []float32
	for g := range out {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%s: layer %d: %w", s.Name(), in.Layer, err)
		}
		k, _ := hr.Rows(in.Layer, g)
		n := k.N - in.Window
		if n < 0 {
			n = 0
		}
		out[g] = make([]float32, n)
		for j := range out[g] {
			buf = k.Row(j, buf)
			var ss float64
			for _, x := range buf {
				ss += float64(x) * float64(x)
			}
			out[g][j] = float32(-math.Sqrt(ss))
		}
	}
	return out, nil
}
