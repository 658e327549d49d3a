package compresskv

import (
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/kvcache"
)

// Policy decides which rows of a prefilled cache to keep and compacts them.
// It is a composition of a Scorer, a Selector and an Allocator; New builds
// the library's methods, Compose builds new ones. A Policy is immutable and
// safe for concurrent use on different caches.
type Policy struct {
	name      string
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
	cfg = cfg.withDefaults()
	if err := cfg.validate(m); err != nil {
		return nil, err
	}
	p := &Policy{name: string(m), method: m, cfg: cfg}
	snap := SnapKVScorer{Kernel: cfg.Kernel, Pooling: cfg.Pooling}
	uniform := UniformAllocator{Budget: cfg.Budget}
	switch m {
	case Full:
	case StreamingLLM:
		p.scorer, p.selector, p.allocator = nil, StreamingSelector{Sink: cfg.Sink}, uniform
	case H2O:
		p.scorer, p.selector, p.allocator = H2OScorer{}, TopKSelector{}, uniform
	case SnapKV:
		p.scorer, p.selector, p.allocator = snap, TopKSelector{}, uniform
	case PyramidKV:
		p.scorer, p.selector = snap, TopKSelector{}
		p.allocator = PyramidAllocator{Budget: cfg.Budget, Window: cfg.Window, Beta: cfg.Beta}
	case AdaKV:
		p.scorer, p.selector, p.allocator = snap, AdaKVSelector{FloorRatio: cfg.FloorRatio}, uniform
	case CompressKV:
		p.scorer = SRScorer{Profile: cfg.Profile, K: cfg.SRHeads, Kernel: cfg.Kernel, Pooling: cfg.Pooling}
		p.selector = TopKSelector{}
		if w := cfg.Profile.LayerWeights; w != nil {
			p.allocator = ErrorAwareAllocator{Weights: w, Budget: cfg.Budget, Floor: cfg.LayerFloor, Cap: cfg.LayerCap}
		} else {
			p.allocator = uniform
			p.note = "profile has no layer weights: uniform budgets"
		}
	default:
		return nil, fmt.Errorf("compresskv: unknown method %q: %w", m, ErrConfig)
	}
	return p, nil
}

// Compose returns a policy named name from the given pieces. scorer may be
// nil for selectors that ignore scores. cfg supplies the window, the
// backend and (through its defaults) nothing else.
func Compose(name string, cfg Config, scorer Scorer, selector Selector, allocator Allocator) (*Policy, error) {
	if selector == nil || allocator == nil {
		return nil, fmt.Errorf("compresskv: policy %q needs a selector and an allocator: %w", name, ErrConfig)
	}
	cfg = cfg.withDefaults()
	if cfg.Window < 1 {
		return nil, fmt.Errorf("compresskv: policy %q: window %d must be positive: %w", name, cfg.Window, ErrConfig)
	}
	return &Policy{name: name, cfg: cfg, scorer: scorer, selector: selector, allocator: allocator}, nil
}

// Name returns the policy's name (its method for policies made by New).
func (p *Policy) Name() string { return p.name }

// Method returns the method of a policy made by New ("" for Compose).
func (p *Policy) Method() Method { return p.method }

// Config returns the policy's configuration with defaults filled in.
func (p *Policy) Config() Config { return p.cfg }

// Plan is the outcome of a policy's selection over a cache, before any row
// is moved.
type Plan struct {
	// Budgets holds each layer's budget in tokens, window included (per KV
	// head for head-wise methods); nil for Full.
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
	// Config.Backend was set, else SelectBackend's reason.
	BackendReason string
	BytesBefore   int64 // Bytes of the cache before compaction
	BytesAfter    int64 // Bytes after
}

// Plan computes which rows each layer keeps, without changing the cache.
//
// q holds, per layer, the post-RoPE queries of the last prompt positions,
// token-major [n][qHeads][HeadDim] with n >= Window (H2O needs all L prompt
// queries; Full and StreamingLLM need none, q may be nil). Every KV head of a
// layer must hold the same number L of rows (a prefilled, uncompressed
// layer). Layers are planned concurrently.
func (p *Policy) Plan(c kvcache.KVCache, q [][]float32, qHeads int) (*Plan, error) {
	b, _, done, err := p.backendFor(c)
	if err != nil {
		return nil, err
	}
	defer done()
	return p.plan(c, q, qHeads, b)
}

