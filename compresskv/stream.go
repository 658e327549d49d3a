package compresskv

import (
	"context"
	"fmt"
	"math"

	"github.com/compresskv/compresskv/internal/finite"
	"github.com/compresskv/compresskv/kvcache"
)

// StreamConfig sets how a Stream bounds its cache.
type StreamConfig struct {
	// QHeads is the model's number of query heads H (a multiple of the
	// cache's KV heads). Required when the policy reads queries.
	QHeads int
	// Chunk is the most tokens one Append brings: the prefill chunk, or 1
	// for a sequence run token by token. Required.
	Chunk int
	// Slack is how many tokens beyond its budget and one chunk a layer may
	// gather before it is compressed again. 0 takes the policy's window;
	// negative means none (then a decode step that fills the layer's room
	// compresses at every token).
	Slack int
	// Every, when positive, also compresses a layer every Every tokens
	// appended since its last compression, before the slack is used up.
	Every int
	// Reserve is how many rows each KV head of a layer may keep while the
	// prompt runs, before Compress ends the layer's prompt: a layer keeps
	// max(Reserve, its budget) rows and Reserve + Chunk + Slack at most,
	// and is compressed to its budget by Compress, once the question's
	// window is seen. 0 means no reserve (the budget throughout); a
	// positive Reserve below the policy's average budget is an error.
	Reserve int
	// Prefill is the scorer that ranks the rows while the prompt runs (the
	// compressions down to the reserve); nil means DefaultPrefill(policy),
	// and the policy's own scorer (policy.Scorer()) ranks them as each
	// chunk's last window does. It must give the rows the policy's selector
	// takes (one shared row, or one per KV head for Ada-KV). A Tracker
	// (AccumulatedScorer, ExpectedAttentionScorer) is given the queries of
	// every token.
	Prefill Scorer
}

// streamCapacity is implemented by caches whose storage a Stream can size
// exactly (kvcache.Host), so that Appends never grow it past the bound.
type streamCapacity interface {
	SetCapacity(layer int, rows []int) error
}

// reserver is implemented by caches that report the memory they hold,
// capacity included (kvcache.Host).
type reserver interface {
	Reserved() int64
}

// StreamStats reports what a Stream has done so far.
type StreamStats struct {
	// Compressions counts layer compressions.
	Compressions int
	// PeakRows is the most rows any layer held, summed over its KV heads,
	// after any call.
	PeakRows int
	// PeakBytes is the largest Bytes of the cache after any call.
	PeakBytes int64
	// PeakReserved is the largest Reserved of the cache after any call,
	// for caches that report it (kvcache.Host); 0 otherwise.
	PeakReserved int64
	// PeakTrackBytes is the most memory the scorers' tracks (Tracker
	// state) held after any call.
	PeakTrackBytes int64
}

// Stream runs one sequence through a cache whose size stays bounded from
// the first token to the last: a chunked prefill whose layers are
// compressed between chunks, and a decode whose layers are compressed again
// when their slack is used up (or every Config.Every tokens). The caller's
// inference loop appends each layer's keys and values with Append, together
// with the queries of the same tokens; the Stream keeps the most recent
// window of queries per layer and compresses a layer with them, and the
// policy's layer budgets (CompressKV's SR heads and error-aware budgets,
// Ada-KV's head-wise lengths included).
//
// Every KV head of layer l holds at most Bound(l) rows after every call (for
// head-wise policies such as Ada-KV, the layer's heads together hold at most
// KVHeads*Bound(l) rows plus KVHeads/2 for rounding, and a head may hold
// more than Bound(l)). Positions continue from the tokens seen, never from
// the stored length; the window (and StreamingLLM's sinks) are always kept.
// For a kvcache.Host, the storage of each head is sized once to its room,
// and Reserved stays within the same bound in bytes.
//
// The layer budgets are those of a sequence longer than any budget (the
// allocator is asked for a prompt of math.MaxInt32 tokens), fixed when the
// Stream is made. A layer compressed again ranks the rows it stores: the
// pooling kernel runs over stored rows, which are no longer adjacent
// positions once rows were evicted.
//
// A Stream is not safe for concurrent use: one loop drives it. A call that
// fails leaves the cache as it was, except for a cache used meanwhile from
// another goroutine (kvcache.ErrBusy) between a compression and the Append
// that follows it.
type Stream struct {
	p        *Policy
	pre      *Policy // the policy with the prefill scorer: what ranks rows while the prompt runs
	c        kvcache.KVCache
	cfg      StreamConfig
	budgets  []int
	reserves []int // per layer: rows per KV head kept while the prompt runs
	ended    []bool
	preTrack Track   // the prefill scorer's state, if it is a Tracker
	polTrack Track   // the policy scorer's state, if it is a Tracker (preTrack when the same scorer)
	preNeed  int     // query rows a compression while the prompt runs reads
	polNeed  int     // query rows a compression after it reads
	need     int     // query rows kept: max(preNeed, polNeed)
	room     [][]int // per layer and KV head: rows it may hold before a compression
	since    []int   // per layer: tokens appended since the last compression
	q        [][]float32
	qn       []int // per layer: valid rows in q (the last qn tokens' queries)
	stats    StreamStats
}

