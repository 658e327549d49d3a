package compresskv

import (
	"errors"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/backend/cuda"
	"github.com/compresskv/compresskv/internal/reftest"
	"github.com/compresskv/compresskv/kvcache"
)

func TestSelectBackendHostCache(t *testing.T) {
	h, err := kvcache.NewHost(kvcache.Shape{Layers: 1, KVHeads: 1, HeadDim: 4}, kvcache.Float32)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"", "auto", "cpu", "CPU"} {
		b, reason, err := SelectBackend(h, want)
		if err != nil || b.Name() != "cpu" || !strings.HasPrefix(reason, "cpu: ") {
			t.Fatalf("SelectBackend(host, %q) = %v, %q, %v", want, b, reason, err)
		}
		if (want == "" || want == "auto") && !strings.Contains(reason, "host memory") {
			t.Fatalf("the reason does not say why the CPU: %q", reason)
		}
		t.Logf("%q: %.200s", want, reason)
	}
	if _, _, err := SelectBackend(h, "cuda"); !errors.Is(err, ErrConfig) {
		t.Fatalf("cuda on a host cache: %v", err)
	}
	if _, _, err := SelectBackend(h, "tpu"); !errors.Is(err, ErrConfig) {
		t.Fatalf("unknown backend: %v", err)
	}
}

// TestCompressReportsBackend: a policy without Config.Backend picks per cache
// and says why in the result.
func TestCompressReportsBackend(t *testing.T) {
	r, _ := reftest.Rand(t)
	s := kvcache.Shape{Layers: 2, KVHeads: 2, HeadDim: 8}
	h, _ := kvcache.NewHost(s, kvcache.Float16)
	for l := 0; l < s.Layers; l++ {
		k := reftest.Normal(r, 64*s.KVHeads*s.HeadDim, 1)
		if err := h.Append(l, k, k); err != nil {
			t.Fatal(err)
		}
	}
	p, err := New(SnapKV, Config{Budget: 16})
	if err != nil {
		t.Fatal(err)
	}
	q := [][]float32{reftest.Normal(r, 8*4*8, 1), reftest.Normal(r, 8*4*8, 1)}
	res, err := p.Compress(h, q, 4)
	if err != nil {
		t.Fatal(err)
	}
	if res.Backend != "cpu" || !strings.HasPrefix(res.BackendReason, "cpu: the cache") || h.Len(0, 0) != 16 {
		t.Fatalf("backend %q reason %q, %d rows", res.Backend, res.BackendReason, h.Len(0, 0))
	}
}

// TestSelectBackendDeviceCache needs a GPU: a device cache picks CUDA, and a
// policy compresses it there with the same kept positions as on the CPU.
func TestSelectBackendDeviceCache(t *testing.T) {
	if err := cuda.Available(); err != nil {
		t.Skipf("no CUDA GPU, device selection not checked: %v", err)
	}
	dev, err := cuda.Open(cuda.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	r, _ := reftest.Rand(t)
	s := kvcache.Shape{Layers: 2, KVHeads: 2, HeadDim: 8}
	h, _ := kvcache.NewHost(s, kvcache.Float16)
	for l := 0; l < s.Layers; l++ {
		k := reftest.Normal(r, 64*s.KVHeads*s.HeadDim, 1)
		if err := h.Append(l, k, k); err != nil {
			t.Fatal(err)
		}
	}
	c, err := dev.Upload(h)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, _ := New(SnapKV, Config{Budget: 16})
	q := [][]float32{reftest.Normal(r, 8*4*8, 1), reftest.Normal(r, 8*4*8, 1)}
	res, err := p.Compress(c, q, 4)
	if err != nil {
		t.Fatal(err)
	}
	if res.Backend != "cuda" || !strings.HasPrefix(res.BackendReason, "cuda: ") {
		t.Fatalf("backend %q, reason %q", res.Backend, res.BackendReason)
	}
	if _, err := p.Compress(h, q, 4); err != nil {
		t.Fatal(err)
	}
	for l := 0; l < s.Layers; l++ {
		for g := 0; g < s.KVHeads; g++ {
			a, b := h.Positions(l, g, nil), c.Positions(l, g, nil)
			if len(a) != len(b) {
				t.Fatalf("layer %d head %d: %d vs %d rows", l, g, len(a), len(b))
			}
		}
	}
}
