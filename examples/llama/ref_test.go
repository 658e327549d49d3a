package llama

import (
	"encoding/binary"
	"math"
	"math/rand/v2"

	"github.com/compresskv/compresskv/examples/llama/quant"
	"github.com/compresskv/compresskv/internal/reftest"
)

// synth is a small model with random weights, kept in float32 (the values
// its matrices hold in their type), and run in float64 by reference: the forward
// pass of the llama, qwen2 and qwen3 graphs written plainly, to hold the
// runner against.
type synth struct {
	cfg         Config
	typ         quant.Type          // of every matrix
	data        map[*float32][]byte // each matrix's bytes in typ, by its first value
	emb         []float32           // [Vocab][Dim]
	layers      []synthLayer
	finalNorm   []float32
	out         []float32 // [Vocab][Dim]; nil: tied to emb
	outBias     []float32
	ropeFactors []float32 // [RotaryDims/2] divisors, or nil
}

type synthLayer struct {
	attNorm, ffnNorm  []float32
	wq, wk, wv, wo    []float32 // [out][in]
	bq, bk, bv, bo    []float32
	qNorm, kNorm      []float32
	gate, up, down    []float32
	bGate, bUp, bDown []float32
}

// features of a synthetic model beyond the plain llama graph.
type features struct {
	qkvBias     bool       // qwen2's biases on Q, K and V
	allBias     bool       // every optional bias llama.cpp's llama graph reads (attention output, feed-forward, output)
	qkNorm      bool       // qwen3's per-head norms
	tied        bool       // output tied to the token embedding
	ropeFactors bool       // llama 3.1's rope_freqs
	typ         quant.Type // of the matrices (F32 when zero)
}

// around returns n values near c (norm weights and frequency factors).
func around(r *rand.Rand, n int, c, sd float64) []float32 {
	x := reftest.Normal(r, n, sd)
	for i := range x {
		x[i] += float32(c)
	}
	return x
}

// newSynth draws a model of shape cfg with the given features; weights are
// scaled so that activations stay of order one.
func newSynth(r *rand.Rand, cfg Config, f features) *synth {
	d, qd, kv, hd, hs := cfg.Dim, cfg.QDim(), cfg.KVDim(), cfg.Hidden, cfg.HeadDim()
	w := func(rows, cols int) []float32 { return reftest.Normal(r, rows*cols, 1/math.Sqrt(float64(cols))) }
	b := func(on bool, n int) []float32 {
		if !on {
			return nil
		}
		return reftest.Normal(r, n, 0.5)
	}
	s := &synth{cfg: cfg, emb: reftest.Normal(r, cfg.Vocab*d, 1), finalNorm: around(r, d, 1, 0.1)}
	for range cfg.Layers {
		ly := synthLayer{
			attNorm: around(r, d, 1, 0.1), ffnNorm: around(r, d, 1, 0.1),
			wq: w(qd, d), wk: w(kv, d), wv: w(kv, d), wo: w(d, qd),
			gate: w(hd, d), up: w(hd, d), down: w(d, hd),
			bq: b(f.qkvBias || f.allBias, qd), bk: b(f.qkvBias || f.allBias, kv), bv: b(f.qkvBias || f.allBias, kv),
			bo: b(f.allBias, d), bGate: b(f.allBias, hd), bUp: b(f.allBias, hd), bDown: b(f.allBias, d),
		}
		if f.qkNorm {
			ly.qNorm, ly.kNorm = around(r, hs, 1, 0.2), around(r, hs, 1, 0.2)
		}
		s.layers = append(s.layers, ly)
	}
	if !f.tied {
		s.out = w(cfg.Vocab, d)
	}
	s.outBias = b(f.allBias, cfg.Vocab)
	if f.typ != quant.F32 {
		s.typ = f.typ
		s.data = map[*float32][]byte{}
		s.encode(r, s.emb)
		if s.out != nil {
			s.encode(r, s.out)
		}
		for i := range s.layers {
			ly := &s.layers[i]
			for _, w := range [][]float32{ly.wq, ly.wk, ly.wv, ly.wo, ly.gate, ly.up, ly.down} {
				s.encode(r, w)
			}
		}
	}
	if f.ropeFactors {
		// As Llama 3.1's scaling: 1 for the fast pairs, up to 8 for the slow.
		s.ropeFactors = make([]float32, cfg.RotaryDims()/2)
		for j := range s.ropeFactors {
			s.ropeFactors[j] = float32(1 + 7*float64(j)/float64(len(s.ropeFactors)-1))
		}
	}
	return s
}

// encode stores matrix w in s.typ and replaces its values with
// what the stored bytes hold, so that the reference computes with the
// weights the runner reads. Types package quant quantizes to are quantized
// from w; Q4_K and Q6_K blocks are drawn at random, with their scales set
// so that the values have w's root mean square.
func (s *synth) encode(r *rand.Rand, w []float32) {
	t := s.typ
	n, err := t.RowBytes(len(w))
	if err != nil {
		panic(err)
	}
	b := make([]byte, n)
	if t != quant.Q4_K && t != quant.Q6_K {
		if err := quant.Quantize(t, w, b); err != nil {
			panic(err)
		}
	} else {
		rms := 0.0
		for _, v := range w {
			rms += float64(v) * float64(v)
		}
		rms = math.Sqrt(rms / float64(len(w)))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		// d (and Q4_K's dmin) at 1, then scaled to the wanted size.
		setScale := func(d float32) {
			for blk := 0; blk < len(b); blk += t.BlockBytes() {
				if t == quant.Q4_K {
					binary.LittleEndian.PutUint16(b[blk:], quant.F32ToF16(d))
					binary.LittleEndian.PutUint16(b[blk+2:], quant.F32ToF16(d))
				} else {
					binary.LittleEndian.PutUint16(b[blk+208:], quant.F32ToF16(d))
				}
			}
		}
		setScale(1)
		if err := quant.Dequantize(t, b, w); err != nil {
			panic(err)
		}
		got := 0.0
		for _, v := range w {
			got += float64(v) * float64(v)
		}
		setScale(float32(rms / math.Sqrt(got/float64(len(w)))))
	}
	if err := quant.Dequantize(t, b, w); err != nil {
		panic(err)
	}
	s.data[&w[0]] = b
}

