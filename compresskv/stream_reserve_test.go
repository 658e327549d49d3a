package compresskv

// A Stream with a reserve held while the prompt runs, and with
// query-agnostic prefill scorers (Trackers among them).

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/kvcache"
)

// reserveCase is a policy with a prefill scorer that fits its selector.
type reserveCase struct {
	p       *Policy
	prefill Scorer // nil: the policy's own
}

// reserveCases returns every streamable policy with each prefill scorer
// that composes with it: one shared row for CompressKV, rows per KV head
// for the others.
func reserveCases(t *testing.T, rng *rand.Rand, s kvcache.Shape, H, budget int) []reserveCase {
	t.Helper()
	rot := randomRotary(rng, s.HeadDim)
	var out []reserveCase
	for _, p := range streamPolicies(t, rng, s, H, budget, true) {
		cfg := p.Config()
		prefills := []Scorer{nil, KNormScorer{},
			ExpectedAttentionScorer{Rotary: rot, Sink: 2, Kernel: cfg.Kernel},
			AccumulatedScorer{Kernel: cfg.Kernel}, AccumulatedScorer{Average: true, Kernel: 1}}
		if p.Scorer() != nil && p.Method() != AdaKV { // Ada-KV selects from a row per KV head
			prefills = append(prefills, Either(p.Scorer(), SharedMax(ExpectedAttentionScorer{Rotary: rot, Sink: 2, Kernel: cfg.Kernel})))
		}
		switch p.Method() {
		case CompressKV:
			prefills = []Scorer{nil, SharedMax(KNormScorer{}), SharedMax(AccumulatedScorer{Average: true, Kernel: 1}),
				ExpectedAttentionScorer{Profile: cfg.Profile, K: cfg.SRHeads, Rotary: rot, Sink: 2, Kernel: cfg.Kernel},
				AccumulatedScorer{Profile: cfg.Profile, K: cfg.SRHeads, Kernel: cfg.Kernel},
				AccumulatedScorer{Profile: cfg.Profile, K: cfg.SRHeads, Average: true, Kernel: cfg.Kernel},
				Either(p.Scorer(), SharedMax(KNormScorer{})), Either(p.Scorer(), SharedMax(AccumulatedScorer{Kernel: 1}))}
		case StreamingLLM:
			prefills = []Scorer{nil}
		}
		for _, pre := range prefills {
			out = append(out, reserveCase{p, pre})
		}
	}
	return out
}

func (rc reserveCase) name() string {
	if rc.prefill == nil {
		return rc.p.Name()
	}
	return rc.p.Name() + "+" + rc.prefill.Name()
}

// boundBytes is what the cache may reserve after a call: every layer's KV
// heads at their current bound (plus head-wise rounding).
func boundBytes(st *Stream, s kvcache.Shape, dt kvcache.DType) int64 {
	var n int64
	for l := 0; l < s.Layers; l++ {
		n += int64(s.KVHeads*st.Bound(l)+s.KVHeads/2) * rowBytes(s, dt)
	}
	return n
}

