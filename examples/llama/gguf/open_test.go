package gguf

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/compresskv/compresskv/examples/llama/quant"
)

// TestOpen opens one file through the memory mapping and through the
// reading fallback: both give the same metadata and tensor bytes.
func TestOpen(t *testing.T) {
	w := NewWriter()
	must(t, w.Set("general.alignment", uint32(64)))
	must(t, w.Set("k", []string{"a", "b"}))
	data := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8}, 4*100)
	must(t, w.AddTensor("t", quant.F32, []int{16, 50}, data))
	must(t, w.AddTensor("u", quant.F16, []int{2}, []byte{0, 0x3c, 0, 0xc0}))
	path := filepath.Join(t.TempDir(), "x.gguf")
	must(t, w.WriteFile(path))

	check := func(t *testing.T, wantMapped bool) {
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if f.Mapped() != wantMapped {
			t.Fatalf("Mapped() = %v, want %v", f.Mapped(), wantMapped)
		}
		if f.Alignment != 64 || f.DataOffset%64 != 0 {
			t.Fatalf("alignment %d, data at %d", f.Alignment, f.DataOffset)
		}
		tt, err := f.Tensor("t")
		if err != nil || !bytes.Equal(tt.Data, data) {
			t.Fatalf("tensor t: %v", err)
		}
		u, err := f.Tensor("u")
		if err != nil || !bytes.Equal(u.Data, []byte{0, 0x3c, 0, 0xc0}) || f.Tensors[1].Offset != 3200 {
			t.Fatalf("tensor u: %v %v offset %d", u.Data, err, f.Tensors[1].Offset)
		}
		must(t, f.Close())
		must(t, f.Close())
		if _, err := f.Tensor("t"); !errors.Is(err, ErrClosed) {
			t.Fatalf("Tensor after Close: %v", err)
		}
		if s, err := f.Strings("k"); err != nil || len(s) != 2 {
			t.Fatalf("metadata after Close: %v %v", s, err)
		}
	}
	t.Run("mmap", func(t *testing.T) { check(t, canMap) })
	t.Run("read", func(t *testing.T) {
		defer func(m func(*os.File, int) ([]byte, func() error, error)) { mapper = m }(mapper)
		mapper = func(*os.File, int) ([]byte, func() error, error) { return nil, nil, errors.New("no mapping") }
		check(t, false)
	})

	if _, err := Open(filepath.Join(t.TempDir(), "missing.gguf")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	empty := filepath.Join(t.TempDir(), "empty.gguf")
	must(t, os.WriteFile(empty, nil, 0o644))
	if _, err := Open(empty); !errors.Is(err, ErrFormat) {
		t.Fatalf("empty file: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.gguf")
	must(t, os.WriteFile(bad, []byte("GGUF\x03\x00\x00\x00"), 0o644))
	var fe *FormatError
	if _, err := Open(bad); !errors.As(err, &fe) || fe.Offset != 8 {
		t.Fatalf("truncated file: %v", err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
