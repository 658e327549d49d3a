package compresskv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strings"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/internal/par"
	"github.com/compresskv/compresskv/kvcache"
)

// Policy decides which rows of a prefilled cache to keep and compacts them.
// It is a composition of a Scorer, a Selector and an Allocator; New builds
// the library's methods, Compose builds new ones. A Policy is immutable and
// safe for concurrent use on different caches.
type Policy struct {
	name      string
	label     string // how messages name it: "compresskv: <label>: ..."
	method    Method
	cfg       Config
	scorer    Scorer    // nil: keep everything
	selector  Selector  // nil: keep everything
	allocator Allocator // nil: keep everything
	note      string
}

// New returns the policy for method m with configuration cfg, or an error
// wrapping ErrConfig that says what is wrong with cfg.
func New(m Method, cfg Config) (*Policy, error) {
	e, ok := lookup(m)
	if !ok {
		return nil, fmt.Errorf("compresskv: unknown method %q (want one of %v): %w", m, Methods, ErrConfig)
	}
	label := e.title + " policy"
	cfg = cfg.withDefaults()
	if err := cfg.validate(label, m == Full); err != nil {
		return nil, err
	}
	pc := e.build(cfg)
	p := &Policy{name: string(m), label: label, method: m, cfg: cfg, scorer: pc.scorer, selector: pc.selector, allocator: pc.allocator, note: pc.note}
	if err := p.validatePieces(); err != nil {
		return nil, fmt.Errorf("compresskv: %s: %w", label, err)
	}
	return p, nil
}

// Compose returns a policy named name from the given pieces. scorer may be
// nil for selectors that ignore scores; allocator may be nil for uniform
// budgets. cfg supplies the average budget per layer (required, at least the
// window), the window, the backend, and the defaults the pieces do not set.
// Each piece that implements Validator checks its own settings.
func Compose(name string, cfg Config, scorer Scorer, selector Selector, allocator Allocator) (*Policy, error) {
	if selector == nil {
		return nil, fmt.Errorf("compresskv: policy %q needs a selector: %w", name, ErrConfig)
	}
	if allocator == nil {
		allocator = UniformAllocator{}
	}
	label := fmt.Sprintf("policy %q", name)
	cfg = cfg.withDefaults()
	if err := cfg.validate(label, false); err != nil {
		return nil, err
	}
	p := &Policy{name: name, label: label, cfg: cfg, scorer: scorer, selector: selector, allocator: allocator}
	if err := p.validatePieces(); err != nil {
		return nil, fmt.Errorf("compresskv: %s: %w", label, err)
	}
	return p, nil
}

// validatePieces runs the Validator of every piece that has one.
func (p *Policy) validatePieces() error {
	for _, piece := range []any{p.scorer, p.selector, p.allocator} {
		if v, ok := piece.(Validator); ok {
			if err := v.Validate(p.cfg.Budget, p.cfg.Window); err != nil {
				return err
			}
		}
	}
	return nil
}

// fit runs the Fitter of every piece that has one.
func (p *Policy) fit(s kvcache.Shape, qHeads int) error {
	for _, piece := range []any{p.scorer, p.selector, p.allocator} {
		if f, ok := piece.(Fitter); ok {
			if err := f.Fit(s, qHeads); err != nil {
				return fmt.Errorf("compresskv: %s: %w", p.label, err)
			}
		}
	}
	return nil
}

// usable returns an error wrapping ErrConfig for a nil policy or a nil
// cache (a nil interface or a nil pointer in one), which would otherwise
// panic deep inside the call.
func (p *Policy) usable(op string, c kvcache.KVCache) error {
	if p == nil {
		return fmt.Errorf("compresskv: %s with a nil policy (make one with New or Compose): %w", op, ErrConfig)
	}
	if c == nil {
		return fmt.Errorf("compresskv: %s: %s with a nil cache: %w", p.label, op, ErrConfig)
	}
	if v := reflect.ValueOf(c); v.Kind() == reflect.Pointer && v.IsNil() {
		return fmt.Errorf("compresskv: %s: %s with a nil cache (a nil %T): %w", p.label, op, c, ErrConfig)
	}
	return nil
}

