package kvcache

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// llama8B is the shape of one layer of Llama-3-8B: 8 KV heads of 128.
var llama8B = Shape{Layers: 1, KVHeads: 8, HeadDim: 128}

// BenchmarkAppend measures Append of one decode token and of a 512-token
// prefill chunk; MB/s counts the float32 keys and values read.
func BenchmarkAppend(b *testing.B) {
	for _, dt := range allDTypes {
		for _, n := range []int{1, 512} {
			b.Run(fmt.Sprintf("%v/tokens=%d", dt, n), func(b *testing.B) {
				c, err := NewHost(llama8B, dt)
				if err != nil {
					b.Fatal(err)
				}
				k, v := randKV(rand.New(rand.NewPCG(1, 2)), n, llama8B)
				b.SetBytes(int64(len(k)+len(v)) * 4)
				b.ReportAllocs()
				for b.Loop() {
					if c.Seen(0)+n > 8192 {
						c.Reset() // bound the memory; regrowth is part of the cost
					}
					if err := c.Append(0, k, v); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "tokens/s")
			})
		}
	}
}

// BenchmarkCompact measures keeping every 8th of 4096 rows in every head of a
// layer; MB/s counts the bytes the layer held before.
func BenchmarkCompact(b *testing.B) {
	const rows = 4096
	for _, dt := range allDTypes {
		b.Run(dt.String(), func(b *testing.B) {
			base, err := NewHost(llama8B, dt)
			if err != nil {
				b.Fatal(err)
			}
			k, v := randKV(rand.New(rand.NewPCG(3, 4)), rows, llama8B)
			if err := base.Append(0, k, v); err != nil {
				b.Fatal(err)
			}
			keep := make([][]int, llama8B.KVHeads)
			for g := range keep {
				for i := 0; i < rows; i += 8 {
					keep[g] = append(keep[g], i)
				}
			}
			b.SetBytes(base.Bytes())
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				c := base.Clone()
				b.StartTimer()
				if err := c.Compact(0, keep); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(rows/8*llama8B.KVHeads), "rows-kept")
		})
	}
}