// NewStream returns a Stream that drives the empty cache c with policy p.
// The policy's scorer must read no more than the window's queries or be a
// Tracker (H2O's is), and the policy must compress (not Full); so must
// cfg.Prefill (nil: DefaultPrefill(p)).
func NewStream(p *Policy, c kvcache.KVCache, cfg StreamConfig) (*Stream, error) {
	if err := p.usable("NewStream", c); err != nil {
		return nil, err
	}
	if p.selector == nil {
		return nil, fmt.Errorf("compresskv: stream: the %s keeps every token, so no bound holds; append to the cache directly: %w", p.label, ErrConfig)
	}
	W := p.cfg.Window
	if cfg.Chunk < 1 {
		return nil, fmt.Errorf("compresskv: stream: chunk %d must be at least 1: %w", cfg.Chunk, ErrConfig)
	}
	if cfg.Every < 0 {
		return nil, fmt.Errorf("compresskv: stream: every %d must not be negative: %w", cfg.Every, ErrConfig)
	}
	if cfg.Reserve < 0 || (cfg.Reserve > 0 && cfg.Reserve < p.cfg.Budget) {
		return nil, fmt.Errorf("compresskv: stream: reserve %d is below the budget %d (0: no reserve): %w", cfg.Reserve, p.cfg.Budget, ErrConfig)
	}
	switch {
	case cfg.Slack == 0:
		cfg.Slack = W
	case cfg.Slack < 0:
		cfg.Slack = 0
	}
	s := c.Shape()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	pre := p
	if cfg.Prefill == nil {
		cfg.Prefill = DefaultPrefill(p)
	}
	if cfg.Prefill != nil {
		pre = nil
	}
	if pre == nil {
		if v, ok := cfg.Prefill.(Validator); ok {
			if err := v.Validate(p.cfg.Budget, W); err != nil {
				return nil, fmt.Errorf("compresskv: stream: prefill scorer: %w", err)
			}
		}
		cp := *p
		cp.scorer, cp.name = cfg.Prefill, p.name+"+"+cfg.Prefill.Name()
		pre = &cp
	}
	st := &Stream{p: p, pre: pre, c: c, cfg: cfg}
	var err error
	if st.polTrack, st.polNeed, err = streamScorer(p.scorer, s, cfg.QHeads, W); err != nil {
		return nil, err
	}
	st.preTrack, st.preNeed = st.polTrack, st.polNeed
	if pre != p {
		if st.preTrack, st.preNeed, err = streamScorer(cfg.Prefill, s, cfg.QHeads, W); err != nil {
			return nil, err
		}
	}
	st.need = max(st.preNeed, st.polNeed)
	if st.need > 0 || st.preTrack != nil || st.polTrack != nil {
		if cfg.QHeads <= 0 || cfg.QHeads%s.KVHeads != 0 {
			return nil, fmt.Errorf("compresskv: stream: %d query heads is not a positive multiple of %d KV heads: %w", cfg.QHeads, s.KVHeads, ErrConfig)
		}
	}
	for l := 0; l < s.Layers; l++ {
		if c.Seen(l) != 0 {
			return nil, fmt.Errorf("compresskv: stream: layer %d has seen %d tokens; a stream starts from an empty cache: %w", l, c.Seen(l), ErrConfig)
		}
	}
	if err := p.fit(s, cfg.QHeads); err != nil {
		return nil, err
	}
	if err := pre.fit(s, cfg.QHeads); err != nil {
		return nil, err
	}
	budgets, err := p.allocator.Budgets(BudgetInput{Layers: s.Layers, PromptLen: math.MaxInt32, Budget: p.cfg.Budget, Window: W})
	if err != nil {
		return nil, fmt.Errorf("compresskv: stream: %s: %w", p.label, err)
	}
	if len(budgets) != s.Layers {
		return nil, fmt.Errorf("compresskv: stream: %s: the %s allocator gave %d budgets for %d layers", p.label, p.allocator.Name(), len(budgets), s.Layers)
	}
	for l, b := range budgets {
		if b < W {
			return nil, fmt.Errorf("compresskv: stream: %s: layer %d: budget %d below the window %d: %w", p.label, l, b, W, ErrConfig)
		}
	}
	st.budgets = budgets
	st.reserves = make([]int, s.Layers)
	for l, b := range budgets {
		st.reserves[l] = max(b, cfg.Reserve)
	}
	st.ended = make([]bool, s.Layers)
	st.room, st.since = make([][]int, s.Layers), make([]int, s.Layers)
	st.q, st.qn = make([][]float32, s.Layers), make([]int, s.Layers)
	for l := range st.room {
		st.room[l] = make([]int, s.KVHeads)
		for g := range st.room[l] {
			st.room[l][g] = st.Bound(l)
		}
		if st.need > 0 {
			st.q[l] = make([]float32, st.need*cfg.QHeads*s.HeadDim)
		}
	}
	if sc, ok := c.(streamCapacity); ok {
		for l := range st.room {
			if err := sc.SetCapacity(l, st.room[l]); err != nil {
				return nil, err
			}
		}
	}
	st.observe()
	return st, nil
}

