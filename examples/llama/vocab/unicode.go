package vocab

import (
	"sync"
	"unicode"
)

// Code point classes, as llama.cpp's pre-tokenizers see them. A code point has exactly one
// general-category class (the first eight bits) and may also be white space.
const (
	cpUndefined uint16 = 1 << iota // Cn, and anything past U+10FFFF
	cpNumber                       // \p{N}
	cpLetter                       // \p{L}
	cpSeparator                    // \p{Z}
	cpMark                         // \p{M}
	cpPunct                        // \p{P}
	cpSymbol                       // \p{S}
	cpControl                      // \p{C} other than Cn
	cpSpace                        // the Unicode White_Space property (what \s matches)
)

const maxCodepoint = 0x110000

// unicode151 lists the code points that Unicode 15.1 assigned and Go's tables (Unicode
// 15.0.0) leave unassigned; llama.cpp's tables are generated from Unicode 15.1, so these are
// classed as it classes them. TestCodepointTable pins the whole table to llama.cpp's.
var unicode151 = []struct {
	lo, hi rune
	class  uint16
}{
	{0x2FFC, 0x2FFF, cpSymbol},   // ideographic description characters
	{0x31EF, 0x31EF, cpSymbol},   // CJK stroke HXG
	{0x2EBF0, 0x2EE5D, cpLetter}, // CJK Unified Ideographs Extension I
}

// cpTable is a two-level table of the classes of every code point below U+110000: blocks of
// 256 code points, identical blocks shared. It is built on first use.
type cpTable struct {
	index  [maxCodepoint >> 8]uint16
	blocks []uint16
}

var codepoints = sync.OnceValue(buildCodepointTable)

func buildCodepointTable() *cpTable {
	flat := make([]uint16, maxCodepoint)
	for i := range flat {
		flat[i] = cpUndefined
	}
	mark := func(tables []*unicode.RangeTable, class uint16) {
		for _, t := range tables {
			for _, r := range t.R16 {
				for c := uint32(r.Lo); c <= uint32(r.Hi); c += uint32(r.Stride) {
					flat[c] = class
				}
			}
			for _, r := range t.R32 {
				for c := r.Lo; c <= r.Hi; c += r.Stride {
					flat[c] = class
				}
			}
		}
	}
	mark([]*unicode.RangeTable{unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs}, cpControl)
	mark([]*unicode.RangeTable{unicode.Lu, unicode.Ll, unicode.Lt, unicode.Lm, unicode.Lo}, cpLetter)
	mark([]*unicode.RangeTable{unicode.Mn, unicode.Mc, unicode.Me}, cpMark)
	mark([]*unicode.RangeTable{unicode.Nd, unicode.Nl, unicode.No}, cpNumber)
	mark([]*unicode.RangeTable{unicode.Pc, unicode.Pd, unicode.Ps, unicode.Pe, unicode.Pi, unicode.Pf, unicode.Po}, cpPunct)
	mark([]*unicode.RangeTable{unicode.Sm, unicode.Sc, unicode.Sk, unicode.So}, cpSymbol)
	mark([]*unicode.RangeTable{unicode.Zs, unicode.Zl, unicode.Zp}, cpSeparator)
	for _, r := range unicode151 {
		for c := r.lo; c <= r.hi; c++ {
			if flat[c] == cpUndefined {
				flat[c] = r.class
			}
		}
	}
	for _, t := range []*unicode.RangeTable{unicode.White_Space} {
		for _, r := range t.R16 {
			for c := uint32(r.Lo); c <= uint32(r.Hi); c += uint32(r.Stride) {
				flat[c] |= cpSpace
			}
		}
		for _, r := range t.R32 {
			for c := r.Lo; c <= r.Hi; c += r.Stride {
				flat[c] |= cpSpace
			}
		}
	}

	t := &cpTable{}
	seen := make(map[[256]uint16]uint16)
	for b := range t.index {
		var blk [256]uint16
		copy(blk[:], flat[b<<8:(b+1)<<8])
		n, ok := seen[blk]
		if !ok {
			n = uint16(len(t.blocks) >> 8)
			seen[blk] = n
			t.blocks = append(t.blocks, blk[:]...)
		}
		t.index[b] = n
	}
	return t
}

