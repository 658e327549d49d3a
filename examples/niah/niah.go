// Package niah builds needle-in-a-haystack prompts for the examples: a
// needle sentence holding a value is inserted at a chosen depth of a
// haystack, and a question at the end repeats the needle's wording up to the
// value, which the model must then produce. The templates are the ones the
// project's model was trained on (tools/train/train.py); the words used for
// calibration and for evaluation are disjoint, and so are their haystacks.
// The prompts themselves are built by the library's probe builders
// (calibrate.BuildNeedle); StoryProbes builds the character-name probes of
// small story models.
//
// It is importable on purpose: the word lists, haystacks and prompt
// builders are the benchmarks' material, and a program that measures a
// policy on the project's model the way docs/RESULTS.md does uses them as
// the example commands do. Build, Greedy and Correct are byte-level: they
// place the needle one token per byte and read the answer's digits as
// bytes, as the project's model reads them; BuildFor builds the same
// prompts in any tokenizer's tokens.
package niah

import (
	"fmt"
	"os"
	"strings"

	"github.com/compresskv/compresskv/compresskv/calibrate"
	"github.com/compresskv/compresskv/examples/llama"
)

// Template is one needle wording.
type Template = calibrate.NeedleTemplate

// Templates are the needle wordings the project's model was trained on.
var Templates = calibrate.DefaultNeedleTemplates

// EvalWords and CalibWords are the key words of evaluation and calibration
// needles; no word is in both.
var (
	EvalWords = strings.Fields(`amber anchor badger bamboo beacon bison canyon cedar cobalt comet coral
		dahlia falcon fennel garnet glacier harbor hazel heron indigo jasper juniper kestrel lagoon
		lantern maple marble meadow nectar onyx orchid otter pebble quartz raven saffron sequoia
		tundra velvet walnut willow zephyr`)
	CalibWords = strings.Fields(`acorn alder aspen basil birch bramble cinder clover copper cricket
		crimson daisy ember fern flint gravel hemlock ivory lark lilac linen mango moss nutmeg
		ochre olive opal pepper plum quill reed ruby sage slate sparrow thistle topaz umber
		violet wren`)
)

// Needle is one fact to retrieve.
type Needle struct {
	Template int    // index into Templates
	Word     string // the key
	Value    string // the digits to retrieve
}

func (n Needle) lib() calibrate.Needle {
	return calibrate.Needle{Template: Templates[n.Template], Key: n.Word, Value: n.Value}
}

// Sentence returns the needle as inserted in the haystack.
func (n Needle) Sentence() string { return n.lib().Sentence() }

// Ask returns the question and the answer's start that end the prompt.
func (n Needle) Ask() string { return n.lib().Ask() }

// Needles returns count needles drawn with seed from words, one template
// each in turn, five-digit values (calibrate.Needles over Templates); nil
// when words is empty or count negative.
func Needles(words []string, count int, seed uint64) []Needle {
	lib, err := calibrate.Needles(Templates, words, count, 5, seed)
	if err != nil {
		return nil
	}
	out := make([]Needle, count)
	for i, n := range lib {
		out[i] = Needle{Template: i % len(Templates), Word: n.Key, Value: n.Value}
	}
	return out
}

// LoadHaystack reads a haystack text file (one paragraph per line) as one
// string of prose.
func LoadHaystack(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.Join(strings.Fields(string(b)), " "), nil
}

// Prompt is one needle-in-a-haystack prompt.
type Prompt struct {
	Tokens []int   // BOS, haystack with the needle, question, answer start
	Needle Needle  // what it asks for
	Depth  float64 // where the needle sits, 0 (start) .. 1 (end of the haystack)
	// ValueStart and ValueEnd are the token positions of the value inside
	// the needle: the answer span the SR score is measured over.
	ValueStart, ValueEnd int
}

// Build returns a prompt of exactly length tokens with tok (a byte-level
// tokenizer: one token per byte), taking the haystack from hay at offset
// start (wrapping around), with the needle at depth (0..1) of the haystack
// part, on a word boundary: BuildFor, checked to be exact.
func Build(tok *llama.Tokenizer, hay string, start, length int, depth float64, n Needle) (Prompt, error) {
	p, err := BuildFor(llama.ProbeTokenizer{Tokenizer: tok}, hay, start, length, depth, n)
	if err != nil {
		return Prompt{}, err
	}
	if len(p.Tokens) != length {
		return Prompt{}, fmt.Errorf("niah: prompt of %d tokens, want %d (a byte-level tokenizer is needed)", len(p.Tokens), length)
	}
	return p, nil
}

// BuildFor returns a prompt in the tokens of any model's tokenizer
// (calibrate.BuildNeedle): about length tokens (as close below as the
// tokenizer allows; exactly, for a byte-level one), the needle at depth of
// the haystack taken from hay at offset start, the value's span located in
// token positions. A calibrate.ChatTokenizer makes it one user turn and
// the assistant's opening.
func BuildFor(tok calibrate.Tokenizer, hay string, start, length int, depth float64, n Needle) (Prompt, error) {
	p, err := calibrate.BuildNeedle(tok, hay, start, length, depth, n.lib())
	if err != nil {
		return Prompt{}, err
	}
	return Prompt{Tokens: p.Prompt, Needle: n, Depth: depth, ValueStart: p.AnswerStart, ValueEnd: p.AnswerEnd}, nil
}

// Depths returns k depths evenly from 0 to 1 (k=11: 0, 0.1, ..., 1).
func Depths(k int) []float64 { return calibrate.Depths(k) }

// Greedy decodes from the logits of the prompt's last token, at most max
// tokens, stopping after a token that is not a digit (the period that ends
// an answer), a newline or EOS. It returns the generated ids. observe, if not
// nil, sees each token as it is chosen, before it is run (a recorder of the
// step that produced it); its error stops decoding.
func Greedy(s *llama.Session, logits []float32, max int, observe func(id int) error) ([]int, error) {
	var out []int
	for len(out) < max {
		id := llama.Argmax(logits)
		if observe != nil {
			if err := observe(id); err != nil {
				return nil, err
			}
		}
		out = append(out, id)
		if !isDigit(id) {
			break
		}
		var err error
		if logits, err = s.Forward([]int{id}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func isDigit(id int) bool { return id >= llama.ByteBase+'0' && id <= llama.ByteBase+'9' }

// Correct reports whether answer (generated ids, byte-level) is exactly the
// needle's value, followed by anything that is not a digit.
func Correct(answer []int, n Needle) bool {
	if len(answer) < len(n.Value) {
		return false
	}
	for i := 0; i < len(n.Value); i++ {
		if answer[i] != llama.ByteBase+int(n.Value[i]) {
			return false
		}
	}
	return len(answer) == len(n.Value) || !isDigit(answer[len(n.Value)])
}
