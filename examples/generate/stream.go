package main

import (
	"context"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/kvcache"
)

// newStreamSession returns a session over a fresh cache of the model driven
// by a Stream with policy p, prefill chunks of at most chunk tokens and
// slack (see compresskv.StreamConfig; llama.Model.StreamSession).
func newStreamSession(ctx context.Context, m *llama.Model, p *compresskv.Policy, dt kvcache.DType, chunk, slack int) (*llama.Session, *compresskv.Stream, error) {
	return m.StreamSession(ctx, p, dt, compresskv.StreamConfig{Chunk: chunk, Slack: slack})
}

// prefill runs prompt through s in chunks of chunk tokens and returns the
// logits of its last token.
func prefill(s *llama.Session, prompt []int, chunk int) ([]float32, error) {
	var logits []float32
	for i := 0; i < len(prompt); i += chunk {
		var err error
		if logits, err = s.Forward(prompt[i:min(len(prompt), i+chunk)]); err != nil {
			return nil, err
		}
	}
	return logits, nil
}

// streamPrefill runs prompt, in chunks of chunk tokens, through a new
// session whose cache a Stream with policy p bounds (newStreamSession), and
// returns the session, the Stream and the logits of the prompt's last
// token.
func streamPrefill(m *llama.Model, p *compresskv.Policy, prompt []int, chunk, slack int) (*llama.Session, *compresskv.Stream, []float32, error) {
	s, st, err := newStreamSession(context.Background(), m, p, kvcache.Float32, chunk, slack)
	if err != nil {
		return nil, nil, nil, err
	}
	logits, err := prefill(s, prompt, chunk)
	if err != nil {
		return nil, nil, nil, err
	}
	return s, st, logits, nil
}
