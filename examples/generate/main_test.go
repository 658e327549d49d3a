package main

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
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
