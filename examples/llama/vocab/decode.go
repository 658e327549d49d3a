package vocab

import (
	"fmt"
	"strings"
)

// buildPieces renders every token once, as llama.cpp's token-to-piece cache does
// (llama_token_to_piece with special = true).
func (v *Vocab) buildPieces() error {
	v.pieces = make([]string, len(v.texts))
	for id, t := range v.texts {
		a := v.attrs[id]
		switch {
		case a&(AttrUnknown|AttrControl|AttrUserDefined) != 0:
			v.pieces[id] = t
		case a&AttrNormal != 0:
			if v.bpe == nil {
				v.pieces[id] = strings.ReplaceAll(t, spaceEscape, " ")
			} else {
				v.pieces[id] = byteLevelText(t)
			}
		case a&AttrByte != 0:
			if len(t) < 3 { // llama.cpp's substr(3, 2) throws here
				return fmt.Errorf("%w: byte token %d is %q, want <0xXX>", ErrMalformed, id, t)
			}
			v.pieces[id] = string([]byte{hexByte(t[3:min(len(t), 5)])})
		}
	}
	return nil
}

// hexByte parses a byte token's two hex digits the way strtol(s, NULL, 16) does, keeping the
// low eight bits.
func hexByte(s string) byte {
	i := 0
	for i < len(s) && isSpaceC(s[i]) {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	var n int
	for ; i < len(s); i++ {
		c := s[i]
		var d int
		switch {
		case c >= '0' && c <= '9':
			d = int(c - '0')
		case c >= 'a' && c <= 'f':
			d = int(c-'a') + 10
		case c >= 'A' && c <= 'F':
			d = int(c-'A') + 10
		default:
			i = len(s)
			continue
		}
		n = n*16 + d
	}
	if neg {
		n = -n
	}
	return byte(n)
}

// byteLevelText turns a byte-level BPE token's text back into the bytes it stands for
// (llama_decode_text). A character that stands for no byte is written as llama.cpp writes it,
// "[UNK_BYTE_0x<hex>" followed by the token's text and "]".
func byteLevelText(t string) string {
	out := make([]byte, 0, len(t))
	var enc []byte
	for i := 0; i < len(t); {
		c, n := decodeRune(t, i)
		i += n
		if b, ok := runeBytes[c]; ok {
			out = append(out, b)
			continue
		}
		enc, _ = appendRune(enc[:0], c)
		out = append(out, "[UNK_BYTE_0x"...)
		for _, e := range enc {
			out = fmt.Appendf(out, "%02x", e)
		}
		out = append(out, t...)
		out = append(out, ']')
	}
	return string(out)
}

// Piece is the text of one token as llama_token_to_piece(vocab, id, ..., lstrip 0, special
// true) gives it: a SentencePiece token with U+2581 turned into spaces, a byte-level token
// turned back into its bytes, a byte token as its byte, a control or user-defined token as its
// text. Pieces of consecutive tokens concatenate to the decoded text, before the clean-up
// Detokenize applies.
func (v *Vocab) Piece(id int) (string, error) {
	if err := v.checkID(id); err != nil {
		return "", err
	}
	return v.pieces[id], nil
}

// Decode turns tokens back into text as llama_detokenize(vocab, ids, remove_special false,
// unparse_special false) does: control tokens (BOS, EOS, ...) render as nothing. It is
// Detokenize(ids, false, false).
func (v *Vocab) Decode(ids []int) (string, error) {
	return v.Detokenize(ids, false, false)
}

// Detokenize turns tokens back into text as llama_detokenize does.
//
// With removeSpecial, a leading BOS and a trailing EOS are dropped where the vocabulary adds
// them. With unparseSpecial, control and unknown tokens render as their text; without it, as
// nothing. A SentencePiece vocabulary that adds a leading space has the first token's leading
// space removed (unless a BOS was removed before it). A vocabulary whose pre-tokenizer cleans
// up spaces (GPT-2, Llama 3, StarCoder and others; not Qwen2 or DeepSeek) has " ?", " !",
// " .", " ,", " ' " and " 's", " 'm", " 're", " 've" tightened, as llama.cpp does.
//
// So Decode(Encode(s, false, false)) is s for valid UTF-8 s with a byte-level BPE vocabulary
// without that clean-up (Qwen2, DeepSeek). With the clean-up, the Pieces still concatenate to
// s. With SentencePiece it is s for valid UTF-8 s that holds no U+2581 (which comes back as a
// space) and no special token's text (the text after a special token gets a leading space);
// with a BOS in front (Encode(s, true, ...)) the text comes back with a leading space, BOS
// removed or not, as from llama.cpp.
// Invalid UTF-8 does not come back: byte-level BPE tokenizes U+FFFD in place of each bad byte.
func (v *Vocab) Detokenize(ids []int, removeSpecial, unparseSpecial bool) (string, error) {
	for _, id := range ids {
		if err := v.checkID(id); err != nil {
			return "", err
		}
	}
	removeSpace := v.addSpacePrefix
	if removeSpecial && v.addBOS && len(ids) > 0 && ids[0] == int(v.bos) {
		removeSpace = false
		ids = ids[1:]
	}
	if removeSpecial && v.addEOS && len(ids) > 0 && ids[len(ids)-1] == int(v.eos) {
		ids = ids[:len(ids)-1]
	}
	var out []byte
	for i, id := range ids {
		if !unparseSpecial && v.attrs[id]&(AttrUnknown|AttrControl) != 0 {
			removeSpace = false
			continue
		}
		p := v.pieces[id]
		if i == 0 && removeSpace && strings.HasPrefix(p, " ") {
			p = p[1:]
		}
		removeSpace = false
		out = append(out, p...)
	}
	if v.cleanSpaces {
		out = cleanSpaces(out)
	}
	return string(out), nil
}

// cleanSpaces is llama.cpp's clean_up_tokenization_spaces, three passes over the bytes.
func cleanSpaces(t []byte) []byte {
	if len(t) == 0 {
		return t
	}
	// " ?", " !", " .", " ," lose the space.
	n := 1
	for i := 1; i < len(t); i++ {
		x := t[i]
		if t[i-1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',') {
			n--
		}
		t[n] = x
		n++
	}
	t = t[:n]
	// " ' " becomes "'". The space after is overwritten by a NUL before it is skipped, and
	// the next byte's look-behind sees that NUL, as in llama.cpp.
	n = 1
	for i := 1; i < len(t); i++ {
		x := t[i]
		if x == '\'' && i+1 < len(t) && t[i-1] == ' ' && t[i+1] == ' ' {
			n--
			i++
			t[i] = 0
		}
		t[n] = x
		n++
	}
	t = t[:n]
	// " 's", " 'm", " 're", " 've" lose the space.
	n = 1
	for i := 1; i < len(t); i++ {
		x := t[i]
		if t[i-1] == ' ' && x == '\'' && i+1 < len(t) {
			x1 := t[i+1]
			switch {
			case x1 == 's' || x1 == 'm':
				n--
			case i+2 < len(t) && ((x1 == 'r' && t[i+2] == 'e') || (x1 == 'v' && t[i+2] == 'e')):
				n--
			}
		}
		t[n] = x
		n++
	}
	return t[:n]
}
