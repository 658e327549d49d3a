package llama

import (
	"fmt"
	"testing"

	"github.com/compresskv/compresskv/examples/llama/quant"
	"github.com/compresskv/compresskv/internal/reftest"
	"github.com/compresskv/compresskv/kvcache"
)

// archCase is one architecture feature on a small random model: the model,
// and what the reference becomes without the feature (to show that the
// comparison notices it).
type archCase struct {
	name    string
	cfg     Config
	f       features
	without func(s *synth) // turns the feature off in a copy of the reference
}

func archCases() []archCase {
	base := Config{Dim: 40, Hidden: 56, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 67, SeqLen: 64}
	with := func(f func(c *Config)) Config {
		c := base
		f(&c)
		return c
	}
	return []archCase{
		{name: "llama-gqa", cfg: base, without: func(s *synth) { s.cfg.KVHeads = s.cfg.Heads; s.dupKV() }},
		{name: "llama-mha", cfg: with(func(c *Config) { c.KVHeads = 4 }), without: func(s *synth) { s.cfg.Rope = RopeNeox }},
		{name: "llama-tied", cfg: base, f: features{tied: true}, without: func(s *synth) { s.out = append(append([]float32(nil), s.emb[s.cfg.Dim:]...), s.emb[:s.cfg.Dim]...) }},
		{name: "llama-rope-freqs", cfg: with(func(c *Config) { c.RopeBase = 500000 }), f: features{ropeFactors: true},
			without: func(s *synth) { s.ropeFactors = nil }},
		{name: "llama-metadata-eps-base", cfg: with(func(c *Config) { c.NormEps = 0.5; c.RopeBase = 100 }),
			without: func(s *synth) { s.cfg.NormEps, s.cfg.RopeBase = 1e-5, 10000 }},
		{name: "llama-linear-scale", cfg: with(func(c *Config) { c.RopeScale = 0.25; c.RopeBase = 100 }),
			without: func(s *synth) { s.cfg.RopeScale = 1 }},
		{name: "llama-partial-rope", cfg: with(func(c *Config) { c.RopeDims = 6; c.RopeBase = 100 }),
			without: func(s *synth) { s.cfg.RopeDims = 0 }},
		{name: "llama-biases", cfg: base, f: features{allBias: true}, without: func(s *synth) { s.layers[0].bo = nil }},
		{name: "qwen2", cfg: with(func(c *Config) { c.Arch = ArchQwen2; c.Rope = RopeNeox; c.NormEps = 1e-6; c.RopeBase = 1000000 }),
			f: features{qkvBias: true, tied: true}, without: func(s *synth) { s.layers[1].bk = nil }},
		{name: "qwen2-neox", cfg: with(func(c *Config) { c.Arch = ArchQwen2; c.Rope = RopeNeox; c.RopeBase = 100 }),
			f: features{qkvBias: true}, without: func(s *synth) { s.cfg.Rope = RopeNorm }},
		{name: "qwen3", cfg: with(func(c *Config) {
			c.Arch = ArchQwen3
			c.Rope = RopeNeox
			c.HeadSize = 16
			c.RopeBase = 1000000
			c.NormEps = 1e-6
		}),
			f: features{qkNorm: true, tied: true}, without: func(s *synth) { s.layers[0].kNorm = nil }},
	}
}

// dupKV widens a GQA reference to one KV head per query head, repeating each
// group's weights: the same model, written as multi-head attention, which
// the runner must agree with only if it groups heads as the reference does.
// Used to check the check: here it repeats heads in the wrong order.
func (s *synth) dupKV() {
	c := s.cfg
	hs := c.HeadDim()
	for l := range s.layers {
		ly := &s.layers[l]
		for _, w := range []*[]float32{&ly.wk, &ly.wv} {
			old := *w
			G := len(old) / (hs * c.Dim)
			var nw []float32
			for h := 0; h < c.Heads; h++ {
				g := h % G // interleaved, not grouped
				nw = append(nw, old[g*hs*c.Dim:(g+1)*hs*c.Dim]...)
			}
			*w = nw
		}
	}
}

