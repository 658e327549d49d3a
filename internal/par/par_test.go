package par

import (
	"sync/atomic"
	"testing"
)

func TestForRunsEachPieceOnce(t *testing.T) {
	for _, n := range []int{0, 1, 2, 7, 1000} {
		for _, w := range []int{1, 2, 3, 16} {
			counts := make([]atomic.Int32, n)
			Workers(n, w, func(i int) { counts[i].Add(1) })
			for i := range counts {
				if c := counts[i].Load(); c != 1 {
					t.Fatalf("n=%d workers=%d: piece %d ran %d times", n, w, i, c)
				}
			}
		}
	}
	var sum atomic.Int64
	For(100, func(i int) { sum.Add(int64(i)) })
	if sum.Load() != 4950 {
		t.Fatalf("sum %d, want 4950", sum.Load())
	}
}
