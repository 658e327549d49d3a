package compresskv_test

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/kvcache"
)

// ExampleStream runs a 1,000-token sequence through a cache that never
// holds more than budget + chunk + slack rows per KV head: a prefill in
// chunks of 64 tokens, then 200 decode steps. Each token's keys, values and
// queries stand in for what a model's layer computes; position 5 is the
// "needle" that every query looks for, and it survives every compression:
// while the prompt runs, the Stream's default rule (DefaultPrefill) keeps
// what the queries seen so far are expected to attend to.
func ExampleStream() {
	const layers, kvHeads, queryHeads, d = 2, 2, 4, 4
	cache, err := kvcache.NewHost(kvcache.Shape{Layers: layers, KVHeads: kvHeads, HeadDim: d}, kvcache.Float16)
	if err != nil {
		panic(err)
	}
	policy, err := compresskv.New(compresskv.SnapKV, compresskv.Config{Budget: 32, Window: 4, Kernel: 1})
	if err != nil {
		panic(err)
	}
	stream, err := compresskv.NewStream(policy, cache, compresskv.StreamConfig{QHeads: queryHeads, Chunk: 64})
	if err != nil {
		panic(err)
	}
	// token returns n tokens' keys, values and queries from position pos.
	token := func(pos, n int) (k, v, q []float32) {
		for j := pos; j < pos+n; j++ {
			for g := 0; g < kvHeads; g++ {
				key := []float32{0, 0.5 * float32(math.Sin(float64(j))), 0.5 * float32(math.Cos(float64(j))), 0}
				if j == 5 {
					key[0] = 2 // the needle
				}
				k = append(k, key...)
				v = append(v, float32(math.Cos(float64(j))), float32(math.Sin(float64(j))), 0, 0)
			}
			for h := 0; h < queryHeads; h++ {
				q = append(q, 3, 0, 0, 0)
			}
		}
		return k, v, q
	}
	ctx := context.Background()
	run := func(pos, n int) {
		k, v, q := token(pos, n)
		for l := 0; l < layers; l++ {
			if err := stream.Append(ctx, l, k, v, q); err != nil {
				panic(err)
			}
		}
	}
	pos := 0
	for ; pos < 800; pos += min(64, 800-pos) {
		run(pos, min(64, 800-pos))
	}
	for ; pos < 1000; pos++ {
		run(pos, 1)
	}
	positions := cache.Positions(0, 0, nil)
	fmt.Println("tokens seen:", cache.Seen(0))
	fmt.Println("rows per head:", cache.Len(0, 0), "bound:", stream.Bound(0))
	fmt.Println("needle kept:", slices.Contains(positions, 5))
	fmt.Println("most recent:", positions[len(positions)-1])
	fmt.Println("peak bytes within the bound:", stream.Stats().PeakReserved <= int64(layers*kvHeads*stream.Bound(0)*(2*d*2+4)))
	// Output:
	// tokens seen: 1000
	// rows per head: 60 bound: 100
	// needle kept: true
	// most recent: 999
	// peak bytes within the bound: true
}
