package main

import (
	"strings"
	"testing"

	"github.com/compresskv/compresskv/compresskv"
)

// TestRun runs the example at a small size and checks its table: a row for
// every method, the full cache keeping everything and the needle, and
// CompressKV (whose profile names the planted retrieval heads) keeping the
// needle at a 3% budget.
func TestRun(t *testing.T) {
	var out strings.Builder
	if err := run([]string{"-layers", "3", "-len", "512", "-budget", "32", "-seed", "2"}, &out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	t.Log("\n" + text)
	rows := map[string][]string{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 7 {
			rows[f[0]] = f
		}
	}
	for _, m := range compresskv.Methods {
		if rows[string(m)] == nil {
			t.Fatalf("no row for %s", m)
		}
	}
	if f := rows["full"]; f[4] != "100.0%" || f[5] != "100%" || f[6] != "0.000" {
		t.Fatalf("full cache row: %v", f)
	}
	if f := rows["compresskv"]; f[5] != "100%" || f[1] != "32.0" {
		t.Fatalf("compresskv row: %v", f)
	}
	if err := run([]string{"-q-heads", "3"}, &out); err == nil {
		t.Fatal("3 query heads over 2 KV heads accepted")
	}
	if err := run([]string{"-dtype", "f8"}, &out); err == nil {
		t.Fatal("unknown storage type accepted")
	}
}
