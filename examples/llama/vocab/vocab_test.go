package vocab

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode"

	"github.com/compresskv/compresskv/examples/llama/gguf"
)

// llamaCppTableHash is the FNV-1a hash of llama.cpp's code point classes (src/unicode-data.cpp
// at the recorded commit: categories plus white space, one little-endian uint16 per code point
// in the same bit layout as here), so that a change of Go's Unicode tables shows up here.
const llamaCppTableHash = 0x2cfbd4c61e566b40

func TestCodepointTable(t *testing.T) {
	tab := codepoints()
	h := fnv.New64a()
	var b [2]byte
	counts := map[uint16]int{}
	for c := rune(0); c < maxCodepoint; c++ {
		cls := tab.class(c)
		counts[cls]++
		binary.LittleEndian.PutUint16(b[:], cls)
		h.Write(b[:])
	}
	if got := h.Sum64(); got != llamaCppTableHash {
		t.Errorf("code point table hash %#x, llama.cpp's is %#x (Go's Unicode is %s; class counts %v)", got, llamaCppTableHash, unicode.Version, counts)
	}
	for _, c := range []struct {
		r    rune
		want uint16
	}{
		{'a', cpLetter}, {'7', cpNumber}, {' ', cpSeparator | cpSpace}, {'\n', cpControl | cpSpace},
		{'$', cpSymbol}, {'!', cpPunct}, {0x0301, cpMark}, {0x0085, cpControl | cpSpace},
		{0x00A0, cpSeparator | cpSpace}, {0x3000, cpSeparator | cpSpace}, {0x200B, cpControl},
		{0x2EBF0, cpLetter}, {0x2FFC, cpSymbol}, {0x0378, cpUndefined}, {0x10FFFF, cpUndefined},
		{0x110000, cpUndefined}, {-1, cpUndefined},
	} {
		if got := tab.class(c.r); got != c.want {
			t.Errorf("class(%U) = %#x, want %#x", c.r, got, c.want)
		}
	}
}

// TestContractionFolding checks that only ASCII capitals lower-case to the letters the
// contraction rules compare with, so that folding ASCII alone is llama.cpp's unicode_tolower.
func TestContractionFolding(t *testing.T) {
	for c := rune(0x80); c < maxCodepoint; c++ {
		if l := unicode.ToLower(c); l != c && strings.ContainsRune("stmdrevl", l) {
			t.Errorf("%U lower-cases to %q", c, l)
		}
	}
}

func TestDecodeRune(t *testing.T) {
	for _, c := range []struct {
		in   string
		want rune
		n    int
	}{
		{"a", 'a', 1}, {"é", 0xE9, 2}, {"€", 0x20AC, 3}, {"🦙", 0x1F999, 4},
		{"\xc0\xaf", '/', 2}, // overlong, accepted as written
		{"\xed\xa0\x80", 0xD800, 3},
		{"\xf4\x90\x80\x80", 0x110000, 4},
		{"\xf7\xbf\xbf\xbf", 0x1FFFFF, 4},
		{"\x80", 0xFFFD, 1}, {"\xff", 0xFFFD, 1}, {"\xf8\x88\x80\x80\x80", 0xFFFD, 1},
		{"\xc3", 0xFFFD, 1}, {"\xc3(", 0xFFFD, 1}, {"\xe2\x82", 0xFFFD, 1}, {"\xf0\x9f\x98", 0xFFFD, 1},
	} {
		r, n := decodeRune(c.in, 0)
		if r != c.want || n != c.n {
			t.Errorf("decodeRune(%q) = %U, %d; want %U, %d", c.in, r, n, c.want, c.n)
		}
		if r <= 0x10FFFF {
			enc, ok := appendRune(nil, r)
			if !ok || r != 0xFFFD && r >= 0x80 && c.in != "\xc0\xaf" && string(enc) != c.in {
				t.Errorf("appendRune(%U) = %q, %v", r, enc, ok)
			}
		}
	}
	if _, ok := appendRune(nil, 0x110000); ok {
		t.Error("appendRune accepted 0x110000")
	}
}

