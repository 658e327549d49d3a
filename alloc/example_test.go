package alloc_test

import (
	"fmt"
	"log"

	"github.com/compresskv/compresskv/alloc"
)

// Allocating an average of 64 tokens per layer over four layers, with a floor
// of 32 and a cap of 3*64, from per-layer error weights: the layers whose
// compression hurts most get the most tokens, and the total is exactly 4*64.
func ExampleErrorAware() {
	weights := []float64{0.1, 0.2, 0.3, 0.4} // e.g. from alloc.Average
	budgets, err := alloc.ErrorAware(weights, 64, 32, 3*64)
	if err != nil {
		log.Fatal(err)
	}
	sum := 0
	for _, b := range budgets {
		sum += b
	}
	fmt.Println(budgets, sum)
	// Output: [45 58 70 83] 256
}

// Measuring the per-layer error of a compressed cache over decode steps and
// turning it into layer weights.
func ExampleErrorAccumulator() {
	acc, err := alloc.NewErrorAccumulator(2)
	if err != nil {
		log.Fatal(err)
	}
	// One decode step: each layer's attention output over the full cache and
	// over its compressed cache (normally hidden-size vectors).
	full := [][]float32{{3, 4}, {3, 4}}
	comp := [][]float32{{3, 4.5}, {1, 4}}
	for l := range full {
		if err := acc.Add(l, comp[l], full[l]); err != nil {
			log.Fatal(err)
		}
	}
	w, err := acc.Weights()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("errors %.4f, steps %v, weights %.2f\n", acc.Sums(), acc.Steps(), w)
	// Output: errors [0.1000 0.4000], steps [1 1], weights [0.20 0.80]
}

// PyramidKV's budgets fall linearly from the first layer to the last; the
// 8-token observation window is included in each.
func ExamplePyramid() {
	budgets, err := alloc.Pyramid(4, 72, 8, 1000, 20)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(budgets)
	// Output: [133 93 53 13]
}
