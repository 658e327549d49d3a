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
	aliases []string // accepted by ParseMethod besides the name
	build   func(cfg Config) pieces
}

// methods is the method table, baselines first. Adding a method is adding a
// row (and its pieces, if new).
var methods = []methodEntry{
	{Full, []string{"none"}, func(Config) pieces { return pieces{} }},
	{StreamingLLM, []string{"streaming"}, func(cfg Config) pieces {
		return pieces{selector: StreamingSelector{Sink: cfg.Sink}, allocator: UniformAllocator{}}
	}},
	{H2O, nil, func(Config) pieces {
		return pieces{scorer: H2OScorer{}, selector: TopKSelector{}, allocator: UniformAllocator{}}
	}},
	{SnapKV, []string{"snap"}, func(cfg Config) pieces {
		return pieces{scorer: snapScorer(cfg), selector: TopKSelector{}, allocator: UniformAllocator{}}
	}},
	{PyramidKV, []string{"pyramid"}, func(cfg Config) pieces {
		return pieces{scorer: snapScorer(cfg), selector: TopKSelector{}, allocator: PyramidAllocator{Beta: cfg.Beta}}
	}},
	{AdaKV, []string{"ada"}, func(cfg Config) pieces {
		return pieces{scorer: snapScorer(cfg), selector: AdaKVSelector{FloorRatio: cfg.FloorRatio}, allocator: UniformAllocator{}}
	}},
	{CompressKV, nil, func(cfg Config) pieces {
		p := pieces{
			scorer:   SRScorer{Profile: cfg.Profile, K: cfg.SRHeads, Kernel: cfg.Kernel, Pooling: cfg.Pooling},
			selector: TopKSelector{},
		}
		p.allocator, p.note = layerAllocator(cfg)
		return p
	}},
	{AdaCompressKV, []string{"adackv"}, func(cfg Config) pieces {
		p := pieces{
			scorer:   GroupSRScorer{Profile: cfg.Profile, K: cfg.SRHeads, Kernel: cfg.Kernel, Pooling: cfg.Pooling},
			selector: AdaKVSelector{FloorRatio: cfg.FloorRatio},
		}
		p.allocator, p.note = layerAllocator(cfg)
		return p
	}},
	{KNorm, nil, func(Config) pieces {
		return pieces{scorer: KNormScorer{}, selector: TopKSelector{}, allocator: UniformAllocator{}}
	}},
	{ExpectedAttention, []string{"expected", "ea"}, func(cfg Config) pieces {
		p := pieces{scorer: ExpectedAttentionScorer{Rotary: cfg.Rotary, Sink: cfg.Sink, Kernel: cfg.Kernel, Pooling: cfg.Pooling},
			selector: TopKSelector{}, allocator: UniformAllocator{}}
		if cfg.Rotary == nil {
			p.note = "no rotary embedding given (Config.Rotary): the queries are taken as they are"
		}
		return p
	}},
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
	return "", fmt.Errorf("compresskv: unknown method %q (want one of %v)", s, Methods)
}
