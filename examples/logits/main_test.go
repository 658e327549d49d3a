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

	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/kvcache"
)

// output is the command's output, parsed.
type output struct {
	prompt []int
	last   []float64
	steps  []step
}

type step struct {
	id  int
	top [][2]float64 // (id, value)
}

func parseOutput(t *testing.T, s string) output {
	t.Helper()
	var o output
	for n, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		f := strings.Fields(line)
		switch {
		case n == 0 && len(f) > 0 && f[0] == "prompt_ids":
			for _, x := range f[1:] {
				id, err := strconv.Atoi(x)
				if err != nil {
					t.Fatal(err)
				}
				o.prompt = append(o.prompt, id)
			}
		case n == 1 && len(f) > 0 && f[0] == "last_logits":
			for _, x := range f[1:] {
				v, err := strconv.ParseFloat(x, 64)
				if err != nil {
					t.Fatal(err)
				}
				o.last = append(o.last, v)
			}
		case n >= 2 && len(f) == 10 && f[0] == "step" && f[1] == strconv.Itoa(n-2) && f[2] == "id" && f[4] == "top5":
			id, err := strconv.Atoi(f[3])
			if err != nil {
				t.Fatal(err)
			}
			st := step{id: id}
			for _, p := range f[5:] {
				var i int
				var v float64
				if _, err := fmt.Sscanf(p, "%d:%g", &i, &v); err != nil {
					t.Fatalf("%q: %v", p, err)
				}
				st.top = append(st.top, [2]float64{float64(i), v})
			}
			o.steps = append(o.steps, st)
		default:
			t.Fatalf("line %d does not follow the format: %q", n+1, line)
		}
	}
	return o
}

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

// TestFormat: the output follows the format line by line; the prompt ids are
// the tokenizer's (BOS first unless -bos=false, special tokens parsed); the
// last logits are the session's, to the printed precision; each step's
// token is the argmax of the logits it reads, its top five are sorted and
// match a session run alongside.
func TestFormat(t *testing.T) {
	path := convertedRepoModel(t)
	const prompt = "In the beginning</s> God created"
	for _, bos := range []bool{true, false} {
		var out bytes.Buffer
		args := []string{"-model", path, "-prompt", prompt, "-steps", "6", "-cache", "f32", "-chunk", "7"}
		if !bos {
			args = append(args, "-bos=false")
		}
		if err := run(args, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		o := parseOutput(t, out.String())
		tok := llama.ByteTokenizer()
		want := tok.Encode("In the beginning", bos, false)
		want = append(append(want, llama.EOS), tok.Encode(" God created", false, false)...)
		if !slices.Equal(o.prompt, want) {
			t.Fatalf("bos %v: prompt ids %v, want %v", bos, o.prompt, want)
		}
		m, v, err := llama.OpenGGUF(path)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := m.NewCache(kvcache.Float32)
		s, _ := m.NewSession(c, nil)
		logits, err := s.Forward(want)
		if err != nil {
			t.Fatal(err)
		}
		if len(o.last) != v.Size() {
			t.Fatalf("%d last logits for a vocabulary of %d", len(o.last), v.Size())
		}
		for i, x := range o.last {
			if d := x - float64(logits[i]); d > 1e-5*max(1, abs(x)) || -d > 1e-5*max(1, abs(x)) {
				t.Fatalf("last logit %d printed %v, the session computes %v", i, x, logits[i])
			}
		}
		if len(o.steps) != 6 {
			t.Fatalf("%d steps printed", len(o.steps))
		}
		for n, st := range o.steps {
			if n > 0 {
				if logits, err = s.Forward([]int{o.steps[n-1].id}); err != nil {
					t.Fatal(err)
				}
			}
			if st.id != llama.Argmax(logits) || int(st.top[0][0]) != st.id {
				t.Fatalf("step %d: id %d, top %v, argmax %d", n, st.id, st.top, llama.Argmax(logits))
			}
			for k, p := range st.top {
				if float64(float32(p[1])) != float64(float32(logits[int(p[0])])) && abs(p[1]-float64(logits[int(p[0])])) > 1e-5*abs(p[1]) {
					t.Fatalf("step %d: top %d is %v, the session's logit %v", n, k, p, logits[int(p[0])])
				}
				if k > 0 && (p[1] > st.top[k-1][1] || p[1] == st.top[k-1][1] && p[0] < st.top[k-1][0]) {
					t.Fatalf("step %d: top five out of order: %v", n, st.top)
				}
			}
		}
		m.Close()
	}
}

func TestFlags(t *testing.T) {
	path := convertedRepoModel(t)
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

func abs(x float64) float64 { return max(x, -x) }
