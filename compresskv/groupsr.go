package compresskv

import (
	"context"
	"fmt"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/kvcache"
)

// GroupSRScorer scores each KV head with the window attention of semantic
// retrieval heads chosen within its own group of query heads (Ada-CompressKV,
// docs/DESIGN.md ("Head-adaptive CompressKV")). For KV head g, the group's
// SR heads are the first PerGroup(H, G) heads of the layer's profile ranking
// that read g (query heads g*H/G .. (g+1)*H/G-1); each one's window sums are
// pooled, then averaged: one row per KV head, in CompressKV's order.
type GroupSRScorer struct {
	Profile *Profile // ranks the query heads of each layer
	// K is the number of SR heads per layer, as CompressKV's; each group
	// gets ceil(K/G) of its own heads, at most its H/G (PerGroup).
	K       int
	Kernel  int             // odd pooling kernel; 1 disables pooling
	Pooling backend.Pooling // average or max pooling
}

// PerGroup returns how many SR heads each of G groups of H/G query heads
// scores with: ceil(K/G), at least 1 and at most H/G.
func (s GroupSRScorer) PerGroup(H, G int) int {
	n := (s.K + G - 1) / G
	return min(max(n, 1), H/G)
}

// Name implements Scorer.
func (s GroupSRScorer) Name() string { return "group-sr-heads" }

// QueryRows implements Scorer: the window.
func (GroupSRScorer) QueryRows(_, window int) int { return window }

// Validate implements Validator: a valid profile with a head ranking and
// 1 <= K <= H, as SRScorer.
func (s GroupSRScorer) Validate(_, _ int) error {
	if err := checkPooling(s.Name(), s.Kernel, s.Pooling); err != nil {
		return err
	}
	if err := checkRanking(s.Name(), s.Profile); err != nil {
		return err
	}
	if s.K < 1 || s.K > s.Profile.Model.QueryHeads {
		return fmt.Errorf("%s: %d SR heads per layer, but the model has %d query heads: %w", s.Name(), s.K, s.Profile.Model.QueryHeads, ErrConfig)
	}
	return nil
}

// Fit implements Fitter: the profile must be measured on a model of the
// cache's shape.
func (s GroupSRScorer) Fit(sh kvcache.Shape, qHeads int) error {
	return fitProfile(s.Name(), s.Profile, sh, qHeads)
}

// GroupHeads returns, for each of the layer's G KV heads, the query heads
// that score it: the first PerGroup(H, G) heads of the layer's ranking that
// belong to the KV head's group, in ranking order.
func (s GroupSRScorer) GroupHeads(layer, H, G int) ([][]int, error) {
	rank, err := s.Profile.SRHeads(layer, H)
	if err != nil {
		return nil, err
	}
	if G < 1 || H%G != 0 {
		return nil, fmt.Errorf("%s: %d query heads over %d KV heads", s.Name(), H, G)
	}
	per, n := H/G, s.PerGroup(H, G)
	out := make([][]int, G)
	for _, h := range rank {
		if g := h / per; len(out[g]) < n {
			out[g] = append(out[g], h)
		}
	}
	return out, nil
}

// Score implements Scorer: one row per KV head. Cost: O(G * PerGroup * W *
// L * d), each SR head's window attention computed once.
func (s GroupSRScorer) Score(ctx context.Context, in *ScoreInput) ([][]float32, error) {
	G := in.Cache.Shape().KVHeads
	groups, err := s.GroupHeads(in.Layer, in.QHeads, G)
	if err != nil {
		return nil, err
	}
	var heads []int
	for _, hs := range groups {
		heads = append(heads, hs...)
	}
	rows, err := in.windowSums(ctx, heads)
	if err != nil {
		return nil, err
	}
	if err := pool(in.Backend, rows, s.Kernel, s.Pooling); err != nil {
		return nil, err
	}
	out := make([][]float32, G)
	i := 0
	for g, hs := range groups {
		out[g] = meanRows(rows[i : i+len(hs)])
		i += len(hs)
	}
	return out, nil
}
