// Package backend defines the compute that cache policies need, behind one
// interface with interchangeable implementations: backend/cpu, and
// backend/cuda for caches in GPU memory.
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
	"strings"
	"sync"

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

// Resident is implemented by caches whose rows live with a particular
// backend, such as a cache in GPU memory: the policies compute on the backend
// the cache names instead of the CPU. The device's package implements it, so
// a program that never creates such a cache links none of that package.
type Resident interface {
	kvcache.KVCache
	// Backend returns a backend that computes on the cache where it lives,
	// and a reason for the log ("cuda: the cache lives on NVIDIA H200").
	// If the backend implements io.Closer, the caller closes it when done.
	Backend() (Backend, string)
}

// Selection describes the token selection of one layer that a
// LayerSelector runs in one call.
type Selection struct {
	// Window is W: the last W queries score the prefix [0, L-W), and the
	// last W rows are always kept.
	Window int
	// Heads are the query heads that score, in order.
	Heads []int
	// PerRow is the number of consecutive heads of Heads averaged into one
	// score row: len(Heads) for one row that every KV head shares
	// (CompressKV's SR heads), or qHeads/KVHeads with Heads = every query
	// head for one row per KV head (SnapKV).
	PerRow int
	// MeanFirst averages each row's heads before pooling (SnapKV at KV-head
	// granularity); otherwise each head is pooled and then averaged
	// (CompressKV). The two differ with max pooling.
	MeanFirst bool
	// Kernel is the odd pooling kernel (1: no pooling); Pooling its kind.
	Kernel  int
	Pooling Pooling
	// Keep is the number of prefix positions each row keeps (B - W).
	Keep int
}

// LayerSelector is implemented by backends that score, pool, average and
// select one layer in a single call, with the scores never leaving the
// backend's memory (the GPU's). It returns the rows each KV head keeps,
// ascending, the window included: the same set as scoring with
// WindowScores, Pool and TopK in the order sel describes. Policies use it
// when their backend offers it.
type LayerSelector interface {
	SelectLayer(c kvcache.KVCache, layer int, q []float32, qHeads int, sel Selection) ([][]int, error)
}

var (
	registryMu sync.Mutex
	registry   = map[string]func() error{}
)

// Register records a backend package under name (as "cuda"), with a probe
// that says whether it can run on this machine (nil when it can). Backend
// packages call it from init, so that linking them in is what makes them
// known: the policies never import them. Names are case-insensitive.
//
// As database/sql.Register does, it panics on a programming error found at
// start rather than later: an empty name, a nil probe, or a name already
// registered (two packages claiming one name, or one registered twice).
func Register(name string, available func() error) {
	if name == "" {
		panic("backend: Register with an empty name")
	}
	if available == nil {
		panic("backend: Register of " + name + " with a nil probe")
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	key := strings.ToLower(name)
	if _, dup := registry[key]; dup {
		panic("backend: Register called twice for " + name)
	}
	registry[key] = available
}

// Registered returns the probe of the backend package registered under
// name, and whether one is.
func Registered(name string) (available func() error, ok bool) {
	registryMu.Lock()
	defer registryMu.Unlock()
	available, ok = registry[strings.ToLower(name)]
	return available, ok
}
