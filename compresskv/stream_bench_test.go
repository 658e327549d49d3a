package compresskv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/compresskv/compresskv/kvcache"
)

// Llama-3.1-8B's attention geometry: 32 layers of 32 query heads over 8 KV
// heads of 128 values.
const (
	llamaLayers  = 32
	llamaQHeads  = 32
	llamaKVHeads = 8
	llamaHeadDim = 128
)

// streamChunks is a few random chunks of keys, values and window queries
// that a synthetic prompt cycles through (its content matters to neither
// the memory nor the time measured; generating 128K distinct tokens would).
type streamChunks struct {
	k, v [][]float32
	q    []float32
}

func newStreamChunks(chunk, window int) *streamChunks {
	rng := rand.New(rand.NewPCG(7, 11))
	sc := &streamChunks{}
	n := chunk * llamaKVHeads * llamaHeadDim
	for range 4 {
		k, v := make([]float32, n), make([]float32, n)
		for i := range k {
			k[i] = float32(rng.NormFloat64())
			v[i] = float32(rng.NormFloat64())
		}
		sc.k, sc.v = append(sc.k, k), append(sc.v, v)
	}
	sc.q = make([]float32, window*llamaQHeads*llamaHeadDim)
	for i := range sc.q {
		sc.q[i] = float32(rng.NormFloat64())
	}
	return sc
}

// BenchmarkStreamPeak measures the peak memory of one layer of a
// Llama-3.1-8B-shaped float16 cache over a synthetic prompt of 4K, 32K and
// 128K tokens, prefilled in chunks of 512 or 2,048 tokens with SnapKV at a
// budget of 1,024: "stream" compresses between chunks (compresskv.Stream),
// "oneshot" compresses once after the whole prefill (its cache reserved for
// the prompt up front, as a prefill of known length does). One layer is
// measured and the 32 layers' figure is that times 32 (every layer has the
// same budget and shape); a 32-layer one-shot cache of 128K tokens is 16 GiB.
// Metrics: peak-MiB (one layer, Reserved), peak-GiB-32L, ms/chunk (append
// and compression of one chunk in one layer), compress-ms (one-shot's
// compression of one layer).
//
//	go test -run '^$' -bench BenchmarkStreamPeak -benchtime 1x ./compresskv
func BenchmarkStreamPeak(b *testing.B) {
	const budget = 1024
	s := kvcache.Shape{Layers: 1, KVHeads: llamaKVHeads, HeadDim: llamaHeadDim}
	for _, L := range []int{4 << 10, 32 << 10, 128 << 10} {
		for _, chunk := range []int{512, 2048} {
			p, err := New(SnapKV, Config{Budget: budget})
			if err != nil {
				b.Fatal(err)
			}
			W := p.Config().Window
			data := newStreamChunks(chunk, W)
			b.Run(fmt.Sprintf("stream/L%dK/chunk%d", L>>10, chunk), func(b *testing.B) {
				var peak int64
				for range b.N {
					c, _ := kvcache.NewHost(s, kvcache.Float16)
					st, err := NewStream(p, c, StreamConfig{QHeads: llamaQHeads, Chunk: chunk})
					if err != nil {
						b.Fatal(err)
					}
					for i := 0; i < L/chunk; i++ {
						if err := st.Append(context.Background(), 0, data.k[i%4], data.v[i%4], data.q); err != nil {
							b.Fatal(err)
						}
					}
					peak = st.Stats().PeakReserved
				}
				sec := b.Elapsed().Seconds() / float64(b.N)
				b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
				b.ReportMetric(float64(peak)*llamaLayers/(1<<30), "peak-GiB-32L")
				b.ReportMetric(sec*1e3/float64(L/chunk), "ms/chunk")
			})
			b.Run(fmt.Sprintf("oneshot/L%dK/chunk%d", L>>10, chunk), func(b *testing.B) {
				var peak int64
				var compress float64
				for range b.N {
					c, _ := kvcache.NewHost(s, kvcache.Float16)
					if err := c.Reserve(L); err != nil {
						b.Fatal(err)
					}
					for i := 0; i < L/chunk; i++ {
						if err := c.Append(0, data.k[i%4], data.v[i%4]); err != nil {
							b.Fatal(err)
						}
					}
					peak = c.Reserved()
					t0 := b.Elapsed()
					if _, err := p.Compress(context.Background(), c, [][]float32{data.q}, llamaQHeads); err != nil {
						b.Fatal(err)
					}
					compress += (b.Elapsed() - t0).Seconds()
				}
				sec := b.Elapsed().Seconds() / float64(b.N)
				b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
				b.ReportMetric(float64(peak)*llamaLayers/(1<<30), "peak-GiB-32L")
				b.ReportMetric((sec-compress/float64(b.N))*1e3/float64(L/chunk), "ms/chunk")
				b.ReportMetric(compress*1e3/float64(b.N), "compress-ms")
			})
		}
	}
}
