package llama

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/kvcache"
)

// tinyModel returns the bytes of a small valid checkpoint with weights from
// a fixed pattern.
func tinyModel(shared bool) []byte {
	cfg := Config{Dim: 8, Hidden: 12, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 260, SeqLen: 16, SharedClassifier: shared}
	vocab := int32(cfg.Vocab)
	if !shared {
		vocab = -vocab
	}
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, []int32{8, 12, 2, 4, 2, vocab, 16})
	n := cfg.params()
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(math.Sin(float64(i))) * 0.3
	}
	binary.Write(&buf, binary.LittleEndian, w)
	return buf.Bytes()
}

func TestParseRoundTrip(t *testing.T) {
	for _, shared := range []bool{true, false} {
		data := tinyModel(shared)
		m, err := Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		if m.SharedClassifier != shared || m.Vocab != 260 || m.HeadDim() != 2 || m.KVDim() != 4 {
			t.Fatalf("parsed %+v", m.Config)
		}
		var out bytes.Buffer
		if _, err := m.WriteTo(&out); err != nil {
			t.Fatal(err)
		}
		m2, err := Parse(out.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		// Weights survive (the legacy rotary tables are written as zeros).
		c1, _ := m.NewCache(kvcache.Float32)
		c2, _ := m2.NewCache(kvcache.Float32)
		s1, _ := m.NewSession(c1, nil)
		s2, _ := m2.NewSession(c2, nil)
		a, err := s1.Forward([]int{1, 5, 9})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := s2.Forward([]int{1, 5, 9})
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("shared=%v: logits differ after a write/read round trip", shared)
			}
		}
	}
}

func TestParseErrors(t *testing.T) {
	good := tinyModel(true)
	header := func(f []int32) []byte {
		var b bytes.Buffer
		binary.Write(&b, binary.LittleEndian, f)
		return append(b.Bytes(), good[28:]...)
	}
	nan := append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(nan[28+40:], math.Float32bits(float32(math.NaN())))
	cases := map[string][]byte{
		"shorter than the":  good[:10],
		"truncated":         good[:len(good)-4],
		"every dimension":   header([]int32{8, 12, 0, 4, 2, 260, 16}),
		"not a multiple of": header([]int32{8, 12, 2, 3, 2, 260, 16}),
		"KV heads":          header([]int32{8, 12, 2, 4, 3, 260, 16}),
		"odd":               header([]int32{4, 12, 2, 4, 2, 260, 16}),
		"parameters":        header([]int32{1 << 20, 1 << 20, 64, 4, 2, 260, 16}),
		"NaN":               nan,
		"announces":         append(append([]byte(nil), good...), 0, 0, 0, 0),
	}
	for want, data := range cases {
		_, err := Parse(data)
		if err == nil || !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v", want, err)
		}
	}
}

// FuzzParse: no input panics or allocates beyond what its size announces;
// accepted models run a token.
func FuzzParse(f *testing.F) {
	f.Add(tinyModel(true))
	f.Add(tinyModel(false)[:100])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error does not wrap ErrFormat: %v", err)
			}
			return
		}
		c, err := m.NewCache(kvcache.Float32)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := m.NewSession(c, nil)
		if _, err := s.Forward([]int{BOS}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestTokenizer(t *testing.T) {
	tok := ByteTokenizer()
	text := "Héllo, 42!\n"
	ids := tok.Encode(text, true, true)
	if ids[0] != BOS || ids[len(ids)-1] != EOS || len(ids) != len(text)+2 {
		t.Fatalf("byte encoding %v", ids)
	}
	if got := tok.Decode(ids); got != text {
		t.Fatalf("decode %q, want %q", got, text)
	}
	parsed, err := ParseTokenizer(tok.Bytes(), tok.Vocab())
	if err != nil {
		t.Fatal(err)
	}
	parsed.DummyPrefix = false
	if got := parsed.Decode(parsed.Encode(text, false, false)); got != text {
		t.Fatalf("round trip through the file format: %q", got)
	}
	// Merges: pieces "a", "b", "ab" with "ab" scored; "abab" merges to two "ab".
	m := ByteTokenizer()
	for _, p := range []string{"a", "b", "ab", " "} {
		m.pieces = append(m.pieces, p)
		m.scores = append(m.scores, float32(len(p)))
		m.index[p] = len(m.pieces) - 1
	}
	m.DummyPrefix = false
	ab := m.index["ab"]
	if got := m.Encode("abab", false, false); len(got) != 2 || got[0] != ab || got[1] != ab {
		t.Fatalf("merges: %v", got)
	}
	if _, err := ParseTokenizer(tok.Bytes()[:50], tok.Vocab()); err == nil || !errors.Is(err, ErrFormat) {
		t.Fatalf("truncated tokenizer: %v", err)
	}
	if _, err := ParseTokenizer(tok.Bytes(), 100); err == nil {
		t.Fatal("a vocabulary without the bytes was accepted")
	}
}

func FuzzParseTokenizer(f *testing.F) {
	f.Add(ByteTokenizer().Bytes(), 259)
	f.Add([]byte{1, 0, 0, 0}, 259)
	f.Fuzz(func(t *testing.T, data []byte, vocab int) {
		tok, err := ParseTokenizer(data, vocab)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error does not wrap ErrFormat: %v", err)
			}
			return
		}
		tok.Decode(tok.Encode("abc déf", true, true))
	})
}

func TestForwardErrors(t *testing.T) {
	m, err := Parse(tinyModel(true))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := m.NewCache(kvcache.Float16)
	s, _ := m.NewSession(c, nil)
	if _, err := s.Forward(nil); err == nil {
		t.Fatal("empty forward accepted")
	}
	if _, err := s.Forward([]int{1, 999}); err == nil || c.Seen(0) != 0 {
		t.Fatalf("out-of-vocabulary token: err %v, seen %d", err, c.Seen(0))
	}
	other, _ := kvcache.NewHost(kvcache.Shape{Layers: 3, KVHeads: 2, HeadDim: 2}, kvcache.Float32)
	if _, err := m.NewSession(other, nil); err == nil {
		t.Fatal("a cache of the wrong shape was accepted")
	}
}
