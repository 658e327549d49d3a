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
	p       *Policy
	c       kvcache.KVCache
	cfg     StreamConfig
	budgets []int
	need    int     // query rows a compression reads (the window, or 0)
	room    [][]int // per layer and KV head: rows it may hold before a compression
	since   []int   // per layer: tokens appended since the last compression
	q       [][]float32
	qn      []int // per layer: valid rows in q (the last qn tokens' queries)
	stats   StreamStats
}

// NewStream returns a Stream that drives the empty cache c with policy p.
// The policy must compress (not Full) from the queries of a window (not
// H2O, which reads every prompt query).
func NewStream(p *Policy, c kvcache.KVCache, cfg StreamConfig) (*Stream, error) {
	if err := p.usable("NewStream", c); err != nil {
		return nil, err
	}
	if p.selector == nil {
		return nil, fmt.Errorf("compresskv: stream: the %s keeps every token, so no bound holds; append to the cache directly: %w", p.label, ErrConfig)
	}
	W := p.cfg.Window
	need := 0
	if p.scorer != nil {
		// A scorer that reads more than the window (H2O: every prompt
		// row) cannot run on a window of queries.
		if n := p.scorer.QueryRows(math.MaxInt32, W); n > W {
			return nil, fmt.Errorf("compresskv: stream: the %s scorer reads %d query rows, more than the window %d a stream keeps: %w", p.scorer.Name(), n, W, ErrConfig)
		}
		need = p.scorer.QueryRows(math.MaxInt32, W)
	}
	if cfg.Chunk < 1 {
		return nil, fmt.Errorf("compresskv: stream: chunk %d must be at least 1: %w", cfg.Chunk, ErrConfig)
	}
	if cfg.Every < 0 {
		return nil, fmt.Errorf("compresskv: stream: every %d must not be negative: %w", cfg.Every, ErrConfig)
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
	if need > 0 {
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
	st := &Stream{p: p, c: c, cfg: cfg, budgets: budgets, need: need,
		room: make([][]int, s.Layers), since: make([]int, s.Layers),
		q: make([][]float32, s.Layers), qn: make([]int, s.Layers)}
	for l := range st.room {
		st.room[l] = make([]int, s.KVHeads)
		for g := range st.room[l] {
			st.room[l][g] = st.Bound(l)
		}
		if need > 0 {
			st.q[l] = make([]float32, need*cfg.QHeads*s.HeadDim)
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

// Cache returns the cache the Stream drives; read it (Attend, Rows) between
// calls, and append to it only through the Stream.
func (s *Stream) Cache() kvcache.KVCache { return s.c }

// Policy returns the Stream's policy.
func (s *Stream) Policy() *Policy { return s.p }

// Budgets returns each layer's budget in tokens, window included.
func (s *Stream) Budgets() []int { return append([]int(nil), s.budgets...) }

// Bound returns the most rows a KV head of layer holds after any call:
// its budget, one chunk and the slack. It panics on a layer out of range,
// as KVCache.Len does.
func (s *Stream) Bound(layer int) int { return s.budgets[layer] + s.cfg.Chunk + s.cfg.Slack }

// Config returns the Stream's configuration with defaults filled in.
func (s *Stream) Config() StreamConfig { return s.cfg }

// Stats returns what the Stream has done so far.
func (s *Stream) Stats() StreamStats { return s.stats }

// Append brings n new tokens to layer: their keys and values k and v,
// token-major [n][KVHeads][HeadDim] (1 <= n <= Chunk), and the post-RoPE
// queries of the last r of them, q, [r][QHeads][HeadDim], with
// min(n, Window) <= r <= n (q may be nil when the policy reads no queries).
// If the layer has no room for them, it is first compressed to its budget
// with the window of queries the Stream kept; then the tokens are appended
// at positions from Seen(layer) on, and the last queries are kept.
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
	if err := s.c.Append(layer, k, v); err != nil {
		return fmt.Errorf("compresskv: stream: %w", err)
	}
	s.since[layer] += n
	s.keepQueries(layer, q, r)
	s.observe()
	return nil
}

// Compress compresses layer to its budget now, with the window of queries
// the Stream kept (at the end of a prefill, to enter decoding with the
// least memory). A layer within its budget is left as it is. A cancelled
// ctx fails the call before the cache changes.
func (s *Stream) Compress(ctx context.Context, layer int) error {
	sh := s.c.Shape()
	if layer < 0 || layer >= sh.Layers {
		return fmt.Errorf("compresskv: stream: layer %d out of range [0, %d): %w", layer, sh.Layers, kvcache.ErrShape)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("compresskv: stream: layer %d: %w", layer, err)
	}
	if err := s.compress(ctx, layer); err != nil {
		return err
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
	if s.need == 0 && q == nil {
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

// compress compresses layer to its budget and gives each head its room
// again.
func (s *Stream) compress(ctx context.Context, layer int) error {
	p := s.p
	b, _, done, err := p.backendFor(s.c)
	if err != nil {
		return err
	}
	defer done()
	// Fewer tokens than the window were seen only while the layer is
	// within its budget, when no queries are read.
	var q []float32
	if s.need > 0 && s.qn[layer] == s.need {
		q = s.q[layer]
	}
	keep, err := p.planStored(ctx, b, s.c, layer, q, s.cfg.QHeads, s.budgets[layer])
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
		s.stats.Compressions++
	}
	// Each head's room is what it keeps plus a chunk and the slack; a layer
	// within its budget (nothing evicted) gets the whole bound.
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
}
