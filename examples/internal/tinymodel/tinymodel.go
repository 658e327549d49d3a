// Package tinymodel writes small random-weight GGUF models for the example
// commands' tests: each architecture the runner runs (llama, qwen2, qwen3),
// with a tokenizer of each kind package vocab reads, built here instead of
// copied from a real model, so that the tests need no file from outside the
// repository:
//
//   - SPM: a SentencePiece-style vocabulary (Llama 2, Mistral) with byte
//     fallback, BOS added, a leading space;
//   - ChatML: byte-level BPE with Qwen2's pre-tokenizer, <|endoftext|>,
//     <|im_start|> and <|im_end|>, no BOS, and a ChatML chat template;
//   - Llama3: byte-level BPE with Llama 3's pre-tokenizer, its five special
//     tokens, BOS added, and a Llama 3 chat template.
//
// The merges are learned from a short English text (byte-pair encoding of its
// words), so that words and numbers split into several tokens as a real
// subword tokenizer splits them. Random weights answer nothing: the models
// test the machinery (tokenization, prompts, answer spans, stopping), never
// accuracy.
package tinymodel

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/examples/llama/gguf"
	"github.com/compresskv/compresskv/examples/llama/quant"
	"github.com/compresskv/compresskv/heads"
)

// Tokenizer is the kind of tokenizer a model is written with.
type Tokenizer string

// The tokenizers Write writes.
const (
	SPM    Tokenizer = "spm"
	ChatML Tokenizer = "chatml"
	Llama3 Tokenizer = "llama3"
)

