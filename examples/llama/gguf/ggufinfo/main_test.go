package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/examples/llama/gguf"
	"github.com/compresskv/compresskv/examples/llama/quant"
)

func TestRun(t *testing.T) {
	w := gguf.NewWriter()
	if err := w.Set("general.architecture", "llama"); err != nil {
		t.Fatal(err)
	}
	if err := w.AddTensor("token_embd.weight", quant.Q8_0, []int{32, 3}, bytes.Repeat([]byte{1}, 3*34)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run([]string{"-touch", path}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"GGUF v3", "1 metadata keys, 1 tensors", `general.architecture = "llama"`,
		"token_embd.weight", "Q8_0", "[32 3]", "touched 102 tensor bytes", "byte sum 102"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if err := run([]string{filepath.Join(t.TempDir(), "none.gguf")}, &out); err == nil {
		t.Error("a missing file gave no error")
	}
	if err := run(nil, &out); err == nil {
		t.Error("no file gave no error")
	}
}
