package llama

import (
	"bytes"
	"slices"
	"testing"

	"github.com/compresskv/compresskv/examples/llama/internal/randmodel"
	"github.com/compresskv/compresskv/kvcache"
)

// TestWriteLogits: the output parses in the format the goldens use; the
// prompt ids are the tokenizer's (BOS first unless NoBOS, special tokens
// parsed); the last logits are a session's, to the printed precision; each
// step's token is the argmax of the logits it reads and its top five are
// sorted and match a session run alongside.
func TestWriteLogits(t *testing.T) {
	m := repoModel(t)
	_, path := convert(t, m, ByteTokenizer(), "retrieval")
	g, v, err := OpenGGUF(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	const text = "In the beginning</s> God created"
	tok := ByteTokenizer()
	for _, noBOS := range []bool{false, true} {
		for _, opt := range []LogitsOptions{{Steps: 6, NoBOS: noBOS, Chunk: 7}, {Steps: 6, NoBOS: noBOS, Backend: true, Cache: kvcache.Float16}} {
			var buf bytes.Buffer
			if err := WriteLogits(&buf, g, v, text, opt); err != nil {
				t.Fatal(err)
			}
			out, err := randmodel.ParseOutput(&buf)
			if err != nil {
				t.Fatal(err)
			}
			want := append(append(tok.Encode("In the beginning", !noBOS, false), EOS), tok.Encode(" God created", false, false)...)
			if !slices.Equal(out.PromptIDs, want) {
				t.Fatalf("%+v: prompt ids %v, want %v", opt, out.PromptIDs, want)
			}
			c, _ := g.NewCache(opt.Cache)
			s, _ := g.NewSession(c, nil)
			s.LikeLlamaCpp = !opt.Backend
			logits, err := s.Forward(want)
			if err != nil {
				t.Fatal(err)
			}
			if len(out.LastLogits) != v.Size() {
				t.Fatalf("%d last logits for a vocabulary of %d", len(out.LastLogits), v.Size())
			}
			same := func(printed, x float32) bool { return abs32(printed-x) <= 1e-5*max(1, abs32(x)) }
			for i, x := range out.LastLogits {
				if !same(x, logits[i]) {
					t.Fatalf("%+v: last logit %d printed %v, the session computes %v", opt, i, x, logits[i])
				}
			}
			if len(out.Steps) != opt.Steps {
				t.Fatalf("%d steps printed", len(out.Steps))
			}
			for n, st := range out.Steps {
				if n > 0 {
					if logits, err = s.Forward([]int{out.Steps[n-1].ID}); err != nil {
						t.Fatal(err)
					}
				}
				if st.ID != Argmax(logits) {
					t.Fatalf("step %d: id %d, argmax %d", n, st.ID, Argmax(logits))
				}
				for k, e := range st.Top5 {
					if e.ID != Top(logits, 5)[k] || !same(e.Value, logits[e.ID]) {
						t.Fatalf("step %d: top five %v, the session's %v", n, st.Top5, Top(logits, 5))
					}
				}
			}
		}
	}
	var buf bytes.Buffer
	if err := WriteLogits(&buf, g, v, "", LogitsOptions{NoBOS: true}); err == nil {
		t.Fatal("an empty prompt was accepted")
	}
	if err := WriteLogits(&buf, g, v, "x", LogitsOptions{Steps: -1}); err == nil {
		t.Fatal("negative steps were accepted")
	}
}

func abs32(x float32) float32 { return max(x, -x) }

func TestTop(t *testing.T) {
	logits := []float32{1, 3, 2, 3, -1, 3, 0}
	if got := Top(logits, 5); !slices.Equal(got, []int{1, 3, 5, 2, 0}) {
		t.Fatalf("top five %v, want ties to the lower id", got)
	}
	if got := Top(logits[:2], 5); !slices.Equal(got, []int{1, 0}) {
		t.Fatalf("top of two %v", got)
	}
	if Argmax(logits) != 1 {
		t.Fatal("argmax does not break ties to the lower id")
	}
}
