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

// ExampleStream_reserve holds a reserve of 4 budgets while a 600-token
// prompt runs in chunks of 100, then ends the prompt once its last chunk
// (the question) is in: every layer is compressed to the budget with the
// question's window, and the cache is bounded by the budget from then on.
// The peak is what the Stream measured after every call.
func ExampleStream_reserve() {
	const layers, kvHeads, queryHeads, d = 2, 2, 4, 8
	cache, err := kvcache.NewHost(kvcache.Shape{Layers: layers, KVHeads: kvHeads, HeadDim: d}, kvcache.Float32)
	if err != nil {
		panic(err)
	}
	policy, err := compresskv.New(compresskv.SnapKV, compresskv.Config{Budget: 32, Kernel: 1})
	if err != nil {
		panic(err)
	}
	stream, err := compresskv.NewStream(policy, cache, compresskv.StreamConfig{QHeads: queryHeads, Chunk: 100, Slack: -1, Reserve: 128})
	if err != nil {
		panic(err)
	}
	fmt.Println("rule while the prompt runs:", stream.Config().Prefill.Name())
	ctx := context.Background()
	for pos := 0; pos < 600; pos += 100 {
		var k, v, q []float32
		for j := pos; j < pos+100; j++ {
			for x := 0; x < kvHeads*d; x++ {
				k = append(k, float32(math.Sin(float64(j*7+x))))
				v = append(v, float32(math.Cos(float64(j*3+x))))
			}
			for x := 0; x < queryHeads*d; x++ {
				q = append(q, float32(math.Sin(float64(j+x*5))))
			}
		}
		for l := 0; l < layers; l++ {
			if err := stream.Append(ctx, l, k, v, q); err != nil {
				panic(err)
			}
		}
	}
	fmt.Println("rows while the prompt runs:", cache.Len(0, 0), "bound:", stream.Bound(0))
	for l := 0; l < layers; l++ {
		if err := stream.Compress(ctx, l); err != nil {
			panic(err)
		}
	}
	fmt.Println("rows after Compress:", cache.Len(0, 0), "bound:", stream.Bound(0))
	fmt.Println("peak bytes:", stream.Stats().PeakBytes, "=", layers*kvHeads*(128+100), "rows x", 2*d*4+4, "bytes")
	// Output:
	// rule while the prompt runs: expected-attention-max
	// rows while the prompt runs: 228 bound: 228
	// rows after Compress: 32 bound: 132
	// peak bytes: 62016 = 912 rows x 68 bytes
}
