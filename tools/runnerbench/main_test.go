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
	// A generation test after a prompt test of its depth (the session
	// reused), and after a prefill of its own.
	for _, c := range []struct {
		args []string
		rows int
	}{
		{[]string{"-rounds", "2", "-pp", "8,16", "-tg", "3", "-depth", "16"}, 3},
		{[]string{"-rounds", "1", "-pp", "8", "-tg", "3", "-depth", "12"}, 2},
	} {
		var out, errs bytes.Buffer
		if err := run(append(c.args, "-chunk", "8", path), &out, &errs); err != nil {
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
		if rows != c.rows {
			t.Fatalf("%q: %d rows, want %d:\n%s", c.args, rows, c.rows, out.String())
		}
		t.Log("\n" + out.String())
	}
}

// TestE2ERun: each process prints its measurements; compressing keeps the
// budget's rows and fewer bytes than the full cache, in both ways.
func TestE2ERun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the model")
	}
	path := projectGGUF(t)
	o := e2eOptions{prompt: 96, budget: 32, tg: 2, reps: 2, chunk: 32, threads: 2, policy: "snapkv"}
	res := map[string]e2eResult{}
	for _, mode := range []string{"compare", "stream"} {
		var out bytes.Buffer
		if err := e2eRun(mode, path, o, &out); err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		var r e2eResult
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v: %s", mode, err, out.String())
		}
		if r.PrefillTPS <= 0 || r.PeakRSS < r.RSS || r.RSS <= 0 {
			t.Fatalf("%s: %+v", mode, r)
		}
		for _, c := range r.Caches {
			if len(c.DecodeTPS) != o.reps || c.Bytes <= 0 || c.Reserved < c.Bytes {
				t.Fatalf("%s: %+v", mode, c)
			}
		}
		res[mode] = r
	}
	full, once, stream := res["compare"].Caches[0], res["compare"].Caches[1], res["stream"].Caches[0]
	// The caches hold the prompt (or the budget), the warm-up and the
	// decoded tokens.
	if want := o.prompt + 2 + o.tg*o.reps; full.Rows != want {
		t.Errorf("full cache: %d rows per head, want %d", full.Rows, want)
	}
	if want := o.budget + 2 + o.tg*o.reps; once.Rows != want || once.Bytes >= full.Bytes {
		t.Errorf("compressed once: %d rows per head (want %d), %d bytes against %d", once.Rows, want, once.Bytes, full.Bytes)
	}
	if stream.Rows >= full.Rows {
		t.Errorf("stream: %d rows per head, no fewer than the full cache's %d", stream.Rows, full.Rows)
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