// DefaultPrefill returns the scorer a Stream of policy p ranks rows with
// while the prompt runs when StreamConfig.Prefill is nil: the "expected
// attention" rule, an ExpectedAttentionScorer over every query head built
// from the policy's Config (Rotary, Sink, Kernel, Pooling) — for policies
// that keep rows with the top-k selector (CompressKV, SnapKV, PyramidKV,
// H2O and compositions of it) made one row every KV head shares by
// SharedMax, so that a row any KV head's queries are expected to need is
// kept for all; for Ada-KV and Ada-CompressKV (whose selector takes a row
// per KV head) as it is; the policy's own scorer for any other selector,
// and nil for StreamingLLM, which reads no score. It is a Tracker: an
// Append then needs every token's queries. Set the policy's Config.Rotary
// for a model with rotary embeddings (without it the queries' statistics
// are taken as if nothing turned them). docs/RESULTS.md ("Bounded memory
// that still answers") has the measurements it was chosen by.
func DefaultPrefill(p *Policy) Scorer {
	if p.scorer == nil || p.selector == nil {
		return p.scorer
	}
	ea := ExpectedAttentionScorer{Rotary: p.cfg.Rotary, Sink: p.cfg.Sink, Kernel: p.cfg.Kernel, Pooling: p.cfg.Pooling}
	switch p.selector.(type) {
	case TopKSelector:
		return SharedMax(ea)
	case AdaKVSelector:
		return ea
	}
	return p.scorer
}

// streamScorer returns the Track a Stream keeps for scorer sc (nil unless
// it is a Tracker) and the window query rows it reads otherwise; a scorer
// that reads more than the window and keeps no track cannot run in a
// Stream.
func streamScorer(sc Scorer, s kvcache.Shape, qHeads, W int) (Track, int, error) {
	if sc == nil {
		return nil, 0, nil
	}
	if tk, ok := sc.(Tracker); ok {
		if qHeads <= 0 || qHeads%s.KVHeads != 0 {
			return nil, 0, fmt.Errorf("compresskv: stream: %d query heads is not a positive multiple of %d KV heads: %w", qHeads, s.KVHeads, ErrConfig)
		}
		tr, err := tk.NewTrack(s, qHeads)
		if err != nil {
			return nil, 0, fmt.Errorf("compresskv: stream: %w", err)
		}
		return tr, queryRowsIn(sc, true, W), nil
	}
	// A scorer that reads more than the window (every prompt row) and keeps
	// no track cannot run on a window of queries.
	n := queryRowsIn(sc, false, W)
	if n > W {
		return nil, 0, fmt.Errorf("compresskv: stream: the %s scorer reads %d query rows, more than the window %d a stream keeps: %w", sc.Name(), n, W, ErrConfig)
	}
	return nil, n, nil
}

