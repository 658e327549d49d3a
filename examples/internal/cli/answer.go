package cli

import (
	"errors"
	"fmt"

	"github.com/compresskv/compresskv/compresskv/calibrate"
	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/examples/niah"
)

// Needle returns a needle prompt in the model's own tokens
// (niah.BuildFor through ProbeTokenizer): exactly length tokens for a
// byte-level model, as close below as the tokenizer allows otherwise, a
// chat model's prompt as one user turn and the assistant's opening; the
// value's span in token positions.
func (m *Model) Needle(hay string, start, length int, depth float64, n niah.Needle) (niah.Prompt, error) {
	pt := m.ProbeTokenizer()
	p, err := niah.BuildFor(pt, hay, start, length, depth, n)
	if terr := pt.Err(); terr != nil {
		return niah.Prompt{}, fmt.Errorf("%s: the needle prompt cannot be tokenized: %w", m.Path, terr)
	}
	if err != nil {
		return niah.Prompt{}, err
	}
	if m.ByteLevel && len(p.Tokens) != length {
		return niah.Prompt{}, fmt.Errorf("%s: a needle prompt of %d tokens, want %d: the byte-level model's prompts are exact", m.Path, len(p.Tokens), length)
	}
	return p, nil
}

// errWrongDigit stops decoding at the first token that differs from the
// needle's value: the answer is wrong whatever follows.
var errWrongDigit = errors.New("wrong digit")

// Answer decodes greedily over s from logits (those after the prompt's last
// token) and reports whether the model answers the needle prompt p with its
// value. A byte-level model's answer is read digit by digit (niah.Greedy
// and niah.Correct, stopping at the first wrong digit). Any other model's
// is decoded and judged as calibration judges a probe (AnswerProbe).
func (m *Model) Answer(s *llama.Session, logits []float32, p niah.Prompt) (bool, error) {
	if !m.ByteLevel {
		probe := calibrate.Probe{Prompt: p.Tokens, AnswerStart: p.ValueStart, AnswerEnd: p.ValueEnd, Answer: p.Needle.Value}
		return m.AnswerProbe(s, logits, &probe)
	}
	v := p.Needle.Value
	i := 0
	ans, err := niah.Greedy(s, logits, len(v)+1, func(id int) error {
		if i < len(v) && id != llama.ByteBase+int(v[i]) {
			return errWrongDigit
		}
		i++
		return nil
	})
	if errors.Is(err, errWrongDigit) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return niah.Correct(ans, p.Needle), nil
}

// AnswerProbe decodes greedily over s from logits (those after the probe's
// prompt) and judges the continuation as calibration does
// (calibrate.Probe.Judge, the text from the probe tokenizer's Decode):
// decoding stops once the judgement is decided, at an end-of-generation
// token (IsEOG, not part of the answer), at a token without text, or after
// p.MaxNewTokens() tokens.
func (m *Model) AnswerProbe(s *llama.Session, logits []float32, p *calibrate.Probe) (bool, error) {
	var out []int
	prev := ""
	for {
		id := llama.Argmax(logits)
		if m.IsEOG(id) {
			right, _ := p.Judge(prev, true)
			return right, nil
		}
		out = append(out, id)
		text := m.decodeProbe(out)
		right, decided := p.Judge(text, text == prev || len(out) >= p.MaxNewTokens())
		if decided {
			return right, nil
		}
		prev = text
		var err error
		if logits, err = s.Forward([]int{id}); err != nil {
			return false, err
		}
	}
}
