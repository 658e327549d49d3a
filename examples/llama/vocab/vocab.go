// Package vocab tokenizes text the way llama.cpp does, from the tokenizer metadata of a GGUF
// file.
//
// Two tokenizer models are supported, as named by tokenizer.ggml.model:
//
//   - "llama": SentencePiece-style merges by score over characters, with spaces escaped as
//     U+2581, a leading space (tokenizer.ggml.add_space_prefix) and byte fallback to <0xXX>
//     tokens. Llama 2, Mistral 7B, TinyLlama and other SentencePiece models use it.
//   - "gpt2": byte-level BPE with tokenizer.ggml.merges, after the pre-tokenizer named by
//     tokenizer.ggml.pre cuts the text into words. The accepted names are listed by
//     PreTokenizers; Llama 3 ("llama-bpe"), Qwen2 and Qwen3 ("qwen2") and SmolLM2 ("smollm")
//     are among them.
//
// Special tokens (control, user-defined, unknown) are matched before tokenization as
// llama.cpp's tokenizer_st_partition does; control tokens only when asked to (parseSpecial),
// user-defined ones always. BOS, EOS, EOT and the end-of-generation set come from the metadata
// and from llama.cpp's rules for recognising such tokens by their text.
//
// The definitions followed are llama.cpp's src/llama-vocab.cpp and src/unicode.cpp. Its
// tokenizer tests (test-tokenizer-0) and output recorded from llama.cpp itself for every
// supported pre-tokenizer are the package's tests; docs/DESIGN.md lists the few places where
// the package deliberately differs (it returns errors where llama.cpp aborts).
//
// A Vocab is immutable once built and safe for concurrent use.
package vocab

import (
	"errors"
	"fmt"
)

// Errors. Every error the package returns wraps one of these; test with errors.Is.
var (
	// ErrMissing: a metadata key the tokenizer needs is absent.
	ErrMissing = errors.New("vocab: missing tokenizer metadata")
	// ErrMalformed: a metadata value has the wrong type or an inconsistent size.
	ErrMalformed = errors.New("vocab: malformed tokenizer metadata")
	// ErrUnsupported: the tokenizer model or pre-tokenizer is not one this package implements.
	ErrUnsupported = errors.New("vocab: unsupported tokenizer")
	// ErrTokenID: a token id outside [0, Size()).
	ErrTokenID = errors.New("vocab: token id out of range")
	// ErrText: the text cannot be tokenized with this vocabulary (llama.cpp aborts on it).
	ErrText = errors.New("vocab: text cannot be tokenized")
)

// Attr is a token's attribute bits, with llama.cpp's values (llama_token_attr).
type Attr uint32

// Token attributes.
const (
	AttrUndefined   Attr = 0
	AttrUnknown     Attr = 1 << 0
	AttrUnused      Attr = 1 << 1
	AttrNormal      Attr = 1 << 2
	AttrControl     Attr = 1 << 3
	AttrUserDefined Attr = 1 << 4
	AttrByte        Attr = 1 << 5
	AttrNormalized  Attr = 1 << 6
	AttrLStrip      Attr = 1 << 7
	AttrRStrip      Attr = 1 << 8
	AttrSingleWord  Attr = 1 << 9
)

// Tokenizer models, as tokenizer.ggml.model names them.
const (
	ModelSPM = "llama" // SentencePiece style
	ModelBPE = "gpt2"  // byte-level BPE
)

// Vocab is a tokenizer built from GGUF metadata by FromMetadata or FromGGUF.
type Vocab struct {
	model string // ModelSPM or ModelBPE
	pre   string // tokenizer.ggml.pre as given

	texts  []string  // token texts (an empty text becomes "[EMPTY_<id>]", as in llama.cpp)
	scores []float32 // SentencePiece scores, 0 when absent
	attrs  []Attr
	ids    map[string]int32 // text -> id
	pieces []string         // llama_token_to_piece(id, special=true)

	bos, eos, eot, eom, unk, pad int32 // -1 when absent
	eog                          map[int32]bool

	addBOS, addEOS, addSpacePrefix, cleanSpaces bool
	specials                                    []int32 // control, user-defined and unknown tokens, longest text first

	bpe      *bpeModel // byte-level BPE state, nil for SentencePiece
	spmWords bool      // SentencePiece words merge independently (see spmPiece)
}

// Size is the number of tokens.
func (v *Vocab) Size() int { return len(v.texts) }

// Model is the tokenizer model: ModelSPM or ModelBPE.
func (v *Vocab) Model() string { return v.model }

// Pre is the pre-tokenizer name from tokenizer.ggml.pre ("" when absent).
func (v *Vocab) Pre() string { return v.pre }

// BOS is the beginning-of-sequence token, or -1.
func (v *Vocab) BOS() int { return int(v.bos) }

// EOS is the end-of-sequence token, or -1.
func (v *Vocab) EOS() int { return int(v.eos) }

// EOT is the end-of-turn token, or -1. When the metadata names none, it is the first of
// llama.cpp's end-of-turn texts ("<|eot_id|>", "<|im_end|>", ...) that the vocabulary holds.
func (v *Vocab) EOT() int { return int(v.eot) }

// EOM is the end-of-message token ("<|eom_id|>" in Llama 3.1), or -1.
func (v *Vocab) EOM() int { return int(v.eom) }

// UNK is the unknown token, or -1.
func (v *Vocab) UNK() int { return int(v.unk) }

// PAD is the padding token, or -1.
func (v *Vocab) PAD() int { return int(v.pad) }

// AddBOS reports whether Encode with addSpecial prepends BOS (tokenizer.ggml.add_bos_token,
// or llama.cpp's default for the tokenizer).
func (v *Vocab) AddBOS() bool { return v.addBOS }

// AddEOS reports whether Encode with addSpecial appends EOS.
func (v *Vocab) AddEOS() bool { return v.addEOS }

// Text is the token's text as stored in the vocabulary ("" for an id out of range).
func (v *Vocab) Text(id int) string {
	if id < 0 || id >= len(v.texts) {
		return ""
	}
	return v.texts[id]
}

// ID returns the token whose text is exactly text.
func (v *Vocab) ID(text string) (int, bool) {
	id, ok := v.ids[text]
	return int(id), ok
}

// Attr returns the token's attributes (0 for an id out of range).
func (v *Vocab) Attr(id int) Attr {
	if id < 0 || id >= len(v.attrs) {
		return 0
	}
	return v.attrs[id]
}

// IsControl reports whether the token is a control token (llama_vocab_is_control).
func (v *Vocab) IsControl(id int) bool { return v.Attr(id)&AttrControl != 0 }

// IsEOG reports whether the token ends generation (llama_vocab_is_eog): EOS, EOT, EOM and the
// other end-of-generation tokens llama.cpp recognises.
func (v *Vocab) IsEOG(id int) bool { return v.eog[int32(id)] }

// EOG returns the end-of-generation tokens in increasing order.
func (v *Vocab) EOG() []int {
	out := make([]int, 0, len(v.eog))
	for id := range v.texts {
		if v.eog[int32(id)] {
			out = append(out, id)
		}
	}
	return out
}

func (v *Vocab) checkID(id int) error {
	if id < 0 || id >= len(v.texts) {
		return fmt.Errorf("%w: %d not in [0, %d)", ErrTokenID, id, len(v.texts))
	}
	return nil
}
