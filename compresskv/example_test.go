package compresskv_test

import (
	"context"
	"fmt"
	"math"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/kvcache"
)

// prefill builds a small cache of 24 tokens in which positions 5 and 6 (the
// "needle") are the keys the last queries look for, and returns it with the
// queries of the last 4 positions.
func prefill() (*kvcache.Host, [][]float32) {
	const layers, kvHeads, queryHeads, d, L, W = 2, 2, 4, 4, 24, 4
	cache, err := kvcache.NewHost(kvcache.Shape{Layers: layers, KVHeads: kvHeads, HeadDim: d}, kvcache.Float16)
	if err != nil {
		panic(err)
	}
	queries := make([][]float32, layers)
	for l := 0; l < layers; l++ {
		var k, v []float32
		for j := 0; j < L; j++ {
			for g := 0; g < kvHeads; g++ {
				key := []float32{0, 0.5 * float32(math.Sin(float64(j))), 0.5 * float32(math.Cos(float64(j))), 0}
				if j == 5 || j == 6 {
					key[0] = 2 // the needle
				}
				k = append(k, key...)
				v = append(v, float32(j), 0, 0, 0)
			}
		}
		if err := cache.Append(l, k, v); err != nil {
			panic(err)
		}
		for i := 0; i < W*queryHeads; i++ {
			queries[l] = append(queries[l], 3, 0, 0, 0)
		}
	}
	return cache, queries
}

// Compress a prefilled cache with CompressKV: the semantic retrieval heads
// of the profile score the prompt, and every KV head of a layer keeps the
// same positions.
func ExampleNew() {
	cache, queries := prefill()
	profile := &compresskv.Profile{
		Version: compresskv.ProfileVersion,
		Model:   compresskv.ModelInfo{Name: "toy", Layers: 2, QueryHeads: 4, KVHeads: 2, HeadDim: 4},
		// Per layer, every query head ranked by SR score, best first.
		HeadRanking:  [][]int{{1, 3, 0, 2}, {2, 0, 1, 3}},
		LayerWeights: []float64{0.5, 0.5},
	}
	policy, err := compresskv.New(compresskv.CompressKV, compresskv.Config{
		Budget:     8, // tokens per layer on average, window included
		Window:     4,
		SRHeads:    2,
		LayerFloor: 4,
		Profile:    profile,
	})
	if err != nil {
		panic(err)
	}
	res, err := policy.Compress(context.Background(), cache, queries, 4)
	if err != nil {
		panic(err)
	}
	fmt.Println("budgets:", res.Budgets)
	fmt.Println("layer 0 keeps:", cache.Positions(0, 0, nil))
	fmt.Printf("bytes: %d -> %d\n", res.BytesBefore, res.BytesAfter)
	// Output:
	// budgets: [8 8]
	// layer 0 keeps: [4 5 6 7 20 21 22 23]
	// bytes: 1920 -> 640
}

// Compose a policy from pieces: SnapKV's per-KV-head scores with
// StreamingLLM-style uniform budgets, selected by plain top-k.
func ExampleCompose() {
	cache, queries := prefill()
	policy, err := compresskv.Compose("snap-uniform", compresskv.Config{Budget: 6, Window: 4},
		compresskv.SnapKVScorer{Kernel: 1}, // no pooling
		compresskv.TopKSelector{},
		compresskv.UniformAllocator{})
	if err != nil {
		panic(err)
	}
	if _, err := policy.Compress(context.Background(), cache, queries, 4); err != nil {
		panic(err)
	}
	fmt.Println(cache.Positions(1, 1, nil))
	// Output:
	// [5 6 20 21 22 23]
}
