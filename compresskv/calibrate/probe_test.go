package calibrate

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestJudge(t *testing.T) {
	cases := []struct {
		text, answer   string
		ended          bool
		right, decided bool
	}{
		{"123", "12345", false, false, false},   // could still become right
		{"124", "12345", false, false, true},    // cannot
		{"12345", "12345", false, false, false}, // a sixth digit would make it wrong
		{"12345.", "12345", false, true, true},
		{"123456", "12345", false, false, true},
		{"12345a", "12345", false, true, true}, // a letter does not continue a number
		{"12345", "12345", true, true, true},   // end of sequence
		{" Lily", "Lily", false, false, false},
		{" Lily went", "Lily", false, true, true},
		{" Lilyanne", "Lily", false, false, true},
		{"Lily2", "Lily", false, false, true},
		{"\nLily's", "Lily", false, true, true},
		{"Lil", "Lily", true, false, true}, // out of tokens
		{"", "Lily", true, false, true},
		{"Mr. X!", "Mr. X", false, true, true}, // a final symbol is continued by nothing
	}
	for _, c := range cases {
		right, decided := judge(c.text, c.answer, c.ended)
		if right != c.right || decided != c.decided {
			t.Errorf("judge(%q, %q, ended %v) = %v, %v; want %v, %v", c.text, c.answer, c.ended, right, decided, c.right, c.decided)
		}
	}
}

var bt = byteTok{}

func TestNewProbe(t *testing.T) {
	tok := newWordTok()
	p, err := NewProbe(tok, "once there was a girl named Lily . Lily liked the sun . one day ,", "Lily")
	if err != nil {
		t.Fatal(err)
	}
	// The last occurrence: BOS, 8 words, then "Lily" at token 9.
	if p.AnswerStart != 9 || p.AnswerEnd != 10 || tok.Decode(p.Prompt[p.AnswerStart:p.AnswerEnd]) != "Lily" || p.Answer != "Lily" {
		t.Fatalf("span [%d, %d) holds %q", p.AnswerStart, p.AnswerEnd, tok.Decode(p.Prompt[p.AnswerStart:p.AnswerEnd]))
	}
	if _, err := NewProbe(tok, "no name here", "Lily"); err == nil || !strings.Contains(err.Error(), "does not contain") {
		t.Fatalf("error %v", err)
	}
	if _, err := NewProbe(tok, "x", "  "); err == nil {
		t.Fatal("empty answer accepted")
	}
	if _, err := NewProbe(nil, "x", "x"); err == nil {
		t.Fatal("nil tokenizer accepted")
	}
	// A tokenizer that does not round-trip: the occurrence is found in the
	// decoding (newlines and double spaces become single spaces).
	p, err = NewProbe(tok, "a  Lily b\nc Lily\n\nd Lily e", "Lily")
	if err != nil {
		t.Fatal(err)
	}
	if p.AnswerStart != 7 || p.AnswerEnd != 8 {
		t.Fatalf("span [%d, %d), want [7, 8)", p.AnswerStart, p.AnswerEnd)
	}
	// Byte-level: one token per byte, BOS first.
	p, err = NewProbe(byteTok{}, "the code is 4711; remember 4711 and say", "4711")
	if err != nil {
		t.Fatal(err)
	}
	if p.AnswerStart != 1+27 || p.AnswerEnd != 1+31 {
		t.Fatalf("byte span [%d, %d)", p.AnswerStart, p.AnswerEnd)
	}
}

// TestTokenSpanMergedTokens: with a tokenizer whose tokens straddle the
// answer's bytes, the span is every token that overlaps them.
func TestTokenSpanMergedTokens(t *testing.T) {
	// Pairs of bytes per token: "ab|cd|ef|gh".
	pairs := pairTok{}
	text := "abcdefgh"
	ids := pairs.Encode(text)
	for _, c := range []struct {
		answer string
		at     int
		s, e   int
	}{{"cd", 2, 2, 3}, {"de", 3, 2, 4}, {"d", 3, 2, 3}, {"abcdefgh", 0, 1, 5}, {"h", 7, 4, 5}} {
		s, e, err := tokenSpan(pairs, ids, text, c.answer, c.at)
		if err != nil || s != c.s || e != c.e {
			t.Errorf("%q at %d: [%d, %d) %v, want [%d, %d)", c.answer, c.at, s, e, err, c.s, c.e)
		}
	}
}

// pairTok encodes two bytes per token after BOS.
type pairTok struct{}

func (pairTok) Encode(text string) []int {
	ids := []int{1}
	for i := 0; i < len(text); i += 2 {
		ids = append(ids, 1000+i) // the id encodes the offset; Decode looks it up
	}
	return ids
}

func (pairTok) Decode(ids []int) string {
	const text = "abcdefgh"
	var sb strings.Builder
	for _, id := range ids {
		if id >= 1000 {
			i := id - 1000
			sb.WriteString(text[i:min(len(text), i+2)])
		}
	}
	return sb.String()
}