// Cache returns the cache the Stream drives; read it (Attend, Rows) between
// calls, and append to it only through the Stream.
func (s *Stream) Cache() kvcache.KVCache { return s.c }

// Policy returns the Stream's policy.
func (s *Stream) Policy() *Policy { return s.p }

// Budgets returns each layer's budget in tokens, window included.
func (s *Stream) Budgets() []int { return append([]int(nil), s.budgets...) }

// Reserves returns the rows each layer's KV heads keep while the prompt
// runs: max(StreamConfig.Reserve, the layer's budget).
func (s *Stream) Reserves() []int { return append([]int(nil), s.reserves...) }

// Bound returns the most rows a KV head of layer holds after any call from
// now on: its reserve while its prompt runs, its budget once Compress ended
// it, plus one chunk and the slack. It panics on a layer out of range, as
// KVCache.Len does.
func (s *Stream) Bound(layer int) int { return s.target(layer) + s.cfg.Chunk + s.cfg.Slack }

// target returns the rows a compression of layer keeps now.
func (s *Stream) target(layer int) int {
	if s.ended[layer] {
		return s.budgets[layer]
	}
	return s.reserves[layer]
}

// tracks returns the distinct tracks that follow layer now.
func (s *Stream) tracks(layer int) []Track {
	var out []Track
	if s.preTrack != nil && !s.ended[layer] {
		out = append(out, s.preTrack)
	}
	if s.polTrack != nil && (s.ended[layer] || s.polTrack != s.preTrack) {
		out = append(out, s.polTrack)
	}
	return out
}

// Config returns the Stream's configuration with defaults filled in.
func (s *Stream) Config() StreamConfig { return s.cfg }

// Stats returns what the Stream has done so far.
func (s *Stream) Stats() StreamStats { return s.stats }

// Append brings n new tokens to layer: their keys and values k and v,
// token-major [n][KVHeads][HeadDim] (1 <= n <= Chunk), and the post-RoPE
// queries of the last r of them, q, [r][QHeads][HeadDim], with
// min(n, Window) <= r <= n (q may be nil when the policy reads no queries;
// r must be n while a Tracker follows the layer). If the layer has no room
// for them, it is first compressed to its reserve while its prompt runs (to
// its budget after Compress) with the window of queries the Stream kept or
// its scorer's track; then the tokens are appended at positions from
// Seen(layer) on, the tracks see them, and the last queries are kept.
//
// Everything is checked before the cache changes: a cancelled ctx, input of
// the wrong size (kvcache.ErrShape) or non-finite values
// (kvcache.ErrNonFinite) fail the call and leave the cache and the Stream
// as they were.
func (s *Stream) Append(ctx context.Context, layer int, k, v, q []float32) error {
	sh := s.c.Shape()
	if layer < 0 || layer >= sh.Layers {
		return fmt.Errorf("compresskv: stream: layer %d out of range [0, %d): %w", layer, sh.Layers, kvcache.ErrShape)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("compresskv: stream: layer %d: %w", layer, err)
	}
	n, r, err := s.check(layer, k, v, q)
	if err != nil {
		return err
	}
	full := false
	for g, room := range s.room[layer] {
		if s.c.Len(layer, g)+n > room {
			full = true
		}
	}
	if full || (s.cfg.Every > 0 && s.since[layer] >= s.cfg.Every) {
		if err := s.compress(ctx, layer); err != nil {
			return err
		}
	}
	pos0 := s.c.Seen(layer)
	if err := s.c.Append(layer, k, v); err != nil {
		return fmt.Errorf("compresskv: stream: %w", err)
	}
	s.since[layer] += n
	s.keepQueries(layer, q, r)
	if len(s.tracks(layer)) > 0 {
		b, _, done, err := s.p.backendFor(s.c)
		if err != nil {
			return err
		}
		defer done()
		for _, tr := range s.tracks(layer) {
			if err := tr.Observe(b, s.c, layer, pos0, q); err != nil {
				return fmt.Errorf("compresskv: stream: %w", err)
			}
		}
	}
	s.observe()
	return nil
}

