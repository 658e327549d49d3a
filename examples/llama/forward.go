package llama

import (
	"fmt"
	"math"
	"runtime"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/internal/par"
	"github.com/compresskv/compresskv/kvcache"
)

// Hooks let a caller observe, and for ablations change, what a forward pass
// computes. Either may be nil.
type Hooks struct {
	// Query sees each layer's post-RoPE queries of the tokens being run,
	// [n][Heads][HeadDim], for positions pos0..pos0+n-1, before attention;
	// it may modify them (zeroing a head's query masks it).
	Query func(layer, pos0 int, q []float32)
	// KV sees each layer's post-RoPE keys and values of the tokens being
	// run, [n][KVHeads][HeadDim], after they were appended to the cache and
	// before attention (a calibration keeps a second cache in step with it).
	KV func(layer, pos0 int, k, v []float32)
	// AttnOut sees each layer's attention block output after the output
	// projection and before the residual add, [n][Dim].
	AttnOut func(layer, pos0 int, out []float32)
}

// NewCache returns an empty host cache shaped for the model.
func (m *Model) NewCache(t kvcache.DType) (*kvcache.Host, error) {
	return kvcache.NewHost(m.CacheShape(), t)
}

// CacheShape returns the cache geometry the model needs.
func (m *Model) CacheShape() kvcache.Shape {
	return kvcache.Shape{Layers: m.Layers, KVHeads: m.KVHeads, HeadDim: m.HeadDim()}
}

// Session runs a model over one cache: one sequence. It is not safe for
// concurrent use; run several Sessions for several sequences.
type Session struct {
	m       *Model
	cache   kvcache.KVCache
	backend backend.Backend
	// Hooks observe each forward pass.
	Hooks Hooks
}

// NewSession returns a session over cache c (which must match the model's
// CacheShape and keep its rows in host memory for chunked prefill) with
// backend b for decode attention (nil: the CPU backend).
func (m *Model) NewSession(c kvcache.KVCache, b backend.Backend) (*Session, error) {
	if c.Shape() != m.CacheShape() {
		return nil, fmt.Errorf("llama: cache shape %+v, model needs %+v", c.Shape(), m.CacheShape())
	}
	if b == nil {
		b = cpu.New()
	}
	return &Session{m: m, cache: c, backend: b}, nil
}

// Cache returns the session's cache.
func (s *Session) Cache() kvcache.KVCache { return s.cache }

// Pos returns the position the next token gets: the tokens run so far,
// evicted ones included.
func (s *Session) Pos() int { return s.cache.Seen(0) }

// Forward runs tokens at positions Pos().. and returns the logits of the last
// one. Several tokens are a prefill chunk: each attends causally to the
// cache and to the chunk's earlier tokens. One token is a decode step, whose
// attention runs on the session's backend.
func (s *Session) Forward(tokens []int) ([]float32, error) {
	m := s.m
	n := len(tokens)
	if n == 0 {
		return nil, fmt.Errorf("llama: no tokens to run")
	}
	for i, t := range tokens {
		if t < 0 || t >= m.Vocab {
			return nil, fmt.Errorf("llama: token %d at %d is outside the vocabulary [0, %d)", t, i, m.Vocab)
		}
	}
	for l := 1; l < m.Layers; l++ {
		if s.cache.Seen(l) != s.cache.Seen(0) {
			return nil, fmt.Errorf("llama: cache layers have seen %d and %d tokens", s.cache.Seen(0), s.cache.Seen(l))
		}
	}
	d, kv := m.Dim, m.KVDim()
	pos0 := s.Pos()
	x := make([]float32, n*d)
	for i, t := range tokens {
		copy(x[i*d:(i+1)*d], m.emb[t*d:(t+1)*d])
	}
	xb := make([]float32, n*d)
	q := make([]float32, n*d)
	k := make([]float32, n*kv)
	v := make([]float32, n*kv)
	att := make([]float32, n*d)
	out := make([]float32, n*d)
	h1 := make([]float32, n*m.Hidden)
	h3 := make([]float32, n*m.Hidden)
	for l := range m.layers {
		ly := &m.layers[l]
		rmsnorm(xb, x, ly.attNorm, n)
		matmul(q, xb, ly.wq, n, d, d)
		matmul(k, xb, ly.wk, n, d, kv)
		matmul(v, xb, ly.wv, n, d, kv)
		for i := 0; i < n; i++ {
			m.rotate(q[i*d:(i+1)*d], pos0+i)
			m.rotate(k[i*kv:(i+1)*kv], pos0+i)
		}
		if s.Hooks.Query != nil {
			s.Hooks.Query(l, pos0, q)
		}
		if err := s.cache.Append(l, k, v); err != nil {
			return nil, fmt.Errorf("llama: layer %d: %w", l, err)
		}
		if err := s.attend(l, q, n, att); err != nil {
			return nil, fmt.Errorf("llama: layer %d: %w", l, err)
		}
		if s.Hooks.KV != nil {
			s.Hooks.KV(l, pos0, k, v)
		}
		matmul(out, att, ly.wo, n, d, d)
		if s.Hooks.AttnOut != nil {
			s.Hooks.AttnOut(l, pos0, out)
		}
		for i := range x {
			x[i] += out[i]
		}
		rmsnorm(xb, x, ly.ffnNorm, n)
		matmul(h1, xb, ly.w1, n, d, m.Hidden)
		matmul(h3, xb, ly.w3, n, d, m.Hidden)
		for i, a := range h1 {
			h1[i] = a / (1 + float32(math.Exp(float64(-a)))) * h3[i]
		}
		matmul(out, h1, ly.w2, n, m.Hidden, d)
		for i := range x {
			x[i] += out[i]
		}
	}
	last := x[(n-1)*d:]
	rmsnorm(last, last, m.finalNorm, 1)
	logits := make([]float32, m.Vocab)
	matmul(logits, last, m.cls, 1, d, m.Vocab)
	return logits, nil
}

