package compresskv

import (
	"context"
	"fmt"
	"slices"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/kvcache"
)

// AccumulatedScorer scores rows by the attention they received from every
// query of the sequence so far, not only from the last window: H2O's
// accumulated attention, taken over every chunk's queries as a Stream runs
// them. With Average, each row's sum is divided by the number of queries
// that saw it (those at or after its position), so that rows that arrived
// late are not outweighed by old ones for having been seen less.
//
// With a Profile it scores with the layer's first K SR heads (each head's
// row pooled, then the mean: one row every KV head shares, as CompressKV);
// without, with every query head (the mean over each KV head's group, then
// pooled: one row per KV head; with kernel 1 and no Average it is H2O).
//
// Outside a Stream it reads every prompt query (QueryRows is the prompt
// length). In a Stream it is a Tracker: each appended chunk's queries attend
// to the rows stored then (causally within the chunk), which costs what the
// chunk's own attention costs for each scoring head, and each stored row
// keeps its running sum per scoring head (and one count per KV head).
type AccumulatedScorer struct {
	Profile *Profile // SR heads of each layer; nil: every query head
	K       int      // SR heads per layer (with a Profile)
	// Average divides each row's sum by the queries that saw it.
	Average bool
	Kernel  int             // odd pooling kernel; 1 disables pooling
	Pooling backend.Pooling // average or max pooling
}

var _ Tracker = AccumulatedScorer{}

// Name implements Scorer.
func (s AccumulatedScorer) Name() string {
	n := "accumulated"
	if s.Average {
		n = "averaged"
	}
	if s.Profile != nil {
		return "sr-" + n
	}
	return n
}

// QueryRows implements Scorer: every prompt row.
func (AccumulatedScorer) QueryRows(promptLen, _ int) int { return promptLen }

// Validate implements Validator.
func (s AccumulatedScorer) Validate(_, _ int) error {
	if err := checkPooling(s.Name(), s.Kernel, s.Pooling); err != nil {
		return err
	}
	return checkHeads(s.Name(), s.Profile, s.K)
}

// Fit implements Fitter: a profile must be measured on the cache's model.
func (s AccumulatedScorer) Fit(sh kvcache.Shape, qHeads int) error {
	if s.Profile != nil {
		return SRScorer{Profile: s.Profile}.Fit(sh, qHeads)
	}
	return nil
}

// Score implements Scorer. Outside a Stream, cost O(heads * L^2 * d).
func (s AccumulatedScorer) Score(ctx context.Context, in *ScoreInput) ([][]float32, error) {
	sh := in.Cache.Shape()
	heads, err := scoreHeads(s.Profile, s.K, in.Layer, in.QHeads)
	if err != nil {
		return nil, err
	}
	group := in.QHeads / sh.KVHeads
	rows := make([][]float32, len(heads))
	if in.Track != nil {
		tr, ok := in.Track.(*accTrack)
		if !ok {
			return nil, fmt.Errorf("%s: layer %d: a track of another scorer (%T)", s.Name(), in.Layer, in.Track)
		}
		if !slices.Equal(tr.heads[in.Layer], heads) || tr.acc[in.Layer] == nil {
			return nil, fmt.Errorf("%s: layer %d: the track does not follow heads %v (released?)", s.Name(), in.Layer, heads)
		}
		for k, h := range heads {
			g := h / group
			acc, cnt := tr.acc[in.Layer][k], tr.count[in.Layer][g]
			n := in.Cache.Len(in.Layer, g)
			if len(acc) != n || len(cnt) != n {
				return nil, fmt.Errorf("%s: layer %d: the track holds %d rows of KV head %d, the cache %d", s.Name(), in.Layer, len(acc), g, n)
			}
			rows[k] = make([]float32, n-in.Window)
			for j := range rows[k] {
				rows[k][j] = acc[j]
				if s.Average {
					rows[k][j] /= float32(cnt[j])
				}
			}
		}
	} else {
		if rows, err = in.windowSums(ctx, heads); err != nil {
			return nil, err
		}
		if s.Average {
			// Query i of the NQ (the last NQ rows) sees rows j <= L-NQ+i.
			for _, r := range rows {
				for j := range r {
					r[j] /= float32(in.NQ - max(0, j-(in.Len-in.NQ)))
				}
			}
		}
	}
	out, err := combine(in, rows, heads, s.Profile != nil, s.Kernel, s.Pooling)
	if err != nil {
		return nil, fmt.Errorf("%s: layer %d: %w", s.Name(), in.Layer, err)
	}
	return out, nil
}

