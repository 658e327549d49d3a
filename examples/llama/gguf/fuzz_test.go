package gguf_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/compresskv/compresskv/examples/llama/gguf"
	"github.com/compresskv/compresskv/examples/llama/quant"
)

// rewrite writes a parsed file back out with the Writer.
func rewrite(t *testing.T, f *gguf.File) []byte {
	w := gguf.NewWriter()
	w.Version = f.Version
	for _, kv := range f.KV {
		if err := w.Set(kv.Key, kv.Value); err != nil {
			t.Fatalf("a parsed value does not write: %s: %v", kv.Key, err)
		}
	}
	for i := range f.Tensors {
		tt, err := f.TensorAt(i)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.AddTensor(tt.Name, tt.Type, tt.Dims, tt.Data); err != nil {
			t.Fatalf("a parsed tensor does not write: %v", err)
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// FuzzParse: any input either fails with a FormatError or parses into a
// file whose tensors lie inside the input, which the Writer writes back,
// and whose rewrite reads back and rewrites to the same bytes.
func FuzzParse(f *testing.F) {
	b, _ := sample(f)
	f.Add(b)
	for _, n := range []int{0, 3, 4, 8, 24, 100, len(b) / 2, len(b) - 200, len(b) - 1} {
		f.Add(b[:n])
	}
	w := gguf.NewWriter()
	w.Version = 2
	must(f, w.Set("general.alignment", uint32(8)))
	must(f, w.Set("nested", mustValue(f, []gguf.Value{mustValue(f, []bool{true}), mustValue(f, []gguf.Value{})})))
	must(f, w.AddTensor("q", quant.Q6_K, []int{256}, make([]byte, 210)))
	must(f, w.AddTensor("e", quant.F32, []int{}, make([]byte, 4)))
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())

	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := gguf.Parse(data)
		if err != nil {
			var fe *gguf.FormatError
			if !errors.As(err, &fe) || !errors.Is(err, gguf.ErrFormat) || fe.Offset < 0 || fe.Offset > int64(len(data)) {
				t.Fatalf("error %v (%T) is not a FormatError inside the input", err, err)
			}
			return
		}
		for i, ti := range file.Tensors {
			end := file.DataOffset + ti.Offset + ti.Size
			if ti.Offset < 0 || end > int64(len(data)) || end < file.DataOffset {
				t.Fatalf("tensor %d %q at [%d, %d) outside %d bytes", i, ti.Name, file.DataOffset+ti.Offset, end, len(data))
			}
		}
		once := rewrite(t, file)
		again, err := gguf.Parse(once)
		if err != nil {
			t.Fatalf("a rewritten file does not parse: %v", err)
		}
		if twice := rewrite(t, again); !bytes.Equal(once, twice) {
			t.Fatal("rewriting is not idempotent")
		}
	})
}
