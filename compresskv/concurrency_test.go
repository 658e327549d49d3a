package compresskv

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/compresskv/compresskv/kvcache"
)

// TestConcurrentCompressOneCache: eight goroutines compress one cache at
// once. The cache is held for each call, so the others fail with
// kvcache.ErrBusy (or, once it is compressed, with ErrCompressed); under
// -race there is no data race, and the result is the single compression's.
func TestConcurrentCompressOneCache(t *testing.T) {
	rng, seed := newRNG(t)
	s := kvcache.Shape{Layers: 4, KVHeads: 2, HeadDim: 16}
	base, q := fillCache(t, rng, s, kvcache.Float16, 300, 8, 8)
	prof := randomProfile(rng, s, 8, true)
	for _, m := range []Method{CompressKV, SnapKV, AdaKV} {
		p, err := New(m, Config{Budget: 40, Profile: prof})
		if err != nil {
			t.Fatal(err)
		}
		want := base.Clone()
		if _, err := p.Compress(context.Background(), want, q, 8); err != nil {
			t.Fatal(err)
		}
		c := base.Clone()
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = p.Compress(context.Background(), c, q, 8)
			}()
		}
		wg.Wait()
		ok, busy := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, kvcache.ErrBusy):
				busy++
			case errors.Is(err, ErrCompressed): // compressed by an earlier call
			default:
				t.Fatalf("seed %d: %s: unexpected error %v", seed, m, err)
			}
		}
		if ok != 1 {
			t.Fatalf("seed %d: %s: %d calls succeeded (%d busy), want exactly one", seed, m, ok, busy)
		}
		if !sameSnapshot(snap(want), snap(c)) {
			t.Fatalf("seed %d: %s: concurrent compressions left a different cache than one", seed, m)
		}
		t.Logf("%s: %d succeeded, %d busy", m, ok, busy)
	}
}

// TestAppendWhileCompressing: an Append from another goroutine while a
// policy holds the cache fails with ErrBusy and changes nothing; one that
// comes before or after goes through. Either way the cache stays consistent.
func TestAppendWhileCompressing(t *testing.T) {
	rng, _ := newRNG(t)
	s := kvcache.Shape{Layers: 2, KVHeads: 2, HeadDim: 8}
	c, q := fillCache(t, rng, s, kvcache.Float32, 200, 4, 8)
	p, err := New(SnapKV, Config{Budget: 32})
	if err != nil {
		t.Fatal(err)
	}
	row := make([]float32, s.KVHeads*s.HeadDim)
	var wg sync.WaitGroup
	var appended int
	var compressErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, compressErr = p.Compress(context.Background(), c, q, 4)
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 50; i++ {
			err := c.Append(1, row, row)
			switch {
			case err == nil:
				appended++
			case !errors.Is(err, kvcache.ErrBusy):
				t.Errorf("Append: %v", err)
				return
			}
		}
	}()
	wg.Wait()
	if compressErr != nil && !errors.Is(compressErr, ErrUneven) && !errors.Is(compressErr, kvcache.ErrBusy) {
		t.Fatalf("Compress: %v", compressErr)
	}
	if got := c.Seen(1); got != 200+appended {
		t.Fatalf("layer 1 has seen %d tokens, want %d", got, 200+appended)
	}
}
