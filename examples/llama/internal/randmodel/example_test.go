package randmodel_test

import (
	"fmt"

	"github.com/compresskv/compresskv/examples/llama/internal/randmodel"
)

// A model's tensors, generated without the vocabulary files: here the
// Q4_K_M mixture of the Llama 2 style family (its SentencePiece vocabulary
// has 32,000 tokens).
func ExampleSpec_Tensors() {
	s, err := randmodel.Lookup("llama2-q4_k_m")
	if err != nil {
		fmt.Println(err)
		return
	}
	ts, err := s.Tensors(32000)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, t := range ts {
		if t.Name == "token_embd.weight" || t.Name == "blk.1.attn_v.weight" || t.Name == "blk.2.attn_v.weight" || t.Name == "output.weight" {
			fmt.Println(t.Name, t.Type, t.Dims, len(t.Data))
		}
	}
	// Output:
	// token_embd.weight Q4_K [256 32000] 4608000
	// blk.1.attn_v.weight Q4_K [256 128] 18432
	// blk.2.attn_v.weight Q6_K [256 128] 26880
	// output.weight Q6_K [256 32000] 6720000
}