// TestStreamReserveStaysBounded drives a chunked prefill with a reserve,
// ends the prompt with Compress, then decodes, with every policy and
// prefill scorer, and checks after every call that each KV head holds at
// most its current bound (reserve + chunk + slack while the prompt runs,
// budget + chunk + slack after), that the storage reserved stays within
// the same bound in bytes, that the Stream's measured peaks are the
// largest values seen after the calls, and the invariants of checkStream.
func TestStreamReserveStaysBounded(t *testing.T) {
	rng, seed := newRNG(t)
	for _, sh := range []shapeCase{{"GQA", 2, 4}, {"MHA", 3, 3}} {
		dt := []kvcache.DType{kvcache.Float32, kvcache.Float16}[rng.IntN(2)]
		s := kvcache.Shape{Layers: 2, KVHeads: sh.G, HeadDim: 8}
		const prefill, n = 170, 200
		seq := newStreamSeq(rng, s, sh.H, n, dt)
		full := seq.full(t)
		for _, rc := range reserveCases(t, rng, s, sh.H, 16) {
			for _, tc := range []struct{ chunk, reserve int }{{7, 0}, {7, 40}, {33, 64}, {1, 16}} {
				name := fmt.Sprintf("%s/%v/%s/chunk%d/reserve%d (seed %d)", sh.name, dt, rc.name(), tc.chunk, tc.reserve, seed)
				c, _ := kvcache.NewHost(s, dt)
				st, err := NewStream(rc.p, c, StreamConfig{QHeads: sh.H, Chunk: tc.chunk, Slack: 3, Reserve: tc.reserve, Prefill: rc.prefill})
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				for l, r := range st.Reserves() {
					if want := max(tc.reserve, st.Budgets()[l]); r != want {
						t.Fatalf("%s: layer %d reserve %d, want %d", name, l, r, want)
					}
				}
				var peak, peakBytes int64
				after := func(seen int) {
					if seen >= 0 {
						checkStream(t, name, st, c, full, seen, rc.p)
					}
					r := c.Reserved()
					if limit := boundBytes(st, s, dt); r > limit {
						t.Fatalf("%s: after %d tokens the cache reserves %d bytes, bound %d", name, seen, r, limit)
					}
					peak, peakBytes = max(peak, r), max(peakBytes, c.Bytes())
				}
				promptLimit := boundBytes(st, s, dt)
				for _, ab := range chunks(rng, prefill, prefill, tc.chunk) {
					for l := 0; l < s.Layers; l++ {
						k, v, q := seq.tokens(l, ab[0], ab[1])
						if err := st.Append(context.Background(), l, k, v, q); err != nil {
							t.Fatalf("%s: tokens %v layer %d: %v", name, ab, l, err)
						}
						after(-1) // layers are between two lengths: bounds only
					}
					after(ab[1])
				}
				for l := 0; l < s.Layers; l++ {
					if err := st.Compress(context.Background(), l); err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					if got := c.Len(l, 0); got > st.Budgets()[l] && rc.p.Method() != AdaKV {
						t.Fatalf("%s: layer %d holds %d rows after Compress, budget %d", name, l, got, st.Budgets()[l])
					}
					after(prefill)
				}
				for i := prefill; i < n; i++ {
					for l := 0; l < s.Layers; l++ {
						k, v, q := seq.tokens(l, i, i+1)
						if err := st.Append(context.Background(), l, k, v, q); err != nil {
							t.Fatalf("%s: token %d layer %d: %v", name, i, l, err)
						}
						after(-1)
					}
					after(i + 1)
				}
				stats := st.Stats()
				if stats.PeakReserved != peak || stats.PeakBytes != peakBytes {
					t.Fatalf("%s: the stream's peaks %d reserved, %d bytes; after every call the test saw %d and %d", name, stats.PeakReserved, stats.PeakBytes, peak, peakBytes)
				}
				if peak > promptLimit {
					t.Fatalf("%s: peak %d bytes above the prompt's bound %d", name, peak, promptLimit)
				}
				prefill := rc.prefill
				if prefill == nil {
					prefill = DefaultPrefill(rc.p)
				}
				_, tracked := prefill.(Tracker)
				if _, ok := rc.p.Scorer().(Tracker); ok {
					tracked = true
				}
				if tracked != (stats.PeakTrackBytes > 0) {
					t.Fatalf("%s: peak track bytes %d for a prefill scorer %T", name, stats.PeakTrackBytes, rc.prefill)
				}
			}
		}
	}
}

