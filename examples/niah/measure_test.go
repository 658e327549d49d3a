package niah

import (
	"math"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/examples/llama"
)

// TestSignTest: the p-value equals the binomial sum computed directly.
func TestSignTest(t *testing.T) {
	choose := func(n, k int) float64 {
		r := 1.0
		for i := 1; i <= k; i++ {
			r = r * float64(n-k+i) / float64(i)
		}
		return r
	}
	for _, tc := range [][2]int{{0, 0}, {0, 5}, {5, 0}, {3, 3}, {2, 9}, {12, 40}, {67, 12}} {
		b, c := tc[0], tc[1]
		n, k := b+c, min(b, c)
		want := 0.0
		for i := 0; i <= k; i++ {
			want += choose(n, i) / math.Pow(2, float64(n))
		}
		want = min(1, 2*want)
		if got := SignTest(b, c); math.Abs(got-want) > 1e-9*want {
			t.Errorf("SignTest(%d, %d) = %g, want %g", b, c, got, want)
		}
	}
	if p := SignTest(0, 5); math.Abs(p-0.0625) > 1e-12 {
		t.Errorf("SignTest(0, 5) = %g, want 2/32", p)
	}
}

// TestTextSamples: samples of exactly n tokens, BOS first, from evenly
// spaced offsets; a text too short is an error.
func TestTextSamples(t *testing.T) {
	tok := byteEncoder{}
	text := strings.Repeat("the river runs by the mill. ", 40)
	got, err := TextSamples(tok, []int{llama.BOS}, text, 4, 50)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range got {
		if len(s) != 50 || s[0] != llama.BOS {
			t.Fatalf("sample %d: %d tokens, first %d", i, len(s), s[0])
		}
		off := i * len(text) / 4
		if want := llama.ByteTokenizer().Encode(text[off:off+49], false, false); !equal(s[1:], want) {
			t.Fatalf("sample %d does not start at offset %d", i, off)
		}
	}
	if _, err := TextSamples(tok, []int{llama.BOS}, "short", 2, 50); err == nil {
		t.Fatal("a text too short was cut")
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// byteEncoder is the byte-level tokenizer with an error result.
type byteEncoder struct{}

func (byteEncoder) Encode(text string, bos, eos bool) ([]int, error) {
	return llama.ByteTokenizer().Encode(text, bos, eos), nil
}