func TestBuildNeedleByteLevel(t *testing.T) {
	hay := strings.Repeat("In the beginning was the word and the word was with the people. ", 40)
	needles, err := Needles(DefaultNeedleTemplates, []string{"acorn", "birch"}, 8, 5, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range needles {
		for _, L := range []int{160, 301, 1024} {
			for _, depth := range Depths(5) {
				p, err := BuildNeedle(byteTok{}, hay, 17, L, depth, n)
				if err != nil {
					t.Fatal(err)
				}
				if len(p.Prompt) != L || p.Prompt[0] != 1 {
					t.Fatalf("%d tokens, want exactly %d starting with BOS", len(p.Prompt), L)
				}
				text := bt.Decode(p.Prompt)
				if got := bt.Decode(p.Prompt[p.AnswerStart:p.AnswerEnd]); got != n.Value || p.Answer != n.Value {
					t.Fatalf("span holds %q, answer %q, want %q", got, p.Answer, n.Value)
				}
				if !strings.Contains(text, n.Sentence()) || !strings.HasSuffix(text, n.Ask()) {
					t.Fatalf("prompt lacks the needle or does not end with the question: %q", text)
				}
				hayLen := len(text) - len(n.Ask()) - len(n.Sentence()) - 2
				at := float64(strings.Index(text, n.Sentence())) / float64(hayLen)
				tol := 0.01 + 12/float64(hayLen)
				if at < depth-tol || at > depth+tol {
					t.Fatalf("depth %v: needle at %.3f", depth, at)
				}
			}
		}
	}
	if _, err := BuildNeedle(byteTok{}, hay, 0, 40, 0.5, needles[0]); err == nil {
		t.Fatal("a length without room for a haystack was accepted")
	}
	if _, err := BuildNeedle(byteTok{}, hay, 0, 400, 1.5, needles[0]); err == nil {
		t.Fatal("depth 1.5 accepted")
	}
	if _, err := BuildNeedle(byteTok{}, "", 0, 400, 0.5, needles[0]); err == nil {
		t.Fatal("empty haystack accepted")
	}
}

// TestBuildNeedleWordLevel: with a word-level tokenizer the prompt fits the
// length from below and the span holds the value.
func TestBuildNeedleWordLevel(t *testing.T) {
	tok := newWordTok()
	hay := haystackWords(2000, 3)
	needles, _ := Needles(DefaultNeedleTemplates, []string{"cedar"}, 4, 4, 2)
	for _, n := range needles {
		for _, L := range []int{40, 97, 500} {
			p, err := BuildNeedle(tok, hay, 123, L, 0.3, n)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Prompt) > L || len(p.Prompt) < L-2 {
				t.Fatalf("%d tokens for a length of %d", len(p.Prompt), L)
			}
			if got := tok.Decode(p.Prompt[p.AnswerStart:p.AnswerEnd]); !strings.Contains(got, n.Value) || p.AnswerEnd-p.AnswerStart != 1 {
				t.Fatalf("span [%d, %d) holds %q, want the word with %q", p.AnswerStart, p.AnswerEnd, got, n.Value)
			}
		}
	}
}

func TestNeedlesDeterministic(t *testing.T) {
	keys := strings.Fields("a b c d e f g")
	a, _ := Needles(DefaultNeedleTemplates, keys, 20, 5, 11)
	b, _ := Needles(DefaultNeedleTemplates, keys, 20, 5, 11)
	c, _ := Needles(DefaultNeedleTemplates, keys, 20, 5, 12)
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("same seed, other needles")
		}
		if len(a[i].Value) != 5 || strings.Trim(a[i].Value, "0123456789") != "" {
			t.Fatalf("value %q", a[i].Value)
		}
		if a[i].Template != DefaultNeedleTemplates[i%4] {
			t.Fatal("templates not in turn")
		}
	}
	same := 0
	for i := range a {
		if a[i] == c[i] {
			same++
		}
	}
	if same == len(a) {
		t.Fatal("another seed gave the same needles")
	}
	if _, err := Needles(nil, keys, 1, 5, 1); err == nil {
		t.Fatal("no templates accepted")
	}
	if _, err := Needles(DefaultNeedleTemplates, keys, 1, 0, 1); err == nil {
		t.Fatal("zero digits accepted")
	}
}

