// Package cli is the plumbing the example commands share, so that each
// command is only its own measurement:
//
//   - the flags that name a model, its tokenizer, its profile, the pooling
//     kernel, the cache's storage type and the policies (ModelFlags,
//     PolicyFlags), with -h text that lists every method and says which
//     ones need a profile;
//   - Open, the one function that turns a -model path into a runnable
//     model and its tokenizer: a GGUF file (its own vocabulary, its
//     end-of-generation tokens and its chat template, -chat), or a
//     llama2.c checkpoint (with -tokenizer, or the project's byte-level
//     vocabulary);
//   - the model's prompts: EncodePrompt (a user's), ProbeTokenizer (the
//     probe builders' seam, a chat one where the model has a template),
//     Needle and Answer (a needle prompt in the model's own tokens and the
//     judgement of its answer, decoding stopped at end-of-generation
//     tokens);
//   - Path, which finds the repository's own files (the project's model, its
//     profile, the haystacks) from any working directory;
//   - Prefill, one prompt prefilled with full attention, and Prefilled.Compress,
//     a session over a compressed copy of it: the "new cache, session,
//     prefill, compress" sequence every benchmark runs per prompt and policy.
//
// It is internal to the examples: a program of one's own uses package llama
// (the runner) and package compresskv directly.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/compresskv/calibrate"
	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/examples/llama/chat"
	"github.com/compresskv/compresskv/examples/llama/gguf"
	"github.com/compresskv/compresskv/examples/llama/vocab"
	"github.com/compresskv/compresskv/kvcache"
)

// The project's own model and its profile, relative to the repository's
// root (Path finds them from elsewhere).
const (
	DefaultModel   = llama.DefaultModel
	DefaultProfile = llama.DefaultProfile
)

// Path returns path when it names an existing file or folder (or is
// absolute, or empty); otherwise, for a relative path, the same path under
// the repository's root when it exists there; otherwise path unchanged, so
// that opening it fails with its own name. The root is found from the
// working directory upwards (a go.mod declaring this module), then from
// where this package's source was compiled: `go run ./examples/...` from a
// subfolder, `go run github.com/compresskv/compresskv/examples/...` from
// another module, and a binary built from the clone all find the
// repository's testdata.
func Path(path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	if _, err := os.Stat(path); err == nil {
		return path
	}
	for _, root := range roots() {
		p := filepath.Join(root, path)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return path
}

// module is the path the repository's go.mod declares.
const module = "github.com/compresskv/compresskv"

// roots returns the candidate repository roots: the nearest folder at or
// above the working directory whose go.mod declares the module, and the
// folder three levels above this file's source.
func roots() []string {
	var out []string
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			if isRoot(dir) {
				out = append(out, dir)
				break
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		if dir := filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(file)))); isRoot(dir) {
			out = append(out, dir)
		}
	}
	return out
}

func isRoot(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" && f[1] == module {
			return true
		}
	}
	return false
}

// notFound adds to an error opening one of the project's files what to
// pass instead.
func notFound(err error, flag, what string) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w (%s is looked for from the working directory and the repository's root; pass -%s with a path to %s)", err, flag, flag, what)
	}
	return err
}

// Tokenizer is what the examples need of a model's tokenizer: a llama2.c
// tokenizer (and the project's byte-level one), or a GGUF file's own
// vocabulary.
type Tokenizer interface {
	// Encode returns the ids of text as plain text (special tokens' texts
	// are not parsed), with BOS first when bos is set and the model uses
	// one, and EOS last when eos is set. The error is a text the
	// vocabulary cannot tokenize.
	Encode(text string, bos, eos bool) ([]int, error)
	// Decode returns the text of ids, special tokens dropped.
	Decode(ids []int) string
}

// Model is an opened model: the runner, its tokenizer and where it was
// read from.
type Model struct {
	*llama.Model
	Tok  Tokenizer
	Path string
	// ByteLevel is true for a model that reads bytes (the project's own, as
	// a llama2.c checkpoint or converted to GGUF), whose needle prompts are
	// exact in length, whose answers are read digit by digit and whose
	// pooling kernel is DefaultByteKernel.
	ByteLevel bool
	// Vocab is a GGUF file's tokenizer (nil for a llama2.c checkpoint).
	Vocab *vocab.Vocab
	// Chat is the chat format prompts are written in, "" for plain text:
	// the template of the file's tokenizer.chat_template when package chat
	// recognises it (-chat auto), or the one -chat names.
	Chat chat.Template
	// ChatNote says where Chat came from, or why there is none.
	ChatNote string

	file *gguf.File // the GGUF file the model reads, closed by Close
}

