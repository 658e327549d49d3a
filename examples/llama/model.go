// Package llama is the project's model runner: a forward pass for the
// Llama family of decoder-only transformers (RMSNorm, rotary position
// embeddings, SwiGLU, grouped-query attention) that keeps its keys and
// values in a kvcache.KVCache, so every compression policy runs under it.
//
// It runs the llama (Llama 2 and 3, Mistral, SmolLM2, TinyLlama, llama2.c
// checkpoints), qwen2 (biases on Q, K and V) and qwen3 (per-head norms of Q
// and K) graphs. Its numerics follow llama.cpp's CPU backend
// (docs/DESIGN.md, "The runner"): RMS norm and RoPE are computed in the
// same order and precision, so logits agree with llama.cpp's.
//
// It runs tokens one at a time or in prefill chunks, and exposes each
// layer's post-RoPE queries and the attention block's output (after the
// output projection, before the residual add) through Hooks, which is what
// calibration observes and measures.
//
// It is importable on purpose: it is the model runner a program embeds to
// put a real model under the library's policies (Model.NewSession over a
// kvcache.KVCache, Session.Prefill, Session.Compress with any
// compresskv.Policy, Session.Forward to decode), and it implements
// calibrate.Model (Calibration) so that calibrate.Profile can make a
// model's profile. Its API follows the library's; it lives under examples/
// because the library's packages hold no model code.
package llama

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// Architectures the runner knows, named as GGUF's general.architecture
// names them.
const (
	ArchLlama = "llama" // Llama 2/3/3.1/3.2, Mistral, SmolLM2, TinyLlama; llama2.c checkpoints
	ArchQwen2 = "qwen2" // biases on Q, K and V
	ArchQwen3 = "qwen3" // RMS norm of each head's Q and K
)

// RopeStyle says which values of a head rotary embeddings rotate together.
type RopeStyle uint8

const (
	// RopeNorm rotates adjacent pairs (x[2i], x[2i+1]): llama.cpp's
	// LLAMA_ROPE_TYPE_NORM, used by the llama architecture and llama2.c.
	RopeNorm RopeStyle = iota
	// RopeNeox rotates the first half of the rotated dimensions against the
	// second (x[i], x[i+n/2]): LLAMA_ROPE_TYPE_NEOX, used by qwen2 and qwen3.
	RopeNeox
)

// String returns "norm" or "neox".
func (r RopeStyle) String() string {
	if r == RopeNeox {
		return "neox"
	}
	return "norm"
}

// Config is the shape of a model and the constants of its forward pass.
// The zero values of the fields after SharedClassifier mean llama2.c's
// conventions, so a Config written for a llama2.c checkpoint stays valid.
type Config struct {
	Dim     int // width of the residual stream
	Hidden  int // width of the SwiGLU feed-forward layer
	Layers  int // transformer layers
	Heads   int // query heads per layer
	KVHeads int // key/value heads per layer
	Vocab   int // vocabulary size
	SeqLen  int // longest context the model was trained for
	// SharedClassifier is true when the output projection is the token
	// embedding (tied weights).
	SharedClassifier bool

	// Arch is the architecture ("" means ArchLlama).
	Arch string
	// HeadSize is the width of each query, key and value head (GGUF's
	// attention.key_length); 0 means Dim/Heads.
	HeadSize int
	// RopeDims is the number of leading values of each head that rotary
	// embeddings rotate (rope.dimension_count); 0 means all of them.
	RopeDims int
	// Rope is the rotation layout: RopeNorm for llama, RopeNeox for qwen.
	Rope RopeStyle
	// RopeBase is the rotary frequency base (rope.freq_base); 0 means 10000.
	RopeBase float32
	// RopeScale multiplies every rotation angle (1/rope.scaling.factor of
	// linear scaling); 0 means 1.
	RopeScale float32
	// NormEps is the epsilon of every RMS norm
	// (attention.layer_norm_rms_epsilon); 0 means 1e-5.
	NormEps float32
}

// HeadDim returns the values per attention head.
func (c Config) HeadDim() int {
	if c.HeadSize > 0 {
		return c.HeadSize
	}
	return c.Dim / c.Heads
}

// KVDim returns the width of a layer's keys (and values): KVHeads*HeadDim.
func (c Config) KVDim() int { return c.KVHeads * c.HeadDim() }

// QDim returns the width of a layer's queries and of the attention output
// before the output projection: Heads*HeadDim (Dim unless HeadSize says
// otherwise, as in Qwen3).
func (c Config) QDim() int { return c.Heads * c.HeadDim() }

