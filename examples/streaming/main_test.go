package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// table returns the rows of the printed needle tables, by the fields that
// name a cell (chunk budget reserve scorer), as their fields.
func table(out string) map[string][]string {
	rows := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 13 && strings.HasSuffix(f[2], "x") {
			rows[strings.Join(f[:4], " ")] = f
		}
	}
	return rows
}

// TestNeedlesOneChunk: with a chunk longer than the prompt no compression
// runs before the question, so every scorer answers exactly what one-shot
// compression answers, at every budget and reserve; the peaks are the whole
// prompt's; the CSV holds a line per prompt and cell, the plot is written,
// and a second run refuses to overwrite them without -resume.
func TestNeedlesOneChunk(t *testing.T) {
	dir := t.TempDir()
	var out strings.Builder
	args := []string{"-prompts", "2", "-lengths", "300", "-chunks", "512", "-budgets", "32,64", "-ratios", "1,2",
		"-scorers", "window,knorm,expected,averaged", "-out", dir, "-workers", "2",
		"-model", "../../testdata/retrieval.bin", "-profile", "../../testdata/retrieval.profile.json", "-haystack", "../../testdata/haystack/river.txt"}
	if err := run(args, &out, &strings.Builder{}); err != nil {
		t.Fatal(err)
	}
	rows := table(out.String())
	if len(rows) != 16 {
		t.Fatalf("%d table rows, want 16 (2 budgets x 2 reserves x 4 scorers):\n%s", len(rows), out.String())
	}
	for k, f := range rows {
		if f[4] != f[5] || f[7] != "0" || f[8] != "0" {
			t.Fatalf("%s: streamed %s, one-shot %s (discordant %s, %s); one chunk must answer as one-shot", k, f[4], f[5], f[7], f[8])
		}
		if f[10] != "154.7" { // 300 rows x 2 layers x 2 KV heads x 132 bytes
			t.Fatalf("%s: peak %s KiB, want the whole prompt's 154.7", k, f[10])
		}
	}
	csv, err := os.ReadFile(filepath.Join(dir, "needles.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(strings.Split(strings.TrimSpace(string(csv)), "\n")); n != 1+2*16 {
		t.Fatalf("CSV of %d lines, want a header and 32", n)
	}
	if st, err := os.Stat(filepath.Join(dir, "frontier.png")); err != nil || st.Size() == 0 {
		t.Fatalf("no frontier plot: %v", err)
	}
	if err := run(args, &out, &strings.Builder{}); err == nil || !strings.Contains(err.Error(), "-resume") {
		t.Fatalf("a second run over the same CSV: %v", err)
	}
	out.Reset()
	if err := run(append(args, "-resume"), &out, &strings.Builder{}); err != nil {
		t.Fatal(err)
	}
	if again := table(out.String()); len(again) != 16 || strings.Join(again["512 32 1x knorm"], " ") != strings.Join(rows["512 32 1x knorm"], " ") {
		t.Fatalf("a resumed run with nothing left to do printed another table:\n%s", out.String())
	}
	if err := run(append(args[:len(args):len(args)], "-resume", "-seed", "7"), &out, &strings.Builder{}); err == nil {
		t.Fatal("resuming a CSV of another seed was accepted")
	}
}

// TestStories runs the story measurement at a tiny size on stories260K:
// with a chunk longer than every prompt, streaming answers and diverges as
// one-shot compression does.
func TestStories(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "shared", "models", "stories260K")
	if _, err := os.Stat(filepath.Join(dir, "stories260K.bin")); err != nil {
		t.Skipf("stories260K not present at %s (it lives in ../shared beside the repository): %v", dir, err)
	}
	prof := filepath.Join(t.TempDir(), "stories.profile.json")
	// A profile of the right shape: every head ranked, no layer weights.
	if err := os.WriteFile(prof, []byte(`{"version":2,"model":{"name":"stories260K","layers":5,"query_heads":8,"kv_heads":4,"head_dim":8},
		"head_ranking":[[0,1,2,3,4,5,6,7],[0,1,2,3,4,5,6,7],[0,1,2,3,4,5,6,7],[0,1,2,3,4,5,6,7],[0,1,2,3,4,5,6,7]]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	err := run([]string{"-stories", "-model", filepath.Join(dir, "stories260K.bin"), "-tokenizer", filepath.Join(dir, "tok512.bin"),
		"-profile", prof, "-haystack", "../../testdata/haystack/river.txt", "-per", "2", "-kl-samples", "2", "-kl-length", "100", "-kl-steps", "4",
		"-chunks", "512", "-budgets", "16", "-ratios", "1", "-scorers", "window,knorm", "-kernel", "5"}, &out, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	text := out.String()
	lines := 0
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 6 && f[0] == "512" {
			lines++
			if f[4] != f[5] {
				t.Fatalf("one chunk: streamed %s, one-shot %s in %q", f[4], f[5], line)
			}
		}
	}
	if lines != 4 {
		t.Fatalf("%d result lines, want 2 recall and 2 KL:\n%s", lines, text)
	}
}
