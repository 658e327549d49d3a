package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/compresskv/compresskv/internal/reftest"
	"github.com/compresskv/compresskv/kvcache"
)

// This file holds plain float64 reference implementations and test helpers.

var newRand = reftest.Rand

func randVec(r *rand.Rand, n int, sd float64) []float32 { return reftest.Normal(r, n, sd) }

// newCache returns a cache of one or more layers whose layer 0 holds n
// random tokens.
func newCache(t testing.TB, r *rand.Rand, layers, G, d, n int, dt kvcache.DType) *kvcache.Host {
	t.Helper()
	c, err := kvcache.NewHost(kvcache.Shape{Layers: layers, KVHeads: G, HeadDim: d}, dt)
	if err != nil {
		t.Fatal(err)
	}
	if n > 0 {
		if err := c.Append(0, randVec(r, n*G*d, 1.5), randVec(r, n*G*d, 1)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

var (
	refWindowScores = reftest.WindowSums
	refAttend       = reftest.Attend
	refTopK         = reftest.TopK[float32]
)

func refPool(src []float32, kernel int, avg bool) []float64 {
	return reftest.Pool(reftest.F64(src), kernel, avg)
}

// maxRelErr reports the largest error of got against want, relative to
// max(|want|, floor).
func maxRelErr(got []float32, want []float64, floor float64) (float64, int) {
	worst, at := 0.0, -1
	for i := range want {
		e := math.Abs(float64(got[i])-want[i]) / math.Max(math.Abs(want[i]), floor)
		if e > worst || math.IsNaN(e) {
			worst, at = e, i
		}
	}
	return worst, at
}