// backendFor returns the backend for cache c: Config.Backend, or the one
// SelectBackend picks (released by done).
func (p *Policy) backendFor(c kvcache.KVCache) (b backend.Backend, reason string, done func(), err error) {
	if p.cfg.Backend != nil {
		return p.cfg.Backend, "configured", func() {}, nil
	}
	b, reason, err = SelectBackend(c, "auto")
	if err != nil {
		return nil, "", nil, err
	}
	return b, reason, func() {
		if cl, ok := b.(io.Closer); ok {
			cl.Close()
		}
	}, nil
}

func (p *Policy) plan(c kvcache.KVCache, q [][]float32, qHeads int, b backend.Backend) (*Plan, error) {
	s := c.Shape()
	plan := &Plan{Note: p.note, Keep: make([][][]int, s.Layers)}
	if p.selector == nil {
		return plan, nil
	}
	if q != nil && len(q) != s.Layers {
		return nil, fmt.Errorf("compresskv: queries for %d layers, cache has %d: %w", len(q), s.Layers, kvcache.ErrShape)
	}
	L, err := promptLen(c)
	if err != nil {
		return nil, err
	}
	if err := p.checkProfile(s, qHeads); err != nil {
		return nil, err
	}
	budgets, err := p.allocator.Budgets(s.Layers, L)
	if err != nil {
		return nil, fmt.Errorf("compresskv: %s: %w", p.name, err)
	}
	plan.Budgets = budgets
	errs := make([]error, s.Layers)
	parallel(s.Layers, func(l int) {
		var ql []float32
		if q != nil {
			ql = q[l]
		}
		plan.Keep[l], errs[l] = p.planLayer(b, c, l, ql, qHeads, L, budgets[l])
	})
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return plan, nil
}

// Compress plans (see Plan) and then compacts every layer of the cache. If
// planning fails, the cache is unchanged.
func (p *Policy) Compress(c kvcache.KVCache, q [][]float32, qHeads int) (*Result, error) {
	before := c.Bytes()
	b, reason, done, err := p.backendFor(c)
	if err != nil {
		return nil, err
	}
	defer done()
	plan, err := p.plan(c, q, qHeads, b)
	if err != nil {
		return nil, err
	}
	if err := p.apply(c, plan, b); err != nil {
		return nil, err
	}
	return &Result{Plan: *plan, Policy: p.name, Backend: b.Name(), BackendReason: reason, BytesBefore: before, BytesAfter: c.Bytes()}, nil
}

// Apply compacts the cache as plan says; layers are compacted concurrently.
// Every layer's rows are checked before any is moved, so a plan that does
// not fit the cache leaves it unchanged.
func (p *Policy) Apply(c kvcache.KVCache, plan *Plan) error {
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
		return fmt.Errorf("compresskv: plan for %d layers, cache has %d: %w", len(plan.Keep), s.Layers, kvcache.ErrShape)
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
			return fmt.Errorf("compresskv: layer %d: %w", l, err)
		}
	}
	errs := make([]error, s.Layers)
	parallel(s.Layers, func(l int) {
		if plan.Keep[l] != nil {
			errs[l] = b.Compact(c, l, plan.Keep[l])
		}
	})
	for l, err := range errs {
		if err != nil {
			return fmt.Errorf("compresskv: layer %d: %w", l, err)
		}
	}
	return nil
}

// CompressLayer compresses one layer of the cache, for inference loops that
// prefill layer by layer; q is that layer's queries as in Plan. The layer's
// budget is the one it would get from Compress on the whole cache.
func (p *Policy) CompressLayer(c kvcache.KVCache, layer int, q []float32, qHeads int) error {
	s := c.Shape()
	if layer < 0 || layer >= s.Layers {
		return fmt.Errorf("compresskv: layer %d out of range [0, %d)", layer, s.Layers)
	}
	if p.selector == nil {
		return nil
	}
	L, err := layerLen(c, layer)
	if err != nil {
		return err
	}
	if err := p.checkProfile(s, qHeads); err != nil {
		return err
	}
	budgets, err := p.allocator.Budgets(s.Layers, L)
	if err != nil {
		return fmt.Errorf("compresskv: %s: %w", p.name, err)
	}
	b, _, done, err := p.backendFor(c)
	if err != nil {
		return err
	}
	defer done()
	keep, err := p.planLayer(b, c, layer, q, qHeads, L, budgets[layer])
	if err != nil || keep == nil {
		return err
	}
	return b.Compact(c, layer, keep)
}

