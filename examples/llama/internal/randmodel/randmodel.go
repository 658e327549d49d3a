// Package randmodel writes the random-weight GGUF models that the project
// holds against llama.cpp, bit for bit as tools/ggufgold/gen.py writes them,
// and reads and checks the golden outputs that llama.cpp gave for them
// (testdata/gguf).
//
// Models are named <family>-<type>. The families are llama2 (SentencePiece
// vocabulary, adjacent-pair rope, separate output), llama3 (byte-level BPE
// with the llama-bpe pre-tokenizer, rope_freqs frequency factors, tied
// output), qwen2 (QKV biases, half-split rope), qwen3 (per-head RMS norm of
// Q and K, n_head*head_dim != n_embd, tied), all with grouped-query
// attention and non-default rope base, RMS epsilon and context length; and
// two full-size shapes for speed: qwen2.5-0.5b and llama3.2-1b. The types
// are f32, f16, bf16, q8_0, q4_0 and q4_k_m (Q4_K with Q6_K where llama.cpp's
// Q4_K_M mixture puts it, F32 norms).
//
// Every weight comes from a counter-based generator (splitmix64 streams
// seeded per tensor) that gen.py defines identically; quantized weights are
// random blocks drawn directly from the stream. The tokenizer metadata comes
// from the vocabulary files in ../shared/vocab, so writing a model needs
// them (VocabDir finds them); the tensors alone do not (Tensors).
//
// This package is test support: it is internal to examples/llama and has no
// stability promise.
package randmodel

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnknownModel is wrapped by the errors for a model name that is not
// <family>-<type> of a known family and type.
var ErrUnknownModel = errors.New("randmodel: unknown model")

// Llama3Rope holds the llama3 rope scaling parameters from which the
// rope_freqs.weight factors are computed.
type Llama3Rope struct {
	Factor, Low, High, OrigCtx float64
}

// Family is the shape and metadata of one family of random models.
type Family struct {
	Name string
	// Arch is general.architecture: llama, qwen2 or qwen3.
	Arch string
	// Vocab is the vocabulary: llama-spm, gpt2-qwen or gpt2-llama3 (see
	// TokenizerKV).
	Vocab string
	// VocabSize pads the token list with [PAD<i>] tokens to this length
	// (0: no padding).
	VocabSize                                   int
	NEmbd, NLayer, NHead, NHeadKV, HeadDim, NFF int
	// Ctx is the context_length metadata.
	Ctx int
	// RopeBase and Eps are rope.freq_base and the RMS norm epsilon.
	RopeBase, Eps float32
	// Tied models have no output.weight.
	Tied bool
	// QKVBias adds attn_q/k/v.bias; QKNorm adds attn_q_norm and attn_k_norm.
	QKVBias, QKNorm bool
	// Rope, when set, adds rope_freqs.weight computed from it.
	Rope *Llama3Rope
	// Prompt is the prompt of the family's goldens ("" for the full-size
	// families, which have no goldens).
	Prompt string
}

// Families lists the families, the small ones (with goldens) first.
var Families = []Family{
	{Name: "llama2", Arch: "llama", Vocab: "llama-spm", NEmbd: 256, NLayer: 3, NHead: 4, NHeadKV: 2, HeadDim: 64,
		NFF: 768, Ctx: 1536, RopeBase: 50000, Eps: 1e-4,
		Prompt: "Hello world</s><s> The quick brown fox jumps over the lazy dog. 1234 \u00e9\u00e8 \u4f60\u597d!"},
	{Name: "llama3", Arch: "llama", Vocab: "gpt2-llama3", NEmbd: 256, NLayer: 2, NHead: 4, NHeadKV: 1, HeadDim: 64,
		NFF: 512, Ctx: 2048, RopeBase: 500000, Eps: 2e-5, Tied: true,
		Rope:   &Llama3Rope{Factor: 8, Low: 1, High: 4, OrigCtx: 64},
		Prompt: "<|start_header_id|>user<|end_header_id|>\n\nThe quick brown fox jumps over the lazy dog. 1234 \u00e9\u00e8<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
	{Name: "qwen2", Arch: "qwen2", Vocab: "gpt2-qwen", NEmbd: 256, NLayer: 3, NHead: 4, NHeadKV: 2, HeadDim: 64,
		NFF: 768, Ctx: 4096, RopeBase: 1000000, Eps: 3e-5, QKVBias: true,
		Prompt: "<|im_start|>user\nThe quick brown fox jumps over the lazy dog. 1234 \u00e9\u00e8<|im_end|>\n<|im_start|>assistant\n"},
	{Name: "qwen3", Arch: "qwen3", Vocab: "gpt2-qwen", NEmbd: 256, NLayer: 2, NHead: 8, NHeadKV: 2, HeadDim: 64,
		NFF: 512, Ctx: 8192, RopeBase: 20000, Eps: 1e-4, Tied: true, QKNorm: true,
		Prompt: "<|im_start|>user\nThe quick brown fox jumps over the lazy dog. 1234 \u00e9\u00e8<|im_end|>\n<|im_start|>assistant\n"},
	{Name: "qwen2.5-0.5b", Arch: "qwen2", Vocab: "gpt2-qwen", VocabSize: 151936, NEmbd: 896, NLayer: 24, NHead: 14,
		NHeadKV: 2, HeadDim: 64, NFF: 4864, Ctx: 32768, RopeBase: 1000000, Eps: 1e-6, Tied: true, QKVBias: true},
	{Name: "llama3.2-1b", Arch: "llama", Vocab: "gpt2-llama3", VocabSize: 128256, NEmbd: 2048, NLayer: 16, NHead: 32,
		NHeadKV: 8, HeadDim: 64, NFF: 8192, Ctx: 131072, RopeBase: 500000, Eps: 1e-5, Tied: true,
		Rope: &Llama3Rope{Factor: 32, Low: 1, High: 4, OrigCtx: 8192}},
}

// Types lists the weight types, as they appear in model names.
var Types = []string{"f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m"}

// fileType is general.file_type (llama_ftype) of each weight type.
var fileType = map[string]uint32{"f32": 0, "f16": 1, "bf16": 32, "q8_0": 7, "q4_0": 2, "q4_k_m": 15}

// Spec is one model: a family and a weight type.
type Spec struct {
	Family Family
	Type   string
}

// Name returns the model's name, <family>-<type>.
func (s Spec) Name() string { return s.Family.Name + "-" + s.Type }

// Names returns every model name, family by family.
func Names() []string {
	var out []string
	for _, f := range Families {
		for _, t := range Types {
			out = append(out, f.Name+"-"+t)
		}
	}
	return out
}

// Lookup returns the model called name. An unknown name gives an error
// wrapping ErrUnknownModel.
func Lookup(name string) (Spec, error) {
	for _, t := range Types {
		fam, ok := strings.CutSuffix(name, "-"+t)
		if !ok {
			continue
		}
		for _, f := range Families {
			if f.Name == fam {
				return Spec{Family: f, Type: t}, nil
			}
		}
	}
	return Spec{}, fmt.Errorf("%w: %q (want <family>-<type>, e.g. llama2-q8_0)", ErrUnknownModel, name)
}
