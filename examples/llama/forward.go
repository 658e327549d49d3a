package llama

import (
	"fmt"
	"math"

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
	// LikeLlamaCpp computes as llama.cpp's x86 CPU backend does, to the
	// bit where the runner can: attention without flash attention, with
	// the queries and the attention probabilities rounded to the cache's
	// type (float16 for llama.cpp's default cache) before their products
	// with the stored keys and values, in plain Go on the calling
	// goroutine (the cache must be in host memory); and float32 weight
	// products summed in tinyBLAS's order. Off (the default), attention
	// runs on the session's backend in float32 and float32 products in
	// four running sums: faster (assembly, or the GPU), and as close to
	// llama.cpp as docs/RESULTS.md records ("The runner against
	// llama.cpp").
	LikeLlamaCpp bool
	scratch      attnScratch
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
// cache and to the chunk's earlier tokens, and every weight multiplies the
// whole chunk at once. One token is a decode step, whose attention runs on
// the session's backend.
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
	d, qd, kv, nd, eps := m.Dim, m.QDim(), m.KVDim(), m.RotaryDims(), m.eps()
	pos0 := s.Pos()
	x := make([]float32, n*d)
	for i, t := range tokens {
		m.emb.row(t, x[i*d:(i+1)*d])
	}
	cs := make([]float32, n*nd)
	for i := range n {
		m.ropeAngles(pos0+i, cs[i*nd:(i+1)*nd])
	}
	xb := make([]float32, n*d)
	q := make([]float32, n*qd)
	k := make([]float32, n*kv)
	v := make([]float32, n*kv)
	att := make([]float32, n*qd)
	out := make([]float32, n*d)
	h1 := make([]float32, n*m.Hidden)
	h3 := make([]float32, n*m.Hidden)
	for l := range m.layers {
		ly := &m.layers[l]
		rmsnorm(xb, x, ly.attNorm, n, eps)
		ly.wq.mulMat(q, xb, n, s.LikeLlamaCpp)
		addBias(q, ly.bq)
		ly.wk.mulMat(k, xb, n, s.LikeLlamaCpp)
		addBias(k, ly.bk)
		ly.wv.mulMat(v, xb, n, s.LikeLlamaCpp)
		addBias(v, ly.bv)
		if ly.qNorm != nil {
			rmsnorm(q, q, ly.qNorm, n*m.Heads, eps)
			rmsnorm(k, k, ly.kNorm, n*m.KVHeads, eps)
		}
		for i := 0; i < n; i++ {
			m.rotate(q[i*qd:(i+1)*qd], cs[i*nd:(i+1)*nd])
			m.rotate(k[i*kv:(i+1)*kv], cs[i*nd:(i+1)*nd])
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
		ly.wo.mulMat(out, att, n, s.LikeLlamaCpp)
		addBias(out, ly.bo)
		if s.Hooks.AttnOut != nil {
			s.Hooks.AttnOut(l, pos0, out)
		}
		for i := range x {
			x[i] += out[i]
		}
		rmsnorm(xb, x, ly.ffnNorm, n, eps)
		ly.gate.mulMat(h1, xb, n, s.LikeLlamaCpp)
		addBias(h1, ly.bGate)
		ly.up.mulMat(h3, xb, n, s.LikeLlamaCpp)
		addBias(h3, ly.bUp)
		// Row by row, so the split over cores changes no bit; a chunk of
		// prompt tokens has enough rows to be worth it (SwiGLU's exponential
		// took 12% of a 512-token prefill's processor time on one core).
		if n >= 8 {
			per := (n + 7) / 8
			par.For((n+per-1)/per, func(i int) {
				r0, r1 := i*per*m.Hidden, min(n, (i+1)*per)*m.Hidden
				swiglu(h1[r0:r1], h3[r0:r1], m.Hidden)
			})
		} else {
			swiglu(h1, h3, m.Hidden)
		}
		ly.down.mulMat(out, h1, n, s.LikeLlamaCpp)
		addBias(out, ly.bDown)
		for i := range x {
			x[i] += out[i]
		}
	}
	last := x[(n-1)*d:]
	rmsnorm(last, last, m.finalNorm, 1, eps)
	logits := make([]float32, m.Vocab)
	m.cls.mulMat(logits, last, 1, s.LikeLlamaCpp)
	addBias(logits, m.clsBias)
	if i := firstNonFinite(logits); i >= 0 {
		return nil, fmt.Errorf("llama: logit %d is %v: %w", i, logits[i], ErrNonFinite)
	}
	return logits, nil
}

// AttentionOutput returns one token's attention block output of layer over
// cache c (after the output projection and its bias): the quantity whose
// change under eviction the error-aware allocation measures. q is the
// token's post-RoPE query, [Heads][HeadDim].
func (s *Session) AttentionOutput(c kvcache.KVCache, layer int, q []float32) ([]float32, error) {
	m := s.m
	if layer < 0 || layer >= m.Layers {
		return nil, fmt.Errorf("llama: layer %d out of range", layer)
	}
	att := make([]float32, m.QDim())
	if err := s.backend.Attend(c, layer, q, m.Heads, att); err != nil {
		return nil, err
	}
	out := make([]float32, m.Dim)
	m.layers[layer].wo.mulMat(out, att, 1, s.LikeLlamaCpp)
	addBias(out, m.layers[layer].bo)
	return out, nil
}

// rmsnorm normalises each of n rows of x by its root mean square and scales
// by w, into out (which may be x), as ggml's rms_norm and mul compute it:
// the sum of squares in float64, the mean and 1/sqrt(mean+eps) in float32,
// then (x*scale)*w.
func rmsnorm(out, x, w []float32, n int, eps float32) {
	d := len(w)
	for i := 0; i < n; i++ {
		row := x[i*d : (i+1)*d]
		var sum float64
		for _, v := range row {
			sum += float64(float32(v * v))
		}
		mean := float32(sum / float64(d))
		scale := 1 / float32(math.Sqrt(float64(mean+eps)))
		o := out[i*d : (i+1)*d]
		for j, v := range row {
			o[j] = float32(v*scale) * w[j]
		}
	}
}

// addBias adds b to every row of x; a nil b adds nothing.
func addBias(x, b []float32) {
	if b == nil {
		return
	}
	for i := 0; i < len(x); i += len(b) {
		row := x[i : i+len(b)]
		for j, v := range b {
			row[j] += v
		}
	}
}

func firstNonFinite(x []float32) int {
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return i
		}
	}
	return -1
}

