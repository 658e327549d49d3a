package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/examples/internal/cli"
	"github.com/compresskv/compresskv/examples/internal/tinymodel"
)

var stories = filepath.Join("..", "..", "..", "shared", "models", "stories260K")

// TestFidelityStories: with stories260K (skipped when ../shared is absent),
// KL is finite and non-negative, and a budget as large as the prompt gives 0.
func TestFidelityStories(t *testing.T) {
	model := filepath.Join(stories, "stories260K.bin")
	if _, err := os.Stat(model); err != nil {
		t.Skipf("stories260K not present at %s: %v", stories, err)
	}
	var out strings.Builder
	err := run([]string{"-model", model, "-tokenizer", filepath.Join(stories, "tok512.bin"), "-text", "../../testdata/haystack/eval.txt",
		"-length", "96", "-steps", "8", "-samples", "2", "-budgets", "16,96", "-policies", "snapkv,streamingllm"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	rows := 0
	for _, line := range strings.Split(out.String(), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || (f[0] != "snapkv" && f[0] != "streamingllm") {
			continue
		}
		rows++
		small, _ := strconv.ParseFloat(f[1], 64)
		full, _ := strconv.ParseFloat(f[2], 64)
		if small <= 0 || full != 0 {
			t.Fatalf("%s: KL %v at budget 16 and %v at the prompt's length", f[0], small, full)
		}
	}
	if rows != 2 {
		t.Fatalf("found %d policy rows in the report, want 2", rows)
	}
}

// TestRetrievalStories: the retrieval comparison (skipped without ../shared)
// prints one row per policy whose counts are out of the probes the full
// cache answers, and the full cache answers all of those.
func TestRetrievalStories(t *testing.T) {
	if testing.Short() {
		t.Skip("seconds of model runs; minutes under the race detector")
	}
	model := filepath.Join(stories, "stories260K.bin")
	if _, err := os.Stat(model); err != nil {
		t.Skipf("stories260K not present at %s: %v", stories, err)
	}
	var out strings.Builder
	err := run([]string{"-model", model, "-tokenizer", filepath.Join(stories, "tok512.bin"), "-text", "../../testdata/haystack/eval.txt",
		"-length", "64", "-steps", "2", "-samples", "1", "-budgets", "16,200", "-policies", "full,snapkv", "-probes", "stories",
		"-leads", "0,4", "-sentences", "3", "-per", "6"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	var answered int
	rows := map[string][]string{}
	for _, line := range strings.Split(out.String(), "\n") {
		if i := strings.Index(line, "of the "); i >= 0 {
			answered, _ = strconv.Atoi(strings.Fields(line[i+len("of the "):])[0])
		}
		if f := strings.Fields(line); len(f) == 3 && strings.Contains(f[1], "/") {
			rows[f[0]] = f[1:]
		}
	}
	if answered == 0 || len(rows) != 2 {
		t.Fatalf("answered %d, rows %v", answered, rows)
	}
	all := strconv.Itoa(answered) + "/" + strconv.Itoa(answered)
	// Full keeps everything; a budget above every prompt's length keeps everything too.
	if rows["full"][0] != all || rows["full"][1] != all || rows["snapkv"][1] != all {
		t.Fatalf("rows %v, want %s for the full cache and for SnapKV at 200", rows, all)
	}
}

// TestFidelityGGUF measures a small random model of each architecture: KL
// is positive at a small budget and 0 at one beyond the prompt, the text is
// the model's own tokens after its BOS, and the story probes run in its
// tokens (answered by none: random weights).
func TestFidelityGGUF(t *testing.T) {
	for _, spec := range tinymodel.Trio {
		path := tinymodel.WriteTemp(t, spec)
		var out strings.Builder
		err := run([]string{"-model", path, "-text", "../../testdata/haystack/eval.txt", "-length", "80", "-steps", "4", "-samples", "2",
			"-budgets", "16,96", "-policies", "snapkv,h2o", "-probes", "stories", "-leads", "0,4", "-sentences", "3", "-per", "2"}, &out)
		if err != nil {
			t.Fatal(err)
		}
		text := out.String()
		if !strings.HasPrefix(text, "model "+path+": "+spec.Arch) {
			t.Fatalf("%s:\n%s", spec.Name(), text)
		}
		rows := 0
		for _, line := range strings.Split(text, "\n") {
			f := strings.Fields(line)
			if len(f) != 3 || (f[0] != "snapkv" && f[0] != "h2o") || strings.Contains(f[1], "/") {
				continue
			}
			rows++
			small, _ := strconv.ParseFloat(f[1], 64)
			full, _ := strconv.ParseFloat(f[2], 64)
			if small <= 0 || full != 0 {
				t.Fatalf("%s: %s: KL %v at budget 16 and %v beyond the prompt", spec.Name(), f[0], small, full)
			}
		}
		if rows != 2 || !strings.Contains(text, "character-name retrieval: 4 probes") || !strings.Contains(text, "0 answered with the full cache") {
			t.Fatalf("%s: %d KL rows in:\n%s", spec.Name(), rows, text)
		}
	}
}

// TestFidelityStoriesConverted: stories260K converted to GGUF (skipped
// without ../shared) gives the checkpoint's next-token divergences and
// name-recall tables.
func TestFidelityStoriesConverted(t *testing.T) {
	if testing.Short() {
		t.Skip("seconds of model runs; minutes under the race detector")
	}
	model := filepath.Join(stories, "stories260K.bin")
	if _, err := os.Stat(model); err != nil {
		t.Skipf("stories260K not present at %s: %v", stories, err)
	}
	gg := filepath.Join(t.TempDir(), "stories260K.gguf")
	if _, _, err := cli.Convert(model, filepath.Join(stories, "tok512.bin"), gg, "stories260K"); err != nil {
		t.Fatal(err)
	}
	args := []string{"-text", "../../testdata/haystack/eval.txt", "-length", "128", "-steps", "8", "-samples", "2", "-budgets", "16,32",
		"-policies", "full,snapkv,h2o,adakv", "-probes", "stories", "-leads", "0,4", "-sentences", "3", "-per", "8"}
	// tables drops the timed lines and the converted model's summary.
	tables := func(out string) string {
		var keep []string
		for _, l := range strings.Split(out, "\n") {
			if !strings.HasPrefix(l, "mean KL") && !strings.HasPrefix(l, "character-name retrieval") && !strings.HasPrefix(l, "model ") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	var want, got strings.Builder
	if err := run(append([]string{"-model", model, "-tokenizer", filepath.Join(stories, "tok512.bin")}, args...), &want); err != nil {
		t.Fatal(err)
	}
	if err := run(append([]string{"-model", gg}, args...), &got); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + got.String())
	if tables(got.String()) != tables(want.String()) || !strings.Contains(want.String(), "answered with the full cache") {
		t.Fatalf("the converted model:\n%s\nthe checkpoint:\n%s", got.String(), want.String())
	}
}