// RotaryDims returns the number of values of each head that RoPE rotates.
func (c Config) RotaryDims() int {
	if c.RopeDims > 0 {
		return c.RopeDims
	}
	return c.HeadDim()
}

func (c Config) arch() string {
	if c.Arch == "" {
		return ArchLlama
	}
	return c.Arch
}

func (c Config) eps() float32 {
	if c.NormEps == 0 {
		return 1e-5
	}
	return c.NormEps
}

func (c Config) ropeBase() float32 {
	if c.RopeBase == 0 {
		return 10000
	}
	return c.RopeBase
}

func (c Config) ropeScale() float32 {
	if c.RopeScale == 0 {
		return 1
	}
	return c.RopeScale
}

// maxParams bounds the size a llama2.c header may announce (1 GiB of float32).
const maxParams = 1 << 28

// Validate returns an error wrapping ErrFormat if the shape is not a
// consistent model.
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("llama: "+format+": %w", append(a, ErrFormat)...)
	}
	if c.Dim <= 0 || c.Hidden <= 0 || c.Layers <= 0 || c.Heads <= 0 || c.KVHeads <= 0 || c.Vocab <= 0 || c.SeqLen <= 0 {
		return bad("invalid shape %+v: every dimension must be positive", c)
	}
	for _, x := range []int{c.Dim, c.Hidden, c.Layers, c.Heads, c.KVHeads, c.Vocab, c.HeadSize, c.RopeDims} {
		if x > 1<<24 {
			return bad("invalid shape %+v: a dimension beyond %d", c, 1<<24)
		}
	}
	switch c.arch() {
	case ArchLlama, ArchQwen2, ArchQwen3:
	default:
		return fmt.Errorf("llama: architecture %q: %w", c.Arch, ErrUnsupported)
	}
	if c.HeadSize < 0 || c.RopeDims < 0 {
		return bad("negative head size %d or rotary dimensions %d", c.HeadSize, c.RopeDims)
	}
	if c.HeadSize == 0 && c.Dim%c.Heads != 0 {
		return bad("dim %d is not a multiple of %d heads", c.Dim, c.Heads)
	}
	if c.Heads%c.KVHeads != 0 {
		return bad("%d query heads is not a multiple of %d KV heads", c.Heads, c.KVHeads)
	}
	if r := c.RotaryDims(); r%2 != 0 || r > c.HeadDim() {
		return bad("%d rotary dimensions for heads of %d values: odd, or beyond the head (rotary embeddings rotate pairs within a head)", r, c.HeadDim())
	}
	if c.Rope > RopeNeox {
		return bad("unknown rotary layout %d", c.Rope)
	}
	for _, f := range []float32{c.RopeBase, c.RopeScale, c.NormEps} {
		if f < 0 || math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return bad("rope base %v, rope scale %v and norm epsilon %v must be finite and not negative", c.RopeBase, c.RopeScale, c.NormEps)
		}
	}
	return nil
}

// params returns the number of float32 values a llama2.c checkpoint holds
// after its header, or -1 on overflow.
func (c Config) params() int64 {
	d, h, l, kv := int64(c.Dim), int64(c.Hidden), int64(c.Layers), int64(c.KVDim())
	for _, x := range []int64{d, h, l, kv, int64(c.Vocab), int64(c.SeqLen)} {
		if x > 1<<24 {
			return -1
		}
	}
	n := int64(c.Vocab)*d + // token embedding
		l*d + l*d*d + 2*l*d*kv + l*d*d + // attention norm, wq, wk, wv, wo
		l*d + 3*l*h*d + // ffn norm, w1, w2, w3
		d + // final norm
		int64(c.SeqLen)*int64(c.HeadDim()) // legacy rotary tables (cos and sin halves)
	if !c.SharedClassifier {
		n += int64(c.Vocab) * d
	}
	return n
}

// layer holds one transformer block's weights. Matrices are [out][in]; the
// biases and the per-head norms are nil where the model has none.
type layer struct {
	attNorm, ffnNorm  []float32
	wq, wk, wv, wo    matrix
	bq, bk, bv, bo    []float32 // qwen2 has bq, bk and bv
	qNorm, kNorm      []float32 // qwen3: [HeadDim]
	gate, down, up    matrix    // w1, w2, w3 of llama2.c
	bGate, bDown, bUp []float32
}

// Model is a loaded model. It is immutable and safe for concurrent use by
// several Sessions. A model loaded from a file with LoadGGUF reads its
// weights from the file's memory mapping: Close releases it.
type Model struct {
	Config
	emb       matrix // [Vocab][Dim]
	layers    []layer
	finalNorm []float32
	cls       matrix    // [Vocab][Dim]; emb when SharedClassifier
	clsBias   []float32 // nil unless the file has output.bias
	// ropeFactors divides the angle of each rotated pair (llama 3.1/3.2's
	// rope_freqs.weight); nil when the model has none.
	ropeFactors []float32
	closer      io.Closer
}

