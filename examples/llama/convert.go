package llama

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/compresskv/compresskv/examples/llama/gguf"
	"github.com/compresskv/compresskv/examples/llama/quant"
)

// GGUFOptions say how WriteGGUF writes a model.
type GGUFOptions struct {
	// Name is the file's general.name.
	Name string
	// Tokenizer, when set, is written as a SentencePiece-style ("llama")
	// vocabulary that llama.cpp's tokenizer reads; see Tokenizer.GGUFVocab.
	Tokenizer *Tokenizer
}

// SentencePiece token types, as GGUF's tokenizer.ggml.token_type stores
// them (llama.cpp's llama_token_type).
const (
	tokenNormal  = 1
	tokenUnknown = 2
	tokenControl = 3
	tokenByte    = 6
)

// spaceMark is the character SentencePiece writes for a space (U+2581).
const spaceMark = "\u2581"

// WriteGGUF writes the model as a GGUF file of its architecture, each
// weight in its own type (float32 for a llama2.c checkpoint), with the
// metadata and tensor names llama.cpp reads: converting a
// llama2.c checkpoint gives a llama-architecture file that LoadGGUF (and
// llama.cpp) run to the same logits. It returns the bytes written.
func (m *Model) WriteGGUF(w io.Writer, opt GGUFOptions) (int64, error) {
	kv, tensors, err := m.ggufParts(opt)
	if err != nil {
		return 0, err
	}
	gw := gguf.NewWriter()
	for _, e := range kv {
		if err := gw.Set(e.key, e.value); err != nil {
			return 0, err
		}
	}
	for _, t := range tensors {
		if err := gw.AddTensor(t.name, t.typ, t.dims, t.data); err != nil {
			return 0, err
		}
	}
	return gw.WriteTo(w)
}

// ggufKV is one metadata entry of a file WriteGGUF writes.
type ggufKV struct {
	key   string
	value any
}

// ggufTensor is one tensor of a file WriteGGUF writes.
type ggufTensor struct {
	name string
	typ  quant.Type
	dims []int
	data []byte
}

