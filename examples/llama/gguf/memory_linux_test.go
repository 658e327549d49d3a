package gguf

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/examples/llama/quant"
)

// rss returns the process's anonymous and file-backed resident memory in
// bytes, from /proc/self/status.
func rss(t *testing.T) (anon, file int64) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "RssAnon:":
			anon = kb << 10
		case "RssFile:":
			file = kb << 10
		}
	}
	return anon, file
}

// sink receives a value computed from every page read, so that the reads
// cannot be optimised away.
var sink int

// TestOpenDoesNotCopy opens a file of 64 MiB of weights. Through the
// mapping, opening adds almost nothing to the resident memory and reading
// every tensor adds file-backed pages, not anonymous ones (no copy); the
// reading fallback, by contrast, copies the file into anonymous memory.
// The thresholds are a quarter and three quarters of the file, far from
// either behaviour.
func TestOpenDoesNotCopy(t *testing.T) {
	const size = 64 << 20
	w := NewWriter()
	must(t, w.Set("general.architecture", "llama"))
	chunk := make([]byte, 8<<20)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	for i := range size / len(chunk) {
		must(t, w.AddTensor("blk."+strconv.Itoa(i)+".weight", quant.Q8_0, []int{len(chunk) / 34 * 32}, chunk[:len(chunk)/34*34]))
	}
	path := filepath.Join(t.TempDir(), "big.gguf")
	must(t, w.WriteFile(path))
	chunk = nil

	touch := func(f *File) {
		sum := 0
		for i := range f.Tensors {
			tt, err := f.TensorAt(i)
			must(t, err)
			for j := 0; j < len(tt.Data); j += 512 {
				sum += int(tt.Data[j])
			}
		}
		sink = sum // keeps the reads
	}
	measure := func() (anon, file int64) {
		runtime.GC()
		return rss(t)
	}

	anon0, file0 := measure()
	f, err := Open(path)
	must(t, err)
	if !f.Mapped() {
		t.Skip("files are not mapped here")
	}
	anon1, file1 := measure()
	touch(f)
	anon2, file2 := measure()
	must(t, f.Close())
	t.Logf("mapped: anonymous %+d MiB after open, %+d after touching; file-backed %+d, %+d",
		(anon1-anon0)>>20, (anon2-anon0)>>20, (file1-file0)>>20, (file2-file0)>>20)
	if anon1-anon0 > size/4 || anon2-anon0 > size/4 {
		t.Errorf("the mapped file costs %d and %d bytes of anonymous memory", anon1-anon0, anon2-anon0)
	}
	if file1-file0 > size/4 {
		t.Errorf("opening made %d bytes of the file resident", file1-file0)
	}
	if file2-file0 < size*3/4 {
		t.Errorf("touching every tensor made only %d bytes resident", file2-file0)
	}

	defer func(m func(*os.File, int) ([]byte, func() error, error)) { mapper = m }(mapper)
	mapper = func(*os.File, int) ([]byte, func() error, error) { return nil, nil, errors.New("no mapping") }
	anon0, _ = measure()
	f, err = Open(path)
	must(t, err)
	anon1, _ = measure()
	touch(f)
	must(t, f.Close())
	t.Logf("read: anonymous %+d MiB after open", (anon1-anon0)>>20)
	if anon1-anon0 < size*3/4 {
		t.Errorf("the reading fallback holds only %d anonymous bytes of a %d-byte file", anon1-anon0, size)
	}
}
