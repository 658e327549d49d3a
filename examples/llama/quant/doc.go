// Package quant holds ggml's weight types: their block layouts, their
// conversion to and from float32, the quantization of activations, and the
// matrix-vector products ggml's CPU backend computes with them.
//
// Every type ggml defines is named and sized (Type.BlockSize,
// Type.BlockBytes), so that a file holding any of them can be read; the
// conversions cover F32, F16, BF16, Q4_0, Q8_0, Q4_K, Q6_K and Q8_K, the
// types of the common Q8_0 and Q4_K_M downloads. Other types give an error
// wrapping ErrUnsupported.
package quant