// attend computes the attention of the n tokens just appended to layer l:
// token i of a prefill chunk attends to every earlier row and to the
// chunk's rows up to itself (causal attention), through a view of the cache
// without the chunk's later rows; on the session's backend, or as
// llama.cpp computes it (LikeLlamaCpp).
func (s *Session) attend(l int, q []float32, n int, att []float32) error {
	H, d := s.m.Heads, s.m.QDim()
	if n == 1 && !s.LikeLlamaCpp {
		return s.backend.Attend(s.cache, l, q, H, att)
	}
	hr, ok := s.cache.(kvcache.HostReader)
	if !ok {
		if s.LikeLlamaCpp {
			return fmt.Errorf("attention as llama.cpp computes it needs a cache in host memory (%T is not a kvcache.HostReader)", s.cache)
		}
		return fmt.Errorf("chunked prefill needs a cache in host memory (%T is not a kvcache.HostReader); run one token at a time", s.cache)
	}
	for i := 0; i < n; i++ {
		qi, out := q[i*d:(i+1)*d], att[i*d:(i+1)*d]
		var err error
		if s.LikeLlamaCpp {
			err = s.m.attendLikeGGML(hr, l, qi, n-1-i, out, &s.scratch)
		} else {
			err = s.backend.Attend(prefixView{hr, n - 1 - i}, l, qi, H, out)
		}
		if err != nil {
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
