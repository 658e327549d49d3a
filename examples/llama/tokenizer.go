package llama

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Special token ids of the llama2.c vocabulary convention.
const (
	Unk = 0 // unknown
	BOS = 1 // beginning of sequence
	EOS = 2 // end of sequence
	// ByteBase is the id of byte 0x00; byte b is ByteBase+b.
	ByteBase = 3
)

// Tokenizer is a llama2.c tokenizer: a vocabulary of pieces with merge
// scores, byte fallback for anything the pieces miss, and greedy merging of
// the best-scored adjacent pair.
type Tokenizer struct {
	pieces []string
	scores []float32
	index  map[string]int
	// DummyPrefix adds a space before the text when encoding, as
	// SentencePiece models such as llama2.c's expect. Byte-level models
	// leave it off.
	DummyPrefix bool
}

// LoadTokenizer reads a llama2.c tokenizer file of vocab pieces.
func LoadTokenizer(path string, vocab int) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := ParseTokenizer(data, vocab)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// ParseTokenizer decodes a llama2.c tokenizer: an int32 maximum piece
// length, then for each of vocab pieces a float32 score, an int32 byte
// length and the bytes.
func ParseTokenizer(data []byte, vocab int) (*Tokenizer, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("llama: tokenizer: %s: %w", fmt.Sprintf(format, a...), ErrFormat)
	}
	if vocab < ByteBase+256 || vocab > 1<<24 {
		return nil, bad("vocabulary of %d pieces, want at least %d (specials and bytes)", vocab, ByteBase+256)
	}
	if len(data) < 4 {
		return nil, bad("%d bytes, no header", len(data))
	}
	maxLen := int(int32(binary.LittleEndian.Uint32(data)))
	if maxLen <= 0 {
		return nil, bad("maximum piece length %d", maxLen)
	}
	t := &Tokenizer{pieces: make([]string, vocab), scores: make([]float32, vocab), index: make(map[string]int, vocab), DummyPrefix: true}
	off := 4
	for i := 0; i < vocab; i++ {
		if len(data)-off < 8 {
			return nil, bad("truncated at piece %d of %d", i, vocab)
		}
		t.scores[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[off:]))
		n := int(int32(binary.LittleEndian.Uint32(data[off+4:])))
		off += 8
		if n < 0 || n > maxLen || n > len(data)-off {
			return nil, bad("piece %d has length %d (maximum %d, %d bytes left)", i, n, maxLen, len(data)-off)
		}
		if f := float64(t.scores[i]); math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, bad("piece %d has score %v", i, f)
		}
		t.pieces[i] = string(data[off : off+n])
		off += n
		if _, dup := t.index[t.pieces[i]]; !dup {
			t.index[t.pieces[i]] = i
		}
	}
	if off != len(data) {
		return nil, bad("%d bytes after the last piece", len(data)-off)
	}
	return t, nil
}

// ByteTokenizer returns the tokenizer of a byte-level model: the three
// specials, then the 256 bytes as pieces "<0x00>".."<0xFF>", no merges.
func ByteTokenizer() *Tokenizer {
	t := &Tokenizer{index: map[string]int{}}
	t.pieces = append(t.pieces, "<unk>", "<s>", "</s>")
	for b := 0; b < 256; b++ {
		t.pieces = append(t.pieces, fmt.Sprintf("<0x%02X>", b))
	}
	t.scores = make([]float32, len(t.pieces))
	for i, p := range t.pieces {
		t.index[p] = i
	}
	return t
}

// Bytes returns the tokenizer in the llama2.c format ParseTokenizer reads.
func (t *Tokenizer) Bytes() []byte {
	var buf bytes.Buffer
	maxLen := 1
	for _, p := range t.pieces {
		maxLen = max(maxLen, len(p))
	}
	_ = binary.Write(&buf, binary.LittleEndian, int32(maxLen))
	for i, p := range t.pieces {
		_ = binary.Write(&buf, binary.LittleEndian, t.scores[i])
		_ = binary.Write(&buf, binary.LittleEndian, int32(len(p)))
		buf.WriteString(p)
	}
	return buf.Bytes()
}

// Vocab returns the number of pieces.
func (t *Tokenizer) Vocab() int { return len(t.pieces) }

// Encode returns the token ids of text, with BOS first and EOS last when
// asked. Characters without a piece fall back to their UTF-8 bytes.
func (t *Tokenizer) Encode(text string, bos, eos bool) []int {
	var ids []int
	if bos {
		ids = append(ids, BOS)
	}
	start := len(ids)
	if text != "" && t.DummyPrefix {
		if id, ok := t.index[" "]; ok {
			ids = append(ids, id)
		}
	}
	for i := 0; i < len(text); {
		_, size := utf8.DecodeRuneInString(text[i:])
		if id, ok := t.index[text[i:i+size]]; ok {
			ids = append(ids, id)
		} else {
			for j := i; j < i+size; j++ {
				ids = append(ids, ByteBase+int(text[j]))
			}
		}
		i += size
	}
	// Merge the best-scored adjacent pair until no pair is a piece.
	for {
		best, bestID, bestScore := -1, -1, float32(math.Inf(-1))
		for i := start; i+1 < len(ids); i++ {
			if id, ok := t.index[t.pieces[ids[i]]+t.pieces[ids[i+1]]]; ok && t.scores[id] > bestScore {
				best, bestID, bestScore = i, id, t.scores[id]
			}
		}
		if best < 0 {
			break
		}
		ids[best] = bestID
		ids = append(ids[:best+1], ids[best+2:]...)
	}
	if eos {
		ids = append(ids, EOS)
	}
	return ids
}

// Piece returns the text of token id following token prev: byte pieces
// "<0xXX>" become their byte, and the leading space of the first piece after
// BOS is dropped (llama2.c's convention). Out-of-range ids give "".
func (t *Tokenizer) Piece(prev, id int) string {
	if id < 0 || id >= len(t.pieces) {
		return ""
	}
	p := t.pieces[id]
	if prev == BOS && strings.HasPrefix(p, " ") {
		p = p[1:]
	}
	if len(p) == 6 && strings.HasPrefix(p, "<0x") && p[5] == '>' {
		if b, err := strconv.ParseUint(p[3:5], 16, 8); err == nil {
			return string([]byte{byte(b)})
		}
	}
	return p
}

// Decode returns the text of ids (specials dropped).
func (t *Tokenizer) Decode(ids []int) string {
	var sb strings.Builder
	prev := BOS
	for _, id := range ids {
		if id != BOS && id != EOS && id != Unk {
			sb.WriteString(t.Piece(prev, id))
		}
		prev = id
	}
	return sb.String()
}

// Open loads a llama2.c checkpoint and its tokenizer: the llama2.c
// tokenizer at tokPath, or, when tokPath is empty, the byte-level tokenizer
// of the project's own models. A GGUF file is refused: its tokenizer is in
// the file, read by package vocab, and LoadGGUF loads the model.
func Open(modelPath, tokPath string) (*Model, *Tokenizer, error) {
	if isGGUF(modelPath) {
		return nil, nil, fmt.Errorf("llama: %s is a GGUF file: load it with LoadGGUF and its tokenizer with package vocab", modelPath)
	}
	m, err := Load(modelPath)
	if err != nil {
		return nil, nil, err
	}
	if tokPath == "" {
		return m, ByteTokenizer(), nil
	}
	tok, err := LoadTokenizer(tokPath, m.Vocab)
	if err != nil {
		return nil, nil, err
	}
	return m, tok, nil
}
