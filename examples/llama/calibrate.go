package llama

import (
	"context"
	"fmt"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/compresskv/calibrate"
	"github.com/compresskv/compresskv/kvcache"
)

// Calibration adapts a Model to calibrate.Model: each run
// prefills its prompt into a fresh float32 host cache in chunks of 256
// tokens and decodes on the CPU backend; the shadow eviction is a compacted
// copy of the prompt's cache, made once per run, that decoding keeps in step
// through the KV hook.
type Calibration struct {
	Model *Model
	// Name is the model name the profile records.
	Name string
}

// Info returns the model's shape.
func (c *Calibration) Info() compresskv.ModelInfo {
	m := c.Model
	return compresskv.ModelInfo{Name: c.Name, Layers: m.Layers, QueryHeads: m.Heads, KVHeads: m.KVHeads, HeadDim: m.HeadDim()}
}

// Start prefills prompt and returns the run.
func (c *Calibration) Start(ctx context.Context, prompt []int) (calibrate.Run, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m := c.Model
	cache, err := m.NewCache(kvcache.Float32)
	if err != nil {
		return nil, err
	}
	be := cpu.New()
	s, err := m.NewSession(cache, be)
	if err != nil {
		return nil, err
	}
	logits, q, err := s.Prefill(prompt, 256)
	if err != nil {
		return nil, err
	}
	per := m.Heads * m.HeadDim()
	r := &run{m: m, s: s, cache: cache, be: be, logits: logits, q: q,
		last: make([][]float32, m.Layers), full: make([][]float32, m.Layers), comps: make([][]float32, m.Layers)}
	for l := range r.last {
		r.last[l] = append([]float32(nil), q[l][len(q[l])-per:]...)
	}
	s.Hooks = Hooks{
		Query: func(l, _ int, x []float32) { r.last[l] = append(r.last[l][:0], x...) },
		KV: func(l, _ int, k, v []float32) {
			if r.shadow == nil || r.hookErr != nil {
				return
			}
			if r.hookErr = r.shadow.Append(l, k, v); r.hookErr == nil {
				r.comps[l], r.hookErr = s.AttentionOutput(r.shadow, l, r.last[l])
			}
		},
		AttnOut: func(l, _ int, out []float32) {
			if r.shadow != nil {
				r.full[l] = append(r.full[l][:0], out...)
			}
		},
	}
	return r, nil
}

// run is one prompt of a Calibration.
type run struct {
	m       *Model
	s       *Session
	cache   *kvcache.Host
	be      backend.Backend
	logits  []float32
	q       [][]float32 // the prompt's queries, per layer
	last    [][]float32 // the query of the last token run, per layer
	shadow  *kvcache.Host
	full    [][]float32
	comps   [][]float32
	hookErr error
	decoded bool // a token ran since Shadow
}

func (r *run) Next() int { return Argmax(r.logits) }

func (r *run) Decode(ctx context.Context, token int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	logits, err := r.s.Forward([]int{token})
	if err != nil {
		return err
	}
	if r.hookErr != nil {
		return r.hookErr
	}
	r.logits = logits
	r.decoded = r.shadow != nil
	return nil
}

func (r *run) Attention(dst [][][]float32) ([][][]float32, error) {
	if len(dst) != r.m.Layers {
		dst = make([][][]float32, r.m.Layers)
	}
	for l := range dst {
		rows, err := r.be.AttentionWeights(r.cache, l, r.last[l], r.m.Heads, dst[l])
		if err != nil {
			return nil, fmt.Errorf("llama: layer %d: %w", l, err)
		}
		dst[l] = rows
	}
	return dst, nil
}

func (r *run) Prompt(window int) (kvcache.KVCache, [][]float32, error) {
	per := r.m.Heads * r.m.HeadDim()
	out := make([][]float32, len(r.q))
	for l, x := range r.q {
		n := len(x) / per
		if window < 1 || window > n {
			return nil, nil, fmt.Errorf("llama: a window of %d queries from a prompt of %d tokens", window, n)
		}
		out[l] = x[(n-window)*per:]
	}
	return r.cache, out, nil
}

func (r *run) Shadow(keep [][][]int) error {
	if len(keep) != r.m.Layers {
		return fmt.Errorf("llama: shadow for %d layers, model has %d: %w", len(keep), r.m.Layers, kvcache.ErrShape)
	}
	comp := r.cache.Clone()
	for l, k := range keep {
		if k == nil {
			continue
		}
		if err := comp.Compact(l, k); err != nil {
			return fmt.Errorf("llama: shadow: layer %d: %w", l, err)
		}
	}
	r.shadow = comp
	return nil
}

func (r *run) Outputs() (full, shadow [][]float32, err error) {
	if !r.decoded {
		return nil, nil, fmt.Errorf("llama: no token was decoded since the shadow eviction began")
	}
	return r.full, r.comps, nil
}

func (r *run) Close() error {
	r.shadow, r.q = nil, nil
	return nil
}

// ProbeTokenizer is a Tokenizer seen as calibrate.Tokenizer: Encode adds
// BOS, as prompts start.
type ProbeTokenizer struct{ *Tokenizer }

// Encode returns BOS and the ids of text.
func (t ProbeTokenizer) Encode(text string) []int { return t.Tokenizer.Encode(text, true, false) }
