package kvcache_test

import (
	"fmt"

	"github.com/compresskv/compresskv/kvcache"
)

// A cache of one layer with two KV heads of two values, in float16: a prefill
// of three tokens, a compaction that keeps tokens 0 and 2, one decode token.
func ExampleHost() {
	c, err := kvcache.NewHost(kvcache.Shape{Layers: 1, KVHeads: 2, HeadDim: 2}, kvcache.Float16)
	if err != nil {
		panic(err)
	}
	// Token-major: [token][head][value].
	k := []float32{0, 0, 1, 1, 10, 10, 11, 11, 20, 20, 21, 21}
	if err := c.Append(0, k, k); err != nil {
		panic(err)
	}
	if err := c.Compact(0, [][]int{{0, 2}, {0, 2}}); err != nil {
		panic(err)
	}
	if err := c.Append(0, []float32{30, 30, 31, 31}, []float32{30, 30, 31, 31}); err != nil {
		panic(err)
	}
	keys, _ := c.Rows(0, 1)
	for i := 0; i < keys.N; i++ {
		fmt.Println(c.Positions(0, 1, nil)[i], keys.Row(i, nil))
	}
	fmt.Println("seen", c.Seen(0), "bytes", c.Bytes())
	// Output:
	// 0 [1 1]
	// 2 [21 21]
	// 3 [31 31]
	// seen 4 bytes 72
}