// ErrCompressed is wrapped by the error of Compress, Plan and CompressLayer
// on a cache that has already lost rows: a layer stores fewer tokens than
// it has seen (kvcache.KVCache.Seen). Compress works once, on a fully
// prefilled cache, the same way for every method; a second Compress of the
// same cache is this error, not a silent no-op or a second, inexact
// selection over rows the first already chose. A cache kept whole (Full, or
// a budget at or beyond the prompt) has lost nothing and may be compressed
// again. To keep a running sequence within a bound, use a Stream.
var ErrCompressed = errors.New("cache already compressed")

// checkWhole returns an error wrapping ErrCompressed if a layer of c (one
// layer, or all of them when layer < 0) stores fewer rows than it has seen.
func (p *Policy) checkWhole(c kvcache.KVCache, layer int) error {
	s := c.Shape()
	for l := range s.Layers {
		if layer >= 0 && l != layer {
			continue
		}
		seen := c.Seen(l)
		for g := range s.KVHeads {
			if n := c.Len(l, g); n < seen {
				return fmt.Errorf("compresskv: %s: layer %d KV head %d stores %d of the %d tokens it has seen; Compress works once, on a fully prefilled cache (a Stream keeps a running sequence within a bound): %w",
					p.label, l, g, n, seen, ErrCompressed)
			}
		}
	}
	return nil
}

// checkQHeads returns an error wrapping kvcache.ErrShape unless qHeads is a
// positive multiple of the cache's KV heads (for a policy that reads
// queries).
func (p *Policy) checkQHeads(s kvcache.Shape, qHeads int) error {
	if p.scorer == nil || p.selector == nil {
		return nil
	}
	if qHeads <= 0 || qHeads%s.KVHeads != 0 {
		return fmt.Errorf("compresskv: %s: %d query heads is not a positive multiple of the cache's %d KV heads: %w", p.label, qHeads, s.KVHeads, kvcache.ErrShape)
	}
	return nil
}

// QueryRows returns how many query rows per layer, the last ones of a prompt
// of promptLen tokens, Plan and Compress need: 0 when the policy reads no
// queries (Full, StreamingLLM), the window for the window scorers, every
// prompt row for H2O. Pass exactly that many.
func (p *Policy) QueryRows(promptLen int) int {
	if p.scorer == nil || p.selector == nil {
		return 0
	}
	return p.scorer.QueryRows(promptLen, p.cfg.Window)
}

// Name returns the policy's name (its method for policies made by New).
func (p *Policy) Name() string { return p.name }

// Method returns the method of a policy made by New ("" for Compose).
func (p *Policy) Method() Method { return p.method }

// Config returns the policy's configuration with defaults filled in.
func (p *Policy) Config() Config { return p.cfg }

// Scorer returns the policy's scorer (nil for Full and StreamingLLM): the
// piece a Stream can rank rows with while a prompt runs
// (StreamConfig.Prefill).
func (p *Policy) Scorer() Scorer { return p.scorer }

// Plan is the outcome of a policy's selection over a cache, before any row
// is moved.
type Plan struct {
	// Budgets holds the tokens each layer keeps, window included: its
	// budget, or the whole prompt when the budget is at or beyond it (per
	// KV head on average for head-wise methods); nil for Full.
	Budgets []int
	// Keep holds, per layer and KV head, the kept row indices in ascending
	// order; nil for a layer that keeps everything.
	Keep [][][]int
	// Note explains a fallback the policy took (empty when none).
	Note string
}

// Result reports a compression.
type Result struct {
	Plan
	Policy  string // the policy's name
	Backend string // the backend that ran it
	// BackendReason says why that backend ran: "configured" when
	// Config.Backend was set, else ChooseBackend's reason.
	BackendReason string
	BytesBefore   int64 // Bytes of the cache before compaction
	BytesAfter    int64 // Bytes after
}

