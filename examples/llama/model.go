// Package llama is a small reference runner for Llama-architecture models
// (RMSNorm, rotary position embeddings, SwiGLU, grouped-query attention),
// written to put a real model in the loop of the library's examples and
// tests. It reads the llama2.c checkpoint and tokenizer formats and keeps its
// keys and values in a kvcache.KVCache, so every compression policy can run
// under it.
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
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// Config is the shape of a model, as the llama2.c header gives it.
type Config struct {
	Dim     int // width of the residual stream
	Hidden  int // width of the SwiGLU feed-forward layer
	Layers  int // transformer layers
	Heads   int // query heads per layer
	KVHeads int // key/value heads per layer
	Vocab   int // vocabulary size
	SeqLen  int // longest context the model was trained for
	// SharedClassifier is true when the output projection is the token
	// embedding (a positive vocabulary size in the header).
	SharedClassifier bool
}

// HeadDim returns the values per attention head.
func (c Config) HeadDim() int { return c.Dim / c.Heads }

// KVDim returns the width of a layer's keys (and values): KVHeads*HeadDim.
func (c Config) KVDim() int { return c.KVHeads * c.HeadDim() }

// maxParams bounds the size a header may announce (1 GiB of float32).
const maxParams = 1 << 28

// Validate returns an error if the shape is not a consistent Llama model.
func (c Config) Validate() error {
	if c.Dim <= 0 || c.Hidden <= 0 || c.Layers <= 0 || c.Heads <= 0 || c.KVHeads <= 0 || c.Vocab <= 0 || c.SeqLen <= 0 {
		return fmt.Errorf("llama: invalid shape %+v: every dimension must be positive", c)
	}
	if c.Dim%c.Heads != 0 {
		return fmt.Errorf("llama: dim %d is not a multiple of %d heads", c.Dim, c.Heads)
	}
	if c.Heads%c.KVHeads != 0 {
		return fmt.Errorf("llama: %d query heads is not a multiple of %d KV heads", c.Heads, c.KVHeads)
	}
	if c.HeadDim()%2 != 0 {
		return fmt.Errorf("llama: head dimension %d is odd; rotary embeddings rotate pairs", c.HeadDim())
	}
	if n := c.params(); n <= 0 || n > maxParams {
		return fmt.Errorf("llama: shape %+v announces %d parameters, beyond the %d this runner accepts", c, n, maxParams)
	}
	return nil
}

// params returns the number of float32 values the checkpoint holds after its
// header, or -1 on overflow.
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

// layer holds one transformer block's weights; matrices are [out][in].
type layer struct {
	attNorm, wq, wk, wv, wo []float32
	ffnNorm, w1, w2, w3     []float32
}

// Model is a loaded Llama model. It is immutable and safe for concurrent
// use by several Sessions.
type Model struct {
	Config
	emb       []float32 // [Vocab][Dim]
	layers    []layer
	finalNorm []float32
	cls       []float32 // [Vocab][Dim]
	rope      []float32 // per pair j of a head: the inverse frequency
}

// ErrFormat is wrapped by every error about a malformed checkpoint or
// tokenizer file.
var ErrFormat = errors.New("malformed model file")

const headerBytes = 7 * 4

