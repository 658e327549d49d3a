package compresskv

import (
	"context"
	"fmt"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/kvcache"
)

// Scorer scores the prefix positions [0, L-W) of one layer.
type Scorer interface {
	// Name identifies the scorer in results and errors.
	Name() string
	// QueryRows returns how many query rows, the last ones of the prompt,
	// Score reads for a layer of promptLen rows and a window of window
	// tokens: the window for window scorers, every prompt row for H2O.
	// The policy checks that the caller passed exactly that many.
	QueryRows(promptLen, window int) int
	// Score returns one row of L-W scores for each KV head, or a single row
	// that every KV head of the layer shares. A long scoring checks ctx
	// between its steps and returns an error wrapping ctx.Err() once it is
	// cancelled.
	Score(ctx context.Context, in *ScoreInput) ([][]float32, error)
}

// Validator is implemented by pieces (scorers, selectors, allocators) that
// check their own settings. New and Compose call it with the policy's
// average budget and window before any cache is seen.
type Validator interface {
	Validate(budget, window int) error
}

// Fitter is implemented by pieces that must fit the model whose cache they
// compress (a scorer with a profile measured on one model). The policy calls
// it with the cache's shape and the number of query heads before planning.
type Fitter interface {
	Fit(s kvcache.Shape, qHeads int) error
}

// ScoreInput is what a Scorer sees of one layer at compression time.
type ScoreInput struct {
	Backend backend.Backend // the compute to score with
	Cache   kvcache.KVCache // the prefilled cache
	Layer   int             // layer index
	Queries []float32       // the last NQ prompt queries, [NQ][QHeads][HeadDim]
	NQ      int             // query rows in Queries (the scorer's QueryRows)
	QHeads  int             // query heads H
	Len     int             // rows stored per KV head: the prompt length L
	Window  int             // observation window W
	// Track is the scorer's state when a Stream runs a Tracker (then
	// Queries holds only the last window the Stream kept, or nothing before
	// it has seen a window); nil otherwise.
	Track Track
}

// Prefix returns the number of positions eligible for eviction, L - W.
func (in *ScoreInput) Prefix() int { return in.Len - in.Window }

// windowSums returns, for each query head of heads, the attention of all NQ
// query rows summed over them, restricted to the prefix: the rows of its KV
// head but the last W (Len - W when every head holds Len rows; a layer
// compressed again with head-wise lengths gives each head its own).
//
// When the layer's work is large (more than cancelEvery multiply-adds), the
// backend is called once per KV head's share of heads and ctx is checked
// between the calls; each head's sums are the same either way.
func (in *ScoreInput) windowSums(ctx context.Context, heads []int) ([][]float32, error) {
	out := make([][]float32, len(heads))
	G := in.Cache.Shape().KVHeads
	group := max(in.QHeads/G, 1)
	work := 0
	for i, h := range heads {
		n := in.Len
		if h >= 0 && h < in.QHeads && h/group < G {
			n = in.Cache.Len(in.Layer, h/group)
		}
		out[i] = make([]float32, n)
		work += in.NQ * n * in.Cache.Shape().HeadDim
	}
	// Batches of heads: one call for a small layer, else one per run of
	// heads that read the same KV head (the keys are decoded once per call
	// and KV head, so this costs no extra pass over them).
	var cuts []int
	if work > cancelEvery {
		for i := 1; i < len(heads); i++ {
			if heads[i]/group != heads[i-1]/group {
				cuts = append(cuts, i)
			}
		}
	}
	cuts = append(cuts, len(heads))
	lo := 0
	for _, hi := range cuts {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("layer %d: %w", in.Layer, err)
		}
		if err := in.Backend.WindowScores(in.Cache, in.Layer, in.Queries, in.NQ, in.QHeads, heads[lo:hi], out[lo:hi]); err != nil {
			return nil, fmt.Errorf("layer %d: %w", in.Layer, err)
		}
		lo = hi
	}
	for i := range out {
		out[i] = out[i][:len(out[i])-in.Window]
	}
	return out, nil
}

// cancelEvery is the scoring work, in multiply-adds, above which
// windowSums checks its context between KV heads: about 10 ms on one core.
const cancelEvery = 1 << 24

// pool pools every row in place (kernel 1 leaves rows as they are).
func pool(b backend.Backend, rows [][]float32, kernel int, kind backend.Pooling) error {
	if kernel == 1 {
		return nil
	}
	tmp := make([]float32, 0)
	for _, r := range rows {
		tmp = append(tmp[:0], r...)
		if err := b.Pool(r, tmp, kernel, kind); err != nil {
			return err
		}
	}
	return nil
}

