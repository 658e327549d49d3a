package main

import (
	"os"
	"path/filepath"
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
