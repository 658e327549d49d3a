// Package finite is the library's one scan for values that cannot be used:
// NaN, infinities, and float32 values too large for a 16-bit storage type.
package finite

import "math"

// Limits on the magnitude bits (sign cleared) of a float32: a value whose
// bits reach the limit is not finite, or becomes infinite when rounded to
// nearest-even into the storage type.
const (
	Float32Limit  uint32 = 0x7F800000 // +Inf
	Float16Limit  uint32 = 0x477FF000 // 65520: rounds to +Inf in float16 (max 65504)
	BFloat16Limit uint32 = 0x7F7F8000 // rounds to +Inf in bfloat16 (max 0x7F7F)
)

// First returns the index of the first NaN or infinite value of x, or -1.
func First(x []float32) int { return FirstAtLimit(x, Float32Limit) }

// FirstAtLimit returns the index of the first value of x whose magnitude
// bits are at or above limit (one of the limits above; NaN and infinities
// always are), or -1.
func FirstAtLimit(x []float32, limit uint32) int {
	for i, v := range x {
		if math.Float32bits(v)&0x7FFFFFFF >= limit {
			return i
		}
	}
	return -1
}

// First64 returns the index of the first NaN or infinite value of x, or -1.
func First64(x []float64) int {
	for i, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return i
		}
	}
	return -1
}

// Is reports whether v is neither NaN nor infinite.
func Is(v float32) bool { return math.Float32bits(v)&0x7FFFFFFF < Float32Limit }
