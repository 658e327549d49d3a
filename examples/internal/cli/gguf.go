package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/examples/llama/chat"
	"github.com/compresskv/compresskv/examples/llama/gguf"
	"github.com/compresskv/compresskv/examples/llama/vocab"
)

// ErrFlags is wrapped by the errors of OpenChat for flags that do not fit
// the model: -tokenizer with a GGUF file, a -chat mode the file cannot
// honour or that names no format, -chat with a llama2.c checkpoint.
var ErrFlags = errors.New("flags that do not fit the model")

// keyChatTemplate is the metadata key of a model's chat template (Jinja
// source).
const keyChatTemplate = "tokenizer.chat_template"

// isGGUF reports whether path names a GGUF file: by its magic, or by its
// extension when it cannot be read (so that a missing x.gguf is reported as
// a missing GGUF file).
func isGGUF(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return strings.EqualFold(filepath.Ext(path), ".gguf")
	}
	defer f.Close()
	var b [4]byte
	n, _ := f.Read(b[:])
	return n == 4 && string(b[:]) == gguf.Magic
}

// openGGUF reads a GGUF file's model, its tokenizer and its chat template.
func openGGUF(path, chatMode string) (*Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, notFound(err, "model", "a GGUF file or a llama2.c checkpoint")
	}
	fail := func(err error) (*Model, error) {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	lm, err := llama.FromGGUF(f)
	if err != nil {
		return fail(err)
	}
	v, err := llama.GGUFVocab(f)
	if err != nil {
		return fail(err)
	}
	if v.Size() != lm.Vocab {
		return fail(fmt.Errorf("a tokenizer of %d tokens for a model of %d: %w", v.Size(), lm.Vocab, llama.ErrFormat))
	}
	m := &Model{Model: lm, Path: path, Vocab: v, Tok: ggufTok{v}, ByteLevel: byteLevel(v), file: f}
	tmpl, _ := f.String(keyChatTemplate)
	if err := m.chooseChat(tmpl, chatMode); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// chooseChat sets the model's chat format from the file's template and the
// -chat mode.
func (m *Model) chooseChat(tmpl, mode string) error {
	found, derr := chat.Detect(tmpl)
	if tmpl == "" {
		derr = errors.New("the file has no " + keyChatTemplate)
	}
	formats := chatFormats()
	switch mode {
	case "", ChatAuto:
		switch {
		case derr == nil:
			m.Chat, m.ChatNote = found, "from "+keyChatTemplate
		case tmpl == "":
			m.ChatNote = "none in the file: plain prompts"
		default:
			m.ChatNote = fmt.Sprintf("plain prompts: the file's template is not one this program writes (%v); choose a format with -chat", derr)
		}
	case ChatOn:
		if derr != nil {
			return fmt.Errorf("-chat on: %s: %v; choose a format with -chat (one of %s) or -chat off: %w", m.Path, derr, strings.Join(formats, ", "), ErrFlags)
		}
		m.Chat, m.ChatNote = found, "from "+keyChatTemplate
	case ChatOff:
		m.ChatNote = "off (-chat off): plain prompts"
		if derr == nil {
			m.ChatNote += "; the file's template is " + string(found)
		}
	default:
		if !slices.Contains(formats, mode) {
			return fmt.Errorf("-chat %q: want auto, on, off or a format (%s): %w", mode, strings.Join(formats, ", "), ErrFlags)
		}
		m.Chat, m.ChatNote = chat.Template(mode), "-chat "+mode
		if derr == nil && found != m.Chat {
			m.ChatNote += "; the file's template is " + string(found)
		}
	}
	return nil
}

// byteLevel reports whether a GGUF vocabulary is the project's byte-level
// one (a llama2.c byte-level model converted): <unk>, BOS and EOS, then
// the 256 bytes in order, each text tokenized byte by byte.
func byteLevel(v *vocab.Vocab) bool {
	if v.Size() != llama.ByteBase+256 || v.BOS() != llama.BOS || v.EOS() != llama.EOS {
		return false
	}
	for b := range 256 {
		if p, err := v.Piece(llama.ByteBase + b); err != nil || p != string([]byte{byte(b)}) {
			return false
		}
	}
	const probe = "a b\n1."
	ids, err := v.Encode(probe, false, false)
	if err != nil || len(ids) != len(probe) {
		return false
	}
	for i, id := range ids {
		if id != llama.ByteBase+int(probe[i]) {
			return false
		}
	}
	return true
}

// encodeChat returns the ids of a conversation of one user turn, user
// (white space trimmed at both ends, as a user's message comes), and the
// opening of the assistant's, followed by lead: the chat format's text
// tokenized with its special tokens parsed and BOS where the metadata says
// (once: a format that writes BOS itself does not get a second).
func (m *Model) encodeChat(user, lead string) ([]int, error) {
	text, err := chat.Apply(m.Chat, []chat.Message{{Role: "user", Content: strings.TrimSpace(user)}}, true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Path, err)
	}
	ids, err := m.Vocab.Encode(text+lead, true, true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Path, err)
	}
	if b := m.Vocab.BOS(); len(ids) >= 2 && b >= 0 && ids[0] == b && ids[1] == b {
		ids = ids[1:]
	}
	return ids, nil
}

