package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/kvcache"
)

var stories = filepath.Join("..", "..", "..", "shared", "models", "stories260K")

// converted runs the command and returns the logits of prompt's last token
// under the checkpoint and under the file the command wrote.
func converted(t *testing.T, model, tok string, prompt []int) (want, got []float32) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "m.gguf")
	var stdout bytes.Buffer
	args := []string{"-model", model, "-out", out}
	if tok != "" {
		args = append(args, "-tokenizer", tok)
	}
	if err := run(args, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stdout.String(), out+": ") {
		t.Fatalf("output %q", stdout.String())
	}
	logits := func(path string) []float32 {
		m, err := llama.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		c, _ := m.NewCache(kvcache.Float32)
		s, _ := m.NewSession(c, nil)
		l, err := s.Forward(prompt)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	return logits(model), logits(out)
}

func TestConvertRepoModel(t *testing.T) {
	want, got := converted(t, filepath.Join("..", "..", llama.DefaultModel), "", []int{1, 84, 104, 101, 35})
	if !slices.Equal(want, got) {
		t.Fatal("the converted model's logits differ from the checkpoint's")
	}
}

func TestConvertStories(t *testing.T) {
	model := filepath.Join(stories, "stories260K.bin")
	if _, err := os.Stat(model); err != nil {
		t.Skipf("stories260K not present at %s: %v", stories, err)
	}
	want, got := converted(t, model, filepath.Join(stories, "tok512.bin"), []int{1, 403, 407, 261, 378})
	if !slices.Equal(want, got) {
		t.Fatal("the converted model's logits differ from the checkpoint's")
	}
}

func TestFlags(t *testing.T) {
	if err := run([]string{"-h"}, io.Discard, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	for _, bad := range [][]string{{"extra"}, {"-model", "no-such-file"}, {"-model", filepath.Join("..", "..", llama.DefaultModel), "-tokenizer", "no-such-file", "-out", filepath.Join(t.TempDir(), "x.gguf")}} {
		if err := run(bad, io.Discard, io.Discard); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
