package niah

import (
	"context"
	"testing"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/kvcache"
)

// TestProjectModel runs the project's own retrieval model (committed in
// testdata with its profile) on evaluation needles at 1,024 tokens: it must
// decode every value with the full cache and with CompressKV at a budget of
// 64 tokens per layer, while StreamingLLM at the same budget, which keeps
// only the start and the end of the prompt, must miss a needle in the
// middle (so the budget really removes what the answer needs).
func TestProjectModel(t *testing.T) {
	m, err := llama.Load("../../" + llama.DefaultModel)
	if err != nil {
		t.Fatal(err)
	}
	prof, err := compresskv.LoadProfile("../../" + llama.DefaultProfile)
	if err != nil {
		t.Fatal(err)
	}
	hay, err := LoadHaystack("../../testdata/haystack/eval.txt")
	if err != nil {
		t.Fatal(err)
	}
	full, err := compresskv.New(compresskv.Full, compresskv.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ckv, err := compresskv.New(compresskv.CompressKV, compresskv.Config{Budget: 64, Kernel: llama.DefaultKernel, Profile: prof})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := compresskv.New(compresskv.StreamingLLM, compresskv.Config{Budget: 64})
	if err != nil {
		t.Fatal(err)
	}
	const length = 1024
	tok := llama.ByteTokenizer()
	depths := []float64{0.1, 0.5, 0.9}
	needles := Needles(EvalWords, len(depths), 5)
	for i, depth := range depths {
		p, err := Build(tok, hay, 1777*i, length, depth, needles[i])
		if err != nil {
			t.Fatal(err)
		}
		cache, err := m.NewCache(kvcache.Float32)
		if err != nil {
			t.Fatal(err)
		}
		s, err := m.NewSession(cache, nil)
		if err != nil {
			t.Fatal(err)
		}
		logits, q, err := s.Prefill(p.Tokens, 256)
		if err != nil {
			t.Fatal(err)
		}
		for _, pol := range []*compresskv.Policy{full, ckv, stream} {
			c := cache.Clone()
			cs, err := m.NewSession(c, nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := cs.Compress(context.Background(), pol, q)
			if err != nil {
				t.Fatal(err)
			}
			ans, err := Greedy(cs, logits, len(p.Needle.Value)+1, nil)
			if err != nil {
				t.Fatal(err)
			}
			ok := Correct(ans, p.Needle)
			got := tok.Decode(ans)
			switch pol.Method() {
			case compresskv.Full, compresskv.CompressKV:
				if !ok {
					t.Errorf("%s, depth %.1f: answered %q, want %q", pol.Method(), depth, got, p.Needle.Value)
				}
				if pol.Method() == compresskv.CompressKV {
					// Budgets average 64 tokens per layer: 1/16 of the prompt.
					if share := float64(res.BytesAfter) / float64(res.BytesBefore); share > 64.5/length {
						t.Errorf("CompressKV kept %.3f of the cache, want at most %.3f", share, 64.5/length)
					}
				}
			case compresskv.StreamingLLM:
				if depth == 0.5 && ok {
					t.Errorf("StreamingLLM at budget 64 answered a needle at depth 0.5 (%q): the budget removes nothing the answer needs", got)
				}
			}
		}
	}
}