// Chat templates, short forms of the Jinja sources real models carry, with
// the markers by which llama.cpp (and package chat) recognise them.
const (
	ChatMLTemplate = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
	Llama3Template = "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

// ErrSpec is wrapped by the errors for a Spec that describes no model.
var ErrSpec = errors.New("tinymodel: bad spec")

// Spec describes a model. Zero sizes take the defaults in brackets.
type Spec struct {
	// Arch is general.architecture: llama, qwen2 (biases on Q, K and V) or
	// qwen3 (per-head norms of Q and K).
	Arch string
	// Tokenizer is the vocabulary's kind.
	Tokenizer Tokenizer
	// NoTemplate leaves tokenizer.chat_template out of a ChatML or Llama3
	// model.
	NoTemplate bool
	// Template, when set, is written as tokenizer.chat_template instead of
	// the tokenizer's own.
	Template string
	// Layers [2], Dim [64], Heads [4], KVHeads [2], HeadDim [Dim/Heads],
	// Hidden [96], Ctx [4096]: the shape and the context length.
	Layers, Dim, Heads, KVHeads, HeadDim, Hidden, Ctx int
	// Merges is the number of merges learned [300].
	Merges int
	// Seed draws the weights.
	Seed uint64
	// Favour, when set, is the text of a token that gets an output bias so
	// large that greedy decoding chooses it at every step: with an
	// end-of-generation token, a model that stops at once.
	Favour string
}

func (s *Spec) defaults() error {
	def := func(x *int, d int) {
		if *x == 0 {
			*x = d
		}
	}
	def(&s.Layers, 2)
	def(&s.Dim, 64)
	def(&s.Heads, 4)
	def(&s.KVHeads, 2)
	def(&s.HeadDim, s.Dim/s.Heads)
	def(&s.Hidden, 96)
	def(&s.Ctx, 4096)
	def(&s.Merges, 300)
	switch s.Arch {
	case "llama", "qwen2", "qwen3":
	default:
		return fmt.Errorf("%w: architecture %q", ErrSpec, s.Arch)
	}
	switch s.Tokenizer {
	case SPM, ChatML, Llama3:
	default:
		return fmt.Errorf("%w: tokenizer %q", ErrSpec, s.Tokenizer)
	}
	if s.Heads%s.KVHeads != 0 || s.HeadDim%2 != 0 {
		return fmt.Errorf("%w: %d heads over %d KV heads of %d values", ErrSpec, s.Heads, s.KVHeads, s.HeadDim)
	}
	return nil
}

// Write writes the model s describes to path.
func Write(path string, s Spec) error {
	w, err := Build(s)
	if err != nil {
		return err
	}
	return w.WriteFile(path)
}

// Build returns a gguf.Writer holding the model s describes.
func Build(s Spec) (*gguf.Writer, error) {
	if err := s.defaults(); err != nil {
		return nil, err
	}
	tok := tokenizerKV(s)
	tokens := tok[0].value.([]string)
	favour := -1
	if s.Favour != "" {
		if favour = slices.Index(tokens, s.Favour); favour < 0 {
			return nil, fmt.Errorf("%w: no token %q to favour", ErrSpec, s.Favour)
		}
	}
	w := gguf.NewWriter()
	a := s.Arch
	kv := []entry{
		{"general.architecture", a},
		{"general.name", fmt.Sprintf("tinymodel %s %s", a, s.Tokenizer)},
		{"general.file_type", uint32(0)},
		{a + ".context_length", uint32(s.Ctx)},
		{a + ".embedding_length", uint32(s.Dim)},
		{a + ".block_count", uint32(s.Layers)},
		{a + ".feed_forward_length", uint32(s.Hidden)},
		{a + ".attention.head_count", uint32(s.Heads)},
		{a + ".attention.head_count_kv", uint32(s.KVHeads)},
		{a + ".attention.key_length", uint32(s.HeadDim)},
		{a + ".attention.value_length", uint32(s.HeadDim)},
		{a + ".attention.layer_norm_rms_epsilon", float32(1e-5)},
		{a + ".rope.freq_base", float32(10000)},
		{a + ".rope.dimension_count", uint32(s.HeadDim)},
	}
	for _, e := range append(kv, tok...) {
		if err := w.Set(e.key, e.value); err != nil {
			return nil, err
		}
	}
	for _, t := range tensors(s, len(tokens), favour) {
		if err := w.AddTensor(t.name, quant.F32, t.dims, f32Bytes(t.data)); err != nil {
			return nil, err
		}
	}
	return w, nil
}

type entry struct {
	key   string
	value any
}

type tensor struct {
	name string
	dims []int // ggml's order: the contiguous dimension first
	data []float32
}

// tensors returns the model's weights: matrices drawn from N(0, 1/fan-in),
// norms near 1, small biases; tied output for qwen, a separate one for
// llama; an output bias favouring token favour (>= 0).
func tensors(s Spec, vocab, favour int) []tensor {
	rng := rand.New(rand.NewPCG(s.Seed, 0x74696e79))
	E, qd, kvd, F := s.Dim, s.Heads*s.HeadDim, s.KVHeads*s.HeadDim, s.Hidden
	mat := func(name string, cols, rows int) tensor {
		x := make([]float32, cols*rows)
		sd := 1 / math.Sqrt(float64(cols))
		for i := range x {
			x[i] = float32(rng.NormFloat64() * sd)
		}
		return tensor{name, []int{cols, rows}, x}
	}
	vec := func(name string, n int, mean, sd float64) tensor {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(mean + rng.NormFloat64()*sd)
		}
		return tensor{name, []int{n}, x}
	}
	emb := mat("token_embd.weight", E, vocab)
	for i := range emb.data {
		emb.data[i] *= float32(math.Sqrt(float64(E))) // embeddings of unit scale per value
	}
	ts := []tensor{emb}
	for l := range s.Layers {
		p := fmt.Sprintf("blk.%d.", l)
		ts = append(ts, vec(p+"attn_norm.weight", E, 1, 0.1), mat(p+"attn_q.weight", E, qd), mat(p+"attn_k.weight", E, kvd), mat(p+"attn_v.weight", E, kvd))
		if s.Arch == "qwen2" {
			ts = append(ts, vec(p+"attn_q.bias", qd, 0, 0.1), vec(p+"attn_k.bias", kvd, 0, 0.1), vec(p+"attn_v.bias", kvd, 0, 0.1))
		}
		if s.Arch == "qwen3" {
			// Norms of 2 make attention as peaked as the other
			// architectures' (unit-RMS queries and keys give nearly flat
			// attention, which no eviction would disturb).
			ts = append(ts, vec(p+"attn_q_norm.weight", s.HeadDim, 2, 0.2), vec(p+"attn_k_norm.weight", s.HeadDim, 2, 0.2))
		}
		ts = append(ts, mat(p+"attn_output.weight", qd, E), vec(p+"ffn_norm.weight", E, 1, 0.1),
			mat(p+"ffn_gate.weight", E, F), mat(p+"ffn_up.weight", E, F), mat(p+"ffn_down.weight", F, E))
	}
	ts = append(ts, vec("output_norm.weight", E, 1, 0.1))
	if s.Arch == "llama" {
		ts = append(ts, mat("output.weight", E, vocab))
	}
	if favour >= 0 {
		b := make([]float32, vocab)
		b[favour] = 1000
		ts = append(ts, tensor{"output.bias", []int{vocab}, b})
	}
	return ts
}

