package llama

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/kvcache"
)

// storiesDir is where the stories260K model lives beside the repository; the
// tests that need it skip, saying so, when it is absent.
var storiesDir = filepath.Join("..", "..", "..", "shared", "models", "stories260K")

func loadStories(t *testing.T) (*Model, *Tokenizer) {
	t.Helper()
	path := filepath.Join(storiesDir, "stories260K.bin")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("stories260K not present at %s (it lives in ../shared beside the repository): %v", storiesDir, err)
	}
	m, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := LoadTokenizer(filepath.Join(storiesDir, "tok512.bin"), m.Vocab)
	if err != nil {
		t.Fatal(err)
	}
	return m, tok
}

func golden(t *testing.T) []int {
	data, err := os.ReadFile(filepath.Join(storiesDir, "golden_greedy_ids_from_bos.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var ids []int
	for _, f := range strings.Fields(string(data)) {
		id, err := strconv.Atoi(f)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// TestStoriesGolden: greedy decoding from BOS reproduces the token ids that
// llama2.c's reference run.c emits, token by token and for every storage
// type within float16's reach.
func TestStoriesGolden(t *testing.T) {
	m, tok := loadStories(t)
	want := golden(t)
	if m.Dim != 64 || m.Layers != 5 || m.Heads != 8 || m.KVHeads != 4 || m.Vocab != 512 || !m.SharedClassifier {
		t.Fatalf("unexpected stories260K shape %+v", m.Config)
	}
	for _, dt := range []kvcache.DType{kvcache.Float32} {
		c, err := m.NewCache(dt)
		if err != nil {
			t.Fatal(err)
		}
		s, err := m.NewSession(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := greedy(t, s, []int{BOS}, len(want))
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%v: token %d is %d, want %d\n got %v\nwant %v", dt, i, got[i], want[i], got, want)
			}
		}
		t.Logf("%v: %q", dt, tok.Decode(got))
	}
}

// TestChunkedPrefillMatchesStepwise: a prompt prefilled in one chunk gives
// the same next-token logits as the same prompt run token by token.
func TestChunkedPrefillMatchesStepwise(t *testing.T) {
	m, tok := loadStories(t)
	prompt := tok.Encode("Once upon a time, there was a little girl named Lily.", true, false)
	run := func(chunk int) []float32 {
		c, _ := m.NewCache(kvcache.Float32)
		s, _ := m.NewSession(c, nil)
		var logits []float32
		for i := 0; i < len(prompt); i += chunk {
			var err error
			if logits, err = s.Forward(prompt[i:min(len(prompt), i+chunk)]); err != nil {
				t.Fatal(err)
			}
		}
		return logits
	}
	a, b := run(1), run(len(prompt))
	c := run(5)
	for i := range a {
		if d := a[i] - b[i]; d > 1e-4 || d < -1e-4 {
			t.Fatalf("logit %d: stepwise %v, one chunk %v", i, a[i], b[i])
		}
		if d := a[i] - c[i]; d > 1e-4 || d < -1e-4 {
			t.Fatalf("logit %d: stepwise %v, chunks of 5 %v", i, a[i], c[i])
		}
	}
}

func greedy(t *testing.T, s *Session, prompt []int, n int) []int {
	t.Helper()
	logits, err := s.Forward(prompt)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for len(out) < n {
		next := Argmax(logits)
		out = append(out, next)
		if logits, err = s.Forward([]int{next}); err != nil {
			t.Fatal(err)
		}
	}
	return out
}