// Plan computes which rows each layer keeps, without changing the cache.
//
// q holds, per layer, the post-RoPE queries of the last QueryRows(L) prompt
// positions, token-major [n][qHeads][HeadDim], exactly that many (the window
// for most methods, all L prompt rows for H2O; Full and StreamingLLM read
// none, and q may be nil). Every KV head of a layer must hold the same number
// L of rows (a prefilled, uncompressed layer; ErrUneven otherwise). Layers
// are planned concurrently.
//
// ctx is checked before each layer and between the KV heads of a layer's
// scoring; a cancelled call returns an error wrapping ctx.Err().
func (p *Policy) Plan(ctx context.Context, c kvcache.KVCache, q [][]float32, qHeads int) (*Plan, error) {
	if err := p.usable("Plan", c); err != nil {
		return nil, err
	}
	release, err := acquire(c, "Plan")
	if err != nil {
		return nil, err
	}
	defer release()
	b, _, done, err := p.backendFor(c)
	if err != nil {
		return nil, err
	}
	defer done()
	return p.plan(ctx, c, q, qHeads, b)
}

// acquire holds c for one policy call when c detects overlapping use
// (kvcache.Exclusive).
func acquire(c kvcache.KVCache, op string) (release func(), err error) {
	if ex, ok := c.(kvcache.Exclusive); ok {
		return ex.Acquire("compresskv." + op)
	}
	return func() {}, nil
}

// backendFor returns the backend for cache c: Config.Backend, or the one
// ChooseBackend picks (released by done).
func (p *Policy) backendFor(c kvcache.KVCache) (b backend.Backend, reason string, done func(), err error) {
	if p.cfg.Backend != nil {
		return p.cfg.Backend, "configured", func() {}, nil
	}
	b, reason, err = ChooseBackend(c, "auto")
	if err != nil {
		return nil, "", nil, err
	}
	return b, reason, func() {
		if cl, ok := b.(io.Closer); ok {
			cl.Close()
		}
	}, nil
}

func (p *Policy) plan(ctx context.Context, c kvcache.KVCache, q [][]float32, qHeads int, b backend.Backend) (*Plan, error) {
	s := c.Shape()
	plan := &Plan{Note: p.note, Keep: make([][][]int, s.Layers)}
	if err := p.checkWhole(c, -1); err != nil {
		return nil, err
	}
	if p.selector == nil {
		return plan, nil
	}
	if q != nil && len(q) != s.Layers {
		return nil, fmt.Errorf("compresskv: %s: queries for %d layers, the cache has %d: %w", p.label, len(q), s.Layers, kvcache.ErrShape)
	}
	L, err := p.promptLen(c)
	if err != nil {
		return nil, err
	}
	if err := p.checkQHeads(s, qHeads); err != nil {
		return nil, err
	}
	if err := p.fit(s, qHeads); err != nil {
		return nil, err
	}
	budgets, err := p.allocator.Budgets(BudgetInput{Layers: s.Layers, PromptLen: L, Budget: p.cfg.Budget, Window: p.cfg.Window})
	if err != nil {
		return nil, fmt.Errorf("compresskv: %s: %w", p.label, err)
	}
	// Report what each layer keeps: its budget, or the whole prompt when
	// the budget is beyond it.
	plan.Budgets = make([]int, len(budgets))
	for l, b := range budgets {
		plan.Budgets[l] = min(b, L)
	}
	errs := make([]error, s.Layers)
	par.For(s.Layers, func(l int) {
		if err := ctx.Err(); err != nil {
			errs[l] = err
			return
		}
		var ql []float32
		if q != nil {
			ql = q[l]
		}
		plan.Keep[l], errs[l] = p.planLayer(ctx, b, c, l, ql, qHeads, L, budgets[l], nil)
	})
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("compresskv: %s: %w", p.label, err)
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return plan, nil
}