// planLayer selects the kept rows of one layer with budget B, or returns nil
// when the layer keeps everything.
func (p *Policy) planLayer(b backend.Backend, c kvcache.KVCache, layer int, q []float32, qHeads, L, B int) ([][]int, error) {
	s := c.Shape()
	W := p.cfg.Window
	if B < W {
		return nil, fmt.Errorf("compresskv: layer %d: budget %d below the window %d", layer, B, W)
	}
	if L <= B {
		return nil, nil
	}
	in := &Layer{Backend: b, Cache: c, Index: layer, Queries: q, QHeads: qHeads, Len: L, Window: W}
	var scores [][]float32
	if p.scorer != nil {
		if err := backend.CheckQueries(s, q, len(q)/max(1, qHeads*s.HeadDim), qHeads); err != nil {
			return nil, fmt.Errorf("compresskv: layer %d: %w", layer, err)
		}
		in.NQ = len(q) / (qHeads * s.HeadDim)
		if in.NQ < W {
			return nil, fmt.Errorf("compresskv: layer %d: %d query rows, the window needs %d: %w", layer, in.NQ, W, kvcache.ErrShape)
		}
		var err error
		if scores, err = p.scorer.Score(in); err != nil {
			return nil, fmt.Errorf("compresskv: %s: %w", p.name, err)
		}
	}
	sel, err := p.selector.Select(b, scores, s.KVHeads, L-W, B-W)
	if err != nil {
		return nil, fmt.Errorf("compresskv: %s: layer %d: %w", p.name, layer, err)
	}
	if len(sel) != s.KVHeads {
		return nil, fmt.Errorf("compresskv: %s: layer %d: selector returned %d heads, want %d", p.name, layer, len(sel), s.KVHeads)
	}
	keep := make([][]int, s.KVHeads)
	for g, rows := range sel {
		k := make([]int, 0, len(rows)+W)
		k = append(k, rows...)
		for j := L - W; j < L; j++ {
			k = append(k, j)
		}
		keep[g] = k
	}
	return keep, nil
}

func (p *Policy) checkProfile(s kvcache.Shape, qHeads int) error {
	if p.method != CompressKV {
		return nil
	}
	m := p.cfg.Profile.Model
	if m.Layers != s.Layers || m.KVHeads != s.KVHeads || m.HeadDim != s.HeadDim || m.QueryHeads != qHeads {
		return fmt.Errorf("compresskv: profile of %q is for %d layers x %d query heads / %d KV heads x d=%d; cache is %d x %d / %d x d=%d: %w",
			m.Name, m.Layers, m.QueryHeads, m.KVHeads, m.HeadDim, s.Layers, qHeads, s.KVHeads, s.HeadDim, ErrConfig)
	}
	return nil
}

// layerLen returns the common row count of the KV heads of one layer.
func layerLen(c kvcache.KVCache, layer int) (int, error) {
	L := c.Len(layer, 0)
	for g := 1; g < c.Shape().KVHeads; g++ {
		if n := c.Len(layer, g); n != L {
			return 0, fmt.Errorf("compresskv: layer %d: KV heads hold %d and %d rows; compress a prefilled, uncompressed layer", layer, L, n)
		}
	}
	return L, nil
}

// promptLen returns the common row count of every head of every layer.
func promptLen(c kvcache.KVCache) (int, error) {
	L, err := layerLen(c, 0)
	if err != nil {
		return 0, err
	}
	for l := 1; l < c.Shape().Layers; l++ {
		n, err := layerLen(c, l)
		if err != nil {
			return 0, err
		}
		if n != L {
			return 0, fmt.Errorf("compresskv: layers 0 and %d hold %d and %d rows; compress after the whole prompt is prefilled", l, L, n)
		}
	}
	return L, nil
}

// parallel runs f(0..n-1) on up to GOMAXPROCS goroutines.
func parallel(n int, f func(i int)) {
	workers := min(n, runtime.GOMAXPROCS(0))
	if workers <= 1 {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	var wg sync.WaitGroup
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	wg.Wait()
}