func f32Bytes(x []float32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// GGUF token types (llama.cpp's llama_token_type).
const (
	typeNormal  = 1
	typeUnknown = 2
	typeControl = 3
	typeByte    = 6
)

// tokenizerKV returns the tokenizer metadata of s, tokenizer.ggml.tokens
// first.
func tokenizerKV(s Spec) []entry {
	if s.Tokenizer == SPM {
		return spmKV(s)
	}
	// Byte-level BPE: the 256 byte characters, the merged tokens, then the
	// specials.
	var tokens []string
	for b := range 256 {
		tokens = append(tokens, string(byteChar[b]))
	}
	merges := learnMerges(corpusWords(func(w string) []string {
		var out []string
		for _, b := range []byte(w) {
			out = append(out, string(byteChar[b]))
		}
		return out
	}), s.Merges, nil)
	var ms []string
	for _, m := range merges {
		tokens = append(tokens, m[0]+m[1])
		ms = append(ms, m[0]+" "+m[1])
	}
	types := make([]int32, len(tokens))
	for i := range types {
		types[i] = typeNormal
	}
	specials := []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}
	pre, tmpl, bos, eos, addBOS := "qwen2", ChatMLTemplate, "<|endoftext|>", "<|im_end|>", false
	if s.Tokenizer == Llama3 {
		specials = []string{"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}
		pre, tmpl, bos, eos, addBOS = "llama-bpe", Llama3Template, "<|begin_of_text|>", "<|eot_id|>", true
	}
	for _, sp := range specials {
		tokens = append(tokens, sp)
		types = append(types, typeControl)
	}
	out := []entry{
		{"tokenizer.ggml.tokens", tokens},
		{"tokenizer.ggml.model", "gpt2"},
		{"tokenizer.ggml.pre", pre},
		{"tokenizer.ggml.token_type", types},
		{"tokenizer.ggml.merges", ms},
		{"tokenizer.ggml.bos_token_id", uint32(slices.Index(tokens, bos))},
		{"tokenizer.ggml.eos_token_id", uint32(slices.Index(tokens, eos))},
		{"tokenizer.ggml.add_bos_token", addBOS},
	}
	return withTemplate(out, s, tmpl)
}

func withTemplate(kv []entry, s Spec, tmpl string) []entry {
	if s.Template != "" {
		tmpl = s.Template
	}
	if s.NoTemplate || tmpl == "" {
		return kv
	}
	return append(kv, entry{"tokenizer.chat_template", tmpl})
}

// spmKV returns a SentencePiece-style vocabulary: <unk>, <s>, </s>, the 256
// byte tokens, "▁" and the printable ASCII characters, then the merged
// pieces scored in the order they were learned.
func spmKV(s Spec) []entry {
	tokens := []string{"<unk>", "<s>", "</s>"}
	types := []int32{typeUnknown, typeControl, typeControl}
	for b := range 256 {
		tokens = append(tokens, fmt.Sprintf("<0x%02X>", b))
		types = append(types, typeByte)
	}
	tokens = append(tokens, "\u2581")
	types = append(types, typeNormal)
	for c := byte('!'); c <= '~'; c++ {
		tokens = append(tokens, string(c))
		types = append(types, typeNormal)
	}
	scores := make([]float32, len(tokens))
	for i := 259; i < len(tokens); i++ {
		scores[i] = float32(-1e5 - i)
	}
	// Digits stay single pieces, as SentencePiece models split them (Llama 2,
	// Mistral): no merge takes a digit.
	merges := learnMerges(corpusWords(func(w string) []string {
		var out []string
		for _, r := range strings.ReplaceAll(w, " ", "\u2581") {
			out = append(out, string(r))
		}
		return out
	}), s.Merges, func(sym string) bool { return strings.ContainsAny(sym, "0123456789") })
	for i, m := range merges {
		tokens = append(tokens, m[0]+m[1])
		types = append(types, typeNormal)
		scores = append(scores, float32(-i))
	}
	kv := []entry{
		{"tokenizer.ggml.tokens", tokens},
		{"tokenizer.ggml.model", "llama"},
		{"tokenizer.ggml.scores", scores},
		{"tokenizer.ggml.token_type", types},
		{"tokenizer.ggml.unknown_token_id", uint32(0)},
		{"tokenizer.ggml.bos_token_id", uint32(1)},
		{"tokenizer.ggml.eos_token_id", uint32(2)},
		{"tokenizer.ggml.add_bos_token", true},
		{"tokenizer.ggml.add_eos_token", false},
		{"tokenizer.ggml.add_space_prefix", true},
	}
	return withTemplate(kv, s, "")
}

// byteChar is GPT-2's map of bytes to printable characters: the printable
// bytes stand for themselves, the others for 256 onwards in order.
var byteChar = func() [256]rune {
	var m [256]rune
	n := 0
	for b := range 256 {
		if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE {
			m[b] = rune(b)
		} else {
			m[b] = rune(256 + n)
			n++
		}
	}
	return m
}()

// corpus is the text the merges are learned from: the needle wordings,
// stories and verses of the kind the examples' probes and haystacks hold,
// and numbers.
const corpus = `In the beginning God created the heaven and the earth. And the earth was without form, and void;
and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters.
And God said, Let there be light: and there was light. And God saw the light, that it was good.
The special magic number for amber is 40713. What is the special magic number for amber?
The secret code of the cedar is 19822. What is the secret code of the cedar?
Remember that the falcon key opens door 55310. Which door does the falcon key open?
The heron was born in the year 1987. In which year was the heron born?
Once upon a time, there was a little girl named Lily. She liked to play with her toys.
She had a big red ball. The sun was warm and bright. She went to the park with her mom.
One day, a boy named Tim went to the park. The dog wanted to play with her. She was very happy.
These are the numbers: 100 200 300 400 500 600 700 800 900 1000 2000 12 34 56 78 90.`

// corpusWords returns the corpus's words, each with the space before it
// (as the pre-tokenizers and SentencePiece attach it), as their characters
// (split by chars).
func corpusWords(chars func(string) []string) map[string][]string {
	out := map[string][]string{}
	for _, w := range strings.Fields(corpus) {
		out[" "+w] = chars(" " + w)
	}
	return out
}

// learnMerges learns n merges by byte-pair encoding over the corpus's
// words: each step merges the most frequent adjacent pair (ties to the
// pair first in byte order), except pairs with a symbol for which skip
// (when not nil) is true.
func learnMerges(words map[string][]string, n int, skip func(string) bool) [][2]string {
	count := map[string]int{}
	for _, w := range strings.Fields(corpus) {
		count[" "+w]++
	}
	keys := make([]string, 0, len(words))
	for w := range words {
		keys = append(keys, w)
	}
	slices.Sort(keys)
	var merges [][2]string
	for len(merges) < n {
		pairs := map[[2]string]int{}
		for _, w := range keys {
			syms := words[w]
			for i := 0; i+1 < len(syms); i++ {
				if skip == nil || !skip(syms[i]) && !skip(syms[i+1]) {
					pairs[[2]string{syms[i], syms[i+1]}] += count[w]
				}
			}
		}
		if len(pairs) == 0 {
			break
		}
		best, bestN := [2]string{}, 0
		for p, c := range pairs {
			if c > bestN || c == bestN && cmp.Or(cmp.Compare(p[0], best[0]), cmp.Compare(p[1], best[1])) < 0 {
				best, bestN = p, c
			}
		}
		merges = append(merges, best)
		for _, w := range keys {
			syms := words[w]
			var out []string
			for i := 0; i < len(syms); i++ {
				if i+1 < len(syms) && syms[i] == best[0] && syms[i+1] == best[1] {
					out = append(out, best[0]+best[1])
					i++
				} else {
					out = append(out, syms[i])
				}
			}
			words[w] = out
		}
	}
	return merges
}

// Trio is one model of each architecture, each with another tokenizer: the
// llama architecture with SentencePiece, qwen2 with ChatML, qwen3 (heads
// wider than Dim/Heads) with Llama 3's.
var Trio = []Spec{
	{Arch: "llama", Tokenizer: SPM, Seed: 1},
	{Arch: "qwen2", Tokenizer: ChatML, Seed: 2},
	{Arch: "qwen3", Tokenizer: Llama3, HeadDim: 24, Seed: 3},
}

// Name names the spec's file: <arch>-<tokenizer>.
func (s Spec) Name() string { return s.Arch + "-" + string(s.Tokenizer) }

// WriteTemp writes the model into a temporary folder of tb and returns its
// path, <arch>-<tokenizer>.gguf; it fails tb on an error.
func WriteTemp(tb testing.TB, s Spec) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), s.Name()+".gguf")
	if err := Write(path, s); err != nil {
		tb.Fatal(err)
	}
	return path
}

// WriteProfile writes to path a profile of the model's shape with head
// scores drawn from seed: what a command that needs a profile reads, for
// a model that calibration cannot profile (random weights answer no
// probe). It ranks heads at random and measures nothing.
func WriteProfile(path string, s Spec, seed uint64) error {
	if err := s.defaults(); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(seed, 0x70726f66))
	sr := make(heads.Scores, s.Layers)
	ret := make(heads.Scores, s.Layers)
	w := make([]float64, s.Layers)
	for l := range sr {
		sr[l], ret[l] = make([]float64, s.Heads), make([]float64, s.Heads)
		for h := range sr[l] {
			sr[l][h], ret[l][h] = rng.Float64(), rng.Float64()
		}
		w[l] = 1 / float64(s.Layers)
	}
	p, err := compresskv.NewProfile(compresskv.ModelInfo{Name: "tinymodel " + s.Name(), Layers: s.Layers, QueryHeads: s.Heads, KVHeads: s.KVHeads, HeadDim: s.HeadDim}, sr, ret, w)
	if err != nil {
		return err
	}
	return p.Save(path)
}
