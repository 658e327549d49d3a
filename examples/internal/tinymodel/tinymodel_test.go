package tinymodel

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/examples/llama/chat"
	"github.com/compresskv/compresskv/examples/llama/gguf"
)

// TestModels: every architecture with every tokenizer loads with its
// tokenizer; a five-digit number is several tokens and a word of the
// corpus one; the chat templates are recognised; the favoured token is the
// greedy choice; the shape follows the spec.
func TestModels(t *testing.T) {
	for _, arch := range []string{"llama", "qwen2", "qwen3"} {
		for _, tk := range []Tokenizer{SPM, ChatML, Llama3} {
			t.Run(arch+"-"+string(tk), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "m.gguf")
				s := Spec{Arch: arch, Tokenizer: tk, Layers: 3, Heads: 4, KVHeads: 1, Seed: 5}
				if arch == "qwen3" {
					s.HeadDim = 24 // heads wider than Dim/Heads
				}
				if err := Write(path, s); err != nil {
					t.Fatal(err)
				}
				m, v, err := llama.OpenGGUF(path)
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				if m.Arch != arch || m.Layers != 3 || m.KVHeads != 1 || (arch == "qwen3") != (m.HeadDim() == 24) {
					t.Fatalf("config %+v", m.Config)
				}
				space := " " // SentencePiece adds the leading space itself
				if tk == SPM {
					space = ""
				}
				num, err := v.Encode(space+"58201", false, false)
				if err != nil || len(num) < 2 {
					t.Fatalf("a five-digit number is %v (%v): want several tokens", num, err)
				}
				word, err := v.Encode(space+"magic", false, false)
				if err != nil || len(word) != 1 {
					t.Fatalf("a corpus word is %v (%v): want one token", word, err)
				}
				f, err := gguf.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				tmpl, terr := f.String("tokenizer.chat_template")
				switch tk {
				case SPM:
					if terr == nil {
						t.Fatalf("a SentencePiece model with a template %q", tmpl)
					}
				default:
					got, err := chat.Detect(tmpl)
					want := map[Tokenizer]chat.Template{ChatML: chat.ChatML, Llama3: chat.Llama3}[tk]
					if err != nil || got != want {
						t.Fatalf("template detected as %q, %v; want %s", got, err, want)
					}
				}
			})
		}
	}
}

// TestFavour: a favoured token is the argmax after any prompt.
func TestFavour(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := Write(path, Spec{Arch: "qwen2", Tokenizer: ChatML, Favour: "<|im_end|>"}); err != nil {
		t.Fatal(err)
	}
	m, v, err := llama.OpenGGUF(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	id, _ := v.ID("<|im_end|>")
	cache, _ := m.NewCache(0)
	s, _ := m.NewSession(cache, nil)
	ids, _ := v.Encode("In the beginning", false, false)
	logits, err := s.Forward(ids)
	if err != nil {
		t.Fatal(err)
	}
	if got := llama.Argmax(logits); got != id || !v.IsEOG(got) {
		t.Fatalf("argmax %d, want %d (an end-of-generation token)", got, id)
	}
}

func TestBadSpec(t *testing.T) {
	for _, s := range []Spec{{Arch: "gpt2", Tokenizer: SPM}, {Arch: "llama", Tokenizer: "wordpiece"},
		{Arch: "llama", Tokenizer: SPM, Heads: 4, KVHeads: 3}, {Arch: "llama", Tokenizer: SPM, Favour: "<nope>"}} {
		if _, err := Build(s); !errors.Is(err, ErrSpec) {
			t.Errorf("%+v: %v", s, err)
		}
	}
	// The merges are learned the same way every time.
	a, b := tokenizerKV(Spec{Tokenizer: Llama3, Merges: 50}), tokenizerKV(Spec{Tokenizer: Llama3, Merges: 50})
	if !slices.Equal(a[0].value.([]string), b[0].value.([]string)) {
		t.Fatal("two vocabularies of one spec differ")
	}
}
