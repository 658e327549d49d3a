package compresskv

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/kvcache"
)

// TestCancelledBeforeStart: every method's Compress, Plan and CompressLayer
// with a cancelled context fail with an error wrapping context.Canceled and
// leave the cache exactly as it was.
func TestCancelledBeforeStart(t *testing.T) {
	rng, seed := newRNG(t)
	s := kvcache.Shape{Layers: 3, KVHeads: 2, HeadDim: 8}
	base, q := fillCache(t, rng, s, kvcache.Float16, 120, 8, 120)
	prof := randomProfile(rng, s, 8, true)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, m := range Methods {
		if m == Full {
			continue
		}
		p, err := New(m, Config{Budget: 32, Profile: prof})
		if err != nil {
			t.Fatal(err)
		}
		ql := lastRows(p, q, 120, 8, s.HeadDim)
		c := base.Clone()
		before := snap(c)
		if _, err := p.Compress(ctx, c, ql, 8); !errors.Is(err, context.Canceled) {
			t.Errorf("seed %d: %s: Compress with a cancelled context: %v", seed, m, err)
		}
		if _, err := p.Plan(ctx, c, ql, 8); !errors.Is(err, context.Canceled) {
			t.Errorf("seed %d: %s: Plan with a cancelled context: %v", seed, m, err)
		}
		if err := p.CompressLayer(ctx, c, 1, ql[1], 8); !errors.Is(err, context.Canceled) {
			t.Errorf("seed %d: %s: CompressLayer with a cancelled context: %v", seed, m, err)
		}
		if !sameSnapshot(before, snap(c)) {
			t.Errorf("seed %d: %s: a cancelled call changed the cache", seed, m)
		}
	}
}

// cancelling is the CPU backend, except that it cancels a context at its
// at-th WindowScores call and counts the calls.
type cancelling struct {
	backend.Backend
	at     int32
	calls  atomic.Int32
	cancel context.CancelFunc
}

func (b *cancelling) WindowScores(c kvcache.KVCache, layer int, q []float32, w, qHeads int, heads []int, out [][]float32) error {
	if b.calls.Add(1) == b.at {
		b.cancel()
	}
	return b.Backend.WindowScores(c, layer, q, w, qHeads, heads, out)
}

// TestCancelInsideScoring: a layer large enough to be scored KV head by KV
// head stops at the first check after the context is cancelled, inside the
// layer's scoring, and the cache is left exactly as it was.
func TestCancelInsideScoring(t *testing.T) {
	rng, seed := newRNG(t)
	const L, H, W = 4200, 8, 8
	s := kvcache.Shape{Layers: 1, KVHeads: 4, HeadDim: 64}
	if W*L*s.HeadDim*H <= cancelEvery {
		t.Fatalf("the layer's work %d is below cancelEvery %d: the test would not score head by head", W*L*s.HeadDim*H, cancelEvery)
	}
	c, q := fillCache(t, rng, s, kvcache.Float32, L, H, W)
	before := snap(c)
	for _, m := range []Method{SnapKV, AdaKV} {
		ctx, cancel := context.WithCancel(context.Background())
		b := &cancelling{Backend: cpu.New(), at: 2, cancel: cancel}
		p, err := New(m, Config{Budget: 64, Backend: b})
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Compress(ctx, c, q, H)
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("seed %d: %s: cancelled while scoring: %v", seed, m, err)
		}
		if n := b.calls.Load(); n != 2 {
			t.Errorf("%s: %d WindowScores calls for 4 KV heads, want 2 (the check after the cancelling one stops it)", m, n)
		}
		if !sameSnapshot(before, snap(c)) {
			t.Fatalf("seed %d: %s: a cancelled Compress changed the cache", seed, m)
		}
	}
}

// TestWindowSumsByHeadEqual: scoring a large layer KV head by KV head gives
// the same sums, bit for bit, as one backend call over every head.
func TestWindowSumsByHeadEqual(t *testing.T) {
	rng, seed := newRNG(t)
	const L, H, W = 4200, 8, 8
	s := kvcache.Shape{Layers: 1, KVHeads: 4, HeadDim: 64}
	c, q := fillCache(t, rng, s, kvcache.BFloat16, L, H, W)
	b := &cancelling{Backend: cpu.New(), cancel: func() {}}
	heads := []int{5, 1, 0, 7, 2, 3, 6, 4} // KV heads 2, 0, 0, 3, 1, 1, 3, 2: six runs
	in := &ScoreInput{Backend: b, Cache: c, Layer: 0, Queries: q[0], NQ: W, QHeads: H, Len: L, Window: W}
	got, err := in.windowSums(context.Background(), heads)
	if err != nil {
		t.Fatal(err)
	}
	if n := b.calls.Load(); n != 6 {
		t.Fatalf("%d backend calls, want 6 (one per run of heads on one KV head)", n)
	}
	want := make([][]float32, len(heads))
	for i := range want {
		want[i] = make([]float32, L)
	}
	if err := cpu.New().WindowScores(c, 0, q[0], W, H, heads, want); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if !slices.Equal(got[i], want[i][:L-W]) {
			t.Fatalf("seed %d: head %d: sums differ between one call and calls per KV head", seed, heads[i])
		}
	}
}
