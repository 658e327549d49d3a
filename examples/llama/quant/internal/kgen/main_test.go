package main

import (
	"bytes"
	"testing"
)

// TestVDPBF16PS: the hand encoding gives the bytes the GNU assembler gives
// for the same operands, low and high registers in each place.
func TestVDPBF16PS(t *testing.T) {
	for _, c := range []struct {
		dst, src1, src2 int
		want            string
	}{
		{1, 2, 3, "BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x28; BYTE $0x52; BYTE $0xcb"},
		{17, 2, 19, "BYTE $0x62; BYTE $0xa2; BYTE $0x6e; BYTE $0x28; BYTE $0x52; BYTE $0xcb"},
		{9, 18, 3, "BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x20; BYTE $0x52; BYTE $0xcb"},
		{31, 12, 11, "BYTE $0x62; BYTE $0x42; BYTE $0x1e; BYTE $0x28; BYTE $0x52; BYTE $0xfb"},
	} {
		if got := vdpbf16ps(c.dst, c.src1, c.src2); got != c.want {
			t.Errorf("VDPBF16PS Y%d, Y%d, Y%d: %s, want %s", c.src2, c.src1, c.dst, got, c.want)
		}
	}
}

// TestGenerateDeterministic: two runs write the same files (no map order
// leaks into them).
func TestGenerateDeterministic(t *testing.T) {
	s1, g1 := generate()
	s2, g2 := generate()
	if !bytes.Equal(s1, s2) || !bytes.Equal(g1, g2) {
		t.Fatal("the generator's output differs between runs")
	}
}