// A small SentencePiece vocabulary. Scores decide the merges: "▁h" and "ll" first, then
// "▁he", "llo", "▁hello".
func spmMetadata() Map {
	toks := []string{"<unk>", "<s>", "</s>"}
	types := []int32{typeUnknown, typeControl, typeControl}
	scores := []float32{0, 0, 0}
	for b := 0; b < 256; b++ {
		toks = append(toks, fmt.Sprintf("<0x%02X>", b))
		types = append(types, typeByte)
		scores = append(scores, 0)
	}
	for _, w := range []struct {
		text  string
		score float32
	}{
		{"▁", -1}, {"h", -2}, {"e", -2}, {"l", -2}, {"o", -2}, {"w", -2}, {"r", -2}, {"d", -2},
		{"▁h", -3}, {"ll", -3}, {"▁he", -4}, {"llo", -4}, {"▁hello", -5}, {"▁w", -6}, {"or", -6},
		{"el", -10}, {"<tool>", 0},
	} {
		toks = append(toks, w.text)
		types = append(types, typeNormal)
		scores = append(scores, w.score)
	}
	types[len(types)-1] = typeUserDefined
	return Map{
		KeyModel: "llama", KeyTokens: toks, KeyTokenType: types, KeyScores: scores,
		KeyBOS: uint32(1), KeyEOS: uint32(2), KeyUNK: uint32(0), KeyAddBOS: true,
	}
}

func ids(v *Vocab, texts ...string) []int {
	out := make([]int, len(texts))
	for i, t := range texts {
		id, ok := v.ID(t)
		if !ok {
			panic("no token " + t)
		}
		out[i] = id
	}
	return out
}

func mustVocab(t testing.TB, md Metadata) *Vocab {
	t.Helper()
	v, err := FromMetadata(md)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSPM(t *testing.T) {
	v := mustVocab(t, spmMetadata())
	for _, c := range []struct {
		text          string
		add, special  bool
		want          []int
		decode, plain string // Decode of the ids; "" means the text itself
	}{
		{text: "hello", want: ids(v, "▁hello")},
		{text: "hello world", want: ids(v, "▁hello", "▁w", "or", "l", "d")},
		{text: "hello", add: true, want: ids(v, "<s>", "▁hello"), decode: " hello"},
		{text: "", want: nil},
		{text: "", add: true, want: ids(v, "<s>"), decode: ""},
		// é has no token: byte fallback, one token per UTF-8 byte.
		{text: "hé", want: ids(v, "▁h", "<0xC3>", "<0xA9>")},
		// Specials: parsed only when asked; the text after one gets a leading space again.
		{text: "<s>hello", want: ids(v, "▁", "<0x3C>", "<0x73>", "<0x3E>", "h", "e", "llo")},
		{text: "<s>hello", special: true, want: ids(v, "<s>", "▁hello"), decode: " hello"},
		// User-defined tokens are matched either way.
		{text: "hello<tool>hello", want: ids(v, "▁hello", "<tool>", "▁hello"), decode: "hello<tool> hello"},
	} {
		got, err := v.Encode(c.text, c.add, c.special)
		if err != nil {
			t.Fatalf("%q: %v", c.text, err)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q, %v, %v) = %v, want %v", c.text, c.add, c.special, got, c.want)
		}
		want := c.decode
		if want == "" && c.want != nil && !c.add && !c.special {
			want = c.text
		}
		if dec, err := v.Decode(got); err != nil || dec != want {
			t.Errorf("Decode(%v) = %q, %v; want %q", got, dec, err, want)
		}
	}
	if v.BOS() != 1 || v.EOS() != 2 || v.UNK() != 0 || !v.AddBOS() || v.AddEOS() || v.EOT() != -1 {
		t.Errorf("specials: bos %d eos %d unk %d addBOS %v addEOS %v eot %d", v.BOS(), v.EOS(), v.UNK(), v.AddBOS(), v.AddEOS(), v.EOT())
	}
	if !v.IsEOG(2) || v.IsEOG(1) || !v.IsControl(1) || v.Model() != ModelSPM {
		t.Error("EOG/control flags wrong")
	}
	// Rendering: control tokens show only with unparseSpecial; BOS goes with removeSpecial.
	hello := ids(v, "<s>", "▁hello", "</s>")
	for _, c := range []struct {
		remove, unparse bool
		want            string
	}{{false, false, " hello"}, {false, true, "<s> hello</s>"}, {true, true, " hello</s>"}} {
		if got, _ := v.Detokenize(hello, c.remove, c.unparse); got != c.want {
			t.Errorf("Detokenize(remove %v, unparse %v) = %q, want %q", c.remove, c.unparse, got, c.want)
		}
	}
	if p, _ := v.Piece(ids(v, "<0x41>")[0]); p != "A" {
		t.Errorf("byte piece %q", p)
	}
}