// Compress plans (see Plan) and then compacts every layer of the cache. If
// planning fails, the cache is unchanged.
//
// Compress works once, on a fully prefilled cache, the same way for every
// method: a cache that has already lost rows (a second Compress, or one
// after a Stream) fails with ErrCompressed and is left as it is; one whose
// layers or KV heads hold different numbers of tokens fails with ErrUneven.
// A budget at or beyond the prompt keeps everything, and Result.Budgets
// says so. A cache that detects overlapping
// use (kvcache.Host) is held for the whole call: a second Compress, or an
// Append, on it from another goroutine meanwhile fails with kvcache.ErrBusy.
//
// ctx is checked before each layer is planned, between the KV heads of a
// layer's scoring, and once more before the first row moves: a cancelled
// Compress returns an error wrapping ctx.Err() and leaves the cache exactly
// as it was. Compaction itself is not interrupted once it has started (it
// moves rows in memory and costs little next to scoring), so the cache is
// either untouched or compressed, never half of each.
func (p *Policy) Compress(ctx context.Context, c kvcache.KVCache, q [][]float32, qHeads int) (*Result, error) {
	if err := p.usable("Compress", c); err != nil {
		return nil, err
	}
	release, err := acquire(c, "Compress")
	if err != nil {
		return nil, err
	}
	defer release()
	before := c.Bytes()
	b, reason, done, err := p.backendFor(c)
	if err != nil {
		return nil, err
	}
	defer done()
	plan, err := p.plan(ctx, c, q, qHeads, b)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("compresskv: %s: %w", p.label, err)
	}
	if err := p.apply(c, plan, b); err != nil {
		return nil, err
	}
	return &Result{Plan: *plan, Policy: p.name, Backend: b.Name(), BackendReason: reason, BytesBefore: before, BytesAfter: c.Bytes()}, nil
}

// Apply compacts the cache as plan says; layers are compacted concurrently.
// Every layer's rows are checked before any is moved, so a plan that does
// not fit the cache leaves it unchanged. Apply takes no context: it is the
// step that commits a plan, it only moves rows (no scoring), and stopping
// it part-way would leave some layers compacted and others not.
func (p *Policy) Apply(c kvcache.KVCache, plan *Plan) error {
	if err := p.usable("Apply", c); err != nil {
		return err
	}
	if plan == nil {
		return fmt.Errorf("compresskv: %s: Apply of a nil plan: %w", p.label, ErrConfig)
	}
	release, err := acquire(c, "Apply")
	if err != nil {
		return err
	}
	defer release()
	b, _, done, err := p.backendFor(c)
	if err != nil {
		return err
	}
	defer done()
	return p.apply(c, plan, b)
}

func (p *Policy) apply(c kvcache.KVCache, plan *Plan, b backend.Backend) error {
	s := c.Shape()
	if len(plan.Keep) != s.Layers {
		return fmt.Errorf("compresskv: %s: plan for %d layers, the cache has %d: %w", p.label, len(plan.Keep), s.Layers, kvcache.ErrShape)
	}
	lens := make([]int, s.KVHeads)
	for l, keep := range plan.Keep {
		if keep == nil {
			continue
		}
		for g := range lens {
			lens[g] = c.Len(l, g)
		}
		if err := kvcache.CheckKeep(keep, lens); err != nil {
			return fmt.Errorf("compresskv: %s: layer %d: %w", p.label, l, err)
		}
	}
	errs := make([]error, s.Layers)
	par.For(s.Layers, func(l int) {
		if plan.Keep[l] != nil {
			errs[l] = b.Compact(c, l, plan.Keep[l])
		}
	})
	for l, err := range errs {
		if err != nil {
			return fmt.Errorf("compresskv: %s: layer %d: %w", p.label, l, err)
		}
	}
	return nil
}