func TestTextPrompts(t *testing.T) {
	text := strings.Repeat("the quick brown fox jumps over the lazy dog ", 100)
	ps, err := TextPrompts(byteTok{}, text, []int{50, 80}, 5)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range ps {
		want := []int{50, 80}[i%2]
		if len(p) != want || p[0] != 1 {
			t.Fatalf("prompt %d: %d tokens, want %d from BOS", i, len(p), want)
		}
		start := (i * 65537) % (len(text) - len(p))
		if got := bt.Decode(p); got != text[start:start+len(p)-1] {
			t.Fatalf("prompt %d is not the text at byte %d", i, start)
		}
	}
	ws, err := TextPrompts(newWordTok(), text, []int{30}, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ws {
		if len(p) != 30 {
			t.Fatalf("%d word tokens, want 30", len(p))
		}
	}
	if _, err := TextPrompts(byteTok{}, "short", []int{50}, 1); err == nil {
		t.Fatal("text shorter than a prompt accepted")
	}
	// The second prompt starts in trailing spaces and is taken from the
	// beginning instead; two tokens, so the first try there is half of one.
	wt := newWordTok()
	ps, err = TextPrompts(wt, "a b"+strings.Repeat(" ", 30), []int{2}, 2)
	if err != nil || len(ps[1]) != 2 || wt.Decode(ps[1]) != "a" {
		t.Fatalf("%v %v", ps, err)
	}
	if _, err := NewProbe(nothingTok{}, "Lily", "Lily"); err == nil {
		t.Fatal("a tokenizer that encodes nothing was accepted")
	}
}

// nothingTok encodes every text as no tokens.
type nothingTok struct{}

func (nothingTok) Encode(string) []int { return nil }
func (nothingTok) Decode([]int) string { return "" }

// TestNewProbeRandom: on random texts, the span of a random word's last
// occurrence decodes to exactly that word at byte level, and holds it at
// word level.
func TestNewProbeRandom(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 3))
	words := strings.Fields("lily tom ran to the park and saw a big red ball 42 7 x")
	for trial := 0; trial < 200; trial++ {
		n := 1 + rng.IntN(40)
		ws := make([]string, n)
		for i := range ws {
			ws[i] = words[rng.IntN(len(words))]
		}
		text := strings.Join(ws, " ")
		answer := ws[rng.IntN(n)]
		p, err := NewProbe(bt, text, answer)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		at := strings.LastIndex(text, answer)
		if got := bt.Decode(p.Prompt[p.AnswerStart:p.AnswerEnd]); got != answer || p.AnswerStart != 1+at {
			t.Fatalf("seed %d: %q in %q: span [%d, %d) holds %q", seed, answer, text, p.AnswerStart, p.AnswerEnd, got)
		}
		wt := newWordTok()
		p, err = NewProbe(wt, text, answer)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if got := wt.Decode(p.Prompt[p.AnswerStart:p.AnswerEnd]); !strings.Contains(got, answer) {
			t.Fatalf("seed %d: %q in %q: word span holds %q", seed, answer, text, got)
		}
	}
}

// chatTok is byteTok behind a chat template: special ids userTurn and
// botTurn open the user's and the assistant's turn, endTurn ends a turn
// (Decode drops them, as a model's tokenizer drops special tokens).
type chatTok struct{ byteTok }

const userTurn, botTurn, endTurn = 300, 301, 302

func (c chatTok) EncodeChat(user, lead string) []int {
	ids := []int{1, userTurn}
	ids = append(ids, c.Encode(user)[1:]...)
	ids = append(ids, endTurn, botTurn)
	return append(ids, c.Encode(lead)[1:]...)
}

func (c chatTok) Decode(ids []int) string {
	return c.byteTok.Decode(slices.DeleteFunc(slices.Clone(ids), func(id int) bool { return id >= userTurn }))
}

// TestBuildNeedleChat: for a chat model the haystack and the question make
// the user's turn and the answer's start opens the assistant's; the span
// still holds the value and the length is exact.
func TestBuildNeedleChat(t *testing.T) {
	hay := strings.Repeat("Rivers run down to the sea and the sea gives back the rain. ", 40)
	needles, err := Needles(DefaultNeedleTemplates, []string{"otter"}, 4, 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	tok := chatTok{}
	for _, n := range needles {
		for _, L := range []int{200, 513} {
			p, err := BuildNeedle(tok, hay, 5, L, 0.4, n)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Prompt) != L {
				t.Fatalf("%d tokens, want %d", len(p.Prompt), L)
			}
			if got := tok.Decode(p.Prompt[p.AnswerStart:p.AnswerEnd]); got != n.Value {
				t.Fatalf("span holds %q, want %q", got, n.Value)
			}
			lead := n.fill(n.Template.Prefix)
			turn := slices.Index(p.Prompt, botTurn)
			if p.Prompt[1] != userTurn || turn < 0 || p.Prompt[turn-1] != endTurn || tok.Decode(p.Prompt[turn+1:]) != lead {
				t.Fatalf("not one user turn then the assistant's opening with %q: %v", lead, p.Prompt[:4])
			}
			if user := tok.Decode(p.Prompt[2 : turn-1]); !strings.HasSuffix(user, "\n"+n.fill(n.Template.Question)) || !strings.Contains(user, n.Sentence()) {
				t.Fatalf("the user's turn lacks the needle or does not end with the question: %q", user)
			}
		}
	}
}
