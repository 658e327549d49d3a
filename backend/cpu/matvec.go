package cpu

import (
	"fmt"

	"github.com/compresskv/compresskv/kvcache"
)

// MatVec writes to dst[j] the inner product of x with row j of rows (rows
// of len(x) values, len(dst) of them): a matrix-vector product, on the same
// kernels as the backend's window scores (assembly for AVX-512 when len(x)
// is a multiple of 16, AVX2 with FMA when it is a multiple of 8, portable Go
// otherwise). It runs on the calling goroutine. It is for model runners
// that put a model beside the backend (examples/llama); the sums are the
// kernels' (float32, in their order), not a plain loop's.
func MatVec(dst, x, rows []float32) error {
	if len(rows) != len(dst)*len(x) {
		return fmt.Errorf("cpu: MatVec: %d row values for %d rows of %d: %w", len(rows), len(dst), len(x), kvcache.ErrShape)
	}
	dots(dst, x, rows, 1)
	return nil
}