// Compress ends layer's prompt: it compresses the layer to its budget now,
// with the policy's scorer and the window of queries the Stream kept (at
// the end of a prompt, the question's), and from then on keeps the layer
// within its budget plus a chunk and the slack (the prefill scorer's track,
// if any, is dropped). Call it at the end of a prefill, to enter decoding
// with the least memory; with a reserve, call it once the question has
// been appended. A layer within its budget is left as it is. A cancelled
// ctx fails the call before the cache changes.
func (s *Stream) Compress(ctx context.Context, layer int) error {
	sh := s.c.Shape()
	if layer < 0 || layer >= sh.Layers {
		return fmt.Errorf("compresskv: stream: layer %d out of range [0, %d): %w", layer, sh.Layers, kvcache.ErrShape)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("compresskv: stream: layer %d: %w", layer, err)
	}
	was := s.ended[layer]
	s.ended[layer] = true
	if err := s.compress(ctx, layer); err != nil {
		s.ended[layer] = was
		return err
	}
	if !was && s.preTrack != nil && s.preTrack != s.polTrack {
		s.preTrack.Release(layer)
	}
	s.observe()
	return nil
}

// check validates one Append's input and returns its tokens n and query
// rows r.
func (s *Stream) check(layer int, k, v, q []float32) (n, r int, err error) {
	sh := s.c.Shape()
	G, d := sh.KVHeads, sh.HeadDim
	if len(k) != len(v) || len(k) == 0 || len(k)%(G*d) != 0 {
		return 0, 0, fmt.Errorf("compresskv: stream: layer %d: append of %d keys and %d values, want equal positive multiples of %d (KVHeads*HeadDim): %w",
			layer, len(k), len(v), G*d, kvcache.ErrShape)
	}
	n = len(k) / (G * d)
	if n > s.cfg.Chunk {
		return 0, 0, fmt.Errorf("compresskv: stream: layer %d: append of %d tokens, more than the chunk %d the bound is sized for: %w", layer, n, s.cfg.Chunk, kvcache.ErrShape)
	}
	limit, what := finite.Float32Limit, "is not finite"
	switch s.c.DType() {
	case kvcache.Float16:
		limit, what = finite.Float16Limit, "is not finite or overflows float16"
	case kvcache.BFloat16:
		limit, what = finite.BFloat16Limit, "is not finite or overflows bfloat16"
	}
	if i := finite.FirstAtLimit(k, limit); i >= 0 {
		return 0, 0, fmt.Errorf("compresskv: stream: layer %d: key value %d (%v) %s: %w", layer, i, k[i], what, kvcache.ErrNonFinite)
	}
	if i := finite.FirstAtLimit(v, limit); i >= 0 {
		return 0, 0, fmt.Errorf("compresskv: stream: layer %d: value %d (%v) %s: %w", layer, i, v[i], what, kvcache.ErrNonFinite)
	}
	tracked := len(s.tracks(layer)) > 0
	if s.need == 0 && !tracked && q == nil {
		return n, 0, nil
	}
	H := s.cfg.QHeads
	if H <= 0 {
		return 0, 0, fmt.Errorf("compresskv: stream: layer %d: queries given but StreamConfig.QHeads is not set: %w", layer, kvcache.ErrShape)
	}
	per := H * d
	if len(q)%per != 0 {
		return 0, 0, fmt.Errorf("compresskv: stream: layer %d: %d query values, want a multiple of %d (QHeads*HeadDim): %w", layer, len(q), per, kvcache.ErrShape)
	}
	r = len(q) / per
	if lo := min(n, s.p.cfg.Window); r < lo || r > n {
		return 0, 0, fmt.Errorf("compresskv: stream: layer %d: queries of %d tokens for %d appended, want the last %d to %d: %w", layer, r, n, lo, n, kvcache.ErrShape)
	}
	if tracked && r != n {
		return 0, 0, fmt.Errorf("compresskv: stream: layer %d: queries of %d tokens for %d appended; a scorer that tracks every token needs all of them: %w", layer, r, n, kvcache.ErrShape)
	}
	if i := finite.First(q); i >= 0 {
		return 0, 0, fmt.Errorf("compresskv: stream: layer %d: query value %d (%v) is not finite: %w", layer, i, q[i], kvcache.ErrNonFinite)
	}
	return n, r, nil
}

