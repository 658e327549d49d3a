package randmodel

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/compresskv/compresskv/examples/llama/gguf"
	"github.com/compresskv/compresskv/examples/llama/quant"
)

// ErrVocab is wrapped by the errors for a vocabulary file that is missing
// or lacks the tokenizer entries a model needs.
var ErrVocab = errors.New("randmodel: vocabulary")

// Tensor is one tensor of a model, with its data.
type Tensor struct {
	Name string
	Type quant.Type
	// Dims are ggml's ne: the contiguous dimension first.
	Dims []int
	Data []byte
}

// role says how a tensor's values are generated and which type it takes.
type role int

const (
	roleWeight role = iota
	roleEmbd
	roleOutput
	roleAttnV
	roleFFNDown
	roleNorm
	roleBias
	roleRopeFreqs
)

type tensorSpec struct {
	name  string
	dims  []int
	role  role
	layer int
}

// tensorSpecs lists a model's tensors in file order.
func tensorSpecs(f Family, nVocab int) []tensorSpec {
	E, H, G, D, F := f.NEmbd, f.NHead, f.NHeadKV, f.HeadDim, f.NFF
	ts := []tensorSpec{{name: "token_embd.weight", dims: []int{E, nVocab}, role: roleEmbd}}
	if f.Rope != nil {
		ts = append(ts, tensorSpec{name: "rope_freqs.weight", dims: []int{D / 2}, role: roleRopeFreqs})
	}
	for i := range f.NLayer {
		p := fmt.Sprintf("blk.%d.", i)
		add := func(name string, r role, dims ...int) {
			ts = append(ts, tensorSpec{name: p + name, dims: dims, role: r, layer: i})
		}
		add("attn_norm.weight", roleNorm, E)
		add("attn_q.weight", roleWeight, E, H*D)
		if f.QKVBias {
			add("attn_q.bias", roleBias, H*D)
		}
		add("attn_k.weight", roleWeight, E, G*D)
		if f.QKVBias {
			add("attn_k.bias", roleBias, G*D)
		}
		add("attn_v.weight", roleAttnV, E, G*D)
		if f.QKVBias {
			add("attn_v.bias", roleBias, G*D)
		}
		if f.QKNorm {
			add("attn_q_norm.weight", roleNorm, D)
			add("attn_k_norm.weight", roleNorm, D)
		}
		add("attn_output.weight", roleWeight, H*D, E)
		add("ffn_norm.weight", roleNorm, E)
		add("ffn_gate.weight", roleWeight, E, F)
		add("ffn_up.weight", roleWeight, E, F)
		add("ffn_down.weight", roleFFNDown, F, E)
	}
	ts = append(ts, tensorSpec{name: "output_norm.weight", dims: []int{E}, role: roleNorm})
	if !f.Tied {
		ts = append(ts, tensorSpec{name: "output.weight", dims: []int{E, nVocab}, role: roleOutput})
	}
	return ts
}

func useMoreBits(i, n int) bool { return i < n/8 || i >= 7*n/8 || (i-n/8)%3 == 2 }

// tensorType returns the ggml type of a tensor in a model of weight type wt.
// q4_k_m follows llama.cpp's Q4_K_M mixture: Q6_K for the output (or the tied
// embeddings) and for attn_v and ffn_down of the layers llama.cpp's
// use_more_bits picks, Q4_K elsewhere; where ne[0] is not a multiple of 256,
// Q6_K falls back to Q8_0 and Q4_K to Q5_0, as in llama.cpp.
func tensorType(f Family, t tensorSpec, wt string) quant.Type {
	switch t.role {
	case roleNorm, roleBias, roleRopeFreqs:
		return quant.F32
	}
	switch wt {
	case "f32":
		return quant.F32
	case "f16":
		return quant.F16
	case "bf16":
		return quant.BF16
	case "q8_0":
		return quant.Q8_0
	case "q4_0":
		return quant.Q4_0
	}
	q := quant.Q4_K
	switch {
	case t.role == roleOutput || (t.role == roleEmbd && f.Tied):
		q = quant.Q6_K
	case (t.role == roleAttnV || t.role == roleFFNDown) && useMoreBits(t.layer, f.NLayer):
		q = quant.Q6_K
	}
	if t.dims[0]%quant.QK_K != 0 {
		if q == quant.Q6_K {
			return quant.Q8_0
		}
		return quant.Q5_0
	}
	return q
}

