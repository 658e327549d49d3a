package kvcache

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestGatherRuns checks gather against row-by-row copying on kept sets made
// of runs of consecutive rows, on both of its paths: in place (at least half
// kept: same storage, no allocation) and into new storage of the kept size.
func TestGatherRuns(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 2, 17, 300} {
		for _, share := range []float64{0, 0.1, 0.45, 0.55, 0.9, 1} {
			for _, d := range []int{1, 3, 8} {
				name := fmt.Sprintf("n%d/share%.2f/d%d", n, share, d)
				// Kept rows: runs of random length, each run kept or not.
				var keep []int
				for i := 0; i < n; {
					run := 1 + r.IntN(6)
					if r.Float64() < share {
						for j := i; j < min(n, i+run); j++ {
							keep = append(keep, j)
						}
					}
					i += run
				}
				s := make([]int32, n*d)
				for i := range s {
					s[i] = int32(i)
				}
				want := []int32{}
				for _, row := range keep {
					want = append(want, s[row*d:(row+1)*d]...)
				}
				got := gather(s, keep, d)
				if !slices.Equal(got, want) {
					t.Fatalf("%s: gather = %v, want %v", name, got, want)
				}
				inPlace := 2*len(keep)*d >= n*d
				switch {
				case len(keep) == 0 && !inPlace:
					if got != nil {
						t.Errorf("%s: nothing kept, storage not released", name)
					}
				case inPlace && len(keep) > 0:
					if &got[0] != &s[0] || cap(got) != cap(s) {
						t.Errorf("%s: at least half kept, storage not reused", name)
					}
				case !inPlace:
					if cap(got) != len(want) {
						t.Errorf("%s: new storage holds %d values for %d kept", name, cap(got), len(want))
					}
				}
			}
		}
	}
}
