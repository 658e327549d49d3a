package quant

import (
	"errors"
	"fmt"
)

// Type is a ggml tensor type, numbered as ggml numbers them (the ids GGUF
// files store). Every type ggml defines is named and sized, so that a file
// holding any of them can be read; Supported says which ones this package
// can convert.
type Type uint32

// The ggml types. The ids are fixed by the GGUF format; gaps are ids that
// ggml has retired.
const (
	F32     Type = 0
	F16     Type = 1
	Q4_0    Type = 2
	Q4_1    Type = 3
	Q5_0    Type = 6
	Q5_1    Type = 7
	Q8_0    Type = 8
	Q8_1    Type = 9
	Q2_K    Type = 10
	Q3_K    Type = 11
	Q4_K    Type = 12
	Q5_K    Type = 13
	Q6_K    Type = 14
	Q8_K    Type = 15
	IQ2_XXS Type = 16
	IQ2_XS  Type = 17
	IQ3_XXS Type = 18
	IQ1_S   Type = 19
	IQ4_NL  Type = 20
	IQ3_S   Type = 21
	IQ2_S   Type = 22
	IQ4_XS  Type = 23
	I8      Type = 24
	I16     Type = 25
	I32     Type = 26
	I64     Type = 27
	F64     Type = 28
	IQ1_M   Type = 29
	BF16    Type = 30
	TQ1_0   Type = 34
	TQ2_0   Type = 35
	MXFP4   Type = 39
	NVFP4   Type = 40
	Q1_0    Type = 41
)

// QK_K is the number of values in a block of the K-quants (Q4_K, Q6_K, Q8_K).
const QK_K = 256

var (
	// ErrUnsupported is wrapped by the errors for a type this package does
	// not convert (a known ggml type without an implementation here, or an
	// id ggml does not define).
	ErrUnsupported = errors.New("quant: unsupported type")
	// ErrSize is wrapped by the errors for buffers whose lengths do not fit
	// the type (not a whole number of blocks, or source and destination
	// lengths that disagree).
	ErrSize = errors.New("quant: size mismatch")
)

type typeInfo struct {
	name       string
	block      int // values per block
	blockBytes int // bytes per block
	supported  bool
}

// types is indexed by Type; a zero block marks an id ggml does not define.
var types = [...]typeInfo{
	F32:     {"F32", 1, 4, true},
	F16:     {"F16", 1, 2, true},
	Q4_0:    {"Q4_0", 32, 18, true},
	Q4_1:    {"Q4_1", 32, 20, true},
	Q5_0:    {"Q5_0", 32, 22, true},
	Q5_1:    {"Q5_1", 32, 24, true},
	Q8_0:    {"Q8_0", 32, 34, true},
	Q8_1:    {"Q8_1", 32, 36, true},
	Q2_K:    {"Q2_K", QK_K, 84, false},
	Q3_K:    {"Q3_K", QK_K, 110, false},
	Q4_K:    {"Q4_K", QK_K, 144, true},
	Q5_K:    {"Q5_K", QK_K, 176, false},
	Q6_K:    {"Q6_K", QK_K, 210, true},
	Q8_K:    {"Q8_K", QK_K, 292, true},
	IQ2_XXS: {"IQ2_XXS", QK_K, 66, false},
	IQ2_XS:  {"IQ2_XS", QK_K, 74, false},
	IQ3_XXS: {"IQ3_XXS", QK_K, 98, false},
	IQ1_S:   {"IQ1_S", QK_K, 50, false},
	IQ4_NL:  {"IQ4_NL", 32, 18, false},
	IQ3_S:   {"IQ3_S", QK_K, 110, false},
	IQ2_S:   {"IQ2_S", QK_K, 82, false},
	IQ4_XS:  {"IQ4_XS", QK_K, 136, false},
	I8:      {"I8", 1, 1, false},
	I16:     {"I16", 1, 2, false},
	I32:     {"I32", 1, 4, false},
	I64:     {"I64", 1, 8, false},
	F64:     {"F64", 1, 8, false},
	IQ1_M:   {"IQ1_M", QK_K, 56, false},
	BF16:    {"BF16", 1, 2, true},
	TQ1_0:   {"TQ1_0", QK_K, 54, false},
	TQ2_0:   {"TQ2_0", QK_K, 66, false},
	MXFP4:   {"MXFP4", 32, 17, false},
	NVFP4:   {"NVFP4", 64, 36, false},
	Q1_0:    {"Q1_0", 128, 18, false},
}

func (t Type) info() typeInfo {
	if int(t) < len(types) {
		return types[t]
	}
	return typeInfo{}
}

// String returns ggml's name of the type in upper case ("Q4_K"), or
// "Type(N)" for an id ggml does not define.
func (t Type) String() string {
	if n := t.info().name; n != "" {
		return n
	}
	return fmt.Sprintf("Type(%d)", uint32(t))
}

// Known reports whether ggml defines the type (whether its block layout,
// and so the size of a tensor of it, is known).
func (t Type) Known() bool { return t.info().block != 0 }

// Supported reports whether this package converts the type: F32, F16,
// BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q4_K, Q6_K and Q8_K.
func (t Type) Supported() bool { return t.info().supported }

// BlockSize returns the number of values in one block of the type (1 for
// the float types, 32 for Q4_0 and Q8_0, 256 for the K-quants), or 0 for an
// id ggml does not define.
func (t Type) BlockSize() int { return t.info().block }

// BlockBytes returns the size in bytes of one block of the type, or 0 for an
// id ggml does not define.
func (t Type) BlockBytes() int { return t.info().blockBytes }

// RowBytes returns the size in bytes of n values of the type. It fails,
// wrapping ErrSize, when n is negative or not a whole number of blocks, and
// wrapping ErrUnsupported when ggml does not define the type.
func (t Type) RowBytes(n int) (int, error) {
	in := t.info()
	switch {
	case in.block == 0:
		return 0, fmt.Errorf("%w: %v", ErrUnsupported, t)
	case n < 0 || n%in.block != 0:
		return 0, fmt.Errorf("%w: %d values of %v are not a whole number of %d-value blocks", ErrSize, n, t, in.block)
	}
	blocks := n / in.block
	if blocks > maxInt/in.blockBytes {
		return 0, fmt.Errorf("%w: %d values of %v overflow int", ErrSize, n, t)
	}
	return blocks * in.blockBytes, nil
}

const maxInt = int(^uint(0) >> 1)

// VecDotType returns the type into which ggml's CPU backend converts the
// activations before it multiplies them with a weight of type t (the
// vec_dot_type of its type traits): F32 for F32, F16 for F16, BF16 for
// BF16, Q8_0 for Q4_0, Q5_0 and Q8_0, Q8_1 for Q4_1 and Q5_1, Q8_K for
// Q4_K and Q6_K. For a type without a product here it returns t itself.
func (t Type) VecDotType() Type {
	switch t {
	case Q4_0, Q5_0, Q8_0:
		return Q8_0
	case Q4_1, Q5_1:
		return Q8_1
	case Q4_K, Q6_K:
		return Q8_K
	}
	return t
}
