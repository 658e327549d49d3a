// Package quant holds ggml's weight types: their block layouts, their
// conversion to and from float32, the quantization of activations, and the
// matrix-vector products ggml's CPU backend computes with them.
//
// Every type ggml defines is named and sized (Type.BlockSize,
// Type.BlockBytes), so that a file holding any of them can be read; the
// conversions cover F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1,
// Q4_K, Q6_K and Q8_K: the types of the common Q8_0 and Q4_K_M downloads,
// including the Q5_0 and Q8_0 that Q4_K_M files hold where a row is not a
// whole number of 256-value blocks (Qwen2.5-0.5B's 896, SmolLM2's 576).
// Other types give an error wrapping ErrUnsupported.
//
// Matrix.MulMat multiplies with assembly kernels where the processor has
// them (AVX2 with FMA and F16C, or AVX-512 with VNNI; KernelLevel says
// which), written by internal/kgen: tiles of weight rows by activation rows,
// so that each weight block loaded serves several activation rows of a
// prompt, and a single activation row (decoding) streams the weights once.
// The activations are converted as ggml's x86 code converts them, the
// products within a block are integers summed exactly, and each output is
// accumulated in eight float32 lanes, one multiply-add per block (two for
// the K-quants), as ggml's AVX2 code does; see dot.go for how that compares
// with the portable Go products (the noasm build tag, and other
// architectures), which are the reference.
package quant
