package llama

import (
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"

	"github.com/compresskv/compresskv/examples/llama/gguf"
	"github.com/compresskv/compresskv/examples/llama/quant"
	"github.com/compresskv/compresskv/examples/llama/vocab"
)

// TensorError reports a tensor of a GGUF model that is missing, has the
// wrong shape, a type the runner cannot compute with, or non-finite values.
// It wraps ErrFormat, or ErrUnsupported for a type package quant does not
// implement.
type TensorError struct {
	Name string // llama.cpp's tensor name, as "blk.3.attn_q.weight"
	Msg  string // what is wrong with it
	Err  error  // ErrFormat or ErrUnsupported, possibly wrapping the cause
}

func (e *TensorError) Error() string { return "llama: tensor " + e.Name + ": " + e.Msg }

// Unwrap returns the sentinel the error wraps.
func (e *TensorError) Unwrap() error { return e.Err }

// isGGUF reports whether the file at path starts with GGUF's magic.
func isGGUF(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [4]byte
	n, _ := f.Read(b[:])
	return n == 4 && string(b[:]) == gguf.Magic
}

// LoadGGUF opens a GGUF model file. Its weights stay in the file's memory
// mapping (read into memory where mapping is unavailable), not copied:
// loading costs the file's size in address space, and resident memory
// grows only as the weights are read. Close the model to release the file.
func LoadGGUF(path string) (*Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		if errors.Is(err, gguf.ErrFormat) {
			return nil, fmt.Errorf("llama: %s: %w: %w", path, ErrFormat, err)
		}
		return nil, fmt.Errorf("llama: %s: %w", path, err)
	}
	m, err := FromGGUF(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m.closer = f
	return m, nil
}

// OpenGGUF loads a GGUF model, as LoadGGUF does, and the tokenizer its
// metadata describes. Close the model to release the file.
func OpenGGUF(path string) (*Model, *vocab.Vocab, error) {
	m, err := LoadGGUF(path)
	if err != nil {
		return nil, nil, err
	}
	v, err := GGUFVocab(m.closer.(*gguf.File))
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("llama: %s: %w", path, err)
	}
	if v.Size() != m.Vocab {
		m.Close()
		return nil, nil, fmt.Errorf("llama: %s: a tokenizer of %d tokens for a model of %d: %w", path, v.Size(), m.Vocab, ErrFormat)
	}
	return m, v, nil
}

// GGUFVocab returns the tokenizer that the metadata of f describes
// (vocab.FromGGUF).
func GGUFVocab(f *gguf.File) (*vocab.Vocab, error) { return vocab.FromGGUF(f) }

// FromGGUF returns the model a parsed GGUF file holds: the llama, qwen2 or
// qwen3 architecture, hyperparameters from the metadata, tensors by
// llama.cpp's names. The model reads the file's memory: f must stay open as
// long as the model is used. Errors wrap ErrFormat (a missing key or
// tensor, a wrong shape: a *TensorError names the tensor) or
// ErrUnsupported (another architecture, an unimplemented weight type or
// rope scaling).
func FromGGUF(f *gguf.File) (*Model, error) {
	cfg, err := ggufConfig(f)
	if err != nil {
		return nil, err
	}
	ld := loader{f: f}
	d, qd, kv, hd, hs := cfg.Dim, cfg.QDim(), cfg.KVDim(), cfg.Hidden, cfg.HeadDim()
	m := &Model{Config: cfg}
	m.emb = ld.matrix("token_embd.weight", cfg.Vocab, d, true)
	m.finalNorm = ld.vector("output_norm.weight", d, true)
	m.cls = ld.matrix("output.weight", cfg.Vocab, d, false)
	if ld.err == nil && m.cls.rows() == 0 {
		m.cls, m.SharedClassifier = m.emb, true
	}
	m.clsBias = ld.vector("output.bias", cfg.Vocab, false)
	if cfg.arch() == ArchLlama {
		// llama.cpp's llama graph alone applies rope_freqs (Llama 3.1 and
		// 3.2's frequency scaling); the qwen graphs do not read it.
		m.ropeFactors = ld.vector("rope_freqs.weight", cfg.RotaryDims()/2, false)
		for i, v := range m.ropeFactors {
			if v <= 0 && ld.err == nil {
				ld.err = &TensorError{Name: "rope_freqs.weight", Msg: fmt.Sprintf("factor %d is %v, not positive", i, v), Err: ErrFormat}
			}
		}
	}
	qwen3 := cfg.arch() == ArchQwen3
	m.layers = make([]layer, cfg.Layers)
	for l := range m.layers {
		p := "blk." + strconv.Itoa(l) + "."
		if _, err := f.Tensor(p + "attn_qkv.weight"); err == nil {
			return nil, &TensorError{Name: p + "attn_qkv.weight", Msg: "fused Q, K and V projections are not implemented", Err: ErrUnsupported}
		}
		m.layers[l] = layer{
			attNorm: ld.vector(p+"attn_norm.weight", d, true),
			wq:      ld.matrix(p+"attn_q.weight", qd, d, true),
			wk:      ld.matrix(p+"attn_k.weight", kv, d, true),
			wv:      ld.matrix(p+"attn_v.weight", kv, d, true),
			wo:      ld.matrix(p+"attn_output.weight", d, qd, true),
			bq:      ld.vector(p+"attn_q.bias", qd, false),
			bk:      ld.vector(p+"attn_k.bias", kv, false),
			bv:      ld.vector(p+"attn_v.bias", kv, false),
			bo:      ld.vector(p+"attn_output.bias", d, false),
			ffnNorm: ld.vector(p+"ffn_norm.weight", d, true),
			gate:    ld.matrix(p+"ffn_gate.weight", hd, d, true),
			up:      ld.matrix(p+"ffn_up.weight", hd, d, true),
			down:    ld.matrix(p+"ffn_down.weight", d, hd, true),
			bGate:   ld.vector(p+"ffn_gate.bias", hd, false),
			bUp:     ld.vector(p+"ffn_up.bias", hd, false),
			bDown:   ld.vector(p+"ffn_down.bias", d, false),
		}
		if qwen3 {
			m.layers[l].qNorm = ld.vector(p+"attn_q_norm.weight", hs, true)
			m.layers[l].kNorm = ld.vector(p+"attn_k_norm.weight", hs, true)
		}
	}
	if ld.err != nil {
		return nil, ld.err
	}
	return m, nil
}