// CompressLayer compresses one layer of the cache, for inference loops that
// prefill layer by layer; q is that layer's queries as in Plan. The layer's
// budget is the one it would get from Compress on the whole cache. ctx is
// checked as in Compress: a cancelled call leaves the layer as it was.
func (p *Policy) CompressLayer(ctx context.Context, c kvcache.KVCache, layer int, q []float32, qHeads int) error {
	if err := p.usable("CompressLayer", c); err != nil {
		return err
	}
	s := c.Shape()
	if layer < 0 || layer >= s.Layers {
		return fmt.Errorf("compresskv: %s: layer %d out of range [0, %d): %w", p.label, layer, s.Layers, kvcache.ErrShape)
	}
	release, err := acquire(c, "CompressLayer")
	if err != nil {
		return err
	}
	defer release()
	if err := p.checkWhole(c, layer); err != nil {
		return err
	}
	if p.selector == nil {
		return nil
	}
	L, err := p.layerLen(c, layer)
	if err != nil {
		return err
	}
	if err := p.checkQHeads(s, qHeads); err != nil {
		return err
	}
	if err := p.fit(s, qHeads); err != nil {
		return err
	}
	budgets, err := p.allocator.Budgets(BudgetInput{Layers: s.Layers, PromptLen: L, Budget: p.cfg.Budget, Window: p.cfg.Window})
	if err != nil {
		return fmt.Errorf("compresskv: %s: %w", p.label, err)
	}
	b, _, done, err := p.backendFor(c)
	if err != nil {
		return err
	}
	defer done()
	keep, err := p.planLayer(ctx, b, c, layer, q, qHeads, L, budgets[layer], nil)
	if err != nil || keep == nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("compresskv: %s: layer %d: %w", p.label, layer, err)
	}
	if err := b.Compact(c, layer, keep); err != nil {
		return fmt.Errorf("compresskv: %s: layer %d: %w", p.label, layer, err)
	}
	return nil
}

// planLayer selects the kept rows of one layer with budget B, or returns nil
// when the layer keeps everything. tr is the scorer's Track in a Stream
// (then q is not read), nil otherwise.
func (p *Policy) planLayer(ctx context.Context, b backend.Backend, c kvcache.KVCache, layer int, q []float32, qHeads, L, B int, tr Track) ([][]int, error) {
	s := c.Shape()
	W := p.cfg.Window
	if B < W {
		return nil, fmt.Errorf("compresskv: %s: layer %d: budget %d below the window %d: %w", p.label, layer, B, W, ErrConfig)
	}
	if L <= B {
		return nil, nil
	}
	in := &ScoreInput{Backend: b, Cache: c, Layer: layer, Queries: q, QHeads: qHeads, Len: L, Window: W}
	var scores [][]float32
	if p.scorer != nil && tr != nil {
		// The Stream's window rows come along (a combination of a Tracker
		// and a window scorer reads them); a Tracker itself reads its track.
		in.Track, in.NQ = tr, len(q)/(qHeads*s.HeadDim)
		var err error
		if scores, err = p.scorer.Score(ctx, in); err != nil {
			return nil, fmt.Errorf("compresskv: %s: %w", p.label, err)
		}
	} else if p.scorer != nil {
		in.NQ = p.scorer.QueryRows(L, W)
		if err := backend.CheckQueries(s, q, in.NQ, qHeads); err != nil {
			return nil, fmt.Errorf("compresskv: %s: layer %d: %s: %w", p.label, layer, queryProblem(q, in.NQ, qHeads, s.HeadDim, L, W, err), kvcache.ErrShape)
		}
		if keep, ok, err := p.fused(in, B); ok || err != nil {
			return keep, err
		}
		var err error
		if scores, err = p.scorer.Score(ctx, in); err != nil {
			return nil, fmt.Errorf("compresskv: %s: %w", p.label, err)
		}
	}
	sel, err := p.selectRows(b, scores, layer, s.KVHeads, L-W, B-W)
	if err != nil {
		return nil, err
	}
	keep := make([][]int, s.KVHeads)
	for g, rows := range sel {
		keep[g] = withWindow(rows, L, W)
	}
	return keep, nil
}