// NewTrack implements Tracker: per layer, a running sum per scoring head
// and stored row, and a count per KV head and stored row.
func (s AccumulatedScorer) NewTrack(sh kvcache.Shape, qHeads int) (Track, error) {
	if err := s.Fit(sh, qHeads); err != nil {
		return nil, err
	}
	if qHeads <= 0 || qHeads%sh.KVHeads != 0 {
		return nil, fmt.Errorf("%s: %d query heads is not a positive multiple of %d KV heads: %w", s.Name(), qHeads, sh.KVHeads, ErrConfig)
	}
	tr := &accTrack{name: s.Name(), qHeads: qHeads, group: qHeads / sh.KVHeads,
		heads: make([][]int, sh.Layers), acc: make([][][]float32, sh.Layers), count: make([][][]int32, sh.Layers)}
	for l := range tr.heads {
		heads, err := scoreHeads(s.Profile, s.K, l, qHeads)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.Name(), err)
		}
		tr.heads[l] = heads
		tr.acc[l] = make([][]float32, len(heads))
		tr.count[l] = make([][]int32, sh.KVHeads)
	}
	return tr, nil
}

// accTrack is the accumulated scorer's state.
type accTrack struct {
	name          string
	qHeads, group int
	heads         [][]int       // per layer: the scoring heads
	acc           [][][]float32 // per layer, per scoring head: per stored row of its KV head
	count         [][][]int32   // per layer, per KV head: queries that saw each stored row
}

// Observe implements Track: the chunk's queries attend to the stored rows.
func (t *accTrack) Observe(b backend.Backend, c kvcache.KVCache, layer, pos0 int, q []float32) error {
	if t.acc[layer] == nil {
		return fmt.Errorf("%s: layer %d: the track was released", t.name, layer)
	}
	sh := c.Shape()
	n := len(q) / (t.qHeads * sh.HeadDim)
	for g, cnt := range t.count[layer] {
		if L := c.Len(layer, g); len(cnt) != L-n {
			return fmt.Errorf("%s: layer %d: the track holds %d rows of KV head %d, the cache %d before %d new ones", t.name, layer, len(cnt), g, L-n, n)
		}
	}
	heads := t.heads[layer]
	out := make([][]float32, len(heads))
	for k, h := range heads {
		out[k] = make([]float32, c.Len(layer, h/t.group))
	}
	if err := b.WindowScores(c, layer, q, n, t.qHeads, heads, out); err != nil {
		return fmt.Errorf("%s: layer %d: %w", t.name, layer, err)
	}
	for k := range heads {
		acc := append(t.acc[layer][k], make([]float32, n)...)
		for j, v := range out[k] {
			acc[j] += v
		}
		t.acc[layer][k] = acc
	}
	for g, cnt := range t.count[layer] {
		for j := range cnt {
			cnt[j] += int32(n)
		}
		for i := 0; i < n; i++ {
			cnt = append(cnt, int32(n-i))
		}
		t.count[layer][g] = cnt
	}
	return nil
}

// Compact implements Track.
func (t *accTrack) Compact(layer int, keep [][]int) {
	if t.acc[layer] == nil {
		return
	}
	for k, h := range t.heads[layer] {
		t.acc[layer][k] = gatherRows(t.acc[layer][k], keep[h/t.group])
	}
	for g, cnt := range t.count[layer] {
		t.count[layer][g] = gatherRows(cnt, keep[g])
	}
}

// Release implements Track.
func (t *accTrack) Release(layer int) { t.acc[layer], t.count[layer] = nil, nil }

// Bytes implements Track.
func (t *accTrack) Bytes() int64 {
	var n int64
	for l := range t.acc {
		for _, a := range t.acc[l] {
			n += int64(cap(a)) * 4
		}
		for _, c := range t.count[l] {
			n += int64(cap(c)) * 4
		}
	}
	return n
}