// AttentionOutput returns one token's attention block output of layer over
// cache c (after the output projection): the quantity whose change under
// eviction the error-aware allocation measures. q is the token's post-RoPE
// query, [Heads][HeadDim].
func (s *Session) AttentionOutput(c kvcache.KVCache, layer int, q []float32) ([]float32, error) {
	m := s.m
	if layer < 0 || layer >= m.Layers {
		return nil, fmt.Errorf("llama: layer %d out of range", layer)
	}
	att := make([]float32, m.Dim)
	if err := s.backend.Attend(c, layer, q, m.Heads, att); err != nil {
		return nil, err
	}
	out := make([]float32, m.Dim)
	matmul(out, att, m.layers[layer].wo, 1, m.Dim, m.Dim)
	return out, nil
}

// rotate applies rotary position embedding at position pos to a vector of
// whole heads, rotating interleaved pairs (x[2j], x[2j+1]) as llama2.c does.
func (m *Model) rotate(x []float32, pos int) {
	hs := m.HeadDim()
	for i := 0; i < len(x); i += 2 {
		f := float64(pos) * float64(m.rope[(i%hs)/2])
		c, s := float32(math.Cos(f)), float32(math.Sin(f))
		a, b := x[i], x[i+1]
		x[i] = a*c - b*s
		x[i+1] = a*s + b*c
	}
}

// rmsnorm normalises each of n rows of x by its root mean square (eps 1e-5)
// and scales by w, into out (which may be x).
func rmsnorm(out, x, w []float32, n int) {
	d := len(w)
	for i := 0; i < n; i++ {
		row := x[i*d : (i+1)*d]
		var ss float32
		for _, v := range row {
			ss += v * v
		}
		ss = 1 / float32(math.Sqrt(float64(ss/float32(d)+1e-5)))
		o := out[i*d : (i+1)*d]
		for j, v := range row {
			o[j] = w[j] * (ss * v)
		}
	}
}

// matmul computes out[n][rows] = x[n][cols] . W^T for W stored [rows][cols],
// on the CPU backend's row-dot kernels (cpu.MatVec), splitting the rows of
// W over cores when the work is large (each output is one kernel call's, so
// the split changes no bit).
func matmul(out, x, w []float32, n, cols, rows int) {
	work := func(r0, r1 int) {
		for i := 0; i < n; i++ {
			if err := cpu.MatVec(out[i*rows+r0:i*rows+r1], x[i*cols:(i+1)*cols], w[r0*cols:r1*cols]); err != nil {
				panic(err) // the shapes are the model's own
			}
		}
	}
	workers := runtime.GOMAXPROCS(0)
	if n*cols*rows < 1<<16 || workers == 1 {
		work(0, rows)
		return
	}
	per := (rows + workers - 1) / workers
	par.For((rows+per-1)/per, func(i int) { work(i*per, min(rows, (i+1)*per)) })
}

// attend computes the attention of the n tokens just appended to layer l on
// the session's backend: token i of a prefill chunk attends to every earlier
// row and to the chunk's rows up to itself (causal attention), through a
// view of the cache without the chunk's later rows.
func (s *Session) attend(l int, q []float32, n int, att []float32) error {
	H, d := s.m.Heads, s.m.Dim
	if n == 1 {
		return s.backend.Attend(s.cache, l, q, H, att)
	}
	hr, ok := s.cache.(kvcache.HostReader)
	if !ok {
		return fmt.Errorf("chunked prefill needs a cache in host memory (%T is not a kvcache.HostReader); run one token at a time", s.cache)
	}
	for i := 0; i < n; i++ {
		if err := s.backend.Attend(prefixView{hr, n - 1 - i}, l, q[i*d:(i+1)*d], H, att[i*d:(i+1)*d]); err != nil {
			return err
		}
	}
	return nil
}

// prefixView is a host cache without the last drop rows of every head.
type prefixView struct {
	kvcache.HostReader
	drop int
}

// Len implements kvcache.KVCache.
func (p prefixView) Len(layer, g int) int { return p.HostReader.Len(layer, g) - p.drop }

// Positions implements kvcache.KVCache.
func (p prefixView) Positions(layer, g int, dst []int32) []int32 {
	all := p.HostReader.Positions(layer, g, nil)
	return append(dst, all[:len(all)-p.drop]...)
}

// Rows implements kvcache.HostReader.
func (p prefixView) Rows(layer, g int) (k, v kvcache.Rows) {
	k, v = p.HostReader.Rows(layer, g)
	return cut(k, k.N-p.drop), cut(v, v.N-p.drop)
}

func cut(r kvcache.Rows, n int) kvcache.Rows {
	r.N = n
	if r.F32 != nil {
		r.F32 = r.F32[:n*r.D]
	}
	if r.U16 != nil {
		r.U16 = r.U16[:n*r.D]
	}
	return r
}
