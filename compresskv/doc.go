// Package compresskv makes the key-value cache of a language model small
// after prefill, keeping what the model needs to answer.
//
// It implements CompressKV ("CompressKV: Semantic Retrieval Heads Know What
// Tokens are Not Important Before Generation", arXiv 2508.02401) and the
// baselines it is measured against, StreamingLLM, H2O, SnapKV, PyramidKV and
// Ada-KV, over one storage (package kvcache) and one compute interface
// (package backend).
//
// The caller owns the model. After it has prefilled a prompt into a
// kvcache.KVCache with full attention, it hands the cache and the post-RoPE
// queries of the last prompt positions of every layer to a Policy:
//
//	p, err := compresskv.New(compresskv.CompressKV, compresskv.Config{Budget: 128, Profile: prof})
//	res, err := p.Compress(ctx, cache, queries, queryHeads)
//
// and continues decoding over the smaller cache; positions continue from the
// prompt length.
//
// A Policy is a composition of three pieces, each replaceable:
//   - a Scorer scores the prefix positions of a layer (SRScorer: the mean
//     pooled window attention of the layer's semantic retrieval heads;
//     SnapKVScorer: each KV head's own query heads; GroupSRScorer: the SR
//     heads within each KV head's group, for Ada-CompressKV; H2OScorer: all
//     prompt queries; KNormScorer: key norms; ExpectedAttentionScorer and
//     AccumulatedScorer: the statistics of, or the attention from, every
//     query seen; SharedMax and Either combine scorers);
//   - a Selector turns scores into kept positions per KV head (TopKSelector,
//     StreamingSelector, AdaKVSelector);
//   - an Allocator spreads the total budget over layers (UniformAllocator,
//     PyramidAllocator, ErrorAwareAllocator).
//
// A method is one row of the library's method table (New, ParseMethod and
// Methods read it); each piece checks its own settings (Validator) and its
// fit to the cache (Fitter), and a scorer says how many query rows it reads
// (Policy.QueryRows: pass exactly those).
//
// CompressKV needs a Profile: the semantic retrieval heads of each layer
// (package heads finds them from needle-in-a-haystack probes) and,
// optionally, per-layer weights from the measured eviction error (package
// alloc). Package calibrate makes one for any model whose engine implements
// its small interface: it builds probes in the model's own tokens, records
// the retrieval heads while the model answers, and measures each layer's
// eviction error. A profile published for
// a large model by the reference implementation converts with
// examples/profile.
//
// Compress works once, after a full prefill. A Stream keeps one sequence's
// cache within a bound from the first token to the last: it compresses
// between chunks of a chunked prefill and every few tokens while decoding.
// While the prompt runs it may hold a reserve above the budget, and it
// ranks rows without the question (DefaultPrefill: expected attention, the
// best KV head's), so that what the question will ask for is still there
// when Stream.Compress ends the prompt at the budget.
//
// docs/DESIGN.md in the repository says exactly what each method
// computes; where the paper and its reference code differ, the code's form is
// the default and the paper's an option.
package compresskv
