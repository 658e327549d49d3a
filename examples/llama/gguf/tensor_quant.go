package gguf

import (
	"fmt"
	"math"

	"github.com/compresskv/compresskv/examples/llama/quant"
)

// Matrix returns the tensor as a matrix of Dims[1] rows of Dims[0] values
// (a vector is one row); dimensions beyond the second must be 1.
func (t Tensor) Matrix() (quant.Matrix, error) {
	rows, cols := 1, 1
	for i, d := range t.Dims {
		switch {
		case i == 0:
			cols = d
		case i == 1:
			rows = d
		case d != 1:
			return quant.Matrix{}, fmt.Errorf("gguf: tensor %q with dims %v is not a matrix", t.Name, t.Dims)
		}
	}
	m, err := quant.NewMatrix(t.Type, rows, cols, t.Data)
	if err != nil {
		return quant.Matrix{}, fmt.Errorf("gguf: tensor %q: %w", t.Name, err)
	}
	return m, nil
}

// Float32s returns the tensor's values converted to float32 (a new slice),
// or an error wrapping quant.ErrUnsupported for a type quant cannot convert.
func (t Tensor) Float32s() ([]float32, error) {
	n := t.Elements()
	if n > math.MaxInt/4 {
		return nil, fmt.Errorf("gguf: tensor %q: %d values are too many to convert at once", t.Name, n)
	}
	out := make([]float32, n)
	if err := quant.Dequantize(t.Type, t.Data, out); err != nil {
		return nil, fmt.Errorf("gguf: tensor %q: %w", t.Name, err)
	}
	return out, nil
}
