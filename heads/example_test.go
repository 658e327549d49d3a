package heads_test

import (
	"fmt"
	"os"

	"github.com/compresskv/compresskv/heads"
)

// A needle probe on a toy model of one layer and three query heads: the
// prompt's answer span [2, 4) holds tokens 42 and 17, and the model copies
// them out in two decode steps. Head 1 looks at the answer, head 2 mostly at
// the first token, head 0 spreads its attention.
func Example() {
	rec, err := heads.NewRecorder(1, 3, heads.Options{}) // 1 layer, 3 query heads
	if err != nil {
		panic(err)
	}
	prompt := []int{7, 8, 42, 17, 9, 5}
	if err := rec.BeginTrial(prompt, 2, 4); err != nil {
		panic(err)
	}
	steps := []struct {
		token int
		attn  [][]float32 // [head][position] for the single layer
	}{
		{42, [][]float32{
			{0.25, 0.125, 0.125, 0.125, 0.25, 0.125},
			{0, 0, 0.75, 0.125, 0, 0.125},
			{0.5, 0, 0.25, 0, 0.125, 0.125},
		}},
		{17, [][]float32{ // one more position: the token emitted at the first step
			{0.25, 0.125, 0.125, 0.125, 0.125, 0.125, 0.125},
			{0, 0, 0.25, 0.5, 0, 0, 0.25},
			{0.5, 0, 0, 0.25, 0, 0, 0.25},
		}},
	}
	for _, s := range steps {
		if err := rec.Step(s.token, [][][]float32{s.attn}); err != nil {
			panic(err)
		}
	}
	if err := rec.EndTrial(true); err != nil { // the model answered "42 17"
		panic(err)
	}

	sr := rec.SR()
	fmt.Println("SR scores:       ", sr[0])
	fmt.Println("retrieval scores:", rec.Retrieval()[0])
	fmt.Println("ranking:         ", sr.Ranking()[0])
	top, _ := sr.Top(1)
	fmt.Println("SR heads (k=1):  ", top[0])
	if err := heads.WriteReferenceRanking(os.Stdout, sr.Ranking()); err != nil {
		panic(err)
	}
	// Output:
	// SR scores:        [0.5 1.625 0.5]
	// retrieval scores: [0 1 0]
	// ranking:          [1 0 2]
	// SR heads (k=1):   [1]
	// {
	//   "0": [1, 0, 2]
	// }
}
