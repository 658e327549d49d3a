package randmodel

import (
	"bufio"
	"compress/bzip2"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ErrFormat is wrapped by the errors for a golden file or a runner output
// that does not follow the format.
var ErrFormat = errors.New("randmodel: bad format")

// Output is what `go run ./examples/logits -model M -prompt P -steps N`
// prints, parsed: the prompt's token ids, the logits of its last position
// over the whole vocabulary, and the greedy steps.
type Output struct {
	PromptIDs  []int
	LastLogits []float32
	Steps      []Step
}

// Step is one greedy step: the token chosen (argmax, ties to the lower id)
// and the five largest logits it was chosen from, largest first.
type Step struct {
	ID   int
	Top5 []Logit
}

// Logit is one token id with its logit.
type Logit struct {
	ID    int
	Value float32
}

// TensorDigest is the recorded sha256 of one tensor's data.
type TensorDigest struct {
	Name   string
	Type   string // ggml's name, "Q4_K"
	Dims   []int
	SHA256 string
}

// Golden is one golden file of testdata/gguf: llama.cpp's Output for a
// random model, with what identifies the model.
type Golden struct {
	// Model is the model's name (Lookup).
	Model string
	// Commit is the llama.cpp commit that computed the output.
	Commit string
	// Prompt is the prompt given to it.
	Prompt string
	// FileSHA256 is the sha256 of gen.py's whole file; KVSHA256 of its
	// metadata section (from the end of the 24-byte header to the first
	// tensor info).
	FileSHA256, KVSHA256 string
	// Tensors are the model's tensors in file order.
	Tensors []TensorDigest
	Output
}

// GoldenDir returns testdata/gguf of the repository (RepoRoot).
func GoldenDir() (string, bool) {
	root, ok := RepoRoot()
	if !ok {
		return "", false
	}
	return filepath.Join(root, "testdata", "gguf"), true
}

// GoldenFiles returns the golden files in dir (*.txt.bz2 and *.txt), sorted.
func GoldenFiles(dir string) ([]string, error) {
	var out []string
	for _, pat := range []string{"*.txt.bz2", "*.txt"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return nil, err
		}
		out = append(out, m...)
	}
	sort.Strings(out)
	return out, nil
}

// LoadGolden reads a golden file (bzip2-compressed when its name ends in
// .bz2).
func LoadGolden(path string) (*Golden, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".bz2") {
		r = bzip2.NewReader(f)
	}
	g, err := ParseGolden(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return g, nil
}

// ParseGolden parses a golden file's text: comment lines "# key value"
// (model, llama.cpp, prompt as a JSON string, file_sha256, kv_sha256, and
// one "tensor NAME TYPE D0xD1 SHA256" per tensor), then the Output lines.
func ParseGolden(r io.Reader) (*Golden, error) {
	g := &Golden{}
	var body strings.Builder
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "# ")
		if !ok {
			body.WriteString(line)
			body.WriteByte('\n')
			continue
		}
		key, val, _ := strings.Cut(rest, " ")
		switch key {
		case "model":
			g.Model = val
		case "llama.cpp":
			g.Commit = val
		case "prompt":
			if err := json.Unmarshal([]byte(val), &g.Prompt); err != nil {
				return nil, fmt.Errorf("%w: prompt: %w", ErrFormat, err)
			}
		case "file_sha256":
			g.FileSHA256 = val
		case "kv_sha256":
			g.KVSHA256 = val
		case "tensor":
			f := strings.Fields(val)
			if len(f) != 4 {
				return nil, fmt.Errorf("%w: tensor line %q", ErrFormat, line)
			}
			var dims []int
			for _, d := range strings.Split(f[2], "x") {
				n, err := strconv.Atoi(d)
				if err != nil {
					return nil, fmt.Errorf("%w: tensor line %q", ErrFormat, line)
				}
				dims = append(dims, n)
			}
			g.Tensors = append(g.Tensors, TensorDigest{Name: f[0], Type: f[1], Dims: dims, SHA256: f[3]})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	out, err := ParseOutput(strings.NewReader(body.String()))
	if err != nil {
		return nil, err
	}
	g.Output = *out
	if g.Model == "" {
		return nil, fmt.Errorf("%w: no model line", ErrFormat)
	}
	return g, nil
}

// ParseOutput parses the output of examples/logits (and of logits.cpp):
//
//	prompt_ids id id ...
//	last_logits v v ...
//	step S id I top5 i:v i:v i:v i:v i:v
//
// with steps numbered from 0. Anything else, a step out of order or a
// missing line gives an error wrapping ErrFormat.
func ParseOutput(r io.Reader) (*Output, error) {
	o := &Output{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	seenIDs, seenLogits := false, false
	for ln := 1; sc.Scan(); ln++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		bad := func(what string, a ...any) error {
			return fmt.Errorf("%w: line %d: %s", ErrFormat, ln, fmt.Sprintf(what, a...))
		}
		switch f[0] {
		case "prompt_ids":
			if seenIDs {
				return nil, bad("second prompt_ids")
			}
			seenIDs = true
			for _, s := range f[1:] {
				id, err := strconv.Atoi(s)
				if err != nil || id < 0 {
					return nil, bad("token id %q", s)
				}
				o.PromptIDs = append(o.PromptIDs, id)
			}
		case "last_logits":
			if seenLogits {
				return nil, bad("second last_logits")
			}
			seenLogits = true
			o.LastLogits = make([]float32, 0, len(f)-1)
			for _, s := range f[1:] {
				v, err := strconv.ParseFloat(s, 32)
				if err != nil {
					return nil, bad("logit %q", s)
				}
				o.LastLogits = append(o.LastLogits, float32(v))
			}
		case "step":
			if len(f) < 5 || f[2] != "id" || f[4] != "top5" {
				return nil, bad("step line %q", sc.Text())
			}
			s, err1 := strconv.Atoi(f[1])
			id, err2 := strconv.Atoi(f[3])
			if err1 != nil || err2 != nil || s != len(o.Steps) || id < 0 {
				return nil, bad("step %q id %q (want step %d)", f[1], f[3], len(o.Steps))
			}
			st := Step{ID: id}
			for _, p := range f[5:] {
				is, vs, ok := strings.Cut(p, ":")
				i, err1 := strconv.Atoi(is)
				v, err2 := strconv.ParseFloat(vs, 32)
				if !ok || err1 != nil || err2 != nil || i < 0 {
					return nil, bad("top5 entry %q", p)
				}
				st.Top5 = append(st.Top5, Logit{ID: i, Value: float32(v)})
			}
			if len(st.Top5) == 0 || st.Top5[0].ID != id {
				return nil, bad("step %d: top5 does not start with the chosen id %d", s, id)
			}
			o.Steps = append(o.Steps, st)
		default:
			return nil, bad("unknown line %q", f[0])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !seenIDs || !seenLogits {
		return nil, fmt.Errorf("%w: missing prompt_ids or last_logits", ErrFormat)
	}
	return o, nil
}