// Close releases the file a model was loaded from (a no-op for models read
// into memory). The model must not be used afterwards.
func (m *Model) Close() error {
	if m.closer == nil {
		return nil
	}
	c := m.closer
	m.closer = nil
	return c.Close()
}

var (
	// ErrFormat is wrapped by every error about a malformed model or
	// tokenizer: a wrong size or shape, a missing tensor or key, a
	// non-finite weight.
	ErrFormat = errors.New("malformed model file")
	// ErrUnsupported is wrapped by the errors for a well-formed model this
	// runner cannot run: another architecture, a weight type package quant
	// does not compute with, a rope scaling it does not implement.
	ErrUnsupported = errors.New("unsupported model")
	// ErrNonFinite is wrapped by the errors of a forward pass that produced
	// NaN or infinite values (from weights that overflow, say).
	ErrNonFinite = errors.New("non-finite activation")
)

const headerBytes = 7 * 4

// Load reads a model from a file: a GGUF file (recognised by its magic;
// then the same as LoadGGUF, and the caller should Close the model) or a
// llama2.c checkpoint.
func Load(path string) (*Model, error) {
	if isGGUF(path) {
		return LoadGGUF(path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Parse decodes a llama2.c checkpoint: seven int32 header fields (dim,
// hidden dim, layers, heads, KV heads, vocabulary size — negative when the
// classifier is stored separately — and sequence length), then float32
// weights in the llama2.c order. The size must match the header exactly.
// The model's weights alias data, which must not change afterwards.
func Parse(data []byte) (*Model, error) {
	if len(data) < headerBytes {
		return nil, fmt.Errorf("llama: %d bytes, shorter than the %d-byte header: %w", len(data), headerBytes, ErrFormat)
	}
	var h [7]int32
	for i := range h {
		h[i] = int32(binary.LittleEndian.Uint32(data[4*i:]))
	}
	cfg := Config{Dim: int(h[0]), Hidden: int(h[1]), Layers: int(h[2]), Heads: int(h[3]), KVHeads: int(h[4]),
		Vocab: int(h[5]), SeqLen: int(h[6]), SharedClassifier: h[5] > 0,
		Arch: ArchLlama, RopeBase: 10000, NormEps: 1e-5}
	if cfg.Vocab < 0 {
		cfg.Vocab = -cfg.Vocab
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := cfg.params()
	if n <= 0 || n > maxParams {
		return nil, fmt.Errorf("llama: shape %+v announces %d parameters, beyond the %d this runner accepts: %w", cfg, n, maxParams, ErrFormat)
	}
	if want := int64(headerBytes) + 4*n; int64(len(data)) != want {
		return nil, fmt.Errorf("llama: %d bytes, the header %+v announces %d (truncated or inconsistent): %w", len(data), cfg, want, ErrFormat)
	}
	if i := firstNonFiniteF32(data[headerBytes:]); i >= 0 {
		v := math.Float32frombits(binary.LittleEndian.Uint32(data[headerBytes+4*i:]))
		return nil, fmt.Errorf("llama: weight %d is %v: %w", i, v, ErrFormat)
	}
	body := data[headerBytes:]
	take := func(n int) []byte {
		b := body[:4*n]
		body = body[4*n:]
		return b
	}
	vec := func(n int) []float32 { return f32s(take(n)) }
	mat := func(rows, cols int) matrix { return f32Matrix(rows, cols, take(rows*cols)) }
	d, hd, L, kv := cfg.Dim, cfg.Hidden, cfg.Layers, cfg.KVDim()
	m := &Model{Config: cfg}
	m.emb = mat(cfg.Vocab, d)
	m.layers = make([]layer, L)
	// llama2.c stores each kind of weight for all layers together.
	for l := range m.layers {
		m.layers[l].attNorm = vec(d)
	}
	for l := range m.layers {
		m.layers[l].wq = mat(d, d)
	}
	for l := range m.layers {
		m.layers[l].wk = mat(kv, d)
	}
	for l := range m.layers {
		m.layers[l].wv = mat(kv, d)
	}
	for l := range m.layers {
		m.layers[l].wo = mat(d, d)
	}
	for l := range m.layers {
		m.layers[l].ffnNorm = vec(d)
	}
	for l := range m.layers {
		m.layers[l].gate = mat(hd, d)
	}
	for l := range m.layers {
		m.layers[l].down = mat(d, hd)
	}
	for l := range m.layers {
		m.layers[l].up = mat(hd, d)
	}
	m.finalNorm = vec(d)
	take(cfg.SeqLen * cfg.HeadDim()) // legacy rotary tables, recomputed as RoPE runs
	if cfg.SharedClassifier {
		m.cls = m.emb
	} else {
		m.cls = mat(cfg.Vocab, d)
	}
	return m, nil
}

// WriteTo writes the model in the llama2.c format Parse reads. Only models
// of llama2.c's shape can be written: the llama architecture without
// biases or per-head norms, heads of Dim/Heads values, every value rotated,
// base 10000, epsilon 1e-5; others get an error wrapping ErrUnsupported.
func (m *Model) WriteTo(w io.Writer) (int64, error) {
	if err := m.llama2cShape(); err != nil {
		return 0, err
	}
	vocab := int32(m.Vocab)
	if !m.SharedClassifier {
		vocab = -vocab
	}
	var buf []byte
	for _, x := range []int32{int32(m.Dim), int32(m.Hidden), int32(m.Layers), int32(m.Heads), int32(m.KVHeads), vocab, int32(m.SeqLen)} {
		buf = binary.LittleEndian.AppendUint32(buf, uint32(x))
	}
	putVec := func(x []float32) {
		for _, v := range x {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
		}
	}
	row := make([]float32, 0)
	putMat := func(x matrix) {
		for r := 0; r < x.rows(); r++ {
			row = x.row(r, row)
			putVec(row)
		}
	}
	putMat(m.emb)
	for l := range m.layers {
		putVec(m.layers[l].attNorm)
	}
	for _, get := range []func(*layer) matrix{
		func(l *layer) matrix { return l.wq }, func(l *layer) matrix { return l.wk },
		func(l *layer) matrix { return l.wv }, func(l *layer) matrix { return l.wo },
	} {
		for l := range m.layers {
			putMat(get(&m.layers[l]))
		}
	}
	for l := range m.layers {
		putVec(m.layers[l].ffnNorm)
	}
	for _, get := range []func(*layer) matrix{
		func(l *layer) matrix { return l.gate }, func(l *layer) matrix { return l.down }, func(l *layer) matrix { return l.up },
	} {
		for l := range m.layers {
			putMat(get(&m.layers[l]))
		}
	}
	putVec(m.finalNorm)
	putVec(make([]float32, m.SeqLen*m.HeadDim()))
	if !m.SharedClassifier {
		putMat(m.cls)
	}
	n, err := w.Write(buf)
	return int64(n), err
}

// llama2cShape returns nil if the model can be written as a llama2.c
// checkpoint.
func (m *Model) llama2cShape() error {
	c := m.Config
	ok := c.arch() == ArchLlama && c.HeadDim()*c.Heads == c.Dim && c.RotaryDims() == c.HeadDim() &&
		c.Rope == RopeNorm && c.ropeBase() == 10000 && c.ropeScale() == 1 && c.eps() == 1e-5 && m.ropeFactors == nil && m.clsBias == nil
	for l := range m.layers {
		ly := &m.layers[l]
		ok = ok && ly.bq == nil && ly.bk == nil && ly.bv == nil && ly.bo == nil && ly.qNorm == nil && ly.kNorm == nil &&
			ly.bGate == nil && ly.bDown == nil && ly.bUp == nil
	}
	if !ok {
		return fmt.Errorf("llama: a %s model with %+v has no llama2.c form: %w", c.arch(), c, ErrUnsupported)
	}
	return nil
}

// firstNonFiniteF32 returns the index of the first little-endian float32 of
// b that is NaN or infinite, or -1.
func firstNonFiniteF32(b []byte) int {
	for i := 0; i+4 <= len(b); i += 4 {
		if binary.LittleEndian.Uint32(b[i:])&0x7f800000 == 0x7f800000 {
			return i / 4
		}
	}
	return -1
}

// The project's own retrieval model and its profile, relative to the
// repository root (where `go run ./examples/...` runs).
const (
	DefaultModel   = "testdata/retrieval.bin"
	DefaultProfile = "testdata/retrieval.profile.json"
)

// DefaultKernel is the pooling kernel the examples use with the project's
// byte-level model. The library's default (5, the reference's) is sized for
// subword tokens; here a five-digit answer and its period are six tokens, and
// the question's window attends to the answer's first digit, so a kernel of
// 9 (four positions each side) is the smallest that scores the whole answer
// from there. Every pooling policy (SnapKV, PyramidKV, Ada-KV, CompressKV)
// gets the same kernel.
const DefaultKernel = 9
