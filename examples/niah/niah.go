// Package niah builds needle-in-a-haystack prompts for the examples: a
// needle sentence holding a value is inserted at a chosen depth of a
// haystack, and a question at the end repeats the needle's wording up to the
// value, which the model must then produce. The templates are the ones the
// project's model was trained on (tools/train/train.py); the words used for
// calibration and for evaluation are disjoint, and so are their haystacks.
package niah

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"

	"github.com/compresskv/compresskv/examples/llama"
)

// Template is one needle wording.
type Template struct {
	Needle   string // with {w} (the key word) and {n} (the value)
	Question string // with {w}
	Prefix   string // the answer's start, with {w}; the value follows it
}

// Templates are the needle wordings the project's model was trained on.
var Templates = []Template{
	{"The special magic number for {w} is {n}.", "What is the special magic number for {w}?", "The special magic number for {w} is "},
	{"The secret code of the {w} is {n}.", "What is the secret code of the {w}?", "The secret code of the {w} is "},
	{"Remember that the {w} key opens door {n}.", "Which door does the {w} key open?", "The {w} key opens door "},
	{"The {w} was born in the year {n}.", "In which year was the {w} born?", "The {w} was born in the year "},
}

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

func fill(s string, n Needle) string {
	return strings.NewReplacer("{w}", n.Word, "{n}", n.Value).Replace(s)
}

// Sentence returns the needle as inserted in the haystack.
func (n Needle) Sentence() string { return fill(Templates[n.Template].Needle, n) }

// Ask returns the question and the answer's start that end the prompt.
func (n Needle) Ask() string {
	t := Templates[n.Template]
	return "\n" + fill(t.Question, n) + " " + fill(t.Prefix, n)
}

// Needles returns count needles drawn with seed from words, one template
// each in turn, five-digit values.
func Needles(words []string, count int, seed uint64) []Needle {
	rng := rand.New(rand.NewPCG(seed, 0x6e65))
	perm := rng.Perm(len(words))
	out := make([]Needle, count)
	for i := range out {
		v := make([]byte, 5)
		for j := range v {
			v[j] = byte('0' + rng.IntN(10))
		}
		out[i] = Needle{Template: i % len(Templates), Word: words[perm[i%len(perm)]], Value: string(v)}
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
// part, on a word boundary.
func Build(tok *llama.Tokenizer, hay string, start, length int, depth float64, n Needle) (Prompt, error) {
	needle := " " + n.Sentence() + " "
	ask := n.Ask()
	room := length - 1 - len(needle) - len(ask)
	if room < 16 {
		return Prompt{}, fmt.Errorf("niah: %d tokens leave no room for a haystack around %q", length, n.Sentence())
	}
	if depth < 0 || depth > 1 {
		return Prompt{}, fmt.Errorf("niah: depth %v outside [0, 1]", depth)
	}
	var sb strings.Builder
	for i := start % len(hay); sb.Len() < room; i = 0 {
		sb.WriteString(hay[i:min(len(hay), i+room-sb.Len())])
	}
	h := sb.String()
	cut := int(depth * float64(len(h)))
	if sp := strings.LastIndexByte(h[:cut], ' '); sp >= 0 && depth < 1 {
		cut = sp + 1
	}
	text := h[:cut] + needle + h[cut:] + ask
	ids := tok.Encode(text, true, false)
	if len(ids) != length {
		return Prompt{}, fmt.Errorf("niah: prompt of %d tokens, want %d (a byte-level tokenizer is needed)", len(ids), length)
	}
	vs := 1 + cut + strings.Index(needle, n.Value)
	return Prompt{Tokens: ids, Needle: n, Depth: depth, ValueStart: vs, ValueEnd: vs + len(n.Value)}, nil
}

// Depths returns k depths evenly from 0 to 1 (k=11: 0, 0.1, ..., 1).
func Depths(k int) []float64 {
	d := make([]float64, k)
	for i := range d {
		d[i] = float64(i) / float64(max(1, k-1))
	}
	return d
}

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

// ParseInts parses a comma-separated list of positive integers, such as a
// command line's lengths or budgets.
func ParseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}
