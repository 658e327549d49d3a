package cli

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/kvcache"
)

func TestParseInts(t *testing.T) {
	got, err := ParseInts(" 256, 512,,1024 ")
	if err != nil || !slices.Equal(got, []int{256, 512, 1024}) {
		t.Fatalf("ParseInts: %v %v", got, err)
	}
	for _, bad := range []string{"12,x", "0", "-4"} {
		if _, err := ParseInts(bad); err == nil {
			t.Errorf("ParseInts(%q) accepted", bad)
		}
	}
	got, err = ParseCounts("0, 4,8")
	if err != nil || !slices.Equal(got, []int{0, 4, 8}) {
		t.Fatalf("ParseCounts: %v %v", got, err)
	}
	for _, bad := range []string{"", "-1", "x", " , "} {
		if _, err := ParseCounts(bad); err == nil {
			t.Errorf("ParseCounts(%q) accepted", bad)
		}
	}
}

// TestPathFromAnotherDirectory: the project's files are found from a
// folder outside the repository (the working directory of a user's own
// module), through where this package was compiled; a path that exists
// where the command runs wins; a missing file keeps its name, and Open
// says what to pass.
func TestPathFromAnotherDirectory(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := t.TempDir()
	t.Chdir(elsewhere)
	p := Path(DefaultModel)
	if !filepath.IsAbs(p) || !strings.HasSuffix(p, filepath.FromSlash(DefaultModel)) {
		t.Fatalf("Path(%q) from %s = %q, want the repository's file", DefaultModel, elsewhere, p)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(DefaultProfile, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := Path(DefaultProfile); got != DefaultProfile {
		t.Fatalf("a file in the working directory: Path = %q, want it as given", got)
	}
	if got := Path("testdata/none.bin"); got != "testdata/none.bin" {
		t.Fatalf("a missing file: Path = %q", got)
	}
	_, err = Open("testdata/none.bin", "")
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "pass -model") {
		t.Fatalf("Open of a missing model: %v", err)
	}
	if _, err := Open("model.gguf", ""); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "a GGUF file") {
		t.Fatalf("Open of a missing GGUF file: %v", err)
	}
	t.Chdir(filepath.Join(wd, "..", "..", "needle"))
	if got := Path(DefaultModel); !filepath.IsAbs(got) {
		t.Fatalf("from a subfolder of the repository: Path = %q", got)
	}
}

// TestOpenAndPrefill: the project's model opens as byte-level with the
// pooling kernel 9, a prefilled prompt compresses into a session whose
// cache is a copy, and a profile of another model is refused saying how
// to make one and which methods need none.
func TestOpenAndPrefill(t *testing.T) {
	m, err := Open(DefaultModel, "")
	if err != nil {
		t.Fatal(err)
	}
	if !m.ByteLevel || m.Kernel(0) != DefaultByteKernel || m.Kernel(3) != 3 {
		t.Fatalf("byte-level %v, kernel %d", m.ByteLevel, m.Kernel(0))
	}
	ids, err := m.Tok.Encode(strings.Repeat("The cat sat. ", 20), true, false)
	if err != nil {
		t.Fatal(err)
	}
	pre, err := Prefill(m.Model, kvcache.Float16, ids)
	if err != nil {
		t.Fatal(err)
	}
	if pre.Cache.Len(0, 0) != len(ids) || len(pre.Queries) != m.Layers {
		t.Fatalf("prefill: %d rows, %d query layers", pre.Cache.Len(0, 0), len(pre.Queries))
	}
	pol, err := compresskv.New(compresskv.SnapKV, compresskv.Config{Budget: 32})
	if err != nil {
		t.Fatal(err)
	}
	s, res, err := pre.Compress(t.Context(), pol)
	if err != nil {
		t.Fatal(err)
	}
	if s.Cache().Len(0, 0) != 32 || pre.Cache.Len(0, 0) != len(ids) || res.BytesAfter >= res.BytesBefore {
		t.Fatalf("compressed copy holds %d rows, the prefilled cache %d", s.Cache().Len(0, 0), pre.Cache.Len(0, 0))
	}
	// A second compression of the same prefill works on its own copy.
	if _, _, err := pre.Compress(t.Context(), pol); err != nil {
		t.Fatal(err)
	}
	f := &ModelFlags{Model: DefaultModel, Profile: DefaultProfile}
	if p, err := f.ProfileFor(m, compresskv.SnapKV); p != nil || err != nil {
		t.Fatalf("SnapKV needs no profile: %v %v", p, err)
	}
	if p, err := f.ProfileFor(m, compresskv.SnapKV, compresskv.CompressKV); p == nil || err != nil {
		t.Fatalf("CompressKV's profile: %v", err)
	}
	other := *m.Model
	other.Layers = 3
	_, err = f.ProfileFor(&Model{Model: &other, Path: "other.bin"}, compresskv.AdaCompressKV)
	if err == nil || !strings.Contains(err.Error(), "examples/calibrate -model other.bin") || !strings.Contains(err.Error(), "snapkv") {
		t.Fatalf("a profile of another model: %v", err)
	}
	if u := MethodsUsage(); !strings.Contains(u, "adacompresskv (needs -profile)") || strings.Contains(u, "snapkv (needs") {
		t.Fatalf("methods usage %q", u)
	}
}