// Open reads the model at path and its tokenizer, prompts in the chat
// format the file names (OpenChat with ChatAuto).
func Open(path, tokPath string) (*Model, error) { return OpenChat(path, tokPath, ChatAuto) }

// Chat modes of OpenChat (the -chat flag); a format's name (chat.Templates)
// chooses that format.
const (
	ChatAuto = "auto" // the file's template when package chat recognises it, else plain text
	ChatOn   = "on"   // the file's template; an error when it has none that package chat writes
	ChatOff  = "off"  // plain text
)

// OpenChat reads the model at path and its tokenizer: the one place the
// examples read a model. path is a GGUF file (weights, tokenizer and chat
// template in one; tokPath must be empty) or a llama2.c checkpoint, with
// tokPath its llama2.c tokenizer or empty for the byte-level vocabulary of
// the project's model. chatMode says how prompts are written: ChatAuto,
// ChatOn, ChatOff or a format's name; a llama2.c checkpoint has no chat
// template. Close the model when done.
func OpenChat(path, tokPath, chatMode string) (*Model, error) {
	path = Path(path)
	if isGGUF(path) {
		if tokPath != "" {
			return nil, fmt.Errorf("%s is a GGUF file, which holds its own tokenizer: drop -tokenizer %s: %w", path, tokPath, ErrFlags)
		}
		return openGGUF(path, chatMode)
	}
	switch chatMode {
	case "", ChatAuto, ChatOff:
	default:
		return nil, fmt.Errorf("-chat %s: %s is a llama2.c checkpoint, which has no chat template (use -chat auto or off): %w", chatMode, path, ErrFlags)
	}
	m, err := llama.Load(path)
	if err != nil {
		return nil, notFound(err, "model", "a GGUF file or a llama2.c checkpoint")
	}
	out := &Model{Model: m, Path: path, ByteLevel: tokPath == ""}
	if tokPath == "" {
		out.Tok = llamaTok{llama.ByteTokenizer()}
		return out, nil
	}
	tok, err := llama.LoadTokenizer(Path(tokPath), m.Vocab)
	if err != nil {
		return nil, notFound(err, "tokenizer", "the model's llama2.c tokenizer")
	}
	out.Tok = llamaTok{tok}
	return out, nil
}

// Close releases the file a GGUF model reads. The model must not be used
// afterwards.
func (m *Model) Close() error {
	err := m.Model.Close()
	if m.file != nil {
		err = errors.Join(err, m.file.Close())
		m.file = nil
	}
	return err
}

// IsEOG reports whether token id ends generation: the model's
// end-of-generation set (EOS, EOT and the others its metadata and
// llama.cpp's rules name) for a GGUF file, EOS for a llama2.c checkpoint.
func (m *Model) IsEOG(id int) bool {
	if m.Vocab != nil {
		return m.Vocab.IsEOG(id)
	}
	return id == llama.EOS
}

// BOS returns the tokens a text prompt begins with: BOS where the model
// uses one, else none.
func (m *Model) BOS() []int {
	if m.Vocab != nil {
		if m.Vocab.AddBOS() && m.Vocab.BOS() >= 0 {
			return []int{m.Vocab.BOS()}
		}
		return nil
	}
	return []int{llama.BOS}
}

// EncodePrompt returns the ids of a user's prompt: for a chat model, a user
// turn of text and the opening of the assistant's; for a GGUF file
// otherwise, text with its special tokens parsed and BOS where the metadata
// says (as llama.cpp tokenizes a prompt); for a llama2.c checkpoint, BOS
// and text.
func (m *Model) EncodePrompt(text string) ([]int, error) {
	if m.Vocab == nil {
		return m.Tok.Encode(text, true, false)
	}
	if m.Chat != "" {
		return m.encodeChat(text, "")
	}
	ids, err := m.Vocab.Encode(text, true, true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Path, err)
	}
	return ids, nil
}

// ProbeTokenizer is the model's tokenizer as the probe builders of package
// calibrate read it. It is a calibrate.ChatTokenizer for a model whose
// prompts are in a chat format (Model.Chat), so that a needle's haystack
// and question make one user turn and the answer's start opens the
// assistant's.
type ProbeTokenizer interface {
	calibrate.Tokenizer
	// Err returns the first error of an encoding (a text the vocabulary
	// cannot tokenize, for which no ids were returned), or nil: a probe
	// builder's error then says less than this one.
	Err() error
}

