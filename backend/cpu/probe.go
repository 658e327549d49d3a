package cpu

import (
	"fmt"
	"runtime"
	"sync"
	"time"
)

// Probe measures the memory read bandwidth of the machine: a vectorised sum
// of a buffer larger than any cache, split over goroutines. Every benchmark
// of this module and tools/torchcmp compare their kernels with it, measured
// in the same run, so that a figure such as "85% of bandwidth" means the
// same thing everywhere.
//
// A Probe holds its buffer until it is dropped; it is not safe for
// concurrent use.
type Probe struct {
	words []uint64
}

// DefaultProbeBytes is the size of the buffer NewProbe(0) reads: 256 MiB,
// eight times the largest last-level cache of the machines measured here.
const DefaultProbeBytes = 256 << 20

// NewProbe returns a probe over a buffer of the given size in bytes (0 means
// DefaultProbeBytes), written once so that its pages are resident.
func NewProbe(bytes int) (*Probe, error) {
	if bytes == 0 {
		bytes = DefaultProbeBytes
	}
	if bytes < 1<<20 {
		return nil, fmt.Errorf("cpu: NewProbe: %d bytes, want at least 1 MiB", bytes)
	}
	w := make([]uint64, bytes/8&^63)
	for i := range w {
		w[i] = uint64(i)
	}
	return &Probe{words: w}, nil
}

// Bytes returns the size of the buffer one Read reads.
func (p *Probe) Bytes() int64 { return int64(len(p.words)) * 8 }

// Read reads the whole buffer once, split in equal parts over the given
// number of goroutines (at least 1), and returns the bandwidth in GB/s
// (1e9 bytes per second) together with the time it took.
func (p *Probe) Read(goroutines int) (gbps float64, took time.Duration) {
	goroutines = max(1, goroutines)
	part := len(p.words) / goroutines &^ 63
	var wg sync.WaitGroup
	sums := make([]uint64, goroutines)
	t0 := time.Now()
	for w := 1; w < goroutines; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sums[w] = sumWords(p.words[w*part : (w+1)*part])
		}()
	}
	sums[0] = sumWords(p.words[:part])
	wg.Wait()
	took = time.Since(t0)
	runtime.KeepAlive(sums) // the sums are the work: keep them
	return float64(part*goroutines*8) / took.Seconds() / 1e9, took
}