// meanRows returns the element-wise mean of rows, summed in order in float32
// and multiplied by 1/len(rows), like the reference (and the GPU's
// pool_mean kernel).
func meanRows(rows [][]float32) []float32 {
	out := make([]float32, len(rows[0]))
	for _, r := range rows {
		for j, v := range r {
			out[j] += v
		}
	}
	inv := 1 / float32(len(rows))
	for j := range out {
		out[j] *= inv
	}
	return out
}

// groupMeans averages per-query-head rows (all H heads, in order) over the
// contiguous groups of H/G heads that share a KV head: one row per KV head.
func groupMeans(rows [][]float32, kvHeads int) [][]float32 {
	per := len(rows) / kvHeads
	out := make([][]float32, kvHeads)
	for g := range out {
		out[g] = meanRows(rows[g*per : (g+1)*per])
	}
	return out
}

func allHeads(n int) []int {
	h := make([]int, n)
	for i := range h {
		h[i] = i
	}
	return h
}

// checkPooling is the settings check of the window scorers.
func checkPooling(name string, kernel int, kind backend.Pooling) error {
	if kernel < 1 || kernel%2 == 0 {
		return fmt.Errorf("%s: pooling kernel %d must be odd and positive: %w", name, kernel, ErrConfig)
	}
	if kind != backend.AvgPool && kind != backend.MaxPool {
		return fmt.Errorf("%s: unknown pooling %v (want avg or max): %w", name, kind, ErrConfig)
	}
	return nil
}

// checkRanking is the profile check of the SR scorers: a valid profile
// with a head ranking.
func checkRanking(name string, p *Profile) error {
	if p == nil {
		return fmt.Errorf("%s: a profile with the model's semantic retrieval heads is required (Config.Profile: LoadProfile, or package calibrate for a new model): %w", name, ErrConfig)
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%s: %v: %w", name, err, ErrConfig)
	}
	if len(p.HeadRanking) == 0 {
		return fmt.Errorf("%s: the profile has no head ranking: %w", name, ErrConfig)
	}
	return nil
}

// layerSelection is implemented by the scorers whose computation a
// backend.LayerSelector can run whole, with the top-k selector.
type layerSelection interface {
	selection(in *ScoreInput) (backend.Selection, error)
}

// SnapKVScorer scores each KV head with the window attention of its own query
// heads: each head's sums over the window, the mean over the group's H/G
// heads, then pooling (SnapKV at KV-head granularity, as its published
// implementation; used by SnapKV, PyramidKV and Ada-KV).
type SnapKVScorer struct {
	Kernel  int             // odd pooling kernel; 1 disables pooling
	Pooling backend.Pooling // average or max pooling
}

// Name implements Scorer.
func (s SnapKVScorer) Name() string { return "snapkv" }

// QueryRows implements Scorer: the window.
func (SnapKVScorer) QueryRows(_, window int) int { return window }

// Validate implements Validator.
func (s SnapKVScorer) Validate(_, _ int) error { return checkPooling(s.Name(), s.Kernel, s.Pooling) }

// Score implements Scorer. Cost: O(W * L * d) per query head.
func (s SnapKVScorer) Score(ctx context.Context, in *ScoreInput) ([][]float32, error) {
	rows, err := in.windowSums(ctx, allHeads(in.QHeads))
	if err != nil {
		return nil, err
	}
	means := groupMeans(rows, in.Cache.Shape().KVHeads)
	if err := pool(in.Backend, means, s.Kernel, s.Pooling); err != nil {
		return nil, err
	}
	return means, nil
}

func (s SnapKVScorer) selection(in *ScoreInput) (backend.Selection, error) {
	return backend.Selection{Window: in.Window, Heads: allHeads(in.QHeads), PerRow: in.QHeads / in.Cache.Shape().KVHeads,
		MeanFirst: true, Kernel: s.Kernel, Pooling: s.Pooling}, nil
}

// SRScorer scores a layer with the window attention of its semantic
// retrieval heads: each SR head's sums pooled, then the mean over the SR heads,
// one row that every KV head shares (CompressKV, docs/DESIGN.md ("Token
// selection")).
type SRScorer struct {
	Profile *Profile        // ranks the query heads of each layer
	K       int             // SR heads per layer: the first K of the ranking
	Kernel  int             // odd pooling kernel; 1 disables pooling
	Pooling backend.Pooling // average or max pooling
}

// Name implements Scorer.
func (s SRScorer) Name() string { return "sr-heads" }

// QueryRows implements Scorer: the window.
func (SRScorer) QueryRows(_, window int) int { return window }

