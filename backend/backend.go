// Package backend defines the compute that cache policies need, behind one
// interface with interchangeable implementations (backend/cpu today).
//
// Conventions shared by every implementation:
//   - Query heads: a layer has H query heads and G KV heads; query head h reads
//     KV head h/(H/G) (contiguous groups, as in Llama and Mistral).
//   - Queries are token-major: [n][H][HeadDim].
//   - Logits are scaled by 1/sqrt(HeadDim); softmax is computed in float32,
//     stabilised by the row maximum.
//   - Every implementation returns the same kept positions for the same input:
//     top-k breaks ties toward the lower position.
package backend

import (
	"errors"
	"fmt"

	"github.com/compresskv/compresskv/kvcache"
)

// Pooling is the kind of 1-D pooling applied to scores along positions.
type Pooling uint8

const (
	// AvgPool averages over the kernel, counting the zero padding at the
	// edges (divides by the kernel size everywhere, as PyTorch's avg_pool1d).
	AvgPool Pooling = iota
	// MaxPool takes the maximum over the kernel; padding never wins.
	MaxPool
)

// String returns "avg" or "max".
func (p Pooling) String() string {
	switch p {
	case AvgPool:
		return "avg"
	case MaxPool:
		return "max"
	}
	return fmt.Sprintf("Pooling(%d)", uint8(p))
}

// ErrNaN is wrapped by errors that report NaN scores.
var ErrNaN = errors.New("NaN score")

// Backend is the compute a policy runs on. Implementations are safe for
// concurrent use on distinct layers.
type Backend interface {
	// Name identifies the implementation ("cpu", "cuda").
	Name() string

	// WindowScores computes, for each query head heads[j], the attention of
	// the last w queries of the prompt over all L rows of its KV head, and
	// sums it over the w queries into out[j] (length L, overwritten).
	//
	// q holds those w queries, [w][qHeads][HeadDim]. The last w rows of the
	// head are the window's own keys: window query i may see rows
	// j <= L-w+i (causal mask inside the window); the softmax runs over the
	// L keys in float32. Callers keep the prefix [0, L-w) of the sums.
	// Cost: O(w * L * HeadDim) per head.
	WindowScores(c kvcache.KVCache, layer int, q []float32, w, qHeads int, heads []int, out [][]float32) error

	// Pool writes to dst (len(dst) == len(src)) the 1-D pooling of src with an
	// odd kernel, stride 1 and padding kernel/2. NaN input is an error.
	Pool(dst, src []float32, kernel int, kind Pooling) error

	// TopK appends to dst[:0] the indices of the k largest scores in
	// ascending order, ties going to the lower index; k is clamped to
	// len(scores). NaN scores are an error. Cost: O(len(scores)) expected.
	TopK(dst []int, scores []float32, k int) ([]int, error)

	// Attend computes decode attention of one token: for each query head h of
	// q ([qHeads][HeadDim]), softmax(q_h . K^T / sqrt(d)) . V over all rows
	// of its KV head, into out ([qHeads][HeadDim]). A KV head without rows,
	// non-finite queries or a non-finite result are errors.
	Attend(c kvcache.KVCache, layer int, q []float32, qHeads int, out []float32) error

	// AttentionWeights computes the attention row of each query head of one
	// token (softmax over all rows of its KV head) into out[h], grown to the
	// head's length; it returns out.
	AttentionWeights(c kvcache.KVCache, layer int, q []float32, qHeads int, out [][]float32) ([][]float32, error)

	// Compact keeps rows keep[g] of each KV head g of layer (see
	// kvcache.KVCache.Compact).
	Compact(c kvcache.KVCache, layer int, keep [][]int) error
}

// CheckQueries returns an error unless q holds n token-major rows of qHeads
// query heads for cache shape s, with qHeads a positive multiple of KVHeads.
func CheckQueries(s kvcache.Shape, q []float32, n, qHeads int) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if qHeads <= 0 || qHeads%s.KVHeads != 0 {
		return fmt.Errorf("backend: %d query heads is not a positive multiple of %d KV heads: %w", qHeads, s.KVHeads, kvcache.ErrShape)
	}
	if n < 0 || len(q) != n*qHeads*s.HeadDim {
		return fmt.Errorf("backend: %d query values, want %d (%d rows x %d heads x %d): %w",
			len(q), n*qHeads*s.HeadDim, n, qHeads, s.HeadDim, kvcache.ErrShape)
	}
	return nil
}