// A small byte-level BPE vocabulary: bytes a, b, c, space (Ġ), newline (Ċ), merges
// "a b", "Ġ ab", "Ġab c", "ab c" in that order of rank.
func bpeMetadata(pre string) Map {
	toks := []string{"<|endoftext|>", "a", "b", "c", "Ġ", "Ċ", "ab", "abc", "Ġab", "Ġabc", "1", "2", "3", "12", "123"}
	types := make([]int32, len(toks))
	for i := range types {
		types[i] = typeNormal
	}
	types[0] = typeControl
	return Map{
		KeyModel: "gpt2", KeyPre: pre, KeyTokens: toks, KeyTokenType: types,
		KeyMerges: []string{"a b", "Ġ ab", "Ġab c", "ab c", "1 2", "12 3"},
		KeyBOS:    uint32(0), KeyEOS: uint32(0),
	}
}

func TestBPE(t *testing.T) {
	v := mustVocab(t, bpeMetadata("gpt-2"))
	for _, c := range []struct {
		text   string
		add    bool
		want   []int
		decode string
	}{
		{text: "abc abc", want: ids(v, "abc", "Ġabc")},
		{text: "ab\nba", want: ids(v, "ab", "Ċ", "b", "a")},
		{text: "abcab", want: ids(v, "abc", "ab")},
		// GPT-2 keeps digit runs whole: "1231" merges 123 then leaves 1.
		{text: "1231", want: ids(v, "123", "1")},
		// Text after the special token is tokenized on its own: no "Ġab" across it.
		{text: "<|endoftext|> ab", want: ids(v, "<|endoftext|>", "Ġab")},
		// Bytes without a token are dropped, as llama.cpp drops them.
		{text: "az", want: ids(v, "a"), decode: "a"},
		{text: "ab", add: true, want: ids(v, "ab")}, // gpt-2 adds no BOS
	} {
		got, err := v.Encode(c.text, c.add, true)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q) = %v, want %v", c.text, got, c.want)
		}
		want := c.decode
		if want == "" {
			want = c.text
		}
		if dec, err := v.Detokenize(got, false, true); err != nil || dec != want {
			t.Errorf("Detokenize(%v) = %q, %v; want %q", got, dec, err, want)
		}
	}
	// Starcoder splits digits one by one before merging; Llama 3 in threes and adds BOS.
	if got, _ := mustVocab(t, bpeMetadata("starcoder")).Encode("123", false, false); !slices.Equal(got, ids(v, "1", "2", "3")) {
		t.Errorf("starcoder 123 = %v", got)
	}
	l3 := mustVocab(t, bpeMetadata("llama-bpe"))
	if got, _ := l3.Encode("1231", true, false); !slices.Equal(got, ids(v, "<|endoftext|>", "123", "1")) {
		t.Errorf("llama-bpe 1231 = %v", got)
	}
	// The clean-up of detokenized text (gpt-2 has it, qwen2 not).
	md := bpeMetadata("gpt-2")
	md[KeyTokens] = append(slices.Clone(md[KeyTokens].([]string)), "Ġ,", "Ġ'", "s")
	md[KeyTokenType] = append(slices.Clone(md[KeyTokenType].([]int32)), typeNormal, typeNormal, typeNormal)
	v, q := mustVocab(t, md), mustVocab(t, Map(withPre(md, "qwen2")))
	seq := ids(v, "a", "Ġ,", "Ġ'", "s")
	if got, _ := v.Decode(seq); got != "a,'s" {
		t.Errorf("gpt-2 clean-up: %q", got)
	}
	if got, _ := q.Decode(seq); got != "a , 's" {
		t.Errorf("qwen2, no clean-up: %q", got)
	}
}

func withPre(m Map, pre string) Map {
	c := Map{}
	for k, x := range m {
		c[k] = x
	}
	c[KeyPre] = pre
	return c
}