// class returns the class bits of code point c (cpUndefined past U+10FFFF).
func (t *cpTable) class(c rune) uint16 {
	if uint32(c) >= maxCodepoint {
		return cpUndefined
	}
	return t.blocks[int(t.index[c>>8])<<8|int(c&0xFF)]
}

// decodeRune decodes one code point at s[i:] the way llama.cpp's unicode_cpt_from_utf8 does,
// which is laxer than UTF-8: overlong forms, surrogates and values up to 0x1FFFFF are
// accepted as written. A byte that starts no such sequence decodes to U+FFFD and uses one byte.
func decodeRune(s string, i int) (rune, int) {
	b0 := s[i]
	switch {
	case b0 < 0x80:
		return rune(b0), 1
	case b0 < 0xC0: // a continuation byte cannot start a sequence
		return 0xFFFD, 1
	case b0 < 0xE0:
		if i+1 < len(s) && isCont(s[i+1]) {
			return rune(b0&0x1F)<<6 | rune(s[i+1]&0x3F), 2
		}
	case b0 < 0xF0:
		if i+2 < len(s) && isCont(s[i+1]) && isCont(s[i+2]) {
			return rune(b0&0x0F)<<12 | rune(s[i+1]&0x3F)<<6 | rune(s[i+2]&0x3F), 3
		}
	case b0 < 0xF8:
		if i+3 < len(s) && isCont(s[i+1]) && isCont(s[i+2]) && isCont(s[i+3]) {
			return rune(b0&0x07)<<18 | rune(s[i+1]&0x3F)<<12 | rune(s[i+2]&0x3F)<<6 | rune(s[i+3]&0x3F), 4
		}
	}
	return 0xFFFD, 1
}

func isCont(b byte) bool { return b&0xC0 == 0x80 }

// appendRune appends the UTF-8 form of c as llama.cpp writes it: surrogates are written like
// any other value below 0x10000. ok is false past U+10FFFF, where llama.cpp throws.
func appendRune(dst []byte, c rune) ([]byte, bool) {
	switch {
	case c < 0:
		return dst, false
	case c < 0x80:
		return append(dst, byte(c)), true
	case c < 0x800:
		return append(dst, 0xC0|byte(c>>6), 0x80|byte(c&0x3F)), true
	case c < 0x10000:
		return append(dst, 0xE0|byte(c>>12), 0x80|byte(c>>6&0x3F), 0x80|byte(c&0x3F)), true
	case c < maxCodepoint:
		return append(dst, 0xF0|byte(c>>18), 0x80|byte(c>>12&0x3F), 0x80|byte(c>>6&0x3F), 0x80|byte(c&0x3F)), true
	}
	return dst, false
}

// seqLen is the length llama.cpp's SentencePiece tokenizer gives a character from its first
// byte alone (unicode_len_utf8): continuation bytes count as one-byte characters.
func seqLen(b byte) int {
	switch b >> 4 {
	case 0xC, 0xD:
		return 2
	case 0xE:
		return 3
	case 0xF:
		return 4
	}
	return 1
}

// byteRunes maps each byte to the character that stands for it in a byte-level BPE
// vocabulary (GPT-2's bytes_to_unicode): printable Latin-1 bytes stand for themselves, the
// other 68 take U+0100 upwards in byte order.
var byteRunes, runeBytes = func() ([256]rune, map[rune]byte) {
	var fwd [256]rune
	rev := make(map[rune]byte, 256)
	next := rune(256)
	for b := 0; b < 256; b++ {
		if (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			fwd[b] = rune(b)
		} else {
			fwd[b] = next
			next++
		}
		rev[fwd[b]] = byte(b)
	}
	return fwd, rev
}()

// isSpaceC reports whether b is white space in the C locale (isspace).
func isSpaceC(b byte) bool {
	return b == ' ' || (b >= '\t' && b <= '\r')
}
