package main

import (
	"context"
	"fmt"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/kvcache"
)

// streamCache lets a llama.Session run over a compresskv.Stream: the
// session appends each layer's keys and values to it as to any cache, and
// it hands them to the Stream with the same tokens' queries, which the
// session's Query hook recorded just before. Reads go to the Stream's cache.
type streamCache struct {
	kvcache.HostReader
	stream *compresskv.Stream
	ctx    context.Context
	q      [][]float32 // per layer: the queries of the tokens being run
}

// newStreamSession returns a session over a fresh cache of the model driven
// by a Stream with policy p, prefill chunks of at most chunk tokens and
// slack (see compresskv.StreamConfig).
func newStreamSession(ctx context.Context, m *llama.Model, p *compresskv.Policy, dt kvcache.DType, chunk, slack int) (*llama.Session, *compresskv.Stream, error) {
	cache, err := m.NewCache(dt)
	if err != nil {
		return nil, nil, err
	}
	st, err := compresskv.NewStream(p, cache, compresskv.StreamConfig{QHeads: m.Heads, Chunk: chunk, Slack: slack})
	if err != nil {
		return nil, nil, err
	}
	sc := &streamCache{HostReader: cache, stream: st, ctx: ctx, q: make([][]float32, m.Layers)}
	s, err := m.NewSession(sc, nil)
	if err != nil {
		return nil, nil, err
	}
	s.Hooks.Query = func(layer, _ int, q []float32) { sc.q[layer] = q }
	return s, st, nil
}

// Append implements kvcache.KVCache through the Stream, which may first
// compress the layer.
func (c *streamCache) Append(layer int, k, v []float32) error {
	return c.stream.Append(c.ctx, layer, k, v, c.q[layer])
}

// Compact implements kvcache.KVCache; the Stream compacts its own cache, so
// a caller never needs this.
func (c *streamCache) Compact(int, [][]int) error {
	return fmt.Errorf("generate: the stream compacts its cache itself")
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
