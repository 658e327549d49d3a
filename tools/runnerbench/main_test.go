package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/examples/llama"
)

// projectGGUF writes the project's retrieval model as a GGUF file (float32
// weights) and returns its path.
func projectGGUF(t *testing.T) string {
	t.Helper()
	m, err := llama.Load(filepath.Join("..", "..", llama.DefaultModel))
	if err != nil {
		t.Skipf("the project's model: %v", err)
	}
	path := filepath.Join(t.TempDir(), "retrieval.gguf")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.WriteGGUF(f, llama.GGUFOptions{Name: "retrieval"}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestTable: without llama-bench, the tool times the runner alone and
// prints a row per test with positive speeds and the file's sizes.
func TestTable(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the model")
	}
	path := projectGGUF(t)
	fi, err := inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.layerParams <= 0 || fi.layerBytes != 4*fi.layerParams || fi.outParams <= 0 || fi.types != "F32" {
		t.Fatalf("inspect: %+v", fi)
	}
	var out, errs bytes.Buffer
	if err := run([]string{"-rounds", "2", "-pp", "8,16", "-tg", "3", "-depth", "16", "-chunk", "8", path}, &out, &errs); err != nil {
		t.Fatalf("%v\n%s", err, errs.String())
	}
	rows := 0
	for _, line := range strings.Split(out.String(), "\n") {
		if !strings.HasPrefix(line, "| retrieval |") {
			continue
		}
		rows++
		f := strings.Split(line, "|")
		if len(f) < 9 || strings.HasPrefix(strings.TrimSpace(f[4]), "0.00") || strings.TrimSpace(f[5]) != "–" {
			t.Errorf("row %q", line)
		}
	}
	if rows != 3 {
		t.Fatalf("%d rows, want 3 (pp8, pp16, tg3@d16):\n%s", rows, out.String())
	}
	t.Log("\n" + out.String())
}

// TestE2ERun: one mode's run prints its measurements; compressing keeps
// the budget's rows and fewer bytes than the full cache.
func TestE2ERun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the model")
	}
	path := projectGGUF(t)
	o := e2eOptions{prompt: 96, budget: 32, tg: 2, reps: 2, chunk: 32, threads: 2, policy: "snapkv"}
	res := map[string]e2eResult{}
	for _, mode := range []string{"full", "once", "stream"} {
		var out bytes.Buffer
		if err := e2eRun(mode, path, o, &out); err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		var r e2eResult
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v: %s", mode, err, out.String())
		}
		if r.PrefillTPS <= 0 || len(r.DecodeTPS) != o.reps || r.CacheBytes <= 0 || r.PeakRSS < r.RSS || r.RSS <= 0 {
			t.Fatalf("%s: %+v", mode, r)
		}
		res[mode] = r
	}
	// The full cache holds the prompt, the warm-up and the decoded tokens.
	if want := o.prompt + 2 + o.tg*o.reps; res["full"].CacheRows != want {
		t.Errorf("full cache: %d rows per head, want %d", res["full"].CacheRows, want)
	}
	if want := o.budget + 2 + o.tg*o.reps; res["once"].CacheRows != want || res["once"].CacheBytes >= res["full"].CacheBytes {
		t.Errorf("compressed once: %d rows per head (want %d), %d bytes against %d", res["once"].CacheRows, want, res["once"].CacheBytes, res["full"].CacheBytes)
	}
	if res["stream"].CacheRows >= res["full"].CacheRows {
		t.Errorf("stream: %d rows per head, no fewer than the full cache's %d", res["stream"].CacheRows, res["full"].CacheRows)
	}
}

// TestFlags: bad flags fail before anything runs.
func TestFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-pp", "x", "f.gguf"},
		{"-rounds", "0", "f.gguf"},
		{"-e2e", "a.gguf", "b.gguf"},
		{"-e2e", "-budget", "0", "a.gguf"},
	} {
		var out, errs bytes.Buffer
		if err := run(args, &out, &errs); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}
