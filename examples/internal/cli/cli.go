// Package cli is the plumbing the example commands share, so that each
// command is only its own measurement:
//
//   - the flags that name a model, its tokenizer, its profile, the pooling
//     kernel, the cache's storage type and the policies (ModelFlags,
//     PolicyFlags), with -h text that lists every method and says which
//     ones need a profile;
//   - Open, the one function that turns a -model path into a runnable
//     model and its tokenizer: a llama2.c checkpoint today (with
//     -tokenizer, or the project's byte-level vocabulary), and the place a
//     GGUF reader plugs in (a .gguf path is recognised and refused with a
//     clear message until it does);
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

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/compresskv/calibrate"
	"github.com/compresskv/compresskv/examples/llama"
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

// Tokenizer is what the examples need of a model's tokenizer:
// *llama.Tokenizer (llama2.c vocabularies and the byte-level one), and a
// GGUF file's vocabulary once Open reads one.
type Tokenizer interface {
	// Encode returns the ids of text, with BOS first and EOS last when
	// asked.
	Encode(text string, bos, eos bool) []int
	// Decode returns the text of ids, special tokens dropped.
	Decode(ids []int) string
}

// Model is an opened model: the runner, its tokenizer and where it was
// read from.
type Model struct {
	*llama.Model
	Tok  Tokenizer
	Path string
	// ByteLevel is true for a model that reads bytes (the project's own),
	// whose needle prompts are exact in length and whose pooling kernel is
	// DefaultByteKernel.
	ByteLevel bool
}

// Open reads the model at path and its tokenizer: the one place the
// examples read a model. path is a llama2.c checkpoint, with tokPath its
// llama2.c tokenizer or empty for the byte-level vocabulary of the
// project's model. A .gguf file (weights and vocabulary in one) is
// recognised here and is where a GGUF reader plugs in; until then it is
// refused, saying so.
func Open(path, tokPath string) (*Model, error) {
	path = Path(path)
	if strings.EqualFold(filepath.Ext(path), ".gguf") {
		return nil, fmt.Errorf("%s: GGUF files are not read yet; pass a llama2.c checkpoint (-model) and its tokenizer (-tokenizer)", path)
	}
	m, err := llama.Load(path)
	if err != nil {
		return nil, notFound(err, "model", "a llama2.c checkpoint")
	}
	out := &Model{Model: m, Path: path, ByteLevel: tokPath == ""}
	if tokPath == "" {
		out.Tok = llama.ByteTokenizer()
		return out, nil
	}
	tok, err := llama.LoadTokenizer(Path(tokPath), m.Vocab)
	if err != nil {
		return nil, notFound(err, "tokenizer", "the model's llama2.c tokenizer")
	}
	out.Tok = tok
	return out, nil
}

// ProbeTokenizer is the model's tokenizer as calibrate.Tokenizer: Encode
// adds BOS, as a prompt the model reads begins.
func (m *Model) ProbeTokenizer() calibrate.Tokenizer { return probeTok{m.Tok} }

type probeTok struct{ t Tokenizer }

func (p probeTok) Encode(text string) []int { return p.t.Encode(text, true, false) }
func (p probeTok) Decode(ids []int) string  { return p.t.Decode(ids) }

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