// Load reads a llama2.c checkpoint from a file.
func Load(path string) (*Model, error) {
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
func Parse(data []byte) (*Model, error) {
	if len(data) < headerBytes {
		return nil, fmt.Errorf("llama: %d bytes, shorter than the %d-byte header: %w", len(data), headerBytes, ErrFormat)
	}
	var h [7]int32
	if err := binary.Read(bytes.NewReader(data[:headerBytes]), binary.LittleEndian, &h); err != nil {
		return nil, fmt.Errorf("llama: header: %v: %w", err, ErrFormat)
	}
	cfg := Config{Dim: int(h[0]), Hidden: int(h[1]), Layers: int(h[2]), Heads: int(h[3]), KVHeads: int(h[4]),
		Vocab: int(h[5]), SeqLen: int(h[6]), SharedClassifier: h[5] > 0}
	if cfg.Vocab < 0 {
		cfg.Vocab = -cfg.Vocab
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", err, ErrFormat)
	}
	want := int64(headerBytes) + 4*cfg.params()
	if int64(len(data)) != want {
		return nil, fmt.Errorf("llama: %d bytes, the header %+v announces %d (truncated or inconsistent): %w", len(data), cfg, want, ErrFormat)
	}
	body := data[headerBytes:]
	next := func(n int) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(body[4*i:]))
		}
		body = body[4*n:]
		return out
	}
	d, hd, L, kv := cfg.Dim, cfg.Hidden, cfg.Layers, cfg.KVDim()
	m := &Model{Config: cfg}
	m.emb = next(cfg.Vocab * d)
	m.layers = make([]layer, L)
	// llama2.c stores each kind of weight for all layers together.
	for l := range m.layers {
		m.layers[l].attNorm = next(d)
	}
	for l := range m.layers {
		m.layers[l].wq = next(d * d)
	}
	for l := range m.layers {
		m.layers[l].wk = next(kv * d)
	}
	for l := range m.layers {
		m.layers[l].wv = next(kv * d)
	}
	for l := range m.layers {
		m.layers[l].wo = next(d * d)
	}
	for l := range m.layers {
		m.layers[l].ffnNorm = next(d)
	}
	for l := range m.layers {
		m.layers[l].w1 = next(hd * d)
	}
	for l := range m.layers {
		m.layers[l].w2 = next(d * hd)
	}
	for l := range m.layers {
		m.layers[l].w3 = next(hd * d)
	}
	m.finalNorm = next(d)
	next(cfg.SeqLen * cfg.HeadDim()) // legacy rotary tables, recomputed below
	if cfg.SharedClassifier {
		m.cls = m.emb
	} else {
		m.cls = next(cfg.Vocab * d)
	}
	for _, w := range [][]float32{m.emb, m.finalNorm, m.cls} {
		if i := firstNonFinite(w); i >= 0 {
			return nil, fmt.Errorf("llama: weight %d is %v: %w", i, w[i], ErrFormat)
		}
	}
	for l := range m.layers {
		ly := &m.layers[l]
		for _, w := range [][]float32{ly.attNorm, ly.wq, ly.wk, ly.wv, ly.wo, ly.ffnNorm, ly.w1, ly.w2, ly.w3} {
			if i := firstNonFinite(w); i >= 0 {
				return nil, fmt.Errorf("llama: layer %d: weight %d is %v: %w", l, i, w[i], ErrFormat)
			}
		}
	}
	hs := cfg.HeadDim()
	m.rope = make([]float32, hs/2)
	for j := range m.rope {
		m.rope[j] = float32(1 / math.Pow(10000, float64(2*j)/float64(hs)))
	}
	return m, nil
}

// WriteTo writes the model in the llama2.c format Parse reads.
func (m *Model) WriteTo(w io.Writer) (int64, error) {
	vocab := int32(m.Vocab)
	if !m.SharedClassifier {
		vocab = -vocab
	}
	var buf bytes.Buffer
	hdr := []int32{int32(m.Dim), int32(m.Hidden), int32(m.Layers), int32(m.Heads), int32(m.KVHeads), vocab, int32(m.SeqLen)}
	if err := binary.Write(&buf, binary.LittleEndian, hdr); err != nil {
		return 0, err
	}
	put := func(x []float32) { _ = binary.Write(&buf, binary.LittleEndian, x) }
	put(m.emb)
	for _, get := range []func(*layer) []float32{
		func(l *layer) []float32 { return l.attNorm }, func(l *layer) []float32 { return l.wq },
		func(l *layer) []float32 { return l.wk }, func(l *layer) []float32 { return l.wv },
		func(l *layer) []float32 { return l.wo }, func(l *layer) []float32 { return l.ffnNorm },
		func(l *layer) []float32 { return l.w1 }, func(l *layer) []float32 { return l.w2 },
		func(l *layer) []float32 { return l.w3 },
	} {
		for l := range m.layers {
			put(get(&m.layers[l]))
		}
	}
	put(m.finalNorm)
	put(make([]float32, m.SeqLen*m.HeadDim()))
	if !m.SharedClassifier {
		put(m.cls)
	}
	return buf.WriteTo(w)
}

func firstNonFinite(x []float32) int {
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return i
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