// selectRows runs the policy's selector over one layer's score rows and
// checks that it returned a set for every KV head.
func (p *Policy) selectRows(b backend.Backend, scores [][]float32, layer, kvHeads, prefix, c int) ([][]int, error) {
	sel, err := p.selector.Select(b, scores, kvHeads, prefix, c)
	if err != nil {
		return nil, fmt.Errorf("compresskv: %s: layer %d: %w", p.label, layer, err)
	}
	if len(sel) != kvHeads {
		return nil, fmt.Errorf("compresskv: %s: layer %d: the %s selector returned %d heads, want %d", p.label, layer, p.selector.Name(), len(sel), kvHeads)
	}
	return sel, nil
}

// withWindow returns the selected rows of a head of n rows that lie before
// its window of w rows, followed by the window's rows: what the head keeps.
func withWindow(rows []int, n, w int) []int {
	k := make([]int, 0, len(rows)+w)
	for _, r := range rows {
		if r < n-w {
			k = append(k, r)
		}
	}
	for j := n - w; j < n; j++ {
		k = append(k, j)
	}
	return k
}

// fused runs the layer's scoring and top-k selection in one call when the
// backend offers it (backend.LayerSelector, the GPU's, where the scores never
// leave the device) and the policy is a window scorer with the top-k
// selector; ok reports whether it ran.
func (p *Policy) fused(in *ScoreInput, B int) (keep [][]int, ok bool, err error) {
	ls, ok1 := in.Backend.(backend.LayerSelector)
	sc, ok2 := p.scorer.(layerSelection)
	_, ok3 := p.selector.(TopKSelector)
	if !ok1 || !ok2 || !ok3 {
		return nil, false, nil
	}
	sel, err := sc.selection(in)
	if err != nil {
		return nil, true, fmt.Errorf("compresskv: %s: %w", p.label, err)
	}
	sel.Keep = B - in.Window
	keep, err = ls.SelectLayer(in.Cache, in.Layer, in.Queries, in.QHeads, sel)
	if err != nil {
		return nil, true, fmt.Errorf("compresskv: %s: layer %d: %w", p.label, in.Layer, err)
	}
	return keep, true, nil
}

// ErrUneven is wrapped by errors that report a cache whose KV heads or
// layers hold different numbers of rows where a policy needs one prompt
// length: a cache already compressed with head-wise budgets, or one whose
// prefill stopped part-way.
var ErrUneven = errors.New("uneven cache")

// layerLen returns the common row count of the KV heads of one layer.
func (p *Policy) layerLen(c kvcache.KVCache, layer int) (int, error) {
	L := c.Len(layer, 0)
	for g := 1; g < c.Shape().KVHeads; g++ {
		if n := c.Len(layer, g); n != L {
			return 0, fmt.Errorf("compresskv: %s: layer %d: KV heads 0 and %d hold %d and %d rows; compress a layer whose KV heads hold the same rows: %w", p.label, layer, g, L, n, ErrUneven)
		}
	}
	return L, nil
}

// promptLen returns the common row count of every head of every layer.
func (p *Policy) promptLen(c kvcache.KVCache) (int, error) {
	L, err := p.layerLen(c, 0)
	if err != nil {
		return 0, err
	}
	for l := 1; l < c.Shape().Layers; l++ {
		n, err := p.layerLen(c, l)
		if err != nil {
			return 0, err
		}
		if n != L {
			return 0, fmt.Errorf("compresskv: %s: layers 0 and %d hold %d and %d tokens; compress after every layer is prefilled with the whole prompt: %w", p.label, l, L, n, ErrUneven)
		}
	}
	return L, nil
}

// queryProblem says what is wrong with a layer's queries q, in the
// caller's terms: how many values it holds and how many the policy reads
// (n query rows of qHeads heads of d values: the window's, or every prompt
// row's for H2O). err is backend.CheckQueries's finding, for the cases it
// covers otherwise.
func queryProblem(q []float32, n, qHeads, d, L, W int, err error) string {
	if want := n * qHeads * d; len(q) != want {
		rows := fmt.Sprintf("the last %d prompt positions (the window)", n)
		if n == L && n != W {
			rows = fmt.Sprintf("every one of the %d prompt positions (H2O reads them all)", n)
		}
		return fmt.Sprintf("%d query values, want %d: the queries of %s x %d query heads x %d values", len(q), want, rows, qHeads, d)
	}
	msg := strings.TrimPrefix(err.Error(), "backend: ")
	return strings.TrimSuffix(msg, ": "+kvcache.ErrShape.Error())
}

