package llama

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/compresskv/compresskv/kvcache"
)

// convert writes m and tok as a GGUF file in a temporary directory and
// loads it back.
func convert(t *testing.T, m *Model, tok *Tokenizer, name string) (*Model, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".gguf")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.WriteGGUF(f, GGUFOptions{Name: name, Tokenizer: tok}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	g, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g, path
}

// sameLogits runs prompt through both models in chunks of chunk tokens, then
// steps greedy tokens, and fails unless every logit is bit for bit equal.
func sameLogits(t *testing.T, a, b *Model, prompt []int, chunk, steps int, dt kvcache.DType) {
	t.Helper()
	run := func(m *Model) [][]float32 {
		c, err := m.NewCache(dt)
		if err != nil {
			t.Fatal(err)
		}
		s, err := m.NewSession(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		logits, _, err := s.Prefill(prompt, chunk)
		if err != nil {
			t.Fatal(err)
		}
		out := [][]float32{logits}
		for range steps {
			if logits, err = s.Forward([]int{Argmax(logits)}); err != nil {
				t.Fatal(err)
			}
			out = append(out, logits)
		}
		return out
	}
	x, y := run(a), run(b)
	for i := range x {
		if !slices.Equal(x[i], y[i]) {
			t.Fatalf("%v cache: step %d: the converted model's logits differ from the checkpoint's", dt, i)
		}
	}
}

// TestConvertRetrievalModel: the project's byte-level model, converted to
// GGUF, has the checkpoint's shape and gives its logits bit for bit.
func TestConvertRetrievalModel(t *testing.T) {
	m := repoModel(t)
	g, path := convert(t, m, ByteTokenizer(), "retrieval")
	if g.Config != m.Config {
		t.Fatalf("converted shape %+v, checkpoint %+v", g.Config, m.Config)
	}
	tok := ByteTokenizer()
	prompt := tok.Encode(repoHaystack(t)[:300], true, false)
	for _, dt := range []kvcache.DType{kvcache.Float32, kvcache.Float16} {
		sameLogits(t, m, g, prompt, 128, 8, dt)
	}
	hay := repoHaystack(t)
	sameTokens(t, path, tok, append(tokenTexts, hay[:2000], hay[5000:5100]+"\n\nThe pass code of the acorn is 40213.  Remember it."))
}

// tokenTexts exercise the tokenizers: spaces (leading, doubled,
// trailing), newlines and tabs, punctuation, digits and characters beyond
// ASCII that no piece covers.
var tokenTexts = []string{
	"",
	" ",
	"Once upon a time, there was a little girl named Lily.",
	"  two leading spaces,  two inside, one trailing ",
	"lines\nand\n\nblank lines\twith a tab",
	"digits 0123456789 and 3.14, \"quotes\" (brackets) [x] {y} <z>",
	"café naïve — “curly” ‘quotes’ … 日本語 emoji 🙂",
}

// TestConvertStories: stories260K, converted to GGUF, gives the
// checkpoint's logits bit for bit and decodes the golden greedy ids of
// llama2.c's run.c from BOS.
func TestConvertStories(t *testing.T) {
	m, tok := loadStories(t)
	g, path := convert(t, m, tok, "stories260K")
	if g.Config != m.Config {
		t.Fatalf("converted shape %+v, checkpoint %+v", g.Config, m.Config)
	}
	prompt := tok.Encode("Once upon a time, there was a little girl named Lily.", true, false)
	sameLogits(t, m, g, prompt, 5, 20, kvcache.Float32)
	want := golden(t)
	c, _ := g.NewCache(kvcache.Float32)
	s, _ := g.NewSession(c, nil)
	if got := greedy(t, s, []int{BOS}, len(want)); !slices.Equal(got, want) {
		t.Fatalf("converted model from BOS:\n got %v\nwant %v", got, want)
	}
	sameTokens(t, path, tok, append(tokenTexts, tok.Decode(want),
		"Tom and Sara went to the park. They saw a big dog! \"Look,\" said Tom. The dog was happy and wagged its tail."))
}

// sameTokens fails unless the converted file's tokenizer (package vocab,
// as llama.cpp tokenizes) gives tok's ids for every text, BOS first, and
// decodes them after BOS to the same text.
func sameTokens(t *testing.T, path string, tok *Tokenizer, texts []string) {
	t.Helper()
	m, v, err := OpenGGUF(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if v.BOS() != BOS || v.EOS() != EOS || !v.AddBOS() {
		t.Fatalf("converted vocabulary: BOS %d, EOS %d, adds BOS %v", v.BOS(), v.EOS(), v.AddBOS())
	}
	for _, text := range texts {
		want := tok.Encode(text, true, false)
		got, err := v.Encode(text, true, true)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%q:\n converted %v\n checkpoint %v", text, got, want)
		}
		if back, err := v.Decode(got[1:]); err != nil || back != tok.Decode(want) {
			t.Fatalf("%q decodes to %q (%v), the checkpoint's tokenizer to %q", text, back, err, tok.Decode(want))
		}
	}
}