// TestFromGGUF writes a vocabulary with the gguf package's Writer and reads it back.
func TestFromGGUF(t *testing.T) {
	w := gguf.NewWriter()
	for k, x := range spmMetadata() {
		if err := w.Set(k, x); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	v, err := FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := v.Encode("hello", true, true)
	if want := ids(v, "<s>", "▁hello"); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if _, err := FromGGUF(nil); !errors.Is(err, ErrMissing) {
		t.Errorf("nil file: %v", err)
	}
}

func TestMetadataErrors(t *testing.T) {
	edit := func(base Map, f func(Map)) Map {
		c := Map{}
		for k, x := range base {
			c[k] = x
		}
		f(c)
		return c
	}
	spm, bpe := spmMetadata(), bpeMetadata("gpt-2")
	for _, c := range []struct {
		name string
		md   Metadata
		want error
	}{
		{"nil", nil, ErrMissing},
		{"no model", edit(spm, func(m Map) { delete(m, KeyModel) }), ErrMissing},
		{"model not a string", edit(spm, func(m Map) { m[KeyModel] = 3 }), ErrMalformed},
		{"bert", edit(spm, func(m Map) { m[KeyModel] = "bert" }), ErrUnsupported},
		{"no tokens", edit(spm, func(m Map) { delete(m, KeyTokens) }), ErrMissing},
		{"empty tokens", edit(spm, func(m Map) { m[KeyTokens] = []string{} }), ErrMalformed},
		{"tokens not strings", edit(spm, func(m Map) { m[KeyTokens] = []int32{1} }), ErrMalformed},
		{"short scores", edit(spm, func(m Map) { m[KeyScores] = []float32{1} }), ErrMalformed},
		{"scores not float", edit(spm, func(m Map) { m[KeyScores] = []string{"x"} }), ErrMalformed},
		{"short types", edit(spm, func(m Map) { m[KeyTokenType] = []int32{1} }), ErrMalformed},
		{"duplicate token", edit(spm, func(m Map) {
			m[KeyTokens] = append(slices.Clone(m[KeyTokens].([]string)), "▁h")
			m[KeyTokenType] = append(slices.Clone(m[KeyTokenType].([]int32)), 1)
			m[KeyScores] = append(slices.Clone(m[KeyScores].([]float32)), 0)
		}), ErrMalformed},
		{"bos negative", edit(spm, func(m Map) { m[KeyBOS] = int32(-1) }), ErrMalformed},
		{"bos a string", edit(spm, func(m Map) { m[KeyBOS] = "1" }), ErrMalformed},
		{"add_bos not bool", edit(spm, func(m Map) { m[KeyAddBOS] = uint8(1) }), ErrMalformed},
		{"short byte token", edit(spm, func(m Map) {
			toks := slices.Clone(m[KeyTokens].([]string))
			toks[3] = "<0"
			m[KeyTokens] = toks
		}), ErrMalformed},
		{"no merges", edit(bpe, func(m Map) { delete(m, KeyMerges) }), ErrMissing},
		{"merges not strings", edit(bpe, func(m Map) { m[KeyMerges] = []float32{1} }), ErrMalformed},
		{"unknown pre", edit(bpe, func(m Map) { m[KeyPre] = "no-such-pre" }), ErrUnsupported},
		{"unimplemented pre", edit(bpe, func(m Map) { m[KeyPre] = "tekken" }), ErrUnsupported},
		{"pre not a string", edit(bpe, func(m Map) { m[KeyPre] = true }), ErrMalformed},
		{"phi-3 without </s>", edit(bpe, func(m Map) { m[KeyName] = "Phi-3-mini" }), ErrMalformed},
	} {
		v, err := FromMetadata(c.md)
		if !errors.Is(err, c.want) || v != nil {
			t.Errorf("%s: got %v, %v; want %v", c.name, v, err, c.want)
		}
	}
	// No pre-tokenizer name means "default", as in llama.cpp.
	if _, err := FromMetadata(edit(bpe, func(m Map) { delete(m, KeyPre) })); err != nil {
		t.Errorf("no pre: %v", err)
	}
	// An id past the vocabulary is ignored, as in llama.cpp.
	v := mustVocab(t, edit(spm, func(m Map) { m[KeyEOS] = uint32(1 << 20) }))
	if v.EOS() != 2 {
		t.Errorf("EOS %d after an out-of-range eos_token_id", v.EOS())
	}
}

func TestEncodeErrors(t *testing.T) {
	// A code point past U+10FFFF aborts llama.cpp's byte-level BPE.
	v := mustVocab(t, bpeMetadata("qwen2"))
	if _, err := v.Encode("a\xf4\x90\x80\x80", false, false); !errors.Is(err, ErrText) {
		t.Errorf("past U+10FFFF: %v", err)
	}
	// A SentencePiece vocabulary without byte tokens cannot encode an unknown character.
	md := spmMetadata()
	toks, types := slices.Clone(md[KeyTokens].([]string)), slices.Clone(md[KeyTokenType].([]int32))
	for i := 3; i < 3+256; i++ {
		toks[i] = fmt.Sprintf("byte%d", i)
		types[i] = typeNormal
	}
	md[KeyTokens], md[KeyTokenType] = toks, types
	v = mustVocab(t, md)
	if _, err := v.Encode("hé", false, false); !errors.Is(err, ErrText) {
		t.Errorf("no byte token: %v", err)
	}
	// BOS asked for but absent.
	md = bpeMetadata("llama-bpe")
	md[KeyTokens] = []string{"a", "b"}
	md[KeyTokenType] = []int32{1, 1}
	delete(md, KeyBOS)
	delete(md, KeyEOS)
	v = mustVocab(t, md)
	if _, err := v.Encode("ab", true, false); !errors.Is(err, ErrText) || v.BOS() != -1 {
		t.Errorf("no BOS: %v (BOS %d)", err, v.BOS())
	}
	for _, bad := range [][]int{{-1}, {v.Size()}, {0, 1 << 40}} {
		if _, err := v.Decode(bad); !errors.Is(err, ErrTokenID) {
			t.Errorf("Decode(%v): %v", bad, err)
		}
		if _, err := v.Piece(bad[len(bad)-1]); !errors.Is(err, ErrTokenID) {
			t.Errorf("Piece(%v): %v", bad, err)
		}
	}
	if v.Text(-1) != "" || v.Attr(1<<20) != 0 || v.IsEOG(-5) {
		t.Error("out-of-range accessors")
	}
}

// TestConcurrentEncode runs Encode from several goroutines on one Vocab (run with -race).
func TestConcurrentEncode(t *testing.T) {
	v := mustVocab(t, bpeMetadata("qwen2"))
	texts := []string{"abc abc", "123 ab\nc", strings.Repeat("ab c ", 50), "<|endoftext|>ab"}
	want := make([][]int, len(texts))
	for i, s := range texts {
		want[i], _ = v.Encode(s, true, true)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for k := 0; k < 200; k++ {
				i := (g + k) % len(texts)
				got, err := v.Encode(texts[i], true, true)
				if err != nil || !slices.Equal(got, want[i]) {
					t.Errorf("goroutine %d: %v %v", g, got, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
}

func TestPreTokenizers(t *testing.T) {
	names := PreTokenizers()
	for _, want := range []string{"default", "gpt-2", "llama-bpe", "qwen2", "starcoder", "deepseek-llm", "deepseek-coder", "falcon", "mpt", "refact", "smollm"} {
		if _, ok := slices.BinarySearch(names, want); !ok {
			t.Errorf("%q not accepted", want)
		}
	}
	for _, n := range names {
		if llamaCppPre[n] {
			t.Errorf("%q is both implemented and listed as unimplemented", n)
		}
	}
}

// TestSPMLeadingSpace pins the SentencePiece leading space through a BOS, as llama.cpp
// detokenizes (llama_detokenize hands the removal of the space to the first token, which
// is the BOS when there is one).
func TestSPMLeadingSpace(t *testing.T) {
	v := mustVocab(t, spmMetadata())
	ids, _ := v.Encode("hello", true, false)
	for _, remove := range []bool{false, true} {
		if got, _ := v.Detokenize(ids, remove, false); got != " hello" {
			t.Errorf("removeSpecial %v: %q", remove, got)
		}
	}
	ids, _ = v.Encode("hello", false, false)
	if got, _ := v.Decode(ids); got != "hello" {
		t.Errorf("without BOS: %q", got)
	}
}
