package kvcache

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
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

// BenchmarkCompact measures compaction of every head of a layer: keeping
// every 8th of 4,096 rows (no two kept rows adjacent), and keeping 1,024 of
// 32,768 rows in runs of 1-9 consecutive rows, as pooled scores select them.
// MB/s counts the bytes the layer held before.
func BenchmarkCompact(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 8))
	var runs []int
	for len(runs) < 1024 {
		start, n := r.IntN(32768-9), 1+r.IntN(9)
		for i := start; i < start+n; i++ {
			runs = append(runs, i)
		}
		slices.Sort(runs)
		runs = slices.Compact(runs)
	}
	runs = runs[:1024]
	var every8 []int
	for i := 0; i < 4096; i += 8 {
		every8 = append(every8, i)
	}
	for _, tc := range []struct {
		name string
		rows int
		keep []int
	}{{"every8th/4096", 4096, every8}, {"runs/32768", 32768, runs}} {
		for _, dt := range allDTypes {
			b.Run(tc.name+"/"+dt.String(), func(b *testing.B) {
				base, err := NewHost(llama8B, dt)
				if err != nil {
					b.Fatal(err)
				}
				k, v := randKV(rand.New(rand.NewPCG(3, 4)), tc.rows, llama8B)
				if err := base.Append(0, k, v); err != nil {
					b.Fatal(err)
				}
				keep := make([][]int, llama8B.KVHeads)
				for g := range keep {
					keep[g] = tc.keep
				}
				b.SetBytes(base.Bytes())
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					c := base.Clone()
					runtime.GC()
					b.StartTimer()
					if err := c.Compact(0, keep); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(tc.keep)*llama8B.KVHeads), "rows-kept")
			})
		}
	}
}
