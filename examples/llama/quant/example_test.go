package quant_test

import (
	"fmt"

	"github.com/compresskv/compresskv/examples/llama/quant"
)

// Example quantizes a 2x64 weight to Q8_0, reads a row back, and
// multiplies it with an activation row as ggml's CPU backend does (the
// activations are converted to Q8_0 blocks first).
func Example() {
	const rows, cols = 2, 64
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(i%cols) / 64 // row r: 0, 1/64, 2/64, ...
	}
	w[cols] = -1 // row 1 starts with -1
	rb, _ := quant.Q8_0.RowBytes(cols)
	data := make([]byte, rows*rb)
	if err := quant.Quantize(quant.Q8_0, w, data); err != nil {
		panic(err)
	}
	m, err := quant.NewMatrix(quant.Q8_0, rows, cols, data)
	if err != nil {
		panic(err)
	}

	row := make([]float32, cols)
	m.Row(1, row)
	fmt.Printf("row 1 starts %.4f %.4f %.4f\n", row[0], row[1], row[2])

	x := make([]float32, cols)
	x[0], x[1], x[63] = 1, 2, 0.5
	out := make([]float32, rows)
	m.MulMat(out, x, 1)
	fmt.Printf("W.x = %.4f %.4f (unquantized 0.5234 -0.4766)\n", out[0], out[1])
	// Output:
	// row 1 starts -0.9999 0.0157 0.0315
	// W.x = 0.5227 -0.4841 (unquantized 0.5234 -0.4766)
}
