package vocab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// benchTexts are the texts of BenchmarkEncode: English prose (testdata/haystack/eval.txt,
// about 200 kB) and the mixed-script test texts of testdata/vocab/extra.inp repeated to a
// similar size.
func benchTexts(b *testing.B) map[string]string {
	b.Helper()
	en, err := os.ReadFile("../../../testdata/haystack/eval.txt")
	if err != nil {
		b.Fatal(err)
	}
	tests := readTests(b, filepath.Join(goldenDir, "extra.inp"))
	var mixed strings.Builder
	for mixed.Len() < len(en) {
		for _, s := range tests {
			mixed.WriteString(s)
			mixed.WriteByte('\n')
		}
	}
	return map[string]string{"english": string(en), "mixed": mixed.String()}
}

// BenchmarkEncode measures Encode throughput (bytes of text per second) on llama.cpp's test
// vocabularies, the GPT-2 one also relabelled as Llama 3 and Qwen2. It needs ../shared.
func BenchmarkEncode(b *testing.B) {
	texts := benchTexts(b)
	vocabs := []struct {
		name string
		v    func() *Vocab
	}{
		{"llama-spm", func() *Vocab { return sharedVocab(b, "llama-spm", nil) }},
		{"gpt-2", func() *Vocab { return sharedVocab(b, "gpt-2", nil) }},
		{"llama-bpe", func() *Vocab { return sharedVocab(b, "gpt-2", relabel("llama-bpe")) }},
		{"qwen2", func() *Vocab { return sharedVocab(b, "gpt-2", relabel("qwen2")) }},
	}
	for _, vc := range vocabs {
		for _, tn := range []string{"english", "mixed"} {
			b.Run(vc.name+"/"+tn, func(b *testing.B) {
				v := vc.v()
				text := texts[tn]
				b.SetBytes(int64(len(text)))
				var n int
				for b.Loop() {
					ids, err := v.Encode(text, false, false)
					if err != nil {
						b.Fatal(err)
					}
					n = len(ids)
				}
				b.ReportMetric(float64(len(text))/float64(n), "bytes/token")
			})
		}
	}
}

// BenchmarkLoad measures building the GPT-2 vocabulary (50257 tokens, 50000 merges) from
// metadata already in memory.
func BenchmarkLoad(b *testing.B) {
	md := sharedMetadata(b, "gpt-2")
	for b.Loop() {
		if _, err := FromMetadata(md); err != nil {
			b.Fatal(err)
		}
	}
}
