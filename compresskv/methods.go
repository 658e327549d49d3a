package compresskv

import (
	"fmt"
	"strings"
)

// Method names a KV-cache compression method.
type Method string

// The methods the library implements (docs/DESIGN.md).
const (
	Full         Method = "full"         // no eviction
	StreamingLLM Method = "streamingllm" // first Sink tokens + the most recent ones
	H2O          Method = "h2o"          // accumulated attention of all prompt queries, per KV head
	SnapKV       Method = "snapkv"       // window attention of each KV head's own query heads
	PyramidKV    Method = "pyramidkv"    // SnapKV selection, budgets falling linearly with depth
	AdaKV        Method = "adakv"        // SnapKV scores, head-wise budgets from one layer-wide top-k
	CompressKV   Method = "compresskv"   // semantic retrieval heads + error-aware layer budgets
	// AdaCompressKV scores each KV head with SR heads of its own group,
	// spreads each layer's budget over its KV heads as Ada-KV does and
	// over layers as CompressKV does.
	AdaCompressKV Method = "adacompresskv"
	// KNorm keeps each KV head's keys of smallest norm (no query read).
	KNorm Method = "knorm"
	// ExpectedAttention keeps what queries to come are expected to attend
	// to, from the statistics of every query seen (Config.Rotary turns
	// them; kvpress's ExpectedAttentionPress).
	ExpectedAttention Method = "expectedattention"
)

// pieces is what a method is made of; scorer may be nil (no scores needed),
// selector nil means keep everything.
type pieces struct {
	scorer    Scorer
	selector  Selector
	allocator Allocator
	note      string // a fallback the method took, reported in every Plan
}

// methodEntry is one row of the method table: everything the library needs
// to know about a method is here.
type methodEntry struct {
	method  Method
	title   string   // the method's name in prose and messages
	aliases []string // accepted by ParseMethod besides the name
	// profile says whether the method reads a Profile (Config.Profile
	// required).
	profile bool
	build   func(cfg Config) pieces
}

// methods is the method table, baselines first. Adding a method is adding a
// row (and its pieces, if new).
var methods = []methodEntry{
	{Full, "Full", []string{"none"}, false, func(Config) pieces { return pieces{} }},
	{StreamingLLM, "StreamingLLM", []string{"streaming"}, false, func(cfg Config) pieces {
		return pieces{selector: StreamingSelector{Sink: cfg.Sink}, allocator: UniformAllocator{}}
	}},
	{H2O, "H2O", nil, false, func(Config) pieces {
		return pieces{scorer: H2OScorer{}, selector: TopKSelector{}, allocator: UniformAllocator{}}
	}},
	{SnapKV, "SnapKV", []string{"snap"}, false, func(cfg Config) pieces {
		return pieces{scorer: snapScorer(cfg), selector: TopKSelector{}, allocator: UniformAllocator{}}
	}},
	{PyramidKV, "PyramidKV", []string{"pyramid"}, false, func(cfg Config) pieces {
		return pieces{scorer: snapScorer(cfg), selector: TopKSelector{}, allocator: PyramidAllocator{Beta: cfg.Beta}}
	}},
	{AdaKV, "Ada-KV", []string{"ada"}, false, func(cfg Config) pieces {
		return pieces{scorer: snapScorer(cfg), selector: AdaKVSelector{FloorRatio: cfg.FloorRatio}, allocator: UniformAllocator{}}
	}},
	{CompressKV, "CompressKV", nil, true, func(cfg Config) pieces {
		p := pieces{
			scorer:   SRScorer{Profile: cfg.Profile, K: cfg.SRHeads, Kernel: cfg.Kernel, Pooling: cfg.Pooling},
			selector: TopKSelector{},
		}
		p.allocator, p.note = layerAllocator(cfg)
		return p
	}},
	{AdaCompressKV, "Ada-CompressKV", []string{"adackv"}, true, func(cfg Config) pieces {
		p := pieces{
			scorer:   GroupSRScorer{Profile: cfg.Profile, K: cfg.SRHeads, Kernel: cfg.Kernel, Pooling: cfg.Pooling},
			selector: AdaKVSelector{FloorRatio: cfg.FloorRatio},
		}
		p.allocator, p.note = layerAllocator(cfg)
		return p
	}},
	{KNorm, "KNorm", nil, false, func(Config) pieces {
		return pieces{scorer: KNormScorer{}, selector: TopKSelector{}, allocator: UniformAllocator{}}
	}},
	{ExpectedAttention, "Expected Attention", []string{"expected", "ea"}, false, func(cfg Config) pieces {
		p := pieces{scorer: ExpectedAttentionScorer{Rotary: cfg.Rotary, Sink: cfg.Sink, Kernel: cfg.Kernel, Pooling: cfg.Pooling},
			selector: TopKSelector{}, allocator: UniformAllocator{}}
		if cfg.Rotary == nil {
			p.note = "no rotary embedding given (Config.Rotary): the queries are taken as they are"
		}
		return p
	}},
}

// NeedsProfile reports whether the method reads a Profile, so that New
// fails without Config.Profile (CompressKV, Ada-CompressKV): the question a
// program asks before it loads or calibrates one. Unknown methods need
// none.
func (m Method) NeedsProfile() bool {
	e, ok := lookup(m)
	return ok && e.profile
}

// Title returns the method's name as prose writes it ("Ada-KV",
// "CompressKV"), or the method string itself for an unknown one.
func (m Method) Title() string {
	if e, ok := lookup(m); ok {
		return e.title
	}
	return string(m)
}

// layerAllocator is the error-aware allocator of the profile's layer
// weights, or uniform budgets with a note when the profile has none.
func layerAllocator(cfg Config) (Allocator, string) {
	if cfg.Profile != nil && cfg.Profile.LayerWeights != nil {
		return ErrorAwareAllocator{Weights: cfg.Profile.LayerWeights, Floor: cfg.LayerFloor, Cap: cfg.LayerCap}, ""
	}
	return UniformAllocator{}, "profile has no layer weights: uniform budgets"
}

func snapScorer(cfg Config) Scorer { return SnapKVScorer{Kernel: cfg.Kernel, Pooling: cfg.Pooling} }

// Methods lists every method, baselines first.
var Methods = func() []Method {
	out := make([]Method, len(methods))
	for i, e := range methods {
		out[i] = e.method
	}
	return out
}()

func lookup(m Method) (methodEntry, bool) {
	for _, e := range methods {
		if e.method == m {
			return e, true
		}
	}
	return methodEntry{}, false
}

// ParseMethod returns the method named s (case-insensitive, hyphens
// ignored; "streaming", "snap", "pyramid", "ada", "adackv", "expected",
// "ea" and "none" are accepted).
func ParseMethod(s string) (Method, error) {
	key := strings.ToLower(strings.ReplaceAll(s, "-", ""))
	for _, e := range methods {
		if key == string(e.method) {
			return e.method, nil
		}
		for _, a := range e.aliases {
			if key == a {
				return e.method, nil
			}
		}
	}
	return "", fmt.Errorf("compresskv: unknown method %q (want one of %v): %w", s, Methods, ErrConfig)
}