// ProbeTokenizer returns the model's probe tokenizer: Encode adds BOS where
// the model uses one, as a prompt begins; Decode drops special tokens, and
// decoding a prefix of ids gives a prefix of the text (decodeProbe says
// how, for each kind of vocabulary). It is safe for concurrent use.
func (m *Model) ProbeTokenizer() ProbeTokenizer {
	p := &probeTok{m: m}
	if m.Chat != "" {
		return &chatProbeTok{p}
	}
	return p
}

type probeTok struct {
	m   *Model
	mu  sync.Mutex
	err error
}

func (p *probeTok) keep(ids []int, err error) []int {
	if err != nil {
		p.mu.Lock()
		if p.err == nil {
			p.err = err
		}
		p.mu.Unlock()
		return nil
	}
	return ids
}

func (p *probeTok) Encode(text string) []int { return p.keep(p.m.Tok.Encode(text, true, false)) }
func (p *probeTok) Decode(ids []int) string  { return p.m.decodeProbe(ids) }

func (p *probeTok) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// chatProbeTok is a probeTok of a chat model: a calibrate.ChatTokenizer.
type chatProbeTok struct{ *probeTok }

func (p *chatProbeTok) EncodeChat(user, lead string) []int { return p.keep(p.m.encodeChat(user, lead)) }

// Kernel returns the pooling kernel to use with the model: k when it is set
// (positive), else DefaultByteKernel (9) for a byte-level model, whose
// answers span several tokens (llama.DefaultKernel says why), and the
// library's default (5, the reference's, sized for subword tokens)
// otherwise.
func (m *Model) Kernel(k int) int {
	switch {
	case k > 0:
		return k
	case m.ByteLevel:
		return DefaultByteKernel
	}
	return compresskv.DefaultKernel
}

// Prefilled is one prompt prefilled with full attention: its cache, the
// logits after its last token and every layer's post-RoPE queries of the
// prompt, which is what each policy compresses a copy of.
type Prefilled struct {
	Model   *llama.Model
	Cache   *kvcache.Host
	Logits  []float32
	Queries [][]float32
}

// PrefillChunk is the prefill chunk of the benchmarks.
const PrefillChunk = 256

// Prefill prefills prompt into a new cache of storage type dt, in chunks of
// PrefillChunk tokens.
func Prefill(m *llama.Model, dt kvcache.DType, prompt []int) (*Prefilled, error) {
	cache, err := m.NewCache(dt)
	if err != nil {
		return nil, err
	}
	s, err := m.NewSession(cache, nil)
	if err != nil {
		return nil, err
	}
	logits, q, err := s.Prefill(prompt, PrefillChunk)
	if err != nil {
		return nil, err
	}
	return &Prefilled{Model: m, Cache: cache, Logits: logits, Queries: q}, nil
}

// Full returns a session over a copy of the prefilled cache, uncompressed.
func (p *Prefilled) Full() *llama.Session {
	s, _ := p.Model.NewSession(p.Cache.Clone(), nil) // the cache was made for the model
	return s
}

// Compress returns a session over a copy of the prefilled cache compressed
// by pol, and what the compression did.
func (p *Prefilled) Compress(ctx context.Context, pol *compresskv.Policy) (*llama.Session, *compresskv.Result, error) {
	s := p.Full()
	res, err := s.Compress(ctx, pol, p.Queries)
	if err != nil {
		return nil, nil, fmt.Errorf("%s at budget %d: %w", pol.Name(), pol.Config().Budget, err)
	}
	return s, res, nil
}

// ParseInts parses a comma-separated list of positive integers, such as a
// command line's lengths or budgets ("" gives none).
func ParseInts(s string) ([]int, error) {
	return parseInts(s, 1, "a positive integer")
}

// ParseCounts parses a comma-separated list of counts, zero allowed; at
// least one.
func ParseCounts(s string) ([]int, error) {
	out, err := parseInts(s, 0, "a count")
	if err == nil && len(out) == 0 {
		return nil, fmt.Errorf("no counts in %q", s)
	}
	return out, err
}

func parseInts(s string, least int, what string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < least {
			return nil, fmt.Errorf("%q is not %s", f, what)
		}
		out = append(out, n)
	}
	return out, nil
}