// Tensors returns the tensors of model s for a vocabulary of nVocab tokens
// (the size of the token list in its tokenizer metadata), in file order,
// with their data generated. It needs no vocabulary file.
func (s Spec) Tensors(nVocab int) ([]Tensor, error) {
	f := s.Family
	if _, ok := fileType[s.Type]; !ok {
		return nil, fmt.Errorf("%w: type %q", ErrUnknownModel, s.Type)
	}
	var out []Tensor
	for _, ts := range tensorSpecs(f, nVocab) {
		t := tensorType(f, ts, s.Type)
		n := 1
		for _, d := range ts.dims {
			n *= d
		}
		size, err := t.RowBytes(n)
		if err != nil {
			return nil, fmt.Errorf("randmodel: %s: %w", ts.name, err)
		}
		data := make([]byte, size)
		seed := seedOf(f.Name, ts.name)
		switch {
		case ts.role == roleNorm:
			normWeights(data, seed)
		case ts.role == roleBias:
			biasWeights(data, seed)
		case ts.role == roleRopeFreqs:
			for i, v := range llama3RopeFactors(float64(f.RopeBase), f.HeadDim, *f.Rope) {
				putF32(data[4*i:], v)
			}
		case t == quant.F32 || t == quant.F16 || t == quant.BF16:
			floatWeights(data, seed, ts.dims[0], t)
		default:
			quantBlocks(data, seed, ts.dims[0], t)
		}
		out = append(out, Tensor{Name: ts.name, Type: t, Dims: slices.Clone(ts.dims), Data: data})
	}
	return out, nil
}

// Metadata returns model s's metadata entries in file order, the tokenizer
// entries read from the vocabulary files in vocabDir (see TokenizerKV).
func (s Spec) Metadata(vocabDir string) ([]gguf.KV, error) {
	if _, ok := fileType[s.Type]; !ok {
		return nil, fmt.Errorf("%w: type %q", ErrUnknownModel, s.Type)
	}
	f := s.Family
	a := f.Arch
	var kv []gguf.KV
	add := func(k string, x any) {
		v, err := gguf.ValueOf(x)
		if err != nil {
			panic(err) // the values below are all of valid Go types
		}
		kv = append(kv, gguf.KV{Key: k, Value: v})
	}
	add("general.architecture", a)
	add("general.name", "randmodel "+s.Name())
	add("general.file_type", fileType[s.Type])
	if s.Type[0] == 'q' {
		add("general.quantization_version", uint32(2))
	}
	add(a+".context_length", uint32(f.Ctx))
	add(a+".embedding_length", uint32(f.NEmbd))
	add(a+".block_count", uint32(f.NLayer))
	add(a+".feed_forward_length", uint32(f.NFF))
	add(a+".attention.head_count", uint32(f.NHead))
	add(a+".attention.head_count_kv", uint32(f.NHeadKV))
	add(a+".rope.freq_base", f.RopeBase)
	add(a+".attention.layer_norm_rms_epsilon", f.Eps)
	add(a+".rope.dimension_count", uint32(f.HeadDim))
	if f.HeadDim*f.NHead != f.NEmbd {
		add(a+".attention.key_length", uint32(f.HeadDim))
		add(a+".attention.value_length", uint32(f.HeadDim))
	}
	tok, err := TokenizerKV(vocabDir, f.Vocab, f.VocabSize)
	if err != nil {
		return nil, err
	}
	if a == "llama" {
		add(a+".vocab_size", uint32(vocabLen(tok)))
	}
	return append(kv, tok...), nil
}

// vocabLen returns the length of tokenizer.ggml.tokens in kv (0 if absent).
func vocabLen(kv []gguf.KV) int {
	for _, e := range kv {
		if e.Key == "tokenizer.ggml.tokens" {
			return e.Value.Len()
		}
	}
	return 0
}

// Build returns a gguf.Writer holding model s: its metadata (the tokenizer's
// from vocabDir) and its tensors. It holds the whole model in memory (the
// file's size).
func (s Spec) Build(vocabDir string) (*gguf.Writer, error) {
	kv, err := s.Metadata(vocabDir)
	if err != nil {
		return nil, err
	}
	ts, err := s.Tensors(vocabLen(kv))
	if err != nil {
		return nil, err
	}
	w := gguf.NewWriter()
	for _, e := range kv {
		if err := w.Set(e.Key, e.Value); err != nil {
			return nil, err
		}
	}
	for _, t := range ts {
		if err := w.AddTensor(t.Name, t.Type, t.Dims, t.Data); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// WriteTo writes model s as a GGUF file to out, the tokenizer metadata read
// from vocabDir; the bytes equal gen.py's file of the same name.
func (s Spec) WriteTo(out io.Writer, vocabDir string) (int64, error) {
	w, err := s.Build(vocabDir)
	if err != nil {
		return 0, err
	}
	return w.WriteTo(out)
}

// WriteFile writes the model called name into dir as <name>.gguf and
// returns its path. vocabDir holds the vocabulary files (see VocabDir).
func WriteFile(name, vocabDir, dir string) (string, error) {
	s, err := Lookup(name)
	if err != nil {
		return "", err
	}
	w, err := s.Build(vocabDir)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, name+".gguf")
	if err := w.WriteFile(path); err != nil {
		os.Remove(path)
		return "", err
	}
	return path, nil
}