// Validate implements Validator: a valid profile with a head ranking and at
// least K heads per layer.
func (s SRScorer) Validate(_, _ int) error {
	if err := checkPooling(s.Name(), s.Kernel, s.Pooling); err != nil {
		return err
	}
	if err := checkRanking(s.Name(), s.Profile); err != nil {
		return err
	}
	if s.K < 1 {
		return fmt.Errorf("%s: SR heads per layer %d must be positive: %w", s.Name(), s.K, ErrConfig)
	}
	if err := s.Profile.checkSRHeads(s.K); err != nil {
		return fmt.Errorf("%s: %v: %w", s.Name(), err, ErrConfig)
	}
	return nil
}

// Fit implements Fitter: the profile must be measured on a model of the
// cache's shape.
func (s SRScorer) Fit(sh kvcache.Shape, qHeads int) error {
	return fitProfile(s.Name(), s.Profile, sh, qHeads)
}

// fitProfile is the Fitter of the SR scorers: the profile's model must have
// the cache's layers, KV heads and head dimension, and qHeads query heads.
func fitProfile(name string, p *Profile, sh kvcache.Shape, qHeads int) error {
	if p == nil {
		return fmt.Errorf("%s: no profile: %w", name, ErrConfig)
	}
	m := p.Model
	if m.Layers != sh.Layers || m.KVHeads != sh.KVHeads || m.HeadDim != sh.HeadDim || m.QueryHeads != qHeads {
		return fmt.Errorf("%s: the profile of %q was measured on %d layers, %d query heads over %d KV heads, head dimension %d; "+
			"this call has %d layers, %d query heads over %d KV heads, head dimension %d (the cache's shape and the qHeads argument): %w",
			name, m.Name, m.Layers, m.QueryHeads, m.KVHeads, m.HeadDim, sh.Layers, qHeads, sh.KVHeads, sh.HeadDim, ErrConfig)
	}
	return nil
}

// Score implements Scorer. Cost: O(K * W * L * d).
func (s SRScorer) Score(ctx context.Context, in *ScoreInput) ([][]float32, error) {
	heads, err := s.Profile.SRHeads(in.Layer, s.K)
	if err != nil {
		return nil, err
	}
	rows, err := in.windowSums(ctx, heads)
	if err != nil {
		return nil, err
	}
	for _, r := range rows[1:] {
		if len(r) != len(rows[0]) {
			return nil, fmt.Errorf("%s: layer %d: the SR heads read KV heads of different lengths; one shared row needs a layer whose heads hold the same rows: %w", s.Name(), in.Layer, ErrUneven)
		}
	}
	if err := samePositions(in.Cache, in.Layer, heads, in.QHeads/in.Cache.Shape().KVHeads); err != nil {
		return nil, fmt.Errorf("%s: %w", s.Name(), err)
	}
	if err := pool(in.Backend, rows, s.Kernel, s.Pooling); err != nil {
		return nil, err
	}
	return [][]float32{meanRows(rows)}, nil
}

func (s SRScorer) selection(in *ScoreInput) (backend.Selection, error) {
	heads, err := s.Profile.SRHeads(in.Layer, s.K)
	if err != nil {
		return backend.Selection{}, err
	}
	return backend.Selection{Window: in.Window, Heads: heads, PerRow: len(heads), Kernel: s.Kernel, Pooling: s.Pooling}, nil
}

// H2OScorer scores each KV head with the attention of all prompt queries,
// accumulated over the prompt and averaged over the group's query heads
// (H2O). It reads every prompt query (QueryRows is the prompt length). In a
// Stream it is a Tracker (AccumulatedScorer over every head, unpooled): each
// chunk's queries add their attention over the rows stored when they ran,
// as H2O accumulates during generation.
type H2OScorer struct{}

var _ Tracker = H2OScorer{}

// NewTrack implements Tracker.
func (H2OScorer) NewTrack(sh kvcache.Shape, qHeads int) (Track, error) {
	return AccumulatedScorer{Kernel: 1}.NewTrack(sh, qHeads)
}

// Name implements Scorer.
func (H2OScorer) Name() string { return "h2o" }

// QueryRows implements Scorer: every prompt row.
func (H2OScorer) QueryRows(promptLen, _ int) int { return promptLen }

// Score implements Scorer. Cost: O(L * L * d) per query head.
func (H2OScorer) Score(ctx context.Context, in *ScoreInput) ([][]float32, error) {
	if in.Track != nil {
		return AccumulatedScorer{Kernel: 1}.Score(ctx, in)
	}
	rows, err := in.windowSums(ctx, allHeads(in.QHeads))
	if err != nil {
		return nil, err
	}
	return groupMeans(rows, in.Cache.Shape().KVHeads), nil
}
