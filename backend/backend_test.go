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

// TestRegisterPanics: a nil probe, an empty name and a name registered
// twice (in any case) panic at registration, as database/sql.Register does;
// a good registration is found under any case.
func TestRegisterPanics(t *testing.T) {
	panics := func(what string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", what)
			}
		}()
		f()
	}
	ok := func() error { return nil }
	Register("test-register", ok)
	if p, found := Registered("TEST-Register"); !found || p() != nil {
		t.Fatal("a registered backend is not found under another case")
	}
	panics("nil probe", func() { Register("test-nil", nil) })
	panics("empty name", func() { Register("", ok) })
	panics("duplicate", func() { Register("test-register", ok) })
	panics("duplicate in another case", func() { Register("Test-Register", ok) })
	if _, found := Registered("test-nil"); found {
		t.Error("a nil probe was recorded before the panic")
	}
}
