package cpu

import (
	"fmt"
	"sync"
	"unsafe"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/kvcache"
)

// directKernel is the largest kernel pooled by direct summation; larger
// kernels use a sliding window, O(len(src)) whatever the kernel.
const directKernel = 15

// Pool implements backend.Backend. Average pooling sums each window in
// float64 (the zero padding counts, so every window is divided by kernel);
// max pooling ignores the padding. dst may be src itself; other overlaps of
// dst and src go through a copy. NaN in src is an error wrapping
// backend.ErrNaN. Cost: O(len(src) * min(kernel, 15)), split over the
// backend's workers in chunks of 4,096 outputs when it is long.
func (b *Backend) Pool(dst, src []float32, kernel int, kind backend.Pooling) error {
	if kernel < 1 || kernel%2 == 0 {
		return fmt.Errorf("cpu: Pool: kernel %d, want an odd size >= 1", kernel)
	}
	if kind != backend.AvgPool && kind != backend.MaxPool {
		return fmt.Errorf("cpu: Pool: unknown pooling %v", kind)
	}
	if len(dst) != len(src) {
		return fmt.Errorf("cpu: Pool: %d outputs for %d inputs: %w", len(dst), len(src), kvcache.ErrShape)
	}
	for i, v := range src {
		if v != v {
			return fmt.Errorf("cpu: Pool: input %d is NaN: %w", i, backend.ErrNaN)
		}
	}
	if len(src) == 0 {
		return nil
	}
	if overlap(dst, src) {
		buf := poolBuf.Get().(*[]float32)
		*buf = append((*buf)[:0], src...)
		b.pool(dst, *buf, kernel, kind)
		poolBuf.Put(buf)
		return nil
	}
	b.pool(dst, src, kernel, kind)
	return nil
}

const (
	// poolChunk is the number of outputs of one unit of parallel pooling.
	poolChunk = 4096
	// outputWork is the cost of one pooled output (or one score of TopK)
	// in the unit run's threshold counts, multiply-adds of the kernels:
	// 16K outputs and more go to several workers.
	outputWork = 64
)

// poolJob pools src into dst in chunks of outputs; each output is computed
// as the serial code computes it, so the split changes no bit.
type poolJob struct {
	dst, src []float32
	kernel   int
	kind     backend.Pooling
	chunk    int
}

func (j *poolJob) unit(u int, _ *scratch) {
	i0 := u * j.chunk
	i1 := min(len(j.dst), i0+j.chunk)
	switch {
	case j.kind == backend.MaxPool:
		maxPoolDirect(j.dst, j.src, j.kernel, i0, i1)
	case j.kernel <= directKernel:
		avgPoolDirect(j.dst, j.src, j.kernel, i0, i1)
	default:
		avgPoolSliding(j.dst, j.src, j.kernel, i0, i1)
	}
}

// pool pools src into dst (no overlap), on the backend's workers when src is
// long. Max pooling with a kernel above directKernel runs whole (its
// prefix and suffix maxima span the row).
func (b *Backend) pool(dst, src []float32, kernel int, kind backend.Pooling) {
	if kind == backend.MaxPool && kernel > directKernel {
		maxPoolSliding(dst, src, kernel)
		return
	}
	// Chunks start at multiples of kernel: the sliding sum restarts there.
	chunk := (poolChunk + kernel - 1) / kernel * kernel
	j := poolJobs.Get().(*poolJob)
	*j = poolJob{dst: dst, src: src, kernel: kernel, kind: kind, chunk: chunk}
	b.run(j, (len(dst)+chunk-1)/chunk, int64(len(dst))*outputWork, 0)
	*j = poolJob{}
	poolJobs.Put(j)
}

var (
	poolBuf  = sync.Pool{New: func() any { return new([]float32) }}
	poolJobs = sync.Pool{New: func() any { return new(poolJob) }}
)

// overlap reports whether the memory of a and b (both non-empty) overlaps.
func overlap(a, b []float32) bool {
	a0 := uintptr(unsafe.Pointer(unsafe.SliceData(a)))
	b0 := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	a1, b1 := a0+uintptr(len(a))*4, b0+uintptr(len(b))*4
	return a0 < b1 && b0 < a1
}

// avgPoolDirect sums each window of src (zero outside) in float64, for
// outputs [i0, i1).
func avgPoolDirect(dst, src []float32, kernel, i0, i1 int) {
	n, r := len(src), kernel/2
	inv := 1 / float64(kernel)
	for i := i0; i < i1; i++ {
		lo, hi := max(0, i-r), min(n, i+r+1)
		var s float64
		for _, v := range src[lo:hi] {
			s += float64(v)
		}
		dst[i] = float32(s * inv)
	}
}

// avgPoolSliding keeps a running float64 sum of the window, summed afresh
// every kernel steps so that rounding cannot drift: O(n) for any kernel.
// It computes outputs [i0, i1), i0 a multiple of kernel.
func avgPoolSliding(dst, src []float32, kernel, i0, i1 int) {
	n, r := len(src), kernel/2
	inv := 1 / float64(kernel)
	var s float64
	for i := i0; i < i1; i++ {
		lo, hi := max(0, i-r), min(n, i+r+1)
		if i%kernel == 0 {
			s = 0
			for _, v := range src[lo:hi] {
				s += float64(v)
			}
		} else {
			if j := i + r; j < n {
				s += float64(src[j])
			}
			if j := i - r - 1; j >= 0 {
				s -= float64(src[j])
			}
		}
		dst[i] = float32(s * inv)
	}
}

// maxPoolDirect takes the maximum of each window of src, padding ignored,
// for outputs [i0, i1).
func maxPoolDirect(dst, src []float32, kernel, i0, i1 int) {
	n, r := len(src), kernel/2
	for i := i0; i < i1; i++ {
		lo, hi := max(0, i-r), min(n, i+r+1)
		m := src[lo]
		for _, v := range src[lo+1 : hi] {
			if v > m {
				m = v
			}
		}
		dst[i] = m
	}
}

// maxPoolSliding is the van Herk / Gil-Werman algorithm: prefix maxima from
// the left and suffix maxima from the right within blocks of kernel values,
// so that any window is the max of one suffix and one prefix. O(n).
func maxPoolSliding(dst, src []float32, kernel int) {
	n, r := len(src), kernel/2
	buf := poolBuf.Get().(*[]float32)
	if cap(*buf) < 2*n {
		*buf = make([]float32, 2*n)
	}
	pre, suf := (*buf)[:n], (*buf)[n:2*n]
	for i := 0; i < n; i++ {
		if i%kernel == 0 || src[i] > pre[i-1] {
			pre[i] = src[i]
		} else {
			pre[i] = pre[i-1]
		}
	}
	for i := n - 1; i >= 0; i-- {
		if i == n-1 || (i+1)%kernel == 0 || src[i] > suf[i+1] {
			suf[i] = src[i]
		} else {
			suf[i] = suf[i+1]
		}
	}
	for i := range dst {
		lo, hi := max(0, i-r), min(n, i+r+1)-1 // window [lo, hi]
		// A window of at most kernel values spans at most two blocks. Within
		// one block it starts at the block (pre) or ends at the block's or
		// the input's end (suf).
		var m float32
		switch {
		case lo/kernel != hi/kernel:
			m = suf[lo]
			if pre[hi] > m {
				m = pre[hi]
			}
		case lo%kernel == 0:
			m = pre[hi]
		default:
			m = suf[lo]
		}
		dst[i] = m
	}
	poolBuf.Put(buf)
}
