package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/examples/internal/tinymodel"
	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/kvcache"
)

// convertedRepoModel writes the project's model as GGUF with its tokenizer.
func convertedRepoModel(t *testing.T) string {
	t.Helper()
	m, err := llama.Load(filepath.Join("..", "..", llama.DefaultModel))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "retrieval.gguf")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := m.WriteGGUF(f, llama.GGUFOptions{Tokenizer: llama.ByteTokenizer()}); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestFlags: the flags reach llama.WriteLogits (the format itself is
// tested there): the command prints what the call prints for the same
// options, and bad flags are refused.
func TestFlags(t *testing.T) {
	path := convertedRepoModel(t)
	prompt := filepath.Join(t.TempDir(), "prompt")
	if err := os.WriteFile(prompt, []byte("In the beginning"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, v, err := llama.OpenGGUF(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, tc := range []struct {
		args []string
		opt  llama.LogitsOptions
	}{
		{[]string{"-prompt", "In the beginning", "-steps", "3"}, llama.LogitsOptions{Steps: 3, Cache: kvcache.Float16}},
		{[]string{"-prompt-file", prompt, "-steps", "2", "-bos=false", "-cache", "f32", "-chunk", "5", "-backend"},
			llama.LogitsOptions{Steps: 2, NoBOS: true, Cache: kvcache.Float32, Chunk: 5, Backend: true}},
	} {
		var got, want bytes.Buffer
		if err := run(append([]string{"-model", path}, tc.args...), &got, io.Discard); err != nil {
			t.Fatal(err)
		}
		if err := llama.WriteLogits(&want, m, v, "In the beginning", tc.opt); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("%q: the command prints other than llama.WriteLogits with %+v", tc.args, tc.opt)
		}
	}
	if err := run([]string{"-h"}, io.Discard, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	for _, bad := range [][]string{
		{}, {"-model", path, "extra"}, {"-model", path, "-steps", "-1"}, {"-model", path, "-chunk", "0"},
		{"-model", path, "-cache", "f8"}, {"-model", path, "-prompt", "x", "-prompt-file", "y"},
		{"-model", path, "-prompt", "", "-bos=false"}, {"-model", filepath.Join("..", "..", llama.DefaultModel), "-prompt", "x"},
	} {
		if err := run(bad, io.Discard, io.Discard); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestTinyModels runs the command on a small random model of each
// architecture and tokenizer: the prompt's ids are the file's tokenizer's
// (BOS where the metadata says, special tokens parsed), the last logits
// cover the vocabulary, and each greedy step's id is its top logit.
func TestTinyModels(t *testing.T) {
	for _, spec := range tinymodel.Trio {
		path := tinymodel.WriteTemp(t, spec)
		m, v, err := llama.OpenGGUF(path)
		if err != nil {
			t.Fatal(err)
		}
		m.Close()
		const prompt = "<|im_start|>The special magic number for amber is 40713."
		want, err := v.Encode(prompt, true, true)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := run([]string{"-model", path, "-prompt", prompt, "-steps", "3"}, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		got, err := parseOutput(out.String())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.ids, want) || len(got.logits) != v.Size() || len(got.steps) != 3 || got.steps[0] != llama.Argmax(got.logits) {
			t.Fatalf("%s: ids %v (want %v), %d logits of %d, steps %v", spec.Name(), got.ids, want, len(got.logits), v.Size(), got.steps)
		}
	}
}

type parsed struct {
	ids    []int
	logits []float32
	steps  []int
}

// parseOutput parses the command's output (the format itself is
// tested in package llama).
func parseOutput(s string) (parsed, error) {
	var p parsed
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "prompt_ids":
			for _, x := range f[1:] {
				n, err := strconv.Atoi(x)
				if err != nil {
					return p, err
				}
				p.ids = append(p.ids, n)
			}
		case len(f) > 0 && f[0] == "last_logits":
			for _, x := range f[1:] {
				v, err := strconv.ParseFloat(x, 32)
				if err != nil {
					return p, err
				}
				p.logits = append(p.logits, float32(v))
			}
		case len(f) > 4 && f[0] == "step":
			n, err := strconv.Atoi(f[3])
			if err != nil {
				return p, err
			}
			p.steps = append(p.steps, n)
		default:
			return p, fmt.Errorf("line %q", line)
		}
	}
	return p, nil
}
