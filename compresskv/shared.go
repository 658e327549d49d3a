package compresskv

import (
	"context"
	"fmt"

	"github.com/compresskv/compresskv/kvcache"
)

// SharedMax returns a scorer that turns the rows of s, one per KV head, into
// one row every KV head of the layer shares: each position's largest score
// over the KV heads. A position that any KV head ranks high is then kept by
// all of them, so a per-head scorer composes with policies that keep one set
// per layer (CompressKV, whose SR heads may read a KV head other than the
// one that noticed the position). The layer's KV heads must hold the same
// positions (ErrUneven otherwise). The result is a Tracker when s is one.
func SharedMax(s Scorer) Scorer {
	if t, ok := s.(Tracker); ok {
		return sharedTracker{sharedMax{s}, t}
	}
	return sharedMax{s}
}

type sharedMax struct{ inner Scorer }

type sharedTracker struct {
	sharedMax
	t Tracker
}

// NewTrack implements Tracker: the inner scorer's track.
func (s sharedTracker) NewTrack(sh kvcache.Shape, qHeads int) (Track, error) {
	return s.t.NewTrack(sh, qHeads)
}

// Name implements Scorer.
func (s sharedMax) Name() string { return s.inner.Name() + "-max" }

// QueryRows implements Scorer: the inner scorer's.
func (s sharedMax) QueryRows(promptLen, window int) int { return s.inner.QueryRows(promptLen, window) }

// Validate implements Validator: the inner scorer's check, if it has one.
func (s sharedMax) Validate(budget, window int) error {
	if v, ok := s.inner.(Validator); ok {
		return v.Validate(budget, window)
	}
	return nil
}

// Fit implements Fitter: the inner scorer's check, if it has one.
func (s sharedMax) Fit(sh kvcache.Shape, qHeads int) error {
	if f, ok := s.inner.(Fitter); ok {
		return f.Fit(sh, qHeads)
	}
	return nil
}

// Score implements Scorer.
func (s sharedMax) Score(ctx context.Context, in *ScoreInput) ([][]float32, error) {
	rows, err := s.inner.Score(ctx, in)
	if err != nil || len(rows) == 1 {
		return rows, err
	}
	G := in.Cache.Shape().KVHeads
	if err := samePositions(in.Cache, in.Layer, kvHeadsOf(G), 1); err != nil {
		return nil, fmt.Errorf("%s: %w", s.Name(), err)
	}
	out := make([]float32, len(rows[0]))
	copy(out, rows[0])
	for _, r := range rows[1:] {
		if len(r) != len(out) {
			return nil, fmt.Errorf("%s: layer %d: score rows of %d and %d positions: %w", s.Name(), in.Layer, len(out), len(r), ErrUneven)
		}
		for j, v := range r {
			out[j] = max(out[j], v)
		}
	}
	return [][]float32{out}, nil
}

// kvHeadsOf returns 0..G-1: every KV head, as the query heads of a group of
// one.
func kvHeadsOf(G int) []int { return allHeads(G) }
