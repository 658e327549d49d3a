package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/examples/internal/tinymodel"
	"github.com/compresskv/compresskv/examples/llama/gguf"
	"github.com/compresskv/compresskv/examples/llama/vocab"
)

// writeGGUF writes metadata to a GGUF file in a temporary directory.
func writeGGUF(t *testing.T, kv map[string]any) string {
	t.Helper()
	w := gguf.NewWriter()
	w.Set("general.architecture", "llama")
	for k, x := range kv {
		if err := w.Set(k, x); err != nil {
			t.Fatal(k, err)
		}
	}
	path := filepath.Join(t.TempDir(), "v.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// A SentencePiece vocabulary: <unk> <s> </s>, then ▁ a b ▁a ab ▁ab <|x|> (control).
func spmFile(t *testing.T) string {
	return writeGGUF(t, map[string]any{
		"tokenizer.ggml.model":        "llama",
		"tokenizer.ggml.tokens":       []string{"<unk>", "<s>", "</s>", "▁", "a", "b", "▁a", "ab", "▁ab", "<|x|>"},
		"tokenizer.ggml.scores":       []float32{0, 0, 0, -1, -2, -2, -3, -4, -5, 0},
		"tokenizer.ggml.token_type":   []int32{2, 3, 3, 1, 1, 1, 1, 1, 1, 3},
		"tokenizer.ggml.bos_token_id": uint32(1),
		"tokenizer.ggml.eos_token_id": uint32(2),
	})
}

func runOut(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(args, &out, &errb)
	return out.String(), err
}

func TestTokenize(t *testing.T) {
	model := spmFile(t)
	inp := filepath.Join(t.TempDir(), "t.inp")
	if err := os.WriteFile(inp, []byte("ab\n__ggml_vocab_test__\na b\n__ggml_vocab_test__\n\n__ggml_vocab_test__\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		// -text: BOS (the metadata's default for SentencePiece) and specials parsed.
		{[]string{"-text", "ab"}, " 1 8\n"},
		{[]string{"-text", "<|x|>ab"}, " 1 9 8\n"},
		{[]string{"-text", "ab", "-bos=false"}, " 8\n"},
		// -tests: no BOS, specials not parsed; one line per text, empty for the empty text.
		{[]string{"-tests", inp}, " 8\n 6 3 5\n\n"},
		{[]string{"-tests", inp, "-bos", "-special"}, " 1 8\n 1 6 3 5\n 1\n"},
		{[]string{"-decode", "1 8 9 6"}, "<s> ab<|x|> a\n"},
		{[]string{"-decode", "1 8 9 6", "-special=false"}, " ab a\n"}, // the skipped BOS takes the leading-space removal, as in llama.cpp
	} {
		got, err := runOut(t, append([]string{"-model", model}, c.args...)...)
		if err != nil {
			t.Errorf("%v: %v", c.args, err)
			continue
		}
		if got != c.want {
			t.Errorf("%v: got %q, want %q", c.args, got, c.want)
		}
	}
	for _, args := range [][]string{
		{},
		{"-model", model},
		{"-model", model, "-text", "a", "-tests", inp},
		{"-text", "a"},
		{"-model", filepath.Join(t.TempDir(), "missing.gguf"), "-text", "a"},
		{"-model", inp, "-text", "a"},
		{"-model", model, "-decode", "1 x"},
		{"-model", model, "-decode", "99"},
		{"-model", model, "-tests", filepath.Join(t.TempDir(), "missing.inp")},
	} {
		if _, err := runOut(t, args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	if _, err := runOut(t, "-h"); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

const sharedVocab = "../../../shared/vocab"

// TestSharedTests: on llama.cpp's test vocabularies, -tests prints the .out files exactly.
func TestSharedTests(t *testing.T) {
	for _, name := range []string{"llama-spm", "gpt-2", "starcoder"} {
		base := filepath.Join(sharedVocab, "ggml-vocab-"+name+".gguf")
		if _, err := os.Stat(base); err != nil {
			t.Skipf("no %s", base)
		}
		got, err := runOut(t, "-model", base, "-tests", base+".inp")
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(base + ".out")
		if err != nil {
			t.Fatal(err)
		}
		if got != string(want) {
			t.Errorf("%s: output differs from %s.out:\n%s", name, base, firstDiff(got, string(want)))
		}
	}
}

// TestRelabelled writes the GPT-2 vocabulary with another pre-tokenizer (as
// tools/ggufgold/relabel_vocab.py does, less its extra tokens) and compares -tests on
// llama.cpp's GPT-2 test texts with the recorded golden output.
func TestRelabelled(t *testing.T) {
	base := filepath.Join(sharedVocab, "ggml-vocab-gpt-2.gguf")
	if _, err := os.Stat(base); err != nil {
		t.Skipf("no %s", base)
	}
	f, err := gguf.Open(base)
	if err != nil {
		t.Fatal(err)
	}
	kv := map[string]any{}
	for _, e := range f.KV {
		kv[e.Key] = e.Value.Any()
	}
	f.Close()
	for _, pre := range []string{"llama-bpe", "qwen2", "deepseek-llm"} {
		kv["tokenizer.ggml.pre"] = pre
		model := writeGGUF(t, kv)
		got, err := runOut(t, "-model", model, "-tests", base+".inp")
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join("../../testdata/vocab", "pre-"+pre+".shared.out"))
		if err != nil {
			t.Fatal(err)
		}
		if got != string(want) {
			t.Errorf("%s:\n%s", pre, firstDiff(got, string(want)))
		}
	}
}

func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var a, b string
		if i < len(g) {
			a = g[i]
		}
		if i < len(w) {
			b = w[i]
		}
		if a != b {
			return fmt.Sprintf("line %d:\n got %q\nwant %q", i+1, a, b)
		}
	}
	return "(same lines)"
}

// TestTinyModels: the ids of a text in a small random model of each
// tokenizer kind are its vocabulary's (BOS where the metadata says,
// special tokens parsed), several for a five-digit number, and decode back
// to the text.
func TestTinyModels(t *testing.T) {
	for _, spec := range tinymodel.Trio {
		path := tinymodel.WriteTemp(t, spec)
		f, err := gguf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		v, err := vocab.FromGGUF(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		const text = "The secret code of the cedar is 58201."
		want, _ := v.Encode(text, true, true)
		got, err := runOut(t, "-model", path, "-text", text)
		if err != nil {
			t.Fatal(err)
		}
		if got != " "+strings.Trim(fmt.Sprint(want), "[]")+"\n" || len(want) < 10 {
			t.Fatalf("%s: %q, want %v", spec.Name(), got, want)
		}
		dec, err := runOut(t, "-model", path, "-decode", strings.TrimSpace(got))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(dec, text+"\n") {
			t.Fatalf("%s: decoded %q", spec.Name(), dec)
		}
	}
}
