// Package cpu implements backend.Backend in portable Go.
//
// It reads a cache in place through kvcache.HostReader and accumulates in
// float32. Large calls are split into units of work (KV head x block of
// rows) that run on up to GOMAXPROCS goroutines; the split depends only on
// the shapes, never on the number of workers, so a parallel call returns
// exactly the same bits as a serial one.
//
// Decode attention and window scores have several kernels: one query row
// a pass over a block of rows decoded once (float16 and bfloat16 into a
// small scratch), or four query rows a pass (the heads of a group, the
// window queries of a head) reading and converting each row in registers
// once for the four, at each level of assembly. Which one runs is measured
// at first use per shape class on the calls' own data and kept for the
// process (plan.go; Backend.Plan says what was chosen and why). All the
// kernels of a class return the same bits, so the choice never changes a
// result.
//
// The inner loops are small functions over flat slices (dots, accRows,
// expShift, decodeF16, ...). On amd64 they run in assembly (AVX-512 or
// AVX2 with FMA and F16C, the highest level found once at start with
// cpuid; the environment variable COMPRESSKV_CPU=avx2 or go lowers it); the
// portable Go versions are the reference the assembly is tested against
// and the fallback on other processors, other architectures and under the
// noasm build tag.
package cpu

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/internal/finite"
	"github.com/compresskv/compresskv/internal/par"
	"github.com/compresskv/compresskv/kvcache"
)

const (
	// blockRows is the number of rows decoded at a time into scratch: 32
	// rows of keys and values at d = 128 (32 KiB in float32) stay in the
	// first-level cache while every query head of the group reads them.
	blockRows = 32
	// chunkRows is the number of cache rows in one unit of parallel work.
	// It is fixed (not derived from the worker count) so that results do not
	// depend on the number of workers.
	chunkRows = 1024
	// defaultMinParallel is the work (multiply-adds) below which a call runs
	// on the calling goroutine.
	defaultMinParallel = 1 << 20
	// defaultStoreBytes bounds the exponentials WindowScores keeps between
	// its two passes instead of computing them twice.
	defaultStoreBytes = 64 << 20
)

// Backend is the portable CPU implementation of backend.Backend. It holds no
// per-call state and is safe for concurrent use.
type Backend struct {
	workers     int    // goroutines per call; <= 0 means GOMAXPROCS at call time
	minParallel int64  // work below which a call runs inline
	storeBytes  int    // WindowScores: largest store of exponentials kept between passes
	kernel      string // WithKernel: the kernel to run where it is a candidate
}

var _ backend.Backend = (*Backend)(nil)

// New returns a backend that uses up to GOMAXPROCS goroutines per call.
func New() *Backend { return NewWithWorkers(0) }

// NewWithWorkers returns a backend that uses up to n goroutines per call;
// n <= 0 means GOMAXPROCS at the time of each call, n == 1 runs every call on
// the calling goroutine. Results are identical for every n.
func NewWithWorkers(n int) *Backend {
	return &Backend{workers: n, minParallel: defaultMinParallel, storeBytes: defaultStoreBytes}
}

// Name implements backend.Backend: it returns "cpu".
func (b *Backend) Name() string { return "cpu" }

// Compact implements backend.Backend by delegating to the cache's Compact,
// which validates keep.
func (b *Backend) Compact(c kvcache.KVCache, layer int, keep [][]int) error {
	if c == nil {
		return fmt.Errorf("cpu: Compact: nil cache: %w", kvcache.ErrShape)
	}
	if err := checkLayer(c, layer); err != nil {
		return fmt.Errorf("cpu: Compact: %w", err)
	}
	if err := c.Compact(layer, keep); err != nil {
		return fmt.Errorf("cpu: Compact: %w", err)
	}
	return nil
}

// hostCache returns c as a HostReader after checking layer.
func hostCache(op string, c kvcache.KVCache, layer int) (kvcache.HostReader, error) {
	if c == nil {
		return nil, fmt.Errorf("cpu: %s: nil cache: %w", op, kvcache.ErrShape)
	}
	hr, ok := c.(kvcache.HostReader)
	if !ok {
		return nil, fmt.Errorf("cpu: %s: cache of type %T does not keep its rows in host memory (not a kvcache.HostReader)", op, c)
	}
	if err := c.Shape().Validate(); err != nil {
		return nil, fmt.Errorf("cpu: %s: %w", op, err)
	}
	if err := checkLayer(c, layer); err != nil {
		return nil, fmt.Errorf("cpu: %s: %w", op, err)
	}
	if t := c.DType(); !t.Valid() {
		return nil, fmt.Errorf("cpu: %s: unsupported storage type %v", op, t)
	}
	return hr, nil
}