// reference returns the logits of every position of tokens, in float64.
func (s *synth) reference(tokens []int) [][]float64 {
	c := s.cfg
	d, H, G, hs, nd := c.Dim, c.Heads, c.KVHeads, c.HeadDim(), c.RotaryDims()
	eps := float64(c.eps())
	n := len(tokens)
	x := make([][]float64, n)
	for i, t := range tokens {
		x[i] = reftest.F64(s.emb[t*d : (t+1)*d])
	}
	for _, ly := range s.layers {
		q := make([][]float64, n)
		k := make([][]float64, n)
		v := make([][]float64, n)
		for i := range x {
			h := refNorm(x[i], ly.attNorm, eps)
			q[i] = refLinear(ly.wq, ly.bq, h)
			k[i] = refLinear(ly.wk, ly.bk, h)
			v[i] = refLinear(ly.wv, ly.bv, h)
			for hh := 0; hh < H; hh++ {
				head := q[i][hh*hs : (hh+1)*hs]
				if ly.qNorm != nil {
					copy(head, refNorm(head, ly.qNorm, eps))
				}
				s.refRope(head, i, nd)
			}
			for g := 0; g < G; g++ {
				head := k[i][g*hs : (g+1)*hs]
				if ly.kNorm != nil {
					copy(head, refNorm(head, ly.kNorm, eps))
				}
				s.refRope(head, i, nd)
			}
		}
		for i := range x {
			att := make([]float64, H*hs)
			for hh := 0; hh < H; hh++ {
				g := hh / (H / G)
				qh := q[i][hh*hs : (hh+1)*hs]
				p := make([]float64, i+1)
				mx := math.Inf(-1)
				for j := 0; j <= i; j++ {
					dotv := 0.0
					for e, qe := range qh {
						dotv += qe * k[j][g*hs+e]
					}
					p[j] = dotv / math.Sqrt(float64(hs))
					mx = math.Max(mx, p[j])
				}
				z := 0.0
				for j := range p {
					p[j] = math.Exp(p[j] - mx)
					z += p[j]
				}
				for j := range p {
					for e := 0; e < hs; e++ {
						att[hh*hs+e] += p[j] / z * v[j][g*hs+e]
					}
				}
			}
			o := refLinear(ly.wo, ly.bo, att)
			for e := range o {
				x[i][e] += o[e]
			}
			h := refNorm(x[i], ly.ffnNorm, eps)
			a := refLinear(ly.gate, ly.bGate, h)
			u := refLinear(ly.up, ly.bUp, h)
			for e := range a {
				a[e] = a[e] / (1 + math.Exp(-a[e])) * u[e]
			}
			o = refLinear(ly.down, ly.bDown, a)
			for e := range o {
				x[i][e] += o[e]
			}
		}
	}
	out := s.out
	if out == nil {
		out = s.emb
	}
	logits := make([][]float64, n)
	for i := range x {
		logits[i] = refLinear(out, s.outBias, refNorm(x[i], s.finalNorm, eps))
	}
	return logits
}

// refRope rotates the first nd values of head x at position pos.
func (s *synth) refRope(x []float64, pos, nd int) {
	c := s.cfg
	for j := 0; j < nd/2; j++ {
		theta := float64(pos) * math.Pow(float64(c.ropeBase()), -2*float64(j)/float64(nd))
		if s.ropeFactors != nil {
			theta /= float64(s.ropeFactors[j])
		}
		theta *= float64(c.ropeScale())
		i0, i1 := 2*j, 2*j+1
		if c.Rope == RopeNeox {
			i0, i1 = j, j+nd/2
		}
		a, b := x[i0], x[i1]
		x[i0] = a*math.Cos(theta) - b*math.Sin(theta)
		x[i1] = a*math.Sin(theta) + b*math.Cos(theta)
	}
}

func refNorm(x []float64, w []float32, eps float64) []float64 {
	ss := 0.0
	for _, v := range x {
		ss += v * v
	}
	scale := 1 / math.Sqrt(ss/float64(len(x))+eps)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = v * scale * float64(w[i])
	}
	return out
}

// refLinear returns W x + b for W stored [len(W)/len(x)][len(x)].
func refLinear(w, b []float32, x []float64) []float64 {
	rows := len(w) / len(x)
	out := make([]float64, rows)
	for r := range out {
		s := 0.0
		for c, xc := range x {
			s += float64(w[r*len(x)+c]) * xc
		}
		if b != nil {
			s += float64(b[r])
		}
		out[r] = s
	}
	return out
}

// deviation returns max |got - want| over want's standard deviation: the
// agreement measure the golden comparisons use.
func deviation(got []float32, want []float64) float64 {
	mean := 0.0
	for _, v := range want {
		mean += v
	}
	mean /= float64(len(want))
	sd := 0.0
	for _, v := range want {
		sd += (v - mean) * (v - mean)
	}
	sd = math.Sqrt(sd / float64(len(want)))
	worst := 0.0
	for i, v := range want {
		worst = math.Max(worst, math.Abs(float64(got[i])-v))
	}
	return worst / sd
}
