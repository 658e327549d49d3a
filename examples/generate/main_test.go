package main

import (
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
	"time"

	"github.com/compresskv/compresskv/examples/internal/cli"
	"github.com/compresskv/compresskv/examples/internal/tinymodel"
	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/kvcache"
)

var stories = filepath.Join("..", "..", "..", "shared", "models", "stories260K")

// TestGenerateStories generates with stories260K (skipped, saying so, when
// ../shared is absent) under a compressing policy and checks the report.
func TestGenerateStories(t *testing.T) {
	model := filepath.Join(stories, "stories260K.bin")
	if _, err := os.Stat(model); err != nil {
		t.Skipf("stories260K not present at %s: %v", stories, err)
	}
	var out strings.Builder
	err := run([]string{"-model", model, "-tokenizer", filepath.Join(stories, "tok512.bin"),
		"-prompt", "Once upon a time, there was a little girl named Lily. She loved to play outside", "-policy", "snapkv", "-budget", "12", "-n", "10"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	text := out.String()
	t.Log("\n" + text)
	for _, want := range []string{"Once upon a time", "prefill:", "decode:  10 tokens", "after compression"} {
		if !strings.Contains(text, want) {
			t.Fatalf("output lacks %q", want)
		}
	}
	if err := run([]string{"-model", model, "-tokenizer", filepath.Join(stories, "tok512.bin"), "-policy", "nope"}, &out); err == nil {
		t.Fatal("an unknown policy was accepted")
	}
}

// TestGenerateStreaming bounds the cache while generating with stories260K
// (skipped without ../shared): with -max-cache beyond the whole sequence
// the text is the full cache's, token for token; with a small one the
// cache is compressed during the prefill and the decode, and the report
// says so.
func TestGenerateStreaming(t *testing.T) {
	model := filepath.Join(stories, "stories260K.bin")
	if _, err := os.Stat(model); err != nil {
		t.Skipf("stories260K not present at %s: %v", stories, err)
	}
	base := []string{"-model", model, "-tokenizer", filepath.Join(stories, "tok512.bin"),
		"-prompt", "Once upon a time, there was a little girl named Lily. She loved to play outside", "-n", "60"}
	text := func(args ...string) (string, string) {
		t.Helper()
		var out strings.Builder
		if err := run(append(slices.Clone(base), args...), &out); err != nil {
			t.Fatal(err)
		}
		gen, report, _ := strings.Cut(out.String(), "\n\nmodel ")
		return gen, report
	}
	full, _ := text("-policy", "full")
	for _, p := range []string{"snapkv", "adakv", "streamingllm"} {
		if got, report := text("-policy", p, "-max-cache", "200", "-chunk", "8"); got != full {
			t.Fatalf("%s with a bound beyond the sequence changed the text:\n%s\nwant\n%s\n%s", p, got, full, report)
		}
		_, report := text("-policy", p, "-max-cache", "16", "-chunk", "8")
		t.Log(report)
		if !strings.Contains(report, "streaming: max-cache 16, chunk 8") || strings.Contains(report, " 0 layer compressions") {
			t.Fatalf("%s: report %q", p, report)
		}
	}
}

// TestQualityDecodeFullBudget: the decode measurement of a budget beyond
// the whole sequence finds the full cache's text and distributions exactly
// (stories260K; skipped without ../shared), and a small budget is measured.
func TestQualityDecodeFullBudget(t *testing.T) {
	model := filepath.Join(stories, "stories260K.bin")
	if _, err := os.Stat(model); err != nil {
		t.Skipf("stories260K not present at %s: %v", stories, err)
	}
	var out strings.Builder
	err := run([]string{"quality", "decode", "-model", model, "-tokenizer", filepath.Join(stories, "tok512.bin"),
		"-policies", "snapkv,adakv", "-budgets", "8,200", "-prompts", "2", "-steps", "40", "-kernel", "5"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	for _, p := range []string{"snapkv", "adakv"} {
		want := p + "     200            100.0%                40        100.0%   0.0000"
		if !strings.Contains(out.String(), want) {
			t.Fatalf("%s at a budget beyond the sequence: want the line %q", p, want)
		}
	}
}

// TestQualityNeedle runs the needle measurement on one short prompt of the
// project's model.
func TestQualityNeedle(t *testing.T) {
	if testing.Short() {
		t.Skip("several prefills of the project's model")
	}
	var out strings.Builder
	err := run([]string{"quality", "needle", "-model", "../../testdata/retrieval.bin", "-profile", "../../testdata/retrieval.profile.json",
		"-haystack", "../../testdata/haystack/eval.txt", "-lengths", "300", "-budgets", "400", "-chunks", "64", "-prompts", "1"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	// A budget beyond the prompt keeps everything: both modes answer as the
	// full cache does, so they agree.
	for _, line := range strings.Split(out.String(), "\n")[2:] {
		if f := strings.Fields(line); len(f) == 5 && f[3] != f[4] {
			t.Fatalf("one-shot and streaming differ with nothing evicted: %q", line)
		}
	}
	if !strings.Contains(out.String(), "chunk 64") {
		t.Fatalf("no streaming column in %q", out.String())
	}
}

// TestHelp: -h names the subcommands and every method, marking those that
// need a profile, and succeeds.
func TestHelp(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	err = run([]string{"-h"}, io.Discard)
	os.Stderr = stderr
	w.Close()
	help, _ := io.ReadAll(r)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	for _, want := range []string{"generate quality needle", "generate quality decode", "-policy", "adacompresskv (needs -profile)", "adakv,", "-kernel"} {
		if !strings.Contains(string(help), want) {
			t.Errorf("-h does not say %q:\n%s", want, help)
		}
	}
}

// TestProgress: a prompt of more than four chunks reports a line per chunk
// started after the first, and nothing once the prompt is done (decoding
// steps run the same hook); a short prompt reports nothing.
func TestProgress(t *testing.T) {
	m, err := llama.Load(filepath.Join("..", "..", llama.DefaultModel))
	if err != nil {
		t.Skipf("the project's model: %v", err)
	}
	for _, c := range []struct{ total, chunk, lines int }{{100, 16, 6}, {64, 16, 0}} {
		cache, err := m.NewCache(kvcache.Float32)
		if err != nil {
			t.Fatal(err)
		}
		s, err := m.NewSession(cache, nil)
		if err != nil {
			t.Fatal(err)
		}
		var buf strings.Builder
		showProgress(s, c.total, c.chunk, time.Now(), &buf)
		ids := make([]int, c.total)
		for i := range ids {
			ids[i] = i % m.Vocab
		}
		if _, _, err := s.Prefill(ids, c.chunk); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if _, err := s.Forward([]int{1}); err != nil {
				t.Fatal(err)
			}
		}
		lines := strings.Count(buf.String(), "\n")
		if lines != c.lines || (lines > 0 && !strings.HasPrefix(buf.String(), fmt.Sprintf("prefill: %d of %d tokens", c.chunk, c.total))) {
			t.Errorf("%d tokens in chunks of %d: %d lines, want %d:\n%s", c.total, c.chunk, lines, c.lines, buf.String())
		}
	}
}

// field returns the integer after prefix in the line of text that begins
// with prefix (-1 when there is none).
func field(text, prefix string) int {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			n, err := strconv.Atoi(strings.Fields(rest)[0])
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// TestGenerateGGUF generates with a small random model of each
// architecture and tokenizer: the prompt is the model's own tokens (a chat
// model's a user turn and the assistant's opening, the template named),
// one-shot and streaming compression run, a method that needs a profile
// reads one of the model's shape and, without one, says how to make it.
func TestGenerateGGUF(t *testing.T) {
	for _, spec := range tinymodel.Trio {
		path := tinymodel.WriteTemp(t, spec)
		m, err := cli.Open(path, "")
		if err != nil {
			t.Fatal(err)
		}
		const prompt = "Why is the sky blue?"
		ids, err := m.EncodePrompt(prompt)
		if err != nil {
			t.Fatal(err)
		}
		m.Close()
		prof := filepath.Join(t.TempDir(), "p.json")
		if err := tinymodel.WriteProfile(prof, spec, 1); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"-policy", "snapkv", "-budget", "16"},
			{"-policy", "compresskv", "-budget", "16", "-profile", prof},
			{"-policy", "adakv", "-max-cache", "12", "-chunk", "8"},
		} {
			var out strings.Builder
			if err := run(append([]string{"-model", path, "-prompt", prompt, "-n", "6"}, args...), &out); err != nil {
				t.Fatalf("%s %q: %v", spec.Name(), args, err)
			}
			text := out.String()
			summary := "model " + path + ": " + spec.Arch + ", 2 layers, 4 query / 2 KV heads"
			if spec.Tokenizer != tinymodel.SPM {
				summary = "chat template " + map[tinymodel.Tokenizer]string{tinymodel.ChatML: "chatml", tinymodel.Llama3: "llama3"}[spec.Tokenizer] + " (from tokenizer.chat_template)"
			}
			if !strings.HasPrefix(text, prompt) || !strings.Contains(text, summary) || field(text, "prefill: ") != len(ids) ||
				field(text, "decode:  ") < 0 || field(text, "decode:  ") > 6 || (!strings.Contains(text, "after compression") && !strings.Contains(text, "streaming: max-cache 12")) {
				t.Fatalf("%s %q: want the prompt, %q, a prefill of %d tokens, at most 6 decoded and the cache in:\n%s", spec.Name(), args, summary, len(ids), text)
			}
		}
		err = run([]string{"-model", path, "-policy", "compresskv"}, io.Discard)
		want := "go run ./examples/calibrate -model " + path + " (it writes out/" + spec.Name() + ".profile.json) and pass it with -profile out/" + spec.Name() + ".profile.json"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: compresskv without a profile of the model: %v", spec.Name(), err)
		}
	}
}

// TestGenerateStopsAtEOG: a model whose every greedy choice is an
// end-of-generation token generates nothing and says which token stopped
// it; the same model with it off the end-of-generation set would not.
func TestGenerateStopsAtEOG(t *testing.T) {
	for _, tc := range []struct {
		spec tinymodel.Spec
		stop string
	}{
		{tinymodel.Spec{Arch: "qwen2", Tokenizer: tinymodel.ChatML, Favour: "<|im_end|>"}, `"<|im_end|>"`},
		{tinymodel.Spec{Arch: "llama", Tokenizer: tinymodel.Llama3, Favour: "<|eot_id|>"}, `"<|eot_id|>"`},
		{tinymodel.Spec{Arch: "llama", Tokenizer: tinymodel.SPM, Favour: "</s>"}, `"</s>"`},
	} {
		var out strings.Builder
		if err := run([]string{"-model", tinymodel.WriteTemp(t, tc.spec), "-prompt", "Hello", "-policy", "full", "-n", "5"}, &out); err != nil {
			t.Fatal(err)
		}
		if field(out.String(), "decode:  ") != 0 || !strings.Contains(out.String(), "stopped at "+tc.stop) {
			t.Fatalf("%s: want no tokens, stopped at %s:\n%s", tc.spec.Name(), tc.stop, out.String())
		}
	}
	// A token that is not end-of-generation is generated on.
	var out strings.Builder
	if err := run([]string{"-model", tinymodel.WriteTemp(t, tinymodel.Spec{Arch: "qwen2", Tokenizer: tinymodel.ChatML, Favour: "<|im_start|>"}), "-policy", "full", "-n", "5"}, &out); err != nil {
		t.Fatal(err)
	}
	if field(out.String(), "decode:  ") != 5 || strings.Contains(out.String(), "stopped at") {
		t.Fatalf("a control token that is not end-of-generation stopped decoding:\n%s", out.String())
	}
}

// TestQualityGGUF runs both quality measurements on a small random model
// of each architecture: the needle prompts are the model's own, and every
// cell is measured (random weights answer nothing: 0%).
func TestQualityGGUF(t *testing.T) {
	for _, spec := range tinymodel.Trio {
		path := tinymodel.WriteTemp(t, spec)
		var out strings.Builder
		err := run([]string{"quality", "needle", "-model", path, "-haystack", "../../testdata/haystack/eval.txt",
			"-lengths", "128", "-budgets", "32", "-chunks", "32", "-prompts", "2", "-policies", "snapkv"}, &out)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "snapkv     128      32        0%        0%") {
			t.Fatalf("%s: quality needle:\n%s", spec.Name(), out.String())
		}
		out.Reset()
		err = run([]string{"quality", "decode", "-model", path, "-policies", "snapkv", "-budgets", "8,400", "-prompts", "2", "-steps", "6"}, &out)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "snapkv     400            100.0%                 6        100.0%   0.0000") {
			t.Fatalf("%s: quality decode at a budget beyond the sequence:\n%s", spec.Name(), out.String())
		}
	}
}
