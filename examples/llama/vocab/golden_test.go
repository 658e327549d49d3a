package vocab

import (
	"bufio"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The golden files in testdata/vocab were recorded from llama.cpp itself by
// tools/ggufgold/tokenize.sh (the commit is in testdata/vocab/README.md). The pre-tokenizers
// without a vocabulary of their own are recorded on llama.cpp's GPT-2 test vocabulary with
// tokenizer.ggml.pre rewritten and eight tokens appended; relabel makes the same copy.

const goldenDir = "../../../testdata/vocab"

// goldenPres are the pre-tokenizer names recorded, as in tools/ggufgold/tokenize.sh.
var goldenPres = []string{
	"default", "gpt-2", "mpt", "trillion", "starcoder", "refact", "smollm", "llama-bpe", "dbrx",
	"glm4", "qwen2", "stablelm2", "deepseek-llm", "deepseek-coder", "falcon", "bloom", "poro-chat",
}

// relabelExtra are the tokens relabel appends, with their GGUF token types.
var relabelExtra = []struct {
	text string
	typ  int32
}{
	{"<|im_start|>", typeControl}, {"<|im_end|>", typeControl}, {"<|eot_id|>", typeControl},
	{"<|unused_0|>", typeControl}, {"<think>", typeUserDefined}, {"<|fim_pad|>", typeUserDefined},
	{"<|end|>", typeNormal}, {"\u0120zqxjv", typeNormal},
}

// relabel is tools/ggufgold/relabel_vocab.py in memory.
func relabel(pre string) func(Map) {
	return func(m Map) {
		m[KeyPre] = pre
		toks := append([]string(nil), m[KeyTokens].([]string)...)
		types := append([]int32(nil), m[KeyTokenType].([]int32)...)
		for _, e := range relabelExtra {
			toks = append(toks, e.text)
			types = append(types, e.typ)
		}
		m[KeyTokens], m[KeyTokenType] = toks, types
		if s, ok := m[KeyScores].([]float32); ok {
			m[KeyScores] = append(append([]float32(nil), s...), make([]float32, len(relabelExtra))...)
		}
	}
}

// goldenVocab returns the vocabulary a golden name stands for: "llama-spm", "gpt-2" and
// "starcoder" are the shared files, "pre-X" the relabelled GPT-2 vocabulary.
func goldenVocab(t *testing.T, name string) *Vocab {
	if pre, ok := strings.CutPrefix(name, "pre-"); ok {
		return sharedVocab(t, "gpt-2", relabel(pre))
	}
	return sharedVocab(t, name, nil)
}

func goldenNames() []string {
	names := []string{"llama-spm", "gpt-2", "starcoder"}
	for _, p := range goldenPres {
		names = append(names, "pre-"+p)
	}
	return names
}

// TestGolden compares Encode with llama.cpp on the shared test texts and on
// testdata/vocab/extra.inp, both without specials and with BOS and special parsing, for every
// vocabulary and pre-tokenizer recorded.
func TestGolden(t *testing.T) {
	extra := readTests(t, filepath.Join(goldenDir, "extra.inp"))
	for _, name := range goldenNames() {
		t.Run(name, func(t *testing.T) {
			v := goldenVocab(t, name)
			total, ok := 0, 0
			if strings.HasPrefix(name, "pre-") {
				shared := readTests(t, filepath.Join(sharedDir, "ggml-vocab-gpt-2.gguf.inp"))
				ok += compareLines(t, v, shared, readOut(t, filepath.Join(goldenDir, name+".shared.out")), false, false)
				total += len(shared)
			}
			ok += compareLines(t, v, extra, readOut(t, filepath.Join(goldenDir, name+".extra.out")), false, false)
			ok += compareLines(t, v, extra, readOut(t, filepath.Join(goldenDir, name+".special.out")), true, true)
			total += 2 * len(extra)
			t.Logf("%s: %d/%d lines match llama.cpp", name, ok, total)
		})
	}
}

// TestGoldenInfo compares special ids, flags, every token's attributes and the
// end-of-generation set with llama.cpp's.
func TestGoldenInfo(t *testing.T) {
	for _, name := range goldenNames() {
		t.Run(name, func(t *testing.T) {
			v := goldenVocab(t, name)
			f, err := os.Open(filepath.Join(goldenDir, name+".info"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			listed := map[int]bool{}
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				fs := strings.Fields(sc.Text())
				num := func(i int) int {
					n, err := strconv.Atoi(fs[i])
					if err != nil {
						t.Fatalf("%s: %q: %v", name, sc.Text(), err)
					}
					return n
				}
				check := func(what string, got, want int) {
					if got != want {
						t.Errorf("%s: %s = %d, llama.cpp has %d", name, what, got, want)
					}
				}
				b2i := func(b bool) int {
					if b {
						return 1
					}
					return 0
				}
				switch fs[0] {
				case "n_tokens":
					check("Size()", v.Size(), num(1))
				case "bos":
					check("BOS()", v.BOS(), num(1))
				case "eos":
					check("EOS()", v.EOS(), num(1))
				case "eot":
					// With several end-of-turn texts and none named in the metadata,
					// llama.cpp's pick follows its hash map's order (see EOT).
					if n := countPresent(v, eotTexts); n <= 1 {
						check("EOT()", v.EOT(), num(1))
					} else if !v.IsEOG(num(1)) || !v.IsEOG(v.EOT()) {
						t.Errorf("%s: EOT %d / llama.cpp's %d not both end generation", name, v.EOT(), num(1))
					}
				case "pad":
					check("PAD()", v.PAD(), num(1))
				case "add_bos":
					check("AddBOS()", b2i(v.AddBOS()), num(1))
				case "add_eos":
					check("AddEOS()", b2i(v.AddEOS()), num(1))
				case "token":
					id := num(1)
					listed[id] = true
					check("Attr("+fs[1]+")", int(v.Attr(id)), num(3))
					check("IsEOG("+fs[1]+")", b2i(v.IsEOG(id)), num(5))
				}
			}
			if err := sc.Err(); err != nil {
				t.Fatal(err)
			}
			for id := 0; id < v.Size(); id++ {
				if !listed[id] && (v.Attr(id) != AttrNormal || v.IsEOG(id)) {
					t.Errorf("%s: token %d has attr %d eog %v; llama.cpp: normal, not eog", name, id, v.Attr(id), v.IsEOG(id))
				}
			}
		})
	}
}

func countPresent(v *Vocab, texts []string) int {
	n := 0
	for _, t := range texts {
		if _, ok := v.ID(t); ok {
			n++
		}
	}
	return n
}

// TestGoldenDetokenize compares Detokenize with llama_detokenize: plain ids without special
// rendering, ids with BOS and specials rendered, and with BOS/EOS removed.
func TestGoldenDetokenize(t *testing.T) {
	extra := readTests(t, filepath.Join(goldenDir, "extra.inp"))
	names := []string{"llama-spm", "gpt-2", "starcoder", "pre-gpt-2", "pre-qwen2", "pre-llama-bpe", "pre-deepseek-llm"}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			v := goldenVocab(t, name)
			raw, err := os.ReadFile(filepath.Join(goldenDir, name+".detok"))
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
			if len(lines) != len(extra) {
				t.Fatalf("%d lines for %d tests", len(lines), len(extra))
			}
			ok := 0
			for i, text := range extra {
				want := strings.Fields(lines[i])
				plain, err1 := v.Encode(text, false, false)
				special, err2 := v.Encode(text, true, true)
				if err1 != nil || err2 != nil {
					t.Fatalf("test %d: %v %v", i, err1, err2)
				}
				good := true
				for k, c := range []struct {
					ids                           []int
					removeSpecial, unparseSpecial bool
				}{{plain, false, false}, {special, false, true}, {special, true, false}} {
					got, err := v.Detokenize(c.ids, c.removeSpecial, c.unparseSpecial)
					if err != nil {
						t.Fatal(err)
					}
					w := ""
					if want[k] != "-" {
						b, err := hex.DecodeString(want[k])
						if err != nil {
							t.Fatal(err)
						}
						w = string(b)
					}
					if got != w {
						good = false
						t.Errorf("test %d %q, Detokenize(remove %v, unparse %v):\n got %q\nwant %q", i, text, c.removeSpecial, c.unparseSpecial, got, w)
					}
				}
				if good {
					ok++
				}
			}
			t.Logf("%s: %d/%d texts detokenize as llama.cpp", name, ok, len(extra))
		})
	}
}

