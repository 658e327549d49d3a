package compresskv

import (
	"context"
	"fmt"
	"slices"

	"github.com/compresskv/compresskv/backend"

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
	out, err := maxOverHeads(in, rows)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Name(), err)
	}
	return out, nil
}

// maxOverHeads is the element-wise maximum of per-KV-head rows, as one row.
func maxOverHeads(in *ScoreInput, rows [][]float32) ([][]float32, error) {
	G := in.Cache.Shape().KVHeads
	if err := samePositions(in.Cache, in.Layer, kvHeadsOf(G), 1); err != nil {
		return nil, err
	}
	out := make([]float32, len(rows[0]))
	copy(out, rows[0])
	for _, r := range rows[1:] {
		if len(r) != len(out) {
			return nil, fmt.Errorf("layer %d: score rows of %d and %d positions: %w", in.Layer, len(out), len(r), ErrUneven)
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

// Either returns a scorer that keeps what either a or b ranks high: each
// position scores by the better of its two ranks (its rank among the
// candidates under a, and under b, as a share of them), so that a top-k of
// c takes about the c/2 best of each list, and all of a list's top when the
// other list repeats it. Ranks put ties at the lower position, as top-k
// does. Both must give rows of the same shape (one shared row each, or one
// per KV head each); with one of each, the per-head rows are made one row
// by SharedMax first. The result reads the queries both read (the larger
// QueryRows) and is a Tracker when either is.
func Either(a, b Scorer) Scorer {
	e := either{a: a, b: b}
	ta, oka := a.(Tracker)
	tb, okb := b.(Tracker)
	if oka || okb {
		return eitherTracker{e, ta, tb}
	}
	return e
}

type either struct{ a, b Scorer }

type eitherTracker struct {
	either
	ta, tb Tracker // nil for the one that is not a Tracker
}

// eitherTrack holds the two scorers' tracks (nil where one keeps none).
type eitherTrack struct{ a, b Track }

// NewTrack implements Tracker.
func (e eitherTracker) NewTrack(sh kvcache.Shape, qHeads int) (Track, error) {
	var t eitherTrack
	var err error
	if e.ta != nil {
		if t.a, err = e.ta.NewTrack(sh, qHeads); err != nil {
			return nil, err
		}
	}
	if e.tb != nil {
		if t.b, err = e.tb.NewTrack(sh, qHeads); err != nil {
			return nil, err
		}
	}
	return &t, nil
}

// Observe implements Track.
func (t *eitherTrack) Observe(b backend.Backend, c kvcache.KVCache, layer, pos0 int, q []float32) error {
	for _, tr := range []Track{t.a, t.b} {
		if tr != nil {
			if err := tr.Observe(b, c, layer, pos0, q); err != nil {
				return err
			}
		}
	}
	return nil
}

// Compact implements Track.
func (t *eitherTrack) Compact(layer int, keep [][]int) {
	for _, tr := range []Track{t.a, t.b} {
		if tr != nil {
			tr.Compact(layer, keep)
		}
	}
}

// Release implements Track.
func (t *eitherTrack) Release(layer int) {
	for _, tr := range []Track{t.a, t.b} {
		if tr != nil {
			tr.Release(layer)
		}
	}
}

// Bytes implements Track.
func (t *eitherTrack) Bytes() int64 {
	var n int64
	for _, tr := range []Track{t.a, t.b} {
		if tr != nil {
			n += tr.Bytes()
		}
	}
	return n
}

// Name implements Scorer.
func (e either) Name() string { return e.a.Name() + "|" + e.b.Name() }

// QueryRows implements Scorer: the more of the two.
func (e either) QueryRows(promptLen, window int) int {
	return max(e.a.QueryRows(promptLen, window), e.b.QueryRows(promptLen, window))
}

// Validate implements Validator: both pieces' checks.
func (e either) Validate(budget, window int) error {
	for _, s := range []Scorer{e.a, e.b} {
		if v, ok := s.(Validator); ok {
			if err := v.Validate(budget, window); err != nil {
				return err
			}
		}
	}
	return nil
}

// Fit implements Fitter: both pieces' checks.
func (e either) Fit(sh kvcache.Shape, qHeads int) error {
	for _, s := range []Scorer{e.a, e.b} {
		if f, ok := s.(Fitter); ok {
			if err := f.Fit(sh, qHeads); err != nil {
				return err
			}
		}
	}
	return nil
}

// Score implements Scorer.
func (e either) Score(ctx context.Context, in *ScoreInput) ([][]float32, error) {
	var tracks eitherTrack
	if in.Track != nil {
		t, ok := in.Track.(*eitherTrack)
		if !ok {
			return nil, fmt.Errorf("%s: layer %d: a track of another scorer (%T)", e.Name(), in.Layer, in.Track)
		}
		tracks = *t
	}
	ra, err := e.part(ctx, in, e.a, tracks.a)
	if err != nil {
		return nil, err
	}
	rb, err := e.part(ctx, in, e.b, tracks.b)
	if err != nil {
		return nil, err
	}
	if len(ra) != len(rb) {
		if len(ra) > 1 {
			ra, err = maxOverHeads(in, ra)
		} else {
			rb, err = maxOverHeads(in, rb)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
	}
	out := make([][]float32, len(ra))
	for i := range ra {
		if len(ra[i]) != len(rb[i]) {
			return nil, fmt.Errorf("%s: layer %d: rows of %d and %d positions", e.Name(), in.Layer, len(ra[i]), len(rb[i]))
		}
		pa, pb := rankShares(ra[i]), rankShares(rb[i])
		out[i] = make([]float32, len(pa))
		for j := range pa {
			out[i][j] = -min(pa[j], pb[j])
		}
	}
	return out, nil
}

// part scores with one of the two: its own query rows (the last of those
// given), its own track.
func (e either) part(ctx context.Context, in *ScoreInput, s Scorer, tr Track) ([][]float32, error) {
	sub := *in
	sub.Track = tr
	if tr == nil && in.Queries != nil {
		n := s.QueryRows(in.Len, in.Window)
		if n > in.NQ {
			return nil, fmt.Errorf("%s: the %s scorer reads %d query rows, %d given", e.Name(), s.Name(), n, in.NQ)
		}
		per := len(in.Queries) / max(in.NQ, 1)
		sub.Queries, sub.NQ = in.Queries[(in.NQ-n)*per:], n
	}
	if tr != nil {
		sub.Queries, sub.NQ = nil, 0
	}
	return s.Score(ctx, &sub)
}

// rankShares returns each position's rank by score (0 the best; ties to the
// lower position) as a share of the positions.
func rankShares(x []float32) []float32 {
	idx := make([]int, len(x))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case x[a] > x[b]:
			return -1
		case x[a] < x[b]:
			return 1
		}
		return 0
	})
	out := make([]float32, len(x))
	for r, i := range idx {
		out[i] = float32(r) / float32(len(x))
	}
	return out
}
