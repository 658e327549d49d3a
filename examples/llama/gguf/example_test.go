package gguf_test

import (
	"bytes"
	"fmt"

	"github.com/compresskv/compresskv/examples/llama/gguf"
	"github.com/compresskv/compresskv/examples/llama/quant"
)

// Example writes a small GGUF file into memory and reads it back. A model
// on disk is read with gguf.Open instead, which maps the file.
func Example() {
	w := gguf.NewWriter()
	w.Set("general.architecture", "llama")
	w.Set("llama.context_length", uint32(2048))
	w.Set("tokenizer.ggml.tokens", []string{"<unk>", "<s>", "</s>"})
	w.AddTensor("output_norm.weight", quant.F32, []int{2}, []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0x40})
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		panic(err)
	}

	f, err := gguf.Parse(buf.Bytes())
	if err != nil {
		panic(err)
	}
	arch, _ := f.String("general.architecture")
	ctx, _ := f.Uint(arch + ".context_length")
	tokens, _ := f.Strings("tokenizer.ggml.tokens")
	norm, _ := f.Tensor("output_norm.weight")
	fmt.Println(arch, ctx, len(tokens), norm.Type, norm.Dims, len(norm.Data))
	_, err = f.Float("llama.context_length")
	fmt.Println(err)
	// Output:
	// llama 2048 3 F32 [2] 8
	// gguf: key "llama.context_length" is uint32, want float32 or float64
}