func checkLayer(c kvcache.KVCache, layer int) error {
	if n := c.Shape().Layers; layer < 0 || layer >= n {
		return fmt.Errorf("layer %d out of range [0, %d): %w", layer, n, kvcache.ErrShape)
	}
	return nil
}

// headRows returns the keys and values of one KV head, checked against the
// cache's shape so that a faulty HostReader cannot make a kernel panic.
func headRows(op string, c kvcache.HostReader, layer, g int) (k, v kvcache.Rows, err error) {
	k, v = c.Rows(layer, g)
	n, d, t := c.Len(layer, g), c.Shape().HeadDim, c.DType()
	for _, r := range [2]kvcache.Rows{k, v} {
		size := len(r.F32)
		if t != kvcache.Float32 {
			size = len(r.U16)
		}
		if r.N != n || r.D != d || r.DType != t || size < n*d {
			return k, v, fmt.Errorf("cpu: %s: layer %d head %d: cache returned %d rows of %d %v values in %d, want %d rows of %d %v",
				op, layer, g, r.N, r.D, r.DType, size, n, d, t)
		}
	}
	return k, v, nil
}

// checkFinite returns an error naming the first non-finite value of q.
func checkFinite(op string, q []float32, qHeads, d int) error {
	if i := finite.First(q); i >= 0 {
		row := i / (qHeads * d)
		h := (i / d) % qHeads
		return fmt.Errorf("cpu: %s: query row %d head %d value %d is %v: %w", op, row, h, i%d, q[i], kvcache.ErrNonFinite)
	}
	return nil
}

// rowsBlock returns rows [j0, j1) of r as float32, decoding 16-bit storage
// into buf (at least (j1-j0)*r.D long); float32 storage is returned in place.
func rowsBlock(r kvcache.Rows, j0, j1 int, buf []float32) []float32 {
	d := r.D
	switch r.DType {
	case kvcache.Float16:
		decodeF16(buf, r.U16[j0*d:j1*d])
		return buf[:(j1-j0)*d]
	case kvcache.BFloat16:
		decodeBF16(buf, r.U16[j0*d:j1*d])
		return buf[:(j1-j0)*d]
	}
	return r.F32[j0*d : j1*d]
}

// chunks returns the number of units of chunkRows rows that cover n rows
// (at least one, so that an empty head still gets its unit).
func chunks(n int) int {
	if n <= chunkRows {
		return 1
	}
	return (n + chunkRows - 1) / chunkRows
}

// scratch is the per-goroutine working memory of the kernels.
type scratch struct {
	keys, vals []float32 // decoded block of rows
	logits     []float32 // logits over a block: one head's, or four heads' (4 a row)
	chunk      []float32 // WindowScores without store: one chunk's logits
}

func (s *scratch) grow(d int) {
	if n := blockRows * d; cap(s.keys) < n {
		s.keys = make([]float32, n)
		s.vals = make([]float32, n)
	}
	if cap(s.logits) < 4*blockRows {
		s.logits = make([]float32, 4*blockRows)
	}
	s.keys, s.vals, s.logits = s.keys[:cap(s.keys)], s.vals[:cap(s.vals)], s.logits[:4*blockRows]
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// job is one call's work, split into units that may run concurrently.
type job interface {
	unit(u int, s *scratch)
}

// run executes units [0, n) of j, inline when the work (in multiply-adds) is
// small or the backend has one worker, else on up to workers goroutines.
func (b *Backend) run(j job, n int, work int64, d int) {
	workers := b.workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, n)
	if workers <= 1 || work < b.minParallel {
		s := scratchPool.Get().(*scratch)
		s.grow(d)
		for u := 0; u < n; u++ {
			j.unit(u, s)
		}
		scratchPool.Put(s)
		return
	}
	par.Pull(n, workers, func(next func() (int, bool)) {
		s := scratchPool.Get().(*scratch)
		s.grow(d)
		for u, ok := next(); ok; u, ok = next() {
			j.unit(u, s)
		}
		scratchPool.Put(s)
	})
}

// growF32 returns s resliced to n values, reallocated if short.
func growF32(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

func growInt(s []int, n int) []int {
	if cap(s) < n {
		return make([]int, n)
	}
	return s[:n]
}