// decodeProbe is the probe tokenizer's Decode. For a GGUF file's
// SentencePiece vocabulary it is llama.cpp's detokenizer (Vocab.Decode),
// which drops control tokens and, where the vocabulary adds a leading
// space, the first token's leading space unless BOS precedes it: decoding
// a continuation as llama2.c's tokenizer decodes it, so that a converted
// checkpoint's answers are judged alike. For a byte-level BPE vocabulary it
// is the pieces of the tokens that are not control tokens, concatenated:
// llama.cpp's detokenizer tightens spaces before punctuation there, which
// would make a prefix's decoding no prefix of the whole's.
func (m *Model) decodeProbe(ids []int) string {
	if m.Vocab == nil {
		return m.Tok.Decode(ids)
	}
	if m.Vocab.Model() == vocab.ModelSPM {
		return m.Tok.Decode(ids)
	}
	var sb strings.Builder
	for _, id := range ids {
		if m.Vocab.IsControl(id) {
			continue
		}
		p, err := m.Vocab.Piece(id)
		if err != nil {
			p = "\uFFFD"
		}
		sb.WriteString(p)
	}
	return sb.String()
}

// Render returns the text of ids as the model reads them, special tokens
// written as their text (for a GGUF file; "<s>" and "</s>" for a llama2.c
// checkpoint): what a prompt looks like to the model.
func (m *Model) Render(ids []int) string {
	var sb strings.Builder
	if m.Vocab != nil {
		for _, id := range ids {
			p, err := m.Vocab.Piece(id)
			if err != nil {
				p = "\uFFFD"
			}
			sb.WriteString(p)
		}
		return sb.String()
	}
	run := 0 // start of the run of ordinary tokens
	for i := 0; i <= len(ids); i++ {
		if i < len(ids) && ids[i] != llama.BOS && ids[i] != llama.EOS {
			continue
		}
		sb.WriteString(m.Tok.Decode(ids[run:i]))
		if i < len(ids) {
			sb.WriteString(map[int]string{llama.BOS: "<s>", llama.EOS: "</s>"}[ids[i]])
		}
		run = i + 1
	}
	return sb.String()
}

// TokenText returns the text of one token for a report: its piece, special
// tokens included, quoted.
func (m *Model) TokenText(id int) string {
	return fmt.Sprintf("%q", m.Render([]int{id}))
}

// Summary describes a GGUF model in one line: its file, architecture and
// shape, its tokenizer and its chat format. It is empty for a llama2.c
// checkpoint (whose reports stay as they were).
func (m *Model) Summary() string {
	if m.Vocab == nil {
		return ""
	}
	tok := m.Vocab.Model()
	if p := m.Vocab.Pre(); p != "" {
		tok += ", " + p
	}
	if m.ByteLevel {
		tok += ", byte-level"
	}
	arch := m.Arch
	if arch == "" {
		arch = llama.ArchLlama
	}
	ch := "chat: " + m.ChatNote
	if m.Chat != "" {
		ch = fmt.Sprintf("chat template %s (%s): prompts are a user turn and the assistant's opening", m.Chat, m.ChatNote)
	}
	return fmt.Sprintf("model %s: %s, %d layers, %d query / %d KV heads, d=%d; tokenizer %s, %d tokens; %s",
		m.Path, arch, m.Layers, m.Heads, m.KVHeads, m.HeadDim(), tok, m.Vocab.Size(), ch)
}

// llamaTok is a llama2.c tokenizer as a Tokenizer.
type llamaTok struct{ *llama.Tokenizer }

func (t llamaTok) Encode(text string, bos, eos bool) ([]int, error) {
	return t.Tokenizer.Encode(text, bos, eos), nil
}

// ggufTok is a GGUF file's vocabulary as a Tokenizer: plain text, BOS
// where the model uses one and it is asked for; Decode as llama.cpp
// detokenizes.
type ggufTok struct{ v *vocab.Vocab }

func (t ggufTok) Encode(text string, bos, eos bool) ([]int, error) {
	ids, err := t.v.Encode(text, false, false)
	if err != nil {
		return nil, err
	}
	if bos && t.v.AddBOS() && t.v.BOS() >= 0 {
		ids = append([]int{t.v.BOS()}, ids...)
	}
	if eos && t.v.EOS() >= 0 {
		ids = append(ids, t.v.EOS())
	}
	return ids, nil
}

func (t ggufTok) Decode(ids []int) string {
	s, err := t.v.Decode(ids)
	if err != nil {
		// An id outside the vocabulary: decode the others.
		ok := ids[:0:0]
		for _, id := range ids {
			if id >= 0 && id < t.v.Size() {
				ok = append(ok, id)
			}
		}
		s, _ = t.v.Decode(ok)
	}
	return s
}

// Convert writes the llama2.c checkpoint at model, with tokPath its
// llama2.c tokenizer or empty for the project's byte-level one, as the GGUF
// file out (its folder made) named name (general.name): what
// examples/convert does (llama.Model.WriteGGUF). Relative paths of the
// repository's files are found as Path finds them. It returns the model
// and the bytes written; on an error no file is left behind.
func Convert(model, tokPath, out, name string) (*llama.Model, int64, error) {
	m, tok, err := llama.Open(Path(model), Path(tokPath))
	if err != nil {
		return nil, 0, err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, 0, err
	}
	f, err := os.Create(out)
	if err != nil {
		return nil, 0, err
	}
	n, err := m.WriteGGUF(f, llama.GGUFOptions{Name: name, Tokenizer: tok})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out)
		return nil, 0, err
	}
	return m, n, nil
}