// planStored selects the rows one layer keeps when it is compressed again,
// as a Stream does while a sequence runs: the candidates are the rows the
// layer stores (not positions), the window is each head's last W rows, and
// the KV heads may hold different numbers of rows (Ada-KV's head-wise
// lengths). A layer whose heads hold the same number of rows is planned as
// planLayer plans a prefilled one. Otherwise the scorer must give one row
// per KV head, of that head's candidates; the rows are padded with -Inf to
// the longest so that the selector sees one prefix length, and the padded
// positions it picks (only when a head has fewer candidates than it may
// keep) are dropped. It returns nil when no head holds more than B rows.
func (p *Policy) planStored(ctx context.Context, b backend.Backend, c kvcache.KVCache, layer int, q []float32, qHeads, B int, tr Track) ([][]int, error) {
	s := c.Shape()
	W := p.cfg.Window
	lens := make([]int, s.KVHeads)
	even, longest := true, 0
	for g := range lens {
		lens[g] = c.Len(layer, g)
		even = even && lens[g] == lens[0]
		longest = max(longest, lens[g])
	}
	if even {
		return p.planLayer(ctx, b, c, layer, q, qHeads, lens[0], B, tr)
	}
	if B < W {
		return nil, fmt.Errorf("compresskv: %s: layer %d: budget %d below the window %d: %w", p.label, layer, B, W, ErrConfig)
	}
	if longest <= B {
		return nil, nil
	}
	if p.scorer == nil {
		return nil, fmt.Errorf("compresskv: %s: layer %d: heads hold different numbers of rows and the policy has no scorer to rank each: %w", p.label, layer, ErrUneven)
	}
	for g, n := range lens {
		if n < W {
			return nil, fmt.Errorf("compresskv: %s: layer %d: KV head %d holds %d rows, fewer than the window %d: %w", p.label, layer, g, n, W, ErrUneven)
		}
	}
	in := &ScoreInput{Backend: b, Cache: c, Layer: layer, Queries: q, QHeads: qHeads, Len: longest, Window: W, Track: tr}
	if tr != nil {
		in.NQ = len(q) / (qHeads * s.HeadDim)
	} else {
		in.NQ = p.scorer.QueryRows(longest, W)
		if err := backend.CheckQueries(s, q, in.NQ, qHeads); err != nil {
			return nil, fmt.Errorf("compresskv: %s: layer %d: %s: %w", p.label, layer, queryProblem(q, in.NQ, qHeads, s.HeadDim, longest, W, err), kvcache.ErrShape)
		}
	}
	scores, err := p.scorer.Score(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("compresskv: %s: %w", p.label, err)
	}
	if len(scores) != s.KVHeads {
		return nil, fmt.Errorf("compresskv: %s: layer %d: the %s scorer gave %d rows for %d KV heads of different lengths: %w", p.label, layer, p.scorer.Name(), len(scores), s.KVHeads, ErrUneven)
	}
	padded := make([][]float32, s.KVHeads)
	for g, row := range scores {
		if len(row) != lens[g]-W {
			return nil, fmt.Errorf("compresskv: %s: layer %d: score row %d has %d values, want %d (rows of KV head %d but the window)", p.label, layer, g, len(row), lens[g]-W, g)
		}
		padded[g] = slices.Grow(row, longest-lens[g])
		for range longest - lens[g] {
			padded[g] = append(padded[g], float32(math.Inf(-1)))
		}
	}
	sel, err := p.selectRows(b, padded, layer, s.KVHeads, longest-W, B-W)
	if err != nil {
		return nil, err
	}
	keep := make([][]int, s.KVHeads)
	for g, rows := range sel {
		// Padded positions past a shorter head's candidates are dropped.
		keep[g] = withWindow(rows, lens[g], W)
	}
	return keep, nil
}
