package randmodel

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/compresskv/compresskv/examples/llama/gguf"
	"github.com/compresskv/compresskv/examples/llama/quant"
)

var goldenCache struct {
	once  sync.Once
	dir   string
	files []string
	gs    []*Golden
	err   error
}

// goldens returns the parsed golden files of testdata/gguf (parsed once per
// test binary).
func goldens(t *testing.T) []*Golden {
	t.Helper()
	c := &goldenCache
	c.once.Do(func() {
		dir, ok := GoldenDir()
		if !ok {
			return
		}
		c.dir = dir
		c.files, c.err = GoldenFiles(dir)
		for _, f := range c.files {
			g, err := LoadGolden(f)
			if err != nil {
				c.err = err
				return
			}
			c.gs = append(c.gs, g)
		}
	})
	if c.dir == "" {
		t.Skip("no repository root")
	}
	if c.err != nil || len(c.gs) == 0 {
		t.Fatalf("no golden files in %s: %v", c.dir, c.err)
	}
	return c.gs
}

// The whole file the Go twin writes is gen.py's, byte for byte: metadata
// (tokenizer entries copied from ../shared/vocab) and tensors.
func TestFileMatchesGoldens(t *testing.T) {
	vocab, ok := VocabDir()
	if !ok {
		t.Skip("no ../shared/vocab")
	}
	gs := goldens(t)
	if testing.Short() {
		gs = gs[:1]
	}
	for _, g := range gs {
		s, err := Lookup(g.Model)
		if err != nil {
			t.Fatal(err)
		}
		kv, err := s.Metadata(vocab)
		if err != nil {
			t.Fatal(err)
		}
		w := gguf.NewWriter()
		for _, e := range kv {
			if err := w.Set(e.Key, e.Value); err != nil {
				t.Fatal(err)
			}
		}
		var meta bytes.Buffer
		if _, err := w.WriteTo(&meta); err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(meta.Bytes()[24:]); hex.EncodeToString(sum[:]) != g.KVSHA256 {
			t.Errorf("%s: metadata sha256 %x, gen.py %s", g.Model, sum, g.KVSHA256)
		}
		h := sha256.New()
		if _, err := s.WriteTo(h, vocab); err != nil {
			t.Fatal(err)
		}
		if sum := hex.EncodeToString(h.Sum(nil)); sum != g.FileSHA256 {
			t.Errorf("%s: file sha256 %s, gen.py %s", g.Model, sum, g.FileSHA256)
		}
	}
}

