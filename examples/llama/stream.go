package llama

import (
	"context"
	"fmt"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/kvcache"
)

// StreamSession returns a session over a fresh cache of the model whose
// size a compresskv.Stream with policy p and cfg bounds while the session
// runs: each layer's keys and values go to the cache through the Stream's
// Append, with the queries of the same tokens (all of them, so that a
// scorer tracking every token sees each one), and the Stream compresses the
// layer when its room is used up. cfg.QHeads defaults to the model's query
// heads. The session's Hooks.Query feeds the Stream; a caller that needs
// the queries too wraps it. Call the Stream's Compress on every layer once
// the prompt (and its question) has run, to end the prompt at the budget.
func (m *Model) StreamSession(ctx context.Context, p *compresskv.Policy, dt kvcache.DType, cfg compresskv.StreamConfig) (*Session, *compresskv.Stream, error) {
	cache, err := m.NewCache(dt)
	if err != nil {
		return nil, nil, err
	}
	if cfg.QHeads == 0 {
		cfg.QHeads = m.Heads
	}
	st, err := compresskv.NewStream(p, cache, cfg)
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

// streamCache hands a session's appends to a Stream with the queries the
// session's Query hook recorded just before; reads go to the Stream's cache.
type streamCache struct {
	kvcache.HostReader
	stream *compresskv.Stream
	ctx    context.Context
	q      [][]float32 // per layer: the queries of the tokens being run
}

// Append implements kvcache.KVCache through the Stream, which may first
// compress the layer.
func (c *streamCache) Append(layer int, k, v []float32) error {
	return c.stream.Append(c.ctx, layer, k, v, c.q[layer])
}

// Compact implements kvcache.KVCache; the Stream compacts its own cache.
func (c *streamCache) Compact(int, [][]int) error {
	return fmt.Errorf("llama: a stream's cache is compacted by the stream")
}
