package compresskv

import (
	"fmt"
	"slices"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/kvcache"
)

// Tracker is a Scorer that learns from every token a sequence runs, not
// only from the queries of its last window: the attention each row received
// from every query so far (AccumulatedScorer), the statistics of every
// query (ExpectedAttentionScorer). A Stream gives a Tracker one Track per
// sequence, feeds it each appended chunk with the queries of all its tokens
// and tells it what each compression kept; ScoreInput.Track hands the state
// back to Score. Outside a Stream (Policy.Compress on a prefilled cache) a
// Tracker scores from the prompt's queries it reads (its QueryRows), as any
// scorer does.
type Tracker interface {
	Scorer
	// NewTrack returns the empty state of one sequence over a cache of
	// shape s read by qHeads query heads.
	NewTrack(s kvcache.Shape, qHeads int) (Track, error)
}

// Track is a Tracker's state for one sequence, kept in step with the
// sequence's cache by the Stream that owns both.
type Track interface {
	// Observe sees the n tokens just appended to layer of c (the last n rows
	// of each of its KV heads): q holds the post-RoPE queries of all n,
	// [n][qHeads][HeadDim], and pos0 is the position of the first.
	Observe(b backend.Backend, c kvcache.KVCache, layer, pos0 int, q []float32) error
	// Compact follows a compaction of layer in which KV head g kept its
	// rows keep[g] (ascending row indices).
	Compact(layer int, keep [][]int)
	// Release drops what the state holds for layer, which will not be
	// scored by this Track again.
	Release(layer int)
	// Bytes returns the memory the state holds.
	Bytes() int64
}

// queryRowsIn returns how many of a sequence's last query rows scorer s
// reads when it compresses a layer in a Stream: the window for a Tracker
// given its Track (its state stands in for the rest; a combination of a
// Tracker and a window scorer reads the window), else its QueryRows.
func queryRowsIn(s Scorer, tracked bool, window int) int {
	if s == nil {
		return 0
	}
	if tracked {
		return window
	}
	return s.QueryRows(maxPrompt, window)
}

// maxPrompt is the prompt length a Stream plans for: longer than any budget.
const maxPrompt = 1<<31 - 1

// gatherRows returns x's rows keep (ascending indices into x), in place.
func gatherRows[T any](x []T, keep []int) []T {
	for i, r := range keep {
		x[i] = x[r]
	}
	return x[:len(keep)]
}

// hostRows returns the host cache a scorer that reads stored rows needs.
func hostRows(name string, c kvcache.KVCache) (kvcache.HostReader, error) {
	hr, ok := c.(kvcache.HostReader)
	if !ok {
		return nil, fmt.Errorf("%s: reads the stored keys and values, and %T keeps none in host memory: %w", name, c, ErrConfig)
	}
	return hr, nil
}

// scoreHeads returns the query heads a scorer of a layer reads: the
// profile's first k SR heads, or every query head when there is no profile.
func scoreHeads(p *Profile, k, layer, qHeads int) ([]int, error) {
	if p == nil {
		return allHeads(qHeads), nil
	}
	return p.SRHeads(layer, k)
}

// checkHeads is the settings check of the scorers that read either every
// query head or a profile's SR heads.
func checkHeads(name string, p *Profile, k int) error {
	if p == nil {
		return nil
	}
	if err := checkRanking(name, p); err != nil {
		return err
	}
	if k < 1 {
		return fmt.Errorf("%s: SR heads per layer %d must be positive: %w", name, k, ErrConfig)
	}
	if err := p.checkSRHeads(k); err != nil {
		return fmt.Errorf("%s: %v: %w", name, err, ErrConfig)
	}
	return nil
}

// combine turns one prefix row per scoring head into the scorer's rows:
// with SR heads (shared), each head's row pooled and then the mean, one row
// every KV head shares (CompressKV's order); otherwise the mean over each
// KV head's group of query heads, then pooled (SnapKV's order). heads are
// the query heads the rows belong to, in order.
func combine(in *ScoreInput, rows [][]float32, heads []int, shared bool, kernel int, kind backend.Pooling) ([][]float32, error) {
	b, kvHeads, qHeads := in.Backend, in.Cache.Shape().KVHeads, in.QHeads
	if shared {
		for _, r := range rows[1:] {
			if len(r) != len(rows[0]) {
				return nil, fmt.Errorf("the SR heads read KV heads of different lengths; one shared row needs a layer whose heads hold the same rows: %w", ErrUneven)
			}
		}
		if err := samePositions(in.Cache, in.Layer, heads, qHeads/kvHeads); err != nil {
			return nil, err
		}
		if err := pool(b, rows, kernel, kind); err != nil {
			return nil, err
		}
		return [][]float32{meanRows(rows)}, nil
	}
	if len(heads) != qHeads {
		return nil, fmt.Errorf("%d scoring heads, want every one of %d", len(heads), qHeads)
	}
	means := groupMeans(rows, kvHeads)
	if err := pool(b, means, kernel, kind); err != nil {
		return nil, err
	}
	return means, nil
}

// samePositions returns an error wrapping ErrUneven unless the KV heads that
// heads read (query head h reads KV head h/group) hold the same positions:
// one score row shared by those heads must mean the same tokens in each.
func samePositions(c kvcache.KVCache, layer int, heads []int, group int) error {
	var first, pos []int32
	for i, h := range heads {
		g := h / group
		if i == 0 {
			first = c.Positions(layer, g, nil)
			continue
		}
		pos = c.Positions(layer, g, pos[:0])
		if !slices.Equal(first, pos) {
			return fmt.Errorf("layer %d: KV heads %d and %d hold different positions; one shared row needs a layer whose heads keep the same tokens (a per-head scorer ran before a shared one?): %w", layer, heads[0]/group, g, ErrUneven)
		}
	}
	return nil
}