// TestGoldenSplit compares the pre-tokenizers' words with llama.cpp's unicode_regex_split on
// the same texts, word by word (as byte lengths). It needs no vocabulary, so it runs without
// ../shared on testdata/vocab/extra.inp, and also on the shared test texts when they are there.
func TestGoldenSplit(t *testing.T) {
	inputs := []struct{ inp, suffix string }{
		{filepath.Join(goldenDir, "extra.inp"), ".split"},
		{filepath.Join(sharedDir, "ggml-vocab-gpt-2.gguf.inp"), ".shared.split"},
	}
	for _, pre := range goldenPres {
		t.Run(pre, func(t *testing.T) {
			stages := preTokenizers[pre].stages
			st := new(encodeState)
			for _, in := range inputs {
				if _, err := os.Stat(in.inp); err != nil {
					t.Logf("skipping %s: %v", in.inp, err)
					continue
				}
				tests := readTests(t, in.inp)
				want := readOut(t, filepath.Join(goldenDir, "pre-"+pre+in.suffix))
				if len(want) != len(tests) {
					t.Fatalf("%d tests, %d lines", len(tests), len(want))
				}
				ok := 0
				for i, text := range tests {
					if err := st.pretokenize(stages, text); err != nil {
						t.Fatalf("test %d: %v", i, err)
					}
					var got []int
					lo := 0
					for _, hi := range st.split.ends {
						got = append(got, st.off[hi]-st.off[lo])
						lo = hi
					}
					if g, w := formatIDs(got), formatIDs(want[i]); g != w {
						t.Errorf("test %d %q: word lengths\n got %s\nwant %s", i, text, g, w)
						continue
					}
					ok++
				}
				t.Logf("%s on %s: %d/%d texts split as llama.cpp", pre, filepath.Base(in.inp), ok, len(tests))
			}
		})
	}
}
