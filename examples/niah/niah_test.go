package niah

import (
	"strings"
	"testing"

	"github.com/compresskv/compresskv/examples/llama"
)

func TestBuild(t *testing.T) {
	tok := llama.ByteTokenizer()
	hay := strings.Repeat("In the beginning was the word and the word was with the people. ", 40)
	for _, n := range Needles(EvalWords, 8, 1) {
		for _, L := range []int{160, 300, 1024} {
			for _, depth := range Depths(11) {
				p, err := Build(tok, hay, 17, L, depth, n)
				if err != nil {
					t.Fatal(err)
				}
				if len(p.Tokens) != L || p.Tokens[0] != llama.BOS {
					t.Fatalf("%d tokens, want %d starting with BOS", len(p.Tokens), L)
				}
				text := tok.Decode(p.Tokens)
				if got := tok.Decode(p.Tokens[p.ValueStart:p.ValueEnd]); got != n.Value {
					t.Fatalf("answer span holds %q, want %q", got, n.Value)
				}
				if !strings.Contains(text, n.Sentence()) || !strings.HasSuffix(text, n.Ask()) {
					t.Fatalf("prompt lacks the needle or does not end with the question: %q", text)
				}
				// The needle sits at about the asked depth of the haystack part.
				hayLen := len(text) - len(n.Ask()) - len(n.Sentence()) - 2
				at := float64(strings.Index(text, n.Sentence())) / float64(hayLen)
				tol := 0.01 + 12/float64(hayLen) // the needle moves back to a word boundary
				if at < depth-tol || at > depth+tol {
					t.Fatalf("depth %v: needle at %.2f of the prompt", depth, at)
				}
			}
		}
	}
	if _, err := Build(tok, hay, 0, 40, 0.5, Needles(EvalWords, 1, 1)[0]); err == nil {
		t.Fatal("a prompt too short for its needle was accepted")
	}
	for _, w := range EvalWords {
		for _, c := range CalibWords {
			if w == c {
				t.Fatalf("%q is both an evaluation and a calibration word", w)
			}
		}
	}
}

func TestCorrect(t *testing.T) {
	n := Needle{Word: "amber", Value: "40713"}
	ids := func(s string) []int { return llama.ByteTokenizer().Encode(s, false, false) }
	for s, want := range map[string]bool{"40713.": true, "40713": true, "40713\n": true, "407135": false, "4071": false, "40714.": false} {
		if got := Correct(ids(s), n); got != want {
			t.Errorf("Correct(%q) = %v, want %v", s, got, want)
		}
	}
}
