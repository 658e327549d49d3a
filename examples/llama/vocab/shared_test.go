package vocab

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/compresskv/compresskv/examples/llama/gguf"
)

// sharedDir holds llama.cpp's tokenizer test vocabularies; the tests that need it skip
// without it.
const sharedDir = "../../../../shared/vocab"

// readTests splits a test-tokenizer-0 .inp file into its texts.
func readTests(t testing.TB, path string) []string {
	t.Helper()
	tests, err := readTestsFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return tests
}

func readTestsFile(path string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return splitTests(string(raw)), nil
}

func splitTests(raw string) []string {
	const sep = "\n__ggml_vocab_test__\n"
	var tests []string
	for pos := 0; pos < len(raw); {
		k := strings.Index(raw[pos:], sep)
		if k < 0 {
			tests = append(tests, raw[pos:])
			break
		}
		tests = append(tests, raw[pos:pos+k])
		pos += k + len(sep)
	}
	return tests
}

// readOut reads a .out file: one line of ids per test.
func readOut(t testing.TB, path string) [][]int {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	out := make([][]int, len(lines))
	for i, l := range lines {
		for _, f := range strings.Fields(l) {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("%s line %d: %v", path, i+1, err)
			}
			out[i] = append(out[i], n)
		}
	}
	return out
}

func formatIDs(ids []int) string {
	var b strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&b, " %d", id)
	}
	return b.String()
}

var sharedCache sync.Map // vocabulary name -> Map

// sharedMetadata returns the metadata of ../shared/vocab/ggml-vocab-<name>.gguf, or skips.
func sharedMetadata(t testing.TB, name string) Map {
	t.Helper()
	path := filepath.Join(sharedDir, "ggml-vocab-"+name+".gguf")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("no %s (the shared tokenizer vocabularies are absent)", path)
	}
	if md, ok := sharedCache.Load(name); ok {
		return md.(Map)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	md := Map{}
	for _, kv := range f.KV {
		md[kv.Key] = kv.Value.Any()
	}
	sharedCache.Store(name, md)
	return md
}

func sharedVocab(t testing.TB, name string, edit func(Map)) *Vocab {
	t.Helper()
	md := sharedMetadata(t, name)
	if edit != nil {
		c := Map{}
		for k, x := range md {
			c[k] = x
		}
		edit(c)
		md = c
	}
	v, err := FromMetadata(md)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// compareLines encodes each test and counts the lines equal to want.
func compareLines(t *testing.T, v *Vocab, tests []string, want [][]int, addSpecial, parseSpecial bool) int {
	t.Helper()
	if len(tests) != len(want) {
		t.Fatalf("%d tests but %d expected lines", len(tests), len(want))
	}
	ok := 0
	for i, text := range tests {
		got, err := v.Encode(text, addSpecial, parseSpecial)
		if err != nil {
			t.Errorf("test %d %q: %v", i, text, err)
			continue
		}
		if g, w := formatIDs(got), formatIDs(want[i]); g != w {
			t.Errorf("test %d %q:\n got %s\nwant %s", i, text, g, w)
			continue
		}
		ok++
	}
	return ok
}

// TestSharedVocabularies runs llama.cpp's test-tokenizer-0 cases: no BOS, specials not parsed.
func TestSharedVocabularies(t *testing.T) {
	for _, name := range []string{"llama-spm", "gpt-2", "starcoder"} {
		t.Run(name, func(t *testing.T) {
			v := sharedVocab(t, name, nil)
			base := filepath.Join(sharedDir, "ggml-vocab-"+name+".gguf")
			tests := readTests(t, base+".inp")
			want := readOut(t, base+".out")
			ok := compareLines(t, v, tests, want, false, false)
			t.Logf("%s: %d/%d lines match llama.cpp", name, ok, len(tests))
		})
	}
}

// TestSPMWords checks that Llama 2's vocabulary lets words merge independently and that doing
// so gives the same tokens as one queue over the whole text, on the test texts and on prose.
func TestSPMWords(t *testing.T) {
	v := sharedVocab(t, "llama-spm", nil)
	if !v.spmWords {
		t.Fatal("Llama 2's vocabulary: words not independent")
	}
	whole := *v
	whole.spmWords = false
	texts := readTests(t, filepath.Join(goldenDir, "extra.inp"))
	texts = append(texts, readTests(t, filepath.Join(sharedDir, "ggml-vocab-llama-spm.gguf.inp"))...)
	prose, err := os.ReadFile("../../../testdata/haystack/calib.txt")
	if err != nil {
		t.Fatal(err)
	}
	texts = append(texts, string(prose[:20000]))
	for _, s := range texts {
		for _, special := range []bool{false, true} {
			a, err1 := v.Encode(s, special, special)
			b, err2 := whole.Encode(s, special, special)
			if err1 != nil || err2 != nil || !slices.Equal(a, b) {
				t.Fatalf("%q: word by word %v (%v), whole %v (%v)", s, a, err1, b, err2)
			}
		}
	}
}

// longText is the test texts joined, with English prose: long enough for Encode's word cache.
func longText(t testing.TB) string {
	texts := readTests(t, filepath.Join(goldenDir, "extra.inp"))
	prose, err := os.ReadFile("../../../testdata/haystack/heldout.txt")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(texts, " ") + string(prose[:30000])
}

// TestWordCache checks that remembering the tokens of repeated words within a long text
// changes nothing, for every golden vocabulary.
func TestWordCache(t *testing.T) {
	text := longText(t)
	for _, name := range goldenNames() {
		t.Run(name, func(t *testing.T) {
			v := goldenVocab(t, name)
			for _, special := range []bool{false, true} {
				with, err1 := v.Encode(text, special, special)
				old := cacheMin
				cacheMin = 1 << 62
				without, err2 := v.Encode(text, special, special)
				cacheMin = old
				if err1 != nil || err2 != nil || !slices.Equal(with, without) {
					t.Fatalf("special=%v: with the cache %d tokens (%v), without %d (%v)", special, len(with), err1, len(without), err2)
				}
			}
		})
	}
}
