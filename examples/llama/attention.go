package llama

import (
	"fmt"
	"math"

	"github.com/compresskv/compresskv/examples/llama/quant"
	"github.com/compresskv/compresskv/kvcache"
)

// attendLikeGGML computes the attention of one token's queries q
// ([Heads][HeadDim]) over the rows of each KV head of layer but the last
// hide (the later tokens of a prefill chunk), into out ([Heads][HeadDim]),
// as llama.cpp's CPU backend computes it without flash attention
// (llm_graph_context::build_attn_mha): K.Q is a matrix product whose
// activations, the queries, are converted to the cache's type (rounded to
// float16 for llama.cpp's default float16 cache, to bfloat16 for a
// bfloat16 one, kept for a float32 one); the softmax of the scaled products
// runs in float32 with its sum in float64; and P.V is a matrix product
// whose activations, the probabilities, are converted to the cache's type
// too. Those two conversions are what separate llama.cpp's logits from a
// float32 attention by thousandths of a standard deviation for float
// weights, and by hundredths for quantized ones, whose Q8_0 and Q8_K
// conversion of the next layer's activations turns the small differences
// into steps. The products are summed in tinyBLAS's order (dot16) and the
// exponentials are ggml's (expGGML). Cost: 2 * Heads * rows * HeadDim
// multiply-adds, on the caller's goroutine.
func (m *Model) attendLikeGGML(c kvcache.HostReader, layer int, q []float32, hide int, out []float32, sc *attnScratch) error {
	hd, group := m.HeadDim(), m.Heads/m.KVHeads
	dt := c.DType()
	round := func(x float32) float32 { return x }
	switch dt {
	case kvcache.Float16:
		round = func(x float32) float32 { return quant.F16ToF32(quant.F32ToF16(x)) }
	case kvcache.BFloat16:
		round = func(x float32) float32 { return kvcache.BF16ToF32(kvcache.F32ToBF16(x)) }
	}
	scale := 1 / float32(math.Sqrt(float64(hd)))
	for g := 0; g < m.KVHeads; g++ {
		kr, vr := c.Rows(layer, g)
		n := kr.N - hide
		if n <= 0 {
			return fmt.Errorf("layer %d KV head %d holds no rows to attend to", layer, g)
		}
		keys, vals := sc.rows(kr, n, &sc.keys), sc.rows(vr, n, &sc.vals)
		sc.p = grow(sc.p, n)
		sc.q = grow(sc.q, hd)
		for h := g * group; h < (g+1)*group; h++ {
			qh := sc.q
			for i, x := range q[h*hd : (h+1)*hd] {
				qh[i] = round(x)
			}
			p := sc.p
			mx := float32(math.Inf(-1))
			for j := range p {
				p[j] = dot16(qh, keys[j*hd:(j+1)*hd]) * scale
				mx = max(mx, p[j])
			}
			// The exponentials 16 at a time, each 16 summed as
			// _mm512_reduce_add_ps does, the sums in float64; llama.cpp's
			// rows are padded to a multiple of 16 with masked positions,
			// which add zeros.
			var sum float64
			var chunk [16]float32
			for j0 := 0; j0 < n; j0 += 16 {
				chunk = [16]float32{}
				for j := j0; j < min(n, j0+16); j++ {
					p[j] = expGGML(p[j] - mx)
					chunk[j-j0] = p[j]
				}
				sum += float64(sum16(&chunk))
			}
			inv := float32(1 / sum)
			for j := range p {
				p[j] = round(p[j] * inv)
			}
			// P.V: each output value a dot product over the positions, 16
			// lanes as tinyBLAS runs it.
			o := out[h*hd : (h+1)*hd]
			var acc [16]float32
			for e := range o {
				acc = [16]float32{}
				for j, w := range p {
					acc[j%16] = fma32(w, vals[j*hd+e], acc[j%16])
				}
				o[e] = sum16(&acc)
			}
			if i := firstNonFinite(o); i >= 0 {
				return fmt.Errorf("layer %d head %d: attention output %d is %v: %w", layer, h, i, o[i], ErrNonFinite)
			}
		}
	}
	return nil
}

// attnScratch holds attendLikeGGML's buffers across the tokens of a call.
type attnScratch struct {
	keys, vals, p, q []float32
}

// rows returns the first n rows of r as float32, decoded into *buf (grown
// if short) unless r already stores float32.
func (sc *attnScratch) rows(r kvcache.Rows, n int, buf *[]float32) []float32 {
	if r.DType == kvcache.Float32 {
		return r.F32[:n*r.D]
	}
	*buf = grow(*buf, n*r.D)
	out := *buf
	if r.DType == kvcache.Float16 {
		for i, h := range r.U16[:n*r.D] {
			out[i] = quant.F16ToF32(h)
		}
	} else {
		kvcache.Decode(r.DType, out, r.U16[:n*r.D])
	}
	return out
}

func grow(x []float32, n int) []float32 {
	if cap(x) < n {
		return make([]float32, n)
	}
	return x[:n]
}
