package llama

import (
	"context"

	"github.com/compresskv/compresskv/compresskv"
)

// Prefill runs prompt through the session in chunks of chunk tokens (all at
// once when chunk <= 0) and returns the logits of its last token together
// with every layer's post-RoPE queries of the prompt, [layer][L][Heads][HeadDim]:
// what a policy needs to compress the cache afterwards.
func (s *Session) Prefill(prompt []int, chunk int) ([]float32, [][]float32, error) {
	if chunk <= 0 {
		chunk = len(prompt)
	}
	q := make([][]float32, s.m.Layers)
	prev := s.Hooks.Query
	s.Hooks.Query = func(layer, pos0 int, x []float32) {
		if prev != nil {
			prev(layer, pos0, x)
		}
		q[layer] = append(q[layer], x...)
	}
	defer func() { s.Hooks.Query = prev }()
	var logits []float32
	for i := 0; i < len(prompt); i += chunk {
		var err error
		if logits, err = s.Forward(prompt[i:min(len(prompt), i+chunk)]); err != nil {
			return nil, nil, err
		}
	}
	return logits, q, nil
}

// Compress compresses the session's cache after a prefill with policy p,
// given the prompt's queries from Prefill: it passes each layer's last
// p.QueryRows(L) rows, the ones the policy reads (all of them for a prompt
// shorter than the window, which the policy keeps whole). ctx cancels it as it
// cancels Policy.Compress, leaving the cache as it was.
func (s *Session) Compress(ctx context.Context, p *compresskv.Policy, q [][]float32) (*compresskv.Result, error) {
	per := s.m.Heads * s.m.HeadDim()
	ql := make([][]float32, len(q))
	for l, x := range q {
		// A prompt shorter than the window is shorter than any budget:
		// the policy keeps it whole and reads no queries.
		n := len(x) / per
		need := min(p.QueryRows(n), n)
		ql[l] = x[(n-need)*per:]
	}
	return p.Compress(ctx, s.cache, ql, s.m.Heads)
}
