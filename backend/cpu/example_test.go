package cpu_test

import (
	"fmt"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/kvcache"
)

// Example scores the prefix of a small prompt with its last two queries,
// pools the scores and keeps the best two prefix positions.
func Example() {
	c, _ := kvcache.NewHost(kvcache.Shape{Layers: 1, KVHeads: 1, HeadDim: 2}, kvcache.Float16)
	keys := []float32{1, 0, 0, 1, 3, 0, 0, 0, 1, 1, 0, 2}
	_ = c.Append(0, keys, make([]float32, len(keys)))

	b := cpu.New()
	const w = 2
	q := []float32{1, 0, 1, 0} // w queries x 1 head x HeadDim 2
	sums := [][]float32{make([]float32, c.Len(0, 0))}
	if err := b.WindowScores(c, 0, q, w, 1, []int{0}, sums); err != nil {
		fmt.Println(err)
		return
	}
	prefix := sums[0][:c.Len(0, 0)-w]
	pooled := make([]float32, len(prefix))
	_ = b.Pool(pooled, prefix, 3, backend.MaxPool)
	keep, _ := b.TopK(nil, pooled, 2)
	fmt.Printf("scores %.3f\n", prefix)
	fmt.Println("keep", keep)
	// Output:
	// scores [0.273 0.134 1.121 0.134]
	// keep [1 2]
}