// TestArchitecturesAgainstReference: on a small random model of each
// architecture feature, the runner's logits at every position — a prefill
// chunk, then one token at a time — agree with a float64 forward pass of
// the same weights within float32 rounding, and differ from that pass with
// the feature turned off.
func TestArchitecturesAgainstReference(t *testing.T) {
	r, _ := reftest.Rand(t)
	tokens := []int{1, 17, 5, 66, 3, 42, 8, 9, 30, 2, 61, 12, 7}
	const chunk, tol = 5, 1e-5
	for _, tc := range archCases() {
		t.Run(tc.name, func(t *testing.T) {
			s := newSynth(r, tc.cfg, tc.f)
			m := loadSynth(t, s)
			want := s.reference(tokens)
			got := runSteps(t, m, tokens, chunk)
			worst := 0.0
			for i := chunk - 1; i < len(tokens); i++ {
				worst = max(worst, deviation(got[i], want[i]))
			}
			if worst > tol {
				t.Fatalf("logits differ from the reference by %.3g standard deviations, beyond %g", worst, tol)
			}
			off := s.clone()
			tc.without(off)
			wrong := off.reference(tokens)
			miss := 0.0
			for i := chunk - 1; i < len(tokens); i++ {
				miss = max(miss, deviation(got[i], wrong[i]))
			}
			if miss < 100*tol {
				t.Fatalf("the reference without the feature is as close (%.3g sd) as with it (%.3g): the test does not see the feature", miss, worst)
			}
			t.Logf("%.2g sd from the reference; %.2g without the feature", worst, miss)
		})
	}
}

// runSteps prefills the first chunk tokens in one chunk, then runs the rest
// one at a time, and returns the logits after each position (nil before the
// chunk's last).
func runSteps(t *testing.T, m *Model, tokens []int, chunk int) [][]float32 {
	t.Helper()
	c, err := m.NewCache(kvcache.Float32)
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.NewSession(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]float32, len(tokens))
	if out[chunk-1], err = s.Forward(tokens[:chunk]); err != nil {
		t.Fatal(err)
	}
	for i := chunk; i < len(tokens); i++ {
		if out[i], err = s.Forward(tokens[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func (s *synth) clone() *synth {
	c := *s
	c.layers = append([]synthLayer(nil), s.layers...)
	return &c
}

func (s *synth) String() string { return fmt.Sprintf("%s %+v", s.cfg.arch(), s.cfg) }

// TestWeightTypesAgainstReference: a model whose matrices are stored in
// each weight type loads, and its logits agree with a float64 forward pass
// of the stored (dequantized) weights as closely as converting the
// activations allows (F16 or BF16 rounding, Q8_0 or Q8_K blocks: the
// bounds, a few times what the conversion costs, are per type), and no
// closer than the conversion allows: the runner does convert them.
//
// A reference that converts its activations too agrees to float32 rounding
// at most positions, but not at all: a value within float32 rounding of a
// conversion boundary rounds one way here and the other way there, a step
// of the block that moves the logits by up to 0.02 standard deviations.
// The goldens (llama.cpp's own output) hold the conversion itself.
func TestWeightTypesAgainstReference(t *testing.T) {
	r, _ := reftest.Rand(t)
	cfg := Config{Dim: 256, Hidden: 512, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 67, SeqLen: 64, Arch: ArchQwen2, Rope: RopeNeox}
	tokens := []int{1, 17, 5, 66, 3, 42, 8, 9, 30}
	for _, tc := range []struct {
		typ    quant.Type
		lo, hi float64
	}{
		{quant.F32, 0, 1e-5}, {quant.F16, 1e-4, 5e-3}, {quant.BF16, 1e-3, 0.05},
		{quant.Q8_0, 1e-3, 0.15}, {quant.Q4_0, 1e-3, 0.15}, {quant.Q4_K, 1e-4, 0.03}, {quant.Q6_K, 1e-3, 0.2},
	} {
		t.Run(tc.typ.String(), func(t *testing.T) {
			s := newSynth(r, cfg, features{typ: tc.typ, qkvBias: true})
			m := loadSynth(t, s)
			if m.layers[1].down.q.Type != tc.typ || m.emb.q.Type != tc.typ {
				t.Fatalf("loaded %v weights", m.layers[1].down.q.Type)
			}
			got := runSteps(t, m, tokens, 4)
			want := s.reference(tokens)
			worst := 0.0
			for i := 3; i < len(tokens); i++ {
				worst = max(worst, deviation(got[i], want[i]))
			}
			if worst < tc.lo || worst > tc.hi {
				t.Fatalf("logits %.3g standard deviations from the reference, want [%g, %g]", worst, tc.lo, tc.hi)
			}
			t.Logf("%.2g sd from the reference", worst)
		})
	}
}