// ggufParts returns the metadata and the tensors of the model's GGUF file.
func (m *Model) ggufParts(opt GGUFOptions) ([]ggufKV, []ggufTensor, error) {
	arch := m.arch()
	if (arch == ArchLlama) != (m.Rope == RopeNorm) {
		return nil, nil, fmt.Errorf("llama: a %s model rotating %s pairs has no GGUF form (the architecture fixes the layout): %w", arch, m.Rope, ErrUnsupported)
	}
	var kv []ggufKV
	set := func(key string, x any) { kv = append(kv, ggufKV{key, x}) }
	k := func(name string) string { return arch + "." + name }
	set("general.architecture", arch)
	if opt.Name != "" {
		set("general.name", opt.Name)
	}
	set(k("vocab_size"), uint32(m.Vocab))
	set(k("context_length"), uint32(m.SeqLen))
	set(k("embedding_length"), uint32(m.Dim))
	set(k("block_count"), uint32(m.Layers))
	set(k("feed_forward_length"), uint32(m.Hidden))
	set(k("attention.head_count"), uint32(m.Heads))
	set(k("attention.head_count_kv"), uint32(m.KVHeads))
	set(k("attention.key_length"), uint32(m.HeadDim()))
	set(k("attention.value_length"), uint32(m.HeadDim()))
	set(k("attention.layer_norm_rms_epsilon"), m.eps())
	set(k("rope.freq_base"), m.ropeBase())
	set(k("rope.dimension_count"), uint32(m.RotaryDims()))
	if s := m.ropeScale(); s != 1 {
		set(k("rope.scaling.type"), "linear")
		set(k("rope.scaling.factor"), 1/s)
	}
	if opt.Tokenizer != nil {
		if opt.Tokenizer.Vocab() != m.Vocab {
			return nil, nil, fmt.Errorf("llama: a tokenizer of %d pieces for a model of %d: %w", opt.Tokenizer.Vocab(), m.Vocab, ErrFormat)
		}
		tokens, scores, types := opt.Tokenizer.GGUFVocab()
		set("tokenizer.ggml.model", "llama")
		set("tokenizer.ggml.pre", "default")
		set("tokenizer.ggml.tokens", tokens)
		set("tokenizer.ggml.scores", scores)
		set("tokenizer.ggml.token_type", types)
		set("tokenizer.ggml.unknown_token_id", uint32(Unk))
		set("tokenizer.ggml.bos_token_id", uint32(BOS))
		set("tokenizer.ggml.eos_token_id", uint32(EOS))
		set("tokenizer.ggml.add_bos_token", true)
		set("tokenizer.ggml.add_eos_token", false)
		set("tokenizer.ggml.add_space_prefix", opt.Tokenizer.DummyPrefix)
	}
	var ts []ggufTensor
	vec := func(name string, x []float32) {
		if x != nil {
			ts = append(ts, ggufTensor{name, quant.F32, []int{len(x)}, f32Bytes(x)})
		}
	}
	mat := func(name string, x matrix) {
		ts = append(ts, ggufTensor{name, x.q.Type, []int{x.cols(), x.rows()}, x.q.Data})
	}
	mat("token_embd.weight", m.emb)
	vec("output_norm.weight", m.finalNorm)
	if !m.SharedClassifier {
		mat("output.weight", m.cls)
	}
	vec("output.bias", m.clsBias)
	vec("rope_freqs.weight", m.ropeFactors)
	for l := range m.layers {
		ly := &m.layers[l]
		p := "blk." + strconv.Itoa(l) + "."
		vec(p+"attn_norm.weight", ly.attNorm)
		mat(p+"attn_q.weight", ly.wq)
		mat(p+"attn_k.weight", ly.wk)
		mat(p+"attn_v.weight", ly.wv)
		mat(p+"attn_output.weight", ly.wo)
		vec(p+"attn_q.bias", ly.bq)
		vec(p+"attn_k.bias", ly.bk)
		vec(p+"attn_v.bias", ly.bv)
		vec(p+"attn_output.bias", ly.bo)
		vec(p+"attn_q_norm.weight", ly.qNorm)
		vec(p+"attn_k_norm.weight", ly.kNorm)
		vec(p+"ffn_norm.weight", ly.ffnNorm)
		mat(p+"ffn_gate.weight", ly.gate)
		mat(p+"ffn_up.weight", ly.up)
		mat(p+"ffn_down.weight", ly.down)
		vec(p+"ffn_gate.bias", ly.bGate)
		vec(p+"ffn_up.bias", ly.bUp)
		vec(p+"ffn_down.bias", ly.bDown)
	}
	// general.file_type (llama.cpp's llama_ftype) names the type of a file
	// whose matrices all share one; it is informative only.
	ftypes := map[quant.Type]uint32{quant.F32: 0, quant.F16: 1, quant.Q4_0: 2, quant.Q8_0: 7, quant.Q6_K: 18, quant.BF16: 32}
	typ, same := ts[0].typ, true // ts[0] is the token embedding
	for _, x := range ts {
		same = same && (len(x.dims) != 2 || x.typ == typ)
	}
	if ft, ok := ftypes[typ]; ok && same {
		kv = append(kv, ggufKV{"general.file_type", ft})
	}
	return kv, ts, nil
}

// GGUFVocab returns the tokenizer as GGUF's SentencePiece-style vocabulary:
// the pieces with spaces written as U+2581 (llama.cpp escapes spaces so
// before it looks pieces up), their scores, and their token types: <unk>
// unknown, BOS and EOS control (written "<s>" and "</s>"), the 256 byte
// pieces "<0xXX>" bytes, the rest normal. A vocabulary without a piece for
// a single space (a byte-level one) gets the space byte's piece written as
// U+2581, a normal piece: llama.cpp then maps a space to that token, as
// this package's byte fallback does.
func (t *Tokenizer) GGUFVocab() (tokens []string, scores []float32, types []int32) {
	tokens = make([]string, len(t.pieces))
	types = make([]int32, len(t.pieces))
	scores = append([]float32(nil), t.scores...)
	space := false
	for i, p := range t.pieces {
		switch {
		case i == Unk:
			tokens[i], types[i] = "<unk>", tokenUnknown
		case i == BOS:
			tokens[i], types[i] = "<s>", tokenControl
		case i == EOS:
			tokens[i], types[i] = "</s>", tokenControl
		case i >= ByteBase && i < ByteBase+256:
			tokens[i], types[i] = fmt.Sprintf("<0x%02X>", i-ByteBase), tokenByte
		default:
			tokens[i], types[i] = strings.ReplaceAll(p, " ", spaceMark), tokenNormal
			space = space || p == " "
		}
	}
	if !space {
		tokens[ByteBase+' '], types[ByteBase+' '] = spaceMark, tokenNormal
	}
	return tokens, scores, types
}