// A written model reads back through the gguf package with the metadata a
// runner needs.
func TestWriteFileReadsBack(t *testing.T) {
	vocab, ok := VocabDir()
	if !ok {
		t.Skip("no ../shared/vocab")
	}
	path, err := WriteFile("qwen3-q4_k_m", vocab, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for key, want := range map[string]uint64{"qwen3.attention.key_length": 64, "qwen3.attention.head_count": 8,
		"qwen3.attention.head_count_kv": 2, "qwen3.embedding_length": 256, "tokenizer.ggml.eos_token_id": 50258} {
		if got, err := f.Uint(key); err != nil || got != want {
			t.Errorf("%s = %d, %v; want %d", key, got, err, want)
		}
	}
	if eps, err := f.Float("qwen3.attention.layer_norm_rms_epsilon"); err != nil || float32(eps) != 1e-4 {
		t.Errorf("eps %v %v", eps, err)
	}
	if _, err := f.Tensor("output.weight"); err == nil {
		t.Error("tied model has output.weight")
	}
	emb, err := f.Tensor("token_embd.weight")
	if err != nil || emb.Type != quant.Q6_K || emb.Dims[0] != 256 || emb.Dims[1] != 50259 {
		t.Errorf("token_embd: %v %v %v", emb.Type, emb.Dims, err)
	}
	toks, err := f.Strings("tokenizer.ggml.tokens")
	if err != nil || toks[50257] != "<|im_start|>" || toks[50258] != "<|im_end|>" {
		t.Errorf("appended specials: %v", err)
	}
}

func TestLookup(t *testing.T) {
	for _, n := range Names() {
		s, err := Lookup(n)
		if err != nil || s.Name() != n {
			t.Errorf("Lookup(%q) = %v, %v", n, s.Name(), err)
		}
	}
	for _, n := range []string{"", "llama2", "llama2-q5_0", "gpt2-f32", "llama2-f32-f32"} {
		if _, err := Lookup(n); !errors.Is(err, ErrUnknownModel) {
			t.Errorf("Lookup(%q): %v, want ErrUnknownModel", n, err)
		}
	}
	if _, err := TokenizerKV(t.TempDir(), "llama-spm", 0); !errors.Is(err, ErrVocab) {
		t.Errorf("missing vocabulary: %v, want ErrVocab", err)
	}
	if _, err := TokenizerKV(t.TempDir(), "bert", 0); !errors.Is(err, ErrVocab) {
		t.Errorf("unknown kind: %v, want ErrVocab", err)
	}
}

// The full-size shapes have the real models' tensor shapes and sizes; the
// tensors are not generated here (Tensors of them takes seconds and about
// the file size in memory).
func TestFullSizeShapes(t *testing.T) {
	for _, c := range []struct {
		name    string
		nVocab  int
		tensors int
		params  int
	}{
		// Qwen2.5-0.5B: tied, QKV biases: 494,032,768 parameters.
		{"qwen2.5-0.5b", 151936, 1 + 24*12 + 1, 494032768},
		// Llama-3.2-1B: tied, rope_freqs (32 values): 1,235,814,432 parameters.
		{"llama3.2-1b", 128256, 1 + 1 + 16*9 + 1, 1235814432},
	} {
		s, err := Lookup(c.name + "-q8_0")
		if err != nil {
			t.Fatal(err)
		}
		ts := tensorSpecs(s.Family, c.nVocab)
		n := 0
		for _, x := range ts {
			m := 1
			for _, d := range x.dims {
				m *= d
			}
			n += m
		}
		if len(ts) != c.tensors || n != c.params {
			t.Errorf("%s: %d tensors, %d parameters; want %d, %d", c.name, len(ts), n, c.tensors, c.params)
		}
	}
}

// The Go twin writes the full-size Qwen2.5-0.5B-shaped Q4_K_M model as
// gen.py does (testdata/gguf/qwen2.5-0.5b-q4_k_m.sums): 396 MB generated in
// memory, so not with -short.
func TestFullSizeMatchesGenPy(t *testing.T) {
	if testing.Short() {
		t.Skip("396 MB model")
	}
	dir, ok := GoldenDir()
	if !ok {
		t.Skip("no repository root")
	}
	f, err := os.Open(filepath.Join(dir, "qwen2.5-0.5b-q4_k_m.sums"))
	if err != nil {
		t.Fatal(err)
	}
	g, err := ParseGolden(io.MultiReader(strings.NewReader("# model qwen2.5-0.5b-q4_k_m\n"), f,
		strings.NewReader("prompt_ids\nlast_logits\n")))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Lookup(g.Model)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := s.Tensors(s.Family.VocabSize)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != len(g.Tensors) {
		t.Fatalf("%d tensors, gen.py wrote %d", len(ts), len(g.Tensors))
	}
	for i, tt := range ts {
		sum := sha256.Sum256(tt.Data)
		if w := g.Tensors[i]; tt.Name != w.Name || tt.Type.String() != w.Type || hex.EncodeToString(sum[:]) != w.SHA256 {
			t.Errorf("tensor %d: %s %v %x, gen.py %s %s %s", i, tt.Name, tt.Type, sum[:6], w.Name, w.Type, w.SHA256[:12])
		}
	}
	vocab, ok := VocabDir()
	if !ok {
		return
	}
	h := sha256.New()
	if _, err := s.WriteTo(h, vocab); err != nil {
		t.Fatal(err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != g.FileSHA256 {
		t.Errorf("file sha256 %s, gen.py %s", sum, g.FileSHA256)
	}
}

var (
	writeModel = flag.String("write", "", "write the named random models (comma-separated) with TestWriteModels")
	writeDir   = flag.String("out", ".", "folder for -write")
)

// TestWriteModels writes models on request, the Go twin of gen.py's command:
//
//	go test ./examples/llama/internal/randmodel -run TestWriteModels -write llama3.2-1b-q8_0 -out /tmp
func TestWriteModels(t *testing.T) {
	if *writeModel == "" {
		t.Skip("no -write")
	}
	vocab, ok := VocabDir()
	if !ok {
		t.Fatal("no ../shared/vocab")
	}
	for _, name := range strings.Split(*writeModel, ",") {
		path, err := WriteFile(name, vocab, *writeDir)
		if err != nil {
			t.Fatal(err)
		}
		t.Log("wrote", path)
	}
}
