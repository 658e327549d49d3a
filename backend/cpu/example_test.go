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

// ExampleBackend_Plan decodes one token over a cache of 4,096 rows, then
// asks which kernel the backend chose for that shape and whether another
// kernel returns other bits (it cannot: every candidate of a shape class
// sums in the same order).
func ExampleBackend_Plan() {
	const H, G, d, L = 8, 2, 64, 4096
	c, _ := kvcache.NewHost(kvcache.Shape{Layers: 1, KVHeads: G, HeadDim: d}, kvcache.BFloat16)
	rows := make([]float32, L*G*d)
	for i := range rows {
		rows[i] = float32(i%7) - 3
	}
	_ = c.Append(0, rows, rows)
	q := make([]float32, H*d)
	for i := range q {
		q[i] = float32(i%5) / 10
	}
	b := cpu.New()
	out := make([]float32, H*d)
	for range 40 { // the first calls measure the candidates, 5 each
		_ = b.Attend(c, 0, q, H, out)
	}
	for _, ch := range b.Plan() {
		if ch.Op != "attend" || ch.DType != kvcache.BFloat16 || ch.Group != H/G || ch.HeadDim != d || !ch.Long {
			continue
		}
		fmt.Println("chosen:", ch.Kernel != "")
		same := true
		for _, cd := range ch.Candidates {
			other, _ := b.WithKernel(cd.Kernel)
			o := make([]float32, H*d)
			_ = other.Attend(c, 0, q, H, o)
			for i := range o {
				same = same && o[i] == out[i]
			}
		}
		fmt.Println("every candidate, the same result:", same)
	}
	// Output:
	// chosen: true
	// every candidate, the same result: true
}
