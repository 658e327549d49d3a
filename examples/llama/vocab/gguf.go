package vocab

import (
	"fmt"

	"github.com/compresskv/compresskv/examples/llama/gguf"
)

// FromGGUF builds the vocabulary of a GGUF file from its tokenizer metadata (see
// FromMetadata). The Vocab keeps no reference to f, which may be closed afterwards.
func FromGGUF(f *gguf.File) (*Vocab, error) {
	if f == nil {
		return nil, fmt.Errorf("%w: nil file", ErrMissing)
	}
	return FromMetadata(fileMetadata{f})
}

// fileMetadata reads a GGUF file's values as the Go values the parser gives them.
type fileMetadata struct{ f *gguf.File }

func (m fileMetadata) Lookup(key string) (any, bool) {
	v, ok := m.f.Value(key)
	if !ok {
		return nil, false
	}
	return v.Any(), true
}