// keepQueries keeps the last need query rows of layer after r new ones.
func (s *Stream) keepQueries(layer int, q []float32, r int) {
	if s.need == 0 {
		return
	}
	per := len(s.q[layer]) / s.need
	buf := s.q[layer]
	if r >= s.need {
		copy(buf, q[(r-s.need)*per:])
	} else {
		copy(buf, buf[r*per:])
		copy(buf[(s.need-r)*per:], q)
	}
	s.qn[layer] = min(s.need, s.qn[layer]+r)
}

// compress compresses layer to its target (the reserve while its prompt
// runs, the budget after) and gives each head its room again.
func (s *Stream) compress(ctx context.Context, layer int) error {
	p, need, tr := s.pre, s.preNeed, s.preTrack
	if s.ended[layer] {
		p, need, tr = s.p, s.polNeed, s.polTrack
	}
	b, _, done, err := p.backendFor(s.c)
	if err != nil {
		return err
	}
	defer done()
	// Fewer tokens than the window were seen only while the layer is
	// within its budget, when no queries are read.
	var q []float32
	if need > 0 && s.qn[layer] >= need {
		per := len(s.q[layer]) / s.need
		q = s.q[layer][(s.need-need)*per:]
	}
	keep, err := p.planStored(ctx, b, s.c, layer, q, s.cfg.QHeads, s.target(layer), tr)
	if err != nil {
		return err // it names the policy and the layer
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("compresskv: stream: layer %d: %w", layer, err)
	}
	if keep != nil {
		if err := b.Compact(s.c, layer, keep); err != nil {
			return fmt.Errorf("compresskv: stream: layer %d: %w", layer, err)
		}
		for _, t := range s.tracks(layer) {
			t.Compact(layer, keep)
		}
		if s.ended[layer] && s.preTrack != nil && s.preTrack != s.polTrack {
			// The prompt's track still follows the layer until Compress
			// returns; keep it in step (it is released then).
			s.preTrack.Compact(layer, keep)
		}
		s.stats.Compressions++
	}
	// Each head's room is what it keeps plus a chunk and the slack; a layer
	// within its target (nothing evicted) gets the whole bound.
	room := s.room[layer]
	for g := range room {
		room[g] = s.c.Len(layer, g) + s.cfg.Chunk + s.cfg.Slack
		if keep == nil {
			room[g] = s.Bound(layer)
		}
	}
	s.since[layer] = 0
	if sc, ok := s.c.(streamCapacity); ok {
		if err := sc.SetCapacity(layer, room); err != nil {
			return fmt.Errorf("compresskv: stream: layer %d: %w", layer, err)
		}
	}
	return nil
}

// observe records the cache's size after a call.
func (s *Stream) observe() {
	sh := s.c.Shape()
	for l := 0; l < sh.Layers; l++ {
		rows := 0
		for g := 0; g < sh.KVHeads; g++ {
			rows += s.c.Len(l, g)
		}
		s.stats.PeakRows = max(s.stats.PeakRows, rows)
	}
	s.stats.PeakBytes = max(s.stats.PeakBytes, s.c.Bytes())
	if r, ok := s.c.(reserver); ok {
		s.stats.PeakReserved = max(s.stats.PeakReserved, r.Reserved())
	}
	var tb int64
	if s.preTrack != nil {
		tb += s.preTrack.Bytes()
	}
	if s.polTrack != nil && s.polTrack != s.preTrack {
		tb += s.polTrack.Bytes()
	}
	s.stats.PeakTrackBytes = max(s.stats.PeakTrackBytes, tb)
}
