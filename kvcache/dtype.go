package kvcache

import (
	"fmt"
	"math"
)

// DType is the storage type of the rows of a cache.
type DType uint8

const (
	// Float32 stores rows as IEEE-754 binary32: 4 bytes a value, exact.
	Float32 DType = iota
	// Float16 stores rows as IEEE-754 binary16: 2 bytes a value, converted
	// with round-to-nearest-even; values beyond ±65504 become ±Inf.
	Float16
	// BFloat16 stores rows as bfloat16 (the top half of a binary32): 2 bytes a
	// value, converted with round-to-nearest-even.
	BFloat16
)

// Size returns the number of bytes one value of the type occupies.
func (t DType) Size() int {
	if t == Float32 {
		return 4
	}
	return 2
}

// String returns the conventional name of the type ("float32", "float16", "bfloat16").
func (t DType) String() string {
	switch t {
	case Float32:
		return "float32"
	case Float16:
		return "float16"
	case BFloat16:
		return "bfloat16"
	}
	return fmt.Sprintf("DType(%d)", uint8(t))
}

// Valid reports whether t is one of the defined storage types.
func (t DType) Valid() bool { return t <= BFloat16 }

// ParseDType returns the type named s ("float32", "float16", "bfloat16", or
// the short forms "f32", "f16", "bf16").
func ParseDType(s string) (DType, error) {
	switch s {
	case "float32", "f32", "fp32":
		return Float32, nil
	case "float16", "f16", "fp16", "half":
		return Float16, nil
	case "bfloat16", "bf16":
		return BFloat16, nil
	}
	return 0, fmt.Errorf("kvcache: unknown storage type %q (want float32, float16 or bfloat16): %w", s, ErrShape)
}

// F32ToF16 converts f to IEEE-754 binary16 bits with round-to-nearest-even.
// Overflow gives ±Inf, underflow gives subnormals or ±0, NaN stays NaN (quiet).
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff { // Inf or NaN
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f { // overflow
		return sign | 0x7c00
	}
	if e <= 0 { // subnormal or zero in half
		if e < -10 {
			return sign
		}
		m := mant | 0x800000 // implicit bit
		shift := uint32(14 - e)
		half := uint32(1) << (shift - 1)
		r := m >> shift
		rem := m & ((uint32(1) << shift) - 1)
		if rem > half || (rem == half && r&1 == 1) {
			r++
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++ // may carry into the exponent, up to Inf: still correct
	}
	return sign | uint16(r)
}

// F16ToF32 converts IEEE-754 binary16 bits to float32 exactly.
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0:
		if mant == 0 {
			return math.Float32frombits(sign)
		}
		// subnormal: value = mant * 2^-24
		v := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// F32ToBF16 converts f to bfloat16 bits with round-to-nearest-even; NaN stays
// NaN (quiet).
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// BF16ToF32 converts bfloat16 bits to float32 exactly.
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// encode converts src into 16-bit storage of type t.
func encode(t DType, dst []uint16, src []float32) {
	if t == Float16 {
		for i, v := range src {
			dst[i] = F32ToF16(v)
		}
		return
	}
	for i, v := range src {
		dst[i] = F32ToBF16(v)
	}
}

// Decode converts 16-bit values of type t to float32 into dst (len(dst) >=
// len(src)). It panics if t is Float32.
func Decode(t DType, dst []float32, src []uint16) {
	switch t {
	case Float16:
		for i, v := range src {
			dst[i] = F16ToF32(v)
		}
	case BFloat16:
		for i, v := range src {
			dst[i] = BF16ToF32(v)
		}
	default:
		panic("kvcache: Decode of " + t.String())
	}
}