// ggufConfig reads the hyperparameters of f, as llama.cpp's
// llama_model::load_hparams reads them for the three architectures.
func ggufConfig(f *gguf.File) (Config, error) {
	arch, err := f.String("general.architecture")
	if err != nil {
		return Config{}, fmt.Errorf("llama: %w: %w", ErrFormat, err)
	}
	switch arch {
	case ArchLlama, ArchQwen2, ArchQwen3:
	default:
		return Config{}, fmt.Errorf("llama: architecture %q (the runner runs llama, qwen2 and qwen3): %w", arch, ErrUnsupported)
	}
	var firstErr error
	key := func(name string) string { return arch + "." + name }
	fail := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	// count reads a positive integer; perLayer also accepts an array with
	// one equal value per layer, as llama.cpp's get_key_or_arr does.
	count := func(name string, required bool, def int) int {
		v, ok := f.Value(key(name))
		if !ok {
			if required {
				fail(fmt.Errorf("llama: missing metadata key %s: %w", key(name), ErrFormat))
			}
			return def
		}
		if u, err := v.Uint(); err == nil {
			if u == 0 || u > 1<<24 {
				fail(fmt.Errorf("llama: %s is %d: %w", key(name), u, ErrFormat))
				return def
			}
			return int(u)
		}
		xs, err := v.Ints()
		if err != nil || len(xs) == 0 {
			fail(fmt.Errorf("llama: %s is %v, not a count: %w", key(name), v, ErrFormat))
			return def
		}
		for _, x := range xs[1:] {
			if x != xs[0] {
				fail(fmt.Errorf("llama: %s varies by layer (%v): %w", key(name), xs, ErrUnsupported))
				return def
			}
		}
		if xs[0] <= 0 || xs[0] > 1<<24 {
			fail(fmt.Errorf("llama: %s is %v: %w", key(name), xs, ErrFormat))
			return def
		}
		return xs[0]
	}
	number := func(name string, def float64) float32 {
		v, ok := f.Value(key(name))
		if !ok {
			return float32(def)
		}
		x, err := v.Float()
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
			fail(fmt.Errorf("llama: %s is %v, not a finite non-negative number: %w", key(name), v, ErrFormat))
			return float32(def)
		}
		return float32(x)
	}
	c := Config{Arch: arch, Rope: RopeNorm}
	if arch != ArchLlama {
		c.Rope = RopeNeox
	}
	c.Layers = count("block_count", true, 1)
	c.Dim = count("embedding_length", true, 1)
	c.Hidden = count("feed_forward_length", true, 1)
	c.Heads = count("attention.head_count", true, 1)
	c.KVHeads = count("attention.head_count_kv", false, c.Heads)
	c.SeqLen = count("context_length", true, 1)
	if v, ok := f.Value(key("expert_count")); ok {
		if n, err := v.Uint(); err != nil || n > 0 {
			fail(fmt.Errorf("llama: %s is %v: mixtures of experts are not implemented: %w", key("expert_count"), v, ErrUnsupported))
		}
	}
	if _, ok := f.Value(key("attention.layer_norm_rms_epsilon")); !ok {
		fail(fmt.Errorf("llama: missing metadata key %s: %w", key("attention.layer_norm_rms_epsilon"), ErrFormat))
	}
	c.NormEps = number("attention.layer_norm_rms_epsilon", 1e-5)
	if c.NormEps == 0 {
		c.NormEps = math.SmallestNonzeroFloat32 // zero means the default in Config
	}
	c.RopeBase = number("rope.freq_base", 10000)
	if c.Dim%c.Heads == 0 {
		c.HeadSize = c.Dim / c.Heads
	}
	c.HeadSize = count("attention.key_length", false, c.HeadSize)
	if c.HeadSize == 0 {
		fail(fmt.Errorf("llama: %d values of the residual stream over %d heads and no %s: %w", c.Dim, c.Heads, key("attention.key_length"), ErrFormat))
	}
	if vl := count("attention.value_length", false, c.HeadSize); vl != c.HeadSize {
		fail(fmt.Errorf("llama: value heads of %d and key heads of %d values: %w", vl, c.HeadSize, ErrUnsupported))
	}
	c.RopeDims = count("rope.dimension_count", false, c.HeadSize)
	scaling := "linear"
	if v, ok := f.Value(key("rope.scaling.type")); ok {
		if scaling, err = v.Str(); err != nil {
			fail(fmt.Errorf("llama: %s: %w: %w", key("rope.scaling.type"), ErrFormat, err))
		}
	}
	factor := number("rope.scaling.factor", 0)
	if _, ok := f.Value(key("rope.scaling.factor")); !ok {
		factor = number("rope.scale_linear", 0)
	}
	switch scaling {
	case "none":
	case "linear":
		if factor != 0 {
			c.RopeScale = 1 / factor
		}
	default:
		fail(fmt.Errorf("llama: rope scaling %q (the runner implements none and linear, and llama 3's rope_freqs): %w", scaling, ErrUnsupported))
	}
	emb, err := f.Tensor("token_embd.weight")
	if err != nil {
		fail(&TensorError{Name: "token_embd.weight", Msg: "missing", Err: ErrFormat})
	} else if len(emb.Dims) == 2 && emb.Dims[1] > 0 && emb.Dims[1] <= 1<<24 {
		c.Vocab = emb.Dims[1]
	} else {
		fail(&TensorError{Name: "token_embd.weight", Msg: fmt.Sprintf("dimensions %v, want [%d, vocabulary]", emb.Dims, c.Dim), Err: ErrFormat})
	}
	if firstErr != nil {
		return Config{}, firstErr
	}
	if c.HeadSize*c.Heads == c.Dim {
		c.HeadSize = 0 // the llama2.c convention, so Config values compare equal
	}
	if c.RopeDims == c.HeadDim() {
		c.RopeDims = 0
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// loader reads tensors, keeping the first error.
type loader struct {
	f   *gguf.File
	err error
}

func (ld *loader) tensor(name string, dims []int, required bool) (gguf.Tensor, bool) {
	if ld.err != nil {
		return gguf.Tensor{}, false
	}
	t, err := ld.f.Tensor(name)
	if err != nil {
		if required || !errors.Is(err, gguf.ErrNotFound) {
			ld.err = &TensorError{Name: name, Msg: err.Error(), Err: ErrFormat}
		}
		return gguf.Tensor{}, false
	}
	if !slices.Equal(t.Dims, dims) {
		ld.err = &TensorError{Name: name, Msg: fmt.Sprintf("dimensions %v, want %v", t.Dims, dims), Err: ErrFormat}
		return gguf.Tensor{}, false
	}
	return t, true
}

// vector returns a one-dimensional tensor of n values as float32 (norm
// weights, biases, rope factors: small, so converted once), or nil when an
// optional tensor is absent.
func (ld *loader) vector(name string, n int, required bool) []float32 {
	t, ok := ld.tensor(name, []int{n}, required)
	if !ok {
		return nil
	}
	out := make([]float32, n)
	if err := quant.Dequantize(t.Type, t.Data, out); err != nil {
		ld.err = &TensorError{Name: name, Msg: err.Error(), Err: typeErr(err)}
		return nil
	}
	if i := firstNonFinite(out); i >= 0 {
		ld.err = &TensorError{Name: name, Msg: fmt.Sprintf("value %d is %v", i, out[i]), Err: ErrFormat}
		return nil
	}
	return out
}

// matrix returns a weight of rows outputs by cols inputs (GGUF dimensions
// [cols, rows]) over the file's bytes, or the zero matrix when an optional
// tensor is absent.
func (ld *loader) matrix(name string, rows, cols int, required bool) matrix {
	t, ok := ld.tensor(name, []int{cols, rows}, required)
	if !ok {
		return matrix{}
	}
	w, err := newMatrix(t.Type, rows, cols, t.Data)
	if err != nil {
		ld.err = &TensorError{Name: name, Msg: err.Error(), Err: typeErr(err)}
	}
	return w
}

// typeErr returns ErrUnsupported for a weight type package quant does not
// compute with, ErrFormat otherwise.
func typeErr(err error) error {
	if errors.Is(err, quant.ErrUnsupported) {
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	return fmt.Errorf("%w: %w", ErrFormat, err)
}
