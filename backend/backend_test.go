package backend

import (
	"errors"
	"testing"

	"github.com/compresskv/compresskv/kvcache"
)

func TestCheckQueries(t *testing.T) {
	s := kvcache.Shape{Layers: 1, KVHeads: 2, HeadDim: 4}
	if err := CheckQueries(s, make([]float32, 3*4*4), 3, 4); err != nil {
		t.Fatalf("valid queries rejected: %v", err)
	}
	for _, tc := range []struct {
		s         kvcache.Shape
		n, qHeads int
		size      int
	}{
		{s, 3, 3, 3 * 3 * 4},                // heads not a multiple of KV heads
		{s, 3, 0, 0},                        // no heads
		{s, 3, 4, 3*4*4 - 1},                // short
		{s, -1, 4, 0},                       // negative rows
		{kvcache.Shape{Layers: 1}, 1, 1, 0}, // invalid shape: no panic
	} {
		err := CheckQueries(tc.s, make([]float32, tc.size), tc.n, tc.qHeads)
		if err == nil {
			t.Errorf("%+v: accepted", tc)
		}
		if tc.s.KVHeads > 0 && !errors.Is(err, kvcache.ErrShape) {
			t.Errorf("%+v: error %v does not wrap ErrShape", tc, err)
		}
	}
	if AvgPool.String() != "avg" || MaxPool.String() != "max" || Pooling(9).String() != "Pooling(9)" {
		t.Error("Pooling.String")
	}
}
