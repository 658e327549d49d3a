package calibrate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/compresskv/compresskv/compresskv"
)

// Tokenizer is the seam between probe builders and a model's vocabulary:
// probes are built as text and placed in the model's own token positions
// through it, so the same builders serve byte-level and subword models.
type Tokenizer interface {
	// Encode returns the ids of a whole prompt as the model reads it, its
	// beginning-of-sequence token first if the model uses one.
	Encode(text string) []int
	// Decode returns the text of ids, special tokens dropped. Decoding a
	// prefix of ids must give a prefix of the text of all of them (true of
	// byte-level and SentencePiece vocabularies).
	Decode(ids []int) string
}

// ChatTokenizer is a Tokenizer of an instruction-tuned model that reads its
// prompts through a chat template. The needle builders ask such a model as
// a user would: the haystack and the question make one user turn, and the
// assistant's turn opens with the answer's start (the needle template's
// Prefix), which the model continues with the value.
type ChatTokenizer interface {
	Tokenizer
	// EncodeChat returns the ids of a conversation of one user turn, user,
	// then the opening of the assistant's turn followed by lead, with the
	// beginning-of-sequence token first if the model uses one.
	EncodeChat(user, lead string) []int
}

// Probe is one retrieval probe: a prompt holding a fact, and the answer the
// model must produce next by copying the fact from the prompt. Config
// decodes it greedily with the full cache and counts it only if the answer
// comes out right.
type Probe struct {
	// Prompt holds the token ids the model reads.
	Prompt []int
	// AnswerStart and AnswerEnd delimit the answer span in Prompt, token
	// positions [AnswerStart, AnswerEnd): the span whose attention mass the
	// SR score measures.
	AnswerStart, AnswerEnd int
	// Answer is the text the model must produce after Prompt. Leading white
	// space is ignored on both sides; the answer is right when the decoded
	// continuation begins with it and the next character does not continue
	// it (no digit after a final digit, no letter or digit after a final
	// letter).
	Answer string
	// MaxTokens bounds the decoded tokens; zero means twice the span's
	// length plus 2.
	MaxTokens int
	// Group labels the probe in the report's per-group counts (for
	// example its length); optional.
	Group string
}

func (p *Probe) maxTokens() int {
	if p.MaxTokens > 0 {
		return p.MaxTokens
	}
	return 2*(p.AnswerEnd-p.AnswerStart) + 2
}

func (p *Probe) validate() error {
	if len(p.Prompt) == 0 {
		return fmt.Errorf("empty prompt: %w", compresskv.ErrConfig)
	}
	if p.AnswerStart < 0 || p.AnswerEnd <= p.AnswerStart || p.AnswerEnd > len(p.Prompt) {
		return fmt.Errorf("answer span [%d, %d) is not a non-empty range inside the prompt of %d tokens: %w", p.AnswerStart, p.AnswerEnd, len(p.Prompt), compresskv.ErrConfig)
	}
	if strings.TrimSpace(p.Answer) == "" {
		return fmt.Errorf("empty answer: %w", compresskv.ErrConfig)
	}
	if p.MaxTokens < 0 {
		return fmt.Errorf("MaxTokens %d is negative: %w", p.MaxTokens, compresskv.ErrConfig)
	}
	return nil
}

// NewProbe builds a user-supplied probe: prompt is text that states a fact
// (for example "...a girl named Lily...") and ends where the model must
// produce answer ("Lily"). The answer span is answer's last occurrence in
// prompt (the one nearest the end, as a fact restated later is the one a
// model copies); it is an error if prompt does not contain answer.
func NewProbe(tok Tokenizer, prompt, answer string) (Probe, error) {
	if tok == nil {
		return Probe{}, fmt.Errorf("calibrate: probe: nil tokenizer: %w", compresskv.ErrConfig)
	}
	a := strings.TrimSpace(answer)
	if a == "" {
		return Probe{}, fmt.Errorf("calibrate: probe: empty answer: %w", compresskv.ErrConfig)
	}
	at := strings.LastIndex(prompt, a)
	if at < 0 {
		return Probe{}, fmt.Errorf("calibrate: probe: the prompt does not contain the answer %q, so the model cannot copy it: %w", a, compresskv.ErrConfig)
	}
	ids := tok.Encode(prompt)
	s, e, err := tokenSpan(tok, ids, prompt, a, at)
	if err != nil {
		return Probe{}, fmt.Errorf("calibrate: probe: %w", err)
	}
	return Probe{Prompt: ids, AnswerStart: s, AnswerEnd: e, Answer: a}, nil
}

