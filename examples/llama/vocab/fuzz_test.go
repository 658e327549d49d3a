package vocab

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// byteLevelVocab is a byte-level BPE vocabulary with a token for every byte, a few merges and
// a control and a user-defined token, so that every valid UTF-8 text encodes without loss.
func byteLevelVocab(t testing.TB, pre string) *Vocab {
	t.Helper()
	var toks []string
	for b := 0; b < 256; b++ {
		toks = append(toks, string(byteRunes[b]))
	}
	var merges []string
	for _, m := range [][2]string{{"Ġ", "t"}, {"h", "e"}, {"Ġt", "he"}, {"i", "n"}, {"Ġ", "a"}, {"e", "r"}, {"1", "2"}, {"Ċ", "Ċ"}, {"Ġ", "Ġ"}, {"Ã", "©"}} {
		merges = append(merges, m[0]+" "+m[1])
		toks = append(toks, m[0]+m[1])
	}
	types := make([]int32, len(toks)+2)
	for i := range types {
		types[i] = typeNormal
	}
	toks = append(toks, "<|im_end|>", "<tool>")
	types[len(types)-2], types[len(types)-1] = typeControl, typeUserDefined
	v, err := FromMetadata(Map{KeyModel: "gpt2", KeyPre: pre, KeyTokens: toks, KeyTokenType: types, KeyMerges: merges})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func fuzzSeeds(f *testing.F) {
	f.Add("")
	f.Add("Hello, world! 123 I'm here.\n\n  x")
	f.Add("<|im_end|>a<tool>b <s>\xe2\x96\x81c")
	f.Add("\xff\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80")
	f.Add(strings.Repeat("the cat, the hat. ", 80)) // past cacheMin
	raw, err := readTestsFile(filepath.Join(goldenDir, "extra.inp"))
	if err == nil {
		for _, s := range raw {
			f.Add(s)
		}
	}
}

// FuzzEncode: Encode never panics and returns ids in range; where llama.cpp's tokenization
// is lossless, decoding gives the text back:
//   - byte-level BPE without the detokenizer's space clean-up (qwen2, deepseek): any valid
//     UTF-8 text, with or without special-token parsing;
//   - byte-level BPE with the clean-up (gpt-2, llama-bpe): the pieces concatenate to the text;
//   - SentencePiece: any valid UTF-8 text without U+2581 (which comes back as a space) and
//     without a special token's text (the text after a special token gets a leading space).
//
// Invalid UTF-8 is not given back: byte-level BPE replaces each bad byte with U+FFFD before
// the merges, and SentencePiece groups bytes into characters by their first byte alone, so a
// stray lead byte can take an escaped space into a run of byte tokens.
func FuzzEncode(f *testing.F) {
	fuzzSeeds(f)
	bpe := map[string]*Vocab{}
	for _, pre := range []string{"qwen2", "deepseek-llm", "deepseek-coder", "gpt-2", "llama-bpe", "default", "falcon", "starcoder", "bloom"} {
		bpe[pre] = byteLevelVocab(f, pre)
	}
	spm := mustVocab(f, spmMetadata())
	spmWhole := *spm // the reference: one merge queue over the whole text, as llama.cpp
	spmWhole.spmWords = false
	if !spm.spmWords {
		f.Fatal("the test vocabulary should let words merge independently")
	}
	f.Fuzz(func(t *testing.T, s string) {
		for pre, v := range bpe {
			for _, special := range []bool{false, true} {
				ids, err := v.Encode(s, false, special)
				if err != nil {
					if !strings.Contains(err.Error(), "past U+10FFFF") {
						t.Fatalf("%s: %q: %v", pre, s, err)
					}
					continue
				}
				for _, id := range ids {
					if id < 0 || id >= v.Size() {
						t.Fatalf("%s: id %d out of range", pre, id)
					}
				}
				if !utf8.ValidString(s) {
					continue
				}
				dec, err := v.Detokenize(ids, false, special)
				if err != nil {
					t.Fatal(err)
				}
				if !v.cleanSpaces && dec != s {
					t.Fatalf("%s special=%v: Decode(Encode(%q)) = %q", pre, special, s, dec)
				}
				var pieces strings.Builder
				for _, id := range ids {
					if special || !v.IsControl(id) {
						p, _ := v.Piece(id)
						pieces.WriteString(p)
					}
				}
				if pieces.String() != s {
					t.Fatalf("%s special=%v: pieces of %q give %q", pre, special, s, pieces.String())
				}
			}
		}
		ids, err := spm.Encode(s, false, false)
		if err != nil {
			t.Fatalf("spm %q: %v", s, err)
		}
		if ref, _ := spmWhole.Encode(s, false, false); !slices.Equal(ids, ref) {
			t.Fatalf("spm %q: word by word %v, whole text %v", s, ids, ref)
		}
		if !utf8.ValidString(s) || strings.Contains(s, spaceEscape) || strings.Contains(s, "<tool>") {
			return
		}
		if dec, _ := spm.Decode(ids); dec != s {
			t.Fatalf("spm: Decode(Encode(%q)) = %q (ids %v)", s, dec, ids)
		}
	})
}

// FuzzSplit: every pre-tokenizer cuts any text into non-empty words that cover it in order.
func FuzzSplit(f *testing.F) {
	fuzzSeeds(f)
	names := PreTokenizers()
	f.Fuzz(func(t *testing.T, s string) {
		st := new(encodeState)
		for _, name := range names {
			if err := st.pretokenize(preTokenizers[name].stages, s); err != nil {
				continue
			}
			ends := st.split.ends
			if len(st.split.cp) > 0 && (len(ends) == 0 || ends[len(ends)-1] != len(st.split.cp)) {
				t.Fatalf("%s: %q: words end at %v of %d", name, s, ends, len(st.split.cp))
			}
			if !slices.IsSorted(ends) || slices.Contains(ends, 0) || len(slices.Compact(slices.Clone(ends))) != len(ends) {
				t.Fatalf("%s: %q: word ends %v", name, s, ends)
			}
		}
	})
}

// FuzzFromMetadata: vocabularies made of arbitrary token texts, types, scores and merges load
// or fail with an error, and then encode and decode any text without panicking.
func FuzzFromMetadata(f *testing.F) {
	f.Add("a\nb\nab\n<s>\n<0x41>", "a b\nab c\nx", "3140", "ab<s>aA", true)
	f.Add("Ġ\nt\nĠt\n<|x|>", "Ġ t", "1131", " t<|x|>t", false)
	f.Add("\n\n<0\n\xff", " \nx", "6666", "\xff\x00", true)
	f.Fuzz(func(t *testing.T, tokens, merges, types, text string, spm bool) {
		toks := strings.Split(tokens, "\n")
		tt := make([]int32, len(toks))
		scores := make([]float32, len(toks))
		for i := range tt {
			if i < len(types) {
				tt[i] = int32(types[i] - '0')
			}
			scores[i] = float32(len(toks[i])) - float32(i)/8
		}
		md := Map{KeyModel: "gpt2", KeyPre: "qwen2", KeyTokens: toks, KeyTokenType: tt, KeyMerges: strings.Split(merges, "\n")}
		if spm {
			md = Map{KeyModel: "llama", KeyTokens: toks, KeyTokenType: tt, KeyScores: scores, KeyBOS: uint32(len(toks) / 2)}
		}
		v, err := FromMetadata(md)
		if err != nil {
			return
		}
		for _, special := range []bool{false, true} {
			ids, err := v.Encode(text, special, special)
			if err != nil {
				continue
			}
			for _, id := range ids {
				if id < 0 || id >= v.Size() {
					t.Fatalf("id %d out of range", id)
				}
			}
			if _, err := v.Detokenize(ids, special, special); err != nil {
				t.Fatal(err)
			}
		}
	})
}
