// Package calibrate makes a compresskv.Profile for any model: the offline
// half of CompressKV.
//
// Profile drives the caller's inference engine through a small interface
// (Model, Run): it decodes retrieval probes with the full cache while a
// heads.Recorder scores each query head's attention on the answer (only
// probes answered right count), ranks the heads of each layer, then measures
// each layer's output error under a shadow CompressKV eviction
// (alloc.ErrorAccumulator), which becomes the layer weights.
//
// The probes are built as text and placed in the model's own token positions
// through a Tokenizer, so the same builders serve byte-level and subword
// models: NeedleProbes (a grid of needle-in-a-haystack prompts over lengths
// and depths), BuildNeedle (one of them), NewProbe (a fact of the caller's
// own, "...a girl named Lily..." answered by "Lily"), and TextPrompts (plain
// text for the layer error). Evaluation loops judge a model's answer with
// Probe.Judge, as calibration does.
//
// examples/llama implements Model for llama2.c checkpoints;
// examples/calibrate is the command that runs it.
package calibrate