// tokenSpan returns the tokens [s, e) of ids (the encoding of text) that
// cover the bytes [at, at+len(answer)) of text. It binary-searches prefix
// decodings, so it costs O(log n) decodes.
func tokenSpan(tok Tokenizer, ids []int, text, answer string, at int) (int, int, error) {
	if len(ids) == 0 {
		return 0, 0, fmt.Errorf("the tokenizer encoded the prompt as no tokens: %w", compresskv.ErrConfig)
	}
	dec := tok.Decode(ids)
	if dec != text {
		// Decoding may differ from the text (a dummy prefix, normalised
		// spaces): find the same occurrence of the answer in the decoding.
		k := strings.Count(text[:at], answer)
		off := 0
		for i := 0; ; i++ {
			j := strings.Index(dec[off:], answer)
			if j < 0 {
				return 0, 0, fmt.Errorf("the decoded prompt does not hold occurrence %d of %q; the tokenizer does not round-trip the text: %w", k+1, answer, compresskv.ErrConfig)
			}
			if i == k {
				at = off + j
				break
			}
			off += j + len(answer)
		}
	}
	end := at + len(answer)
	prefix := func(i int) int { return len(tok.Decode(ids[:i])) }
	// s: the last token that starts at or before at.
	lo, hi := 0, len(ids)-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if prefix(mid) <= at {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	s := lo
	// e: the first i > s whose prefix reaches end.
	lo, hi = s+1, len(ids)
	for lo < hi {
		mid := (lo + hi) / 2
		if prefix(mid) >= end {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	e := lo
	if prefix(e) < end || prefix(s) > at {
		return 0, 0, fmt.Errorf("no tokens cover %q at byte %d; decoding a prefix of the ids is not a prefix of the text: %w", answer, at, compresskv.ErrConfig)
	}
	return s, e, nil
}

// Judge reports whether continuation, the text the model produced after
// the prompt, answers the probe; decided is false while more text could
// still make it right. ended says no more text will come (end of sequence
// or the token limit). Evaluation loops use it as calibration does.
func (p *Probe) Judge(continuation string, ended bool) (right, decided bool) {
	return judge(continuation, p.Answer, ended)
}

// MaxNewTokens returns the most tokens to decode for the probe: MaxTokens,
// or twice the span's length plus 2 when it is zero.
func (p *Probe) MaxNewTokens() int { return p.maxTokens() }

func judge(continuation, answer string, ended bool) (right, decided bool) {
	c := strings.TrimLeftFunc(continuation, unicode.IsSpace)
	a := strings.TrimLeftFunc(answer, unicode.IsSpace)
	if len(c) <= len(a) {
		if !strings.HasPrefix(a, c) {
			return false, true
		}
		if len(c) == len(a) && ended {
			return true, true
		}
		return false, ended
	}
	if !strings.HasPrefix(c, a) {
		return false, true
	}
	last, _ := utf8.DecodeLastRuneInString(a)
	next, _ := utf8.DecodeRuneInString(c[len(a):])
	return !continues(last, next), true
}

// continues reports whether rune next would extend a word or number that
// ends in last.
func continues(last, next rune) bool {
	switch {
	case unicode.IsDigit(last):
		return unicode.IsDigit(next)
	case unicode.IsLetter(last):
		return unicode.IsLetter(next) || unicode.IsDigit(next)
	}
	return false
}

// NeedleTemplate is one wording of a needle fact.
type NeedleTemplate struct {
	Needle   string // the sentence inserted in the haystack, with {w} (the key) and {n} (the value)
	Question string // the question at the end of the prompt, with {w}
	Prefix   string // the start of the answer after the question, with {w}; the value follows it
}

// DefaultNeedleTemplates are the needle wordings the project's model was
// trained on; any wording a model can answer serves.
var DefaultNeedleTemplates = []NeedleTemplate{
	{"The special magic number for {w} is {n}.", "What is the special magic number for {w}?", "The special magic number for {w} is "},
	{"The secret code of the {w} is {n}.", "What is the secret code of the {w}?", "The secret code of the {w} is "},
	{"Remember that the {w} key opens door {n}.", "Which door does the {w} key open?", "The {w} key opens door "},
	{"The {w} was born in the year {n}.", "In which year was the {w} born?", "The {w} was born in the year "},
}

// Needle is one fact to retrieve: a key word and a value in a wording.
type Needle struct {
	Template NeedleTemplate
	Key      string // the key word
	Value    string // the value to retrieve
}

func (n Needle) fill(s string) string {
	return strings.NewReplacer("{w}", n.Key, "{n}", n.Value).Replace(s)
}

// Sentence returns the needle as inserted in the haystack.
func (n Needle) Sentence() string { return n.fill(n.Template.Needle) }

// Ask returns the question and the answer's start that end the prompt.
func (n Needle) Ask() string {
	return "\n" + n.fill(n.Template.Question) + " " + n.fill(n.Template.Prefix)
}

// Needles returns count needles drawn with seed: the templates in turn, the
// keys in a seeded order, values of digits random digits. The same
// arguments give the same needles.
func Needles(templates []NeedleTemplate, keys []string, count, digits int, seed uint64) ([]Needle, error) {
	if len(templates) == 0 || len(keys) == 0 {
		return nil, fmt.Errorf("calibrate: needles: no templates or no keys: %w", compresskv.ErrConfig)
	}
	if count < 0 || digits < 1 {
		return nil, fmt.Errorf("calibrate: needles: %d needles of %d digits: %w", count, digits, compresskv.ErrConfig)
	}
	rng := rand.New(rand.NewPCG(seed, 0x6e65))
	perm := rng.Perm(len(keys))
	out := make([]Needle, count)
	for i := range out {
		v := make([]byte, digits)
		for j := range v {
			v[j] = byte('0' + rng.IntN(10))
		}
		out[i] = Needle{Template: templates[i%len(templates)], Key: keys[perm[i%len(perm)]], Value: string(v)}
	}
	return out, nil
}

// BuildNeedle returns a needle probe of length tokens (exactly, for a
// byte-level tokenizer; as close below as the tokenizer allows otherwise):
// a haystack taken from hay at byte offset start (wrapping around), the
// needle sentence at depth (0: start, 1: end of the haystack) on a word
// boundary, then the question and the answer's start. The answer span is
// the value's tokens inside the needle.
func BuildNeedle(tok Tokenizer, hay string, start, length int, depth float64, n Needle) (Probe, error) {
	if tok == nil {
		return Probe{}, fmt.Errorf("calibrate: needle: nil tokenizer: %w", compresskv.ErrConfig)
	}
	if hay == "" {
		return Probe{}, fmt.Errorf("calibrate: needle: empty haystack: %w", compresskv.ErrConfig)
	}
	if depth < 0 || depth > 1 || math.IsNaN(depth) {
		return Probe{}, fmt.Errorf("calibrate: needle: depth %v outside [0, 1]: %w", depth, compresskv.ErrConfig)
	}
	if n.Value == "" || !strings.Contains(n.Template.Needle, "{n}") {
		return Probe{}, fmt.Errorf("calibrate: needle: %q holds no value: %w", n.Sentence(), compresskv.ErrConfig)
	}
	needle := " " + n.Sentence() + " "
	// The prompt is context + question + lead: one text for a plain model,
	// the user's turn (context and question) and the start of the
	// assistant's (lead) for a chat model.
	question, lead := "\n"+n.fill(n.Template.Question), n.fill(n.Template.Prefix)
	encode := func(context string) []int {
		if ct, ok := tok.(ChatTokenizer); ok {
			return ct.EncodeChat(context+question, lead)
		}
		return tok.Encode(context + question + " " + lead)
	}
	build := func(room int) (string, int) {
		var sb strings.Builder
		for i := start % len(hay); sb.Len() < room; i = 0 {
			sb.WriteString(hay[i:min(len(hay), i+room-sb.Len())])
		}
		h := sb.String()
		cut := int(depth * float64(len(h)))
		if sp := strings.LastIndexByte(h[:cut], ' '); sp >= 0 && depth < 1 {
			cut = sp + 1
		}
		return h[:cut] + needle + h[cut:], cut
	}
	// Fit the haystack to the length: start from the tokens the fixed text
	// takes and scale by the haystack's bytes per token, then correct.
	fixed := len(encode(needle))
	room := length - fixed
	if room < 16 {
		return Probe{}, fmt.Errorf("calibrate: needle: %d tokens leave no room for a haystack around %q (it takes %d): %w", length, n.Sentence(), fixed, compresskv.ErrConfig)
	}
	sample := hay[:min(len(hay), 4*room)]
	ratio := float64(len(sample)) / float64(max(1, len(tok.Encode(sample))))
	chars := int(float64(room) * ratio)
	best, bestIDs, bestCut := -1, []int(nil), 0
	for iter := 0; iter < 12 && chars >= 16; iter++ {
		text, cut := build(chars)
		ids := encode(text)
		if len(ids) <= length && len(ids) > len(bestIDs) {
			best, bestIDs, bestCut = chars, ids, cut
		}
		if len(ids) == length {
			break
		}
		step := int(float64(length-len(ids)) * ratio)
		if step == 0 {
			step = 1
			if len(ids) > length {
				step = -1
			}
		}
		chars += step
	}
	if best < 0 {
		return Probe{}, fmt.Errorf("calibrate: needle: cannot fit a haystack into %d tokens: %w", length, compresskv.ErrConfig)
	}
	text, _ := build(best)
	at := bestCut + strings.Index(needle, n.Value)
	s, e, err := tokenSpan(tok, bestIDs, text+question+" "+lead, n.Value, at)
	if err != nil {
		return Probe{}, fmt.Errorf("calibrate: needle: %w", err)
	}
	return Probe{Prompt: bestIDs, AnswerStart: s, AnswerEnd: e, Answer: n.Value, Group: fmt.Sprintf("%d tokens", length)}, nil
}

// NeedleGrid describes needle probes over lengths and depths.
type NeedleGrid struct {
	Haystack  string           // text the needles are hidden in
	Lengths   []int            // prompt lengths in tokens
	Depths    int              // depths per length, evenly from 0 to 1 (at least 1)
	PerCell   int              // needles per length and depth; 0 means 1
	Templates []NeedleTemplate // nil means DefaultNeedleTemplates
	Keys      []string         // key words (required)
	Digits    int              // digits of a value; 0 means 5
	Seed      uint64           // draws the needles; the same seed gives the same probes
}

// Depths returns k depths evenly from 0 to 1 (k = 11: 0, 0.1, ..., 1).
func Depths(k int) []float64 {
	d := make([]float64, k)
	for i := range d {
		d[i] = float64(i) / float64(max(1, k-1))
	}
	return d
}

// NeedleProbes builds the probes of a grid, lengths outermost, then depths,
// then needles; the i-th probe's haystack starts at byte i*7919 of it.
func NeedleProbes(tok Tokenizer, g NeedleGrid) ([]Probe, error) {
	if len(g.Lengths) == 0 || g.Depths < 1 || g.PerCell < 0 {
		return nil, fmt.Errorf("calibrate: needle grid: %d lengths x %d depths x %d needles: %w", len(g.Lengths), g.Depths, g.PerCell, compresskv.ErrConfig)
	}
	per := max(1, g.PerCell)
	templates := g.Templates
	if templates == nil {
		templates = DefaultNeedleTemplates
	}
	digits := g.Digits
	if digits == 0 {
		digits = 5
	}
	needles, err := Needles(templates, g.Keys, len(g.Lengths)*g.Depths*per, digits, g.Seed)
	if err != nil {
		return nil, err
	}
	var out []Probe
	i := 0
	for _, L := range g.Lengths {
		for _, depth := range Depths(g.Depths) {
			for k := 0; k < per; k++ {
				p, err := BuildNeedle(tok, g.Haystack, (i*7919)%max(1, len(g.Haystack)), L, depth, needles[i])
				if err != nil {
					return nil, err
				}
				out = append(out, p)
				i++
			}
		}
	}
	return out, nil
}

// TextPrompts returns count prompts of plain text for the layer error, each
// of lengths[i % len(lengths)] tokens taken from text at byte offset
// i*65537 modulo the text's length less the prompt's (from the start when
// too few tokens follow that offset).
func TextPrompts(tok Tokenizer, text string, lengths []int, count int) ([][]int, error) {
	if tok == nil || len(lengths) == 0 || count < 0 {
		return nil, fmt.Errorf("calibrate: text prompts: no tokenizer or no lengths: %w", compresskv.ErrConfig)
	}
	out := make([][]int, count)
	for i := range out {
		L := lengths[i%len(lengths)]
		if L < 2 || len(text) <= L {
			return nil, fmt.Errorf("calibrate: text prompts: %d bytes of text for prompts of %d tokens: %w", len(text), L, compresskv.ErrConfig)
		}
		start := (i * 65537) % (len(text) - L)
		for span := L - 1; ; span = max(2*span, span+1) {
			ids := tok.Encode(text[start:min(len(text), start+span)])
			if len(ids) >= L {
				out[i] = ids[:L]
				break
			}
			if start+span >= len(text) {
				if start == 0 {
					return nil, fmt.Errorf("calibrate: text prompts: the text is shorter than %d tokens: %w", L, compresskv.ErrConfig)
				}
				start, span = 0, (L-1)/2 // too little text after start: take it from the beginning
			}
		}
	}
	return out, nil
}
