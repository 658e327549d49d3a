package vocab_test

import (
	"fmt"

	"github.com/compresskv/compresskv/examples/llama/vocab"
)

// A byte-level BPE vocabulary built in code; FromGGUF reads the same keys from a model file.
func Example() {
	v, err := vocab.FromMetadata(vocab.Map{
		"tokenizer.ggml.model":      "gpt2",
		"tokenizer.ggml.pre":        "qwen2",
		"tokenizer.ggml.tokens":     []string{"<|im_end|>", "h", "i", "Ġ", "hi", "Ġhi", "!"},
		"tokenizer.ggml.token_type": []int32{3, 1, 1, 1, 1, 1, 1},
		"tokenizer.ggml.merges":     []string{"h i", "Ġ hi"},
	})
	if err != nil {
		panic(err)
	}
	ids, err := v.Encode("hi hi!<|im_end|>", false, true)
	if err != nil {
		panic(err)
	}
	fmt.Println(ids, v.IsEOG(ids[len(ids)-1]))
	text, _ := v.Detokenize(ids, false, true)
	fmt.Printf("%q\n", text)
	// Output:
	// [4 5 6 0] true
	// "hi hi!<|im_end|>"
}
