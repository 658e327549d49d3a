package llama_test

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/compresskv/calibrate"
	"github.com/compresskv/compresskv/examples/llama"
)

// Calibrating a model through the library: needle probes placed in the
// model's tokens, one call, a profile for CompressKV.
func ExampleCalibration() {
	m, err := llama.Load("../../testdata/retrieval.bin")
	if err != nil {
		fmt.Println(err)
		return
	}
	text, err := os.ReadFile("../../testdata/haystack/calib.txt")
	if err != nil {
		fmt.Println(err)
		return
	}
	tok := llama.ProbeTokenizer{Tokenizer: llama.ByteTokenizer()}
	probes, err := calibrate.NeedleProbes(tok, calibrate.NeedleGrid{
		Haystack: strings.Join(strings.Fields(string(text)), " "),
		Lengths:  []int{256}, Depths: 3, Keys: []string{"acorn", "birch", "cedar"}, Seed: 1,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	prof, rep, err := calibrate.Profile(context.Background(), &llama.Calibration{Model: m, Name: "retrieval"}, calibrate.Config{
		Probes: probes, Tokenizer: tok,
		Shadow: compresskv.Config{Kernel: llama.DefaultKernel},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%d of %d probes answered\n", rep.Answered, rep.Probes)
	fmt.Println("layer 1, first SR head:", prof.HeadRanking[1][0])
	policy, err := compresskv.New(compresskv.CompressKV, compresskv.Config{Budget: 64, Profile: prof})
	fmt.Println(policy.Method(), err)
	// Output:
	// 3 of 3 probes answered
	// layer 1, first SR head: 1
	// compresskv <nil>
}