// TestStreamReserveCoversPrompt: with a reserve at least the prompt, no
// row is evicted while the prompt runs, and Compress keeps exactly what a
// one-shot compression of the whole prompt keeps with the same last window:
// the reserve defers the choice to the question.
func TestStreamReserveCoversPrompt(t *testing.T) {
	rng, seed := newRNG(t)
	s := kvcache.Shape{Layers: 2, KVHeads: 2, HeadDim: 8}
	const H, L, B = 4, 97, 20
	seq := newStreamSeq(rng, s, H, L, kvcache.Float32)
	for _, rc := range reserveCases(t, rng, s, H, B) {
		if rc.p.Method() == PyramidKV {
			continue // its budgets depend on the prompt length
		}
		name := fmt.Sprintf("%s (seed %d)", rc.name(), seed)
		c, _ := kvcache.NewHost(s, kvcache.Float32)
		st, err := NewStream(rc.p, c, StreamConfig{QHeads: H, Chunk: 16, Reserve: L, Prefill: rc.prefill})
		if err != nil {
			t.Fatal(err)
		}
		one := seq.full(t)
		q := make([][]float32, s.Layers)
		for l := 0; l < s.Layers; l++ {
			for a := 0; a < L; a += 16 {
				k, v, qq := seq.tokens(l, a, min(L, a+16))
				if err := st.Append(context.Background(), l, k, v, qq); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
			}
			_, _, qq := seq.tokens(l, 0, L)
			q[l] = qq[(L-rc.p.QueryRows(L))*H*s.HeadDim:]
		}
		if st.Stats().Compressions != 0 {
			t.Fatalf("%s: compressed within the reserve", name)
		}
		for l := 0; l < s.Layers; l++ {
			if err := st.Compress(context.Background(), l); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		if _, err := rc.p.Compress(context.Background(), one, q, H); err != nil {
			t.Fatal(err)
		}
		if !sameSnapshot(snap(c), snap(one)) {
			t.Fatalf("%s: the stream's cache after Compress differs from one-shot compression", name)
		}
	}
}

// TestStreamReserveBadInput: with a Tracker following the prompt, an
// Append without every token's query is rejected, and every rejected call
// leaves the cache and the tracks as they were: the sequence continues
// exactly as if it had not been made.
func TestStreamReserveBadInput(t *testing.T) {
	rng, seed := newRNG(t)
	s := kvcache.Shape{Layers: 2, KVHeads: 2, HeadDim: 8}
	const H = 4
	seq := newStreamSeq(rng, s, H, 120, kvcache.Float16)
	for _, rc := range reserveCases(t, rng, s, H, 12) {
		if _, ok := rc.prefill.(Tracker); !ok {
			continue
		}
		name := fmt.Sprintf("%s (seed %d)", rc.name(), seed)
		run := func(bad bool) snapshot {
			c, _ := kvcache.NewHost(s, kvcache.Float16)
			st, err := NewStream(rc.p, c, StreamConfig{QHeads: H, Chunk: 12, Reserve: 30, Prefill: rc.prefill})
			if err != nil {
				t.Fatal(err)
			}
			cancelled, cancel := context.WithCancel(context.Background())
			cancel()
			for a := 0; a < seq.n; a += 12 {
				for l := 0; l < s.Layers; l++ {
					k, v, q := seq.tokens(l, a, a+12)
					if bad && a%36 == 0 {
						before := snap(c)
						d := H * s.HeadDim
						for _, tc := range []struct {
							what string
							ctx  context.Context
							q    []float32
							want error
						}{
							{"the window's queries only", context.Background(), q[4*d:], kvcache.ErrShape},
							{"cancelled", cancelled, q, context.Canceled},
						} {
							if err := st.Append(tc.ctx, l, k, v, tc.q); !errors.Is(err, tc.want) {
								t.Fatalf("%s: %s: error %v, want %v", name, tc.what, err, tc.want)
							}
							if !sameSnapshot(before, snap(c)) {
								t.Fatalf("%s: %s: a rejected Append changed the cache", name, tc.what)
							}
						}
					}
					if err := st.Append(context.Background(), l, k, v, q); err != nil {
						t.Fatalf("%s: %v", name, err)
					}
				}
			}
			for l := 0; l < s.Layers; l++ {
				if err := st.Compress(context.Background(), l); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
			}
			return snap(c)
		}
		if !sameSnapshot(run(false), run(true)) {
			t.Fatalf("%s: rejected calls changed how the sequence continued", name)
		}
	}
}

// TestStreamReserveConfigErrors: reserves below the budget and prefill
// scorers that cannot run are rejected with ErrConfig; a per-head prefill
// scorer under a shared-row policy is caught, not mixed.
func TestStreamReserveConfigErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	s := kvcache.Shape{Layers: 2, KVHeads: 2, HeadDim: 8}
	empty := func() *kvcache.Host { c, _ := kvcache.NewHost(s, kvcache.Float32); return c }
	snapkv, _ := New(SnapKV, Config{Budget: 16})
	for _, tc := range []struct {
		name string
		cfg  StreamConfig
		want string
	}{
		{"reserve below budget", StreamConfig{QHeads: 4, Chunk: 4, Reserve: 15}, "below the budget"},
		{"negative reserve", StreamConfig{QHeads: 4, Chunk: 4, Reserve: -1}, "below the budget"},
		{"rotary of another head size", StreamConfig{QHeads: 4, Chunk: 4, Prefill: ExpectedAttentionScorer{Rotary: randomRotary(rng, 6), Kernel: 1}}, "rotary"},
		{"every prompt row, untracked", StreamConfig{QHeads: 4, Chunk: 4, Prefill: everyRow{}}, "more than the window"},
		{"tracker without query heads", StreamConfig{Chunk: 4, Prefill: AccumulatedScorer{Kernel: 1}}, "query heads"},
	} {
		if _, err := NewStream(snapkv, empty(), tc.cfg); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: error %v, want ErrConfig mentioning %q", tc.name, err, tc.want)
		}
	}
	// CompressKV's shared row over heads that a per-head scorer left with
	// different positions fails with ErrUneven at the end of the prompt.
	prof := randomProfile(rng, s, 4, false)
	ckv, _ := New(CompressKV, Config{Budget: 12, Window: 4, Kernel: 1, Profile: prof, SRHeads: 4})
	c := empty()
	st, err := NewStream(ckv, c, StreamConfig{QHeads: 4, Chunk: 8, Reserve: 16, Prefill: KNormScorer{}})
	if err != nil {
		t.Fatal(err)
	}
	seq := newStreamSeq(rng, s, 4, 64, kvcache.Float32)
	for a := 0; a < 64; a += 8 {
		for l := 0; l < 2; l++ {
			k, v, q := seq.tokens(l, a, a+8)
			if err := st.Append(context.Background(), l, k, v, q); err != nil {
				t.Fatal(err)
			}
		}
	}
	if slices.Equal(c.Positions(0, 0, nil), c.Positions(0, 1, nil)) {
		t.Skip("the per-head key norms kept the same positions in both heads")
	}
	before := snap(c)
	if err := st.Compress(context.Background(), 0); !errors.Is(err, ErrUneven) {
		t.Fatalf("a shared row over heads with different positions: error %v, want ErrUneven", err)
	}
	if !sameSnapshot(before, snap(c)) {
		t.Fatal("a failed Compress changed the cache")
	}
}
