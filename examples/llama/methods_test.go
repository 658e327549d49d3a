package llama

import (
	"context"
	"slices"
	"testing"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/internal/reftest"
	"github.com/compresskv/compresskv/kvcache"
)

// TestEveryMethodOnEveryArchitecture: on a small random model of each
// architecture, every method compresses a prompt's cache to its budget and
// decodes after it; at a budget that covers the prompt in every layer it
// keeps the logits bit for bit.
func TestEveryMethodOnEveryArchitecture(t *testing.T) {
	r, _ := reftest.Rand(t)
	prompt := make([]int, 40)
	for i := range prompt {
		prompt[i] = r.IntN(67)
	}
	const budget, steps = 16, 3
	for _, tc := range archCases() {
		if tc.name != "llama-gqa" && tc.name != "llama-mha" && tc.name != "qwen2" && tc.name != "qwen3" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			m := loadSynth(t, newSynth(r, tc.cfg, tc.f))
			prof := &compresskv.Profile{Version: compresskv.ProfileVersion,
				Model:        compresskv.ModelInfo{Name: tc.name, Layers: m.Layers, QueryHeads: m.Heads, KVHeads: m.KVHeads, HeadDim: m.HeadDim()},
				LayerWeights: []float64{0.3, 0.7}}
			for l := 0; l < m.Layers; l++ {
				rank := r.Perm(m.Heads)
				prof.HeadRanking = append(prof.HeadRanking, rank)
			}
			full := decodeAfter(t, m, prompt, nil, steps)
			for _, method := range compresskv.Methods {
				for _, b := range []int{budget, 2 * len(prompt)} {
					if method == compresskv.Full && b == budget {
						continue
					}
					cfg := compresskv.Config{Budget: b, Profile: prof}
					if method == compresskv.Full {
						cfg = compresskv.Config{}
					}
					p, err := compresskv.New(method, cfg)
					if err != nil {
						t.Fatalf("%s: %v", method, err)
					}
					got := decodeAfter(t, m, prompt, p, steps)
					for i := range full {
						same := slices.Equal(got[i], full[i])
						if b > budget && !same {
							t.Fatalf("%s at a budget of the whole prompt: step %d's logits changed", method, i)
						}
						if b == budget && method != compresskv.Full && i == steps && same {
							t.Fatalf("%s at budget %d of %d: logits unchanged by the eviction", method, b, len(prompt))
						}
					}
				}
			}
		})
	}
}

// decodeAfter prefills prompt in chunks of 16, compresses the cache with p
// (none when nil), checks the budget was kept, then decodes steps greedy
// tokens; it returns the logits after the prompt and after each step.
func decodeAfter(t *testing.T, m *Model, prompt []int, p *compresskv.Policy, steps int) [][]float32 {
	t.Helper()
	c, err := m.NewCache(kvcache.Float16)
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.NewSession(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	logits, q, err := s.Prefill(prompt, 16)
	if err != nil {
		t.Fatal(err)
	}
	if p != nil {
		res, err := s.Compress(context.Background(), p, q)
		if err != nil {
			t.Fatalf("%s: %v", p.Name(), err)
		}
		kept := 0
		for l := 0; l < m.Layers; l++ {
			for g := 0; g < m.KVHeads; g++ {
				kept += c.Len(l, g)
			}
		}
		if budget := p.Config().Budget; budget > 0 && p.Method() != compresskv.Full {
			total, want := 0, 0
			for _, b := range res.Plan.Budgets {
				total += b
				want += min(b, len(prompt)) * m.KVHeads
			}
			if budget <= len(prompt) && total != budget*m.Layers {
				t.Fatalf("%s: layer budgets %v for a budget of %d", p.Name(), res.Plan.Budgets, budget)
			}
			// Head-wise budgets (Ada-KV's) round each head's share: the
			// total may miss by one row per head.
			slack := 0
			if m := p.Method(); m == compresskv.AdaKV || m == compresskv.AdaCompressKV {
				slack = len(res.Plan.Keep) * len(res.Plan.Keep[0])
			}
			if kept < want-slack || kept > want+slack {
				t.Fatalf("%s: %d rows kept over every head, want %d±%d (budget %d): %+v", p.Name(), kept, want, slack, budget, res)
			}
		}
	}
	out := [][]float32{logits}
	for range steps {
		if logits, err = s.Forward([]int{Argmax(logits)}); err != nil {
			t.Fatalf("decoding after %v: %v", p, err)
		}
		out = append(out, logits)
	}
	return out
}

// TestCalibrationOnEveryArchitecture: the calibration adapter runs on each
// architecture: attention rows are distributions over the prompt, and a
// shadow eviction that keeps every row reproduces the full outputs bit for
// bit while a real one changes them.
func TestCalibrationOnEveryArchitecture(t *testing.T) {
	r, _ := reftest.Rand(t)
	prompt := make([]int, 30)
	for i := range prompt {
		prompt[i] = r.IntN(67)
	}
	for _, tc := range archCases() {
		if tc.name != "llama-gqa" && tc.name != "qwen2" && tc.name != "qwen3" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			m := loadSynth(t, newSynth(r, tc.cfg, tc.f))
			cal := &Calibration{Model: m, Name: tc.name}
			if info := cal.Info(); info.HeadDim != m.HeadDim() || info.QueryHeads != m.Heads {
				t.Fatalf("info %+v", info)
			}
			for _, keepAll := range []bool{true, false} {
				run, err := cal.Start(context.Background(), prompt)
				if err != nil {
					t.Fatal(err)
				}
				attn, err := run.Attention(nil)
				if err != nil {
					t.Fatal(err)
				}
				for l := range attn {
					for h, row := range attn[l] {
						sum := 0.0
						for _, w := range row {
							sum += float64(w)
						}
						if len(row) != len(prompt) || sum < 0.999 || sum > 1.001 {
							t.Fatalf("layer %d head %d: %d weights summing to %v", l, h, len(row), sum)
						}
					}
				}
				keep := make([][][]int, m.Layers)
				if !keepAll {
					for l := range keep {
						keep[l] = make([][]int, m.KVHeads)
						for g := range keep[l] {
							keep[l][g] = []int{0, 3, 7, 20, 28, 29}
						}
					}
				}
				if err := run.Shadow(keep); err != nil {
					t.Fatal(err)
				}
				if err := run.Decode(context.Background(), run.Next()); err != nil {
					t.Fatal(err)
				}
				full, shadow, err := run.Outputs()
				if err != nil {
					t.Fatal(err)
				}
				for l := range full {
					if len(full[l]) != m.Dim || slices.Equal(full[l], shadow[l]) != keepAll {
						t.Fatalf("keep all %v, layer %d: outputs of %d values, equal %v", keepAll, l, len(full[l]), slices.Equal(full[l], shadow[l]))
					}
				}
				run.Close()
			}
		})
	}
}
