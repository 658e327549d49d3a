package compresskv

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/internal/reftest"
	"github.com/compresskv/compresskv/kvcache"
)

func TestChooseBackendHostCache(t *testing.T) {
	h, err := kvcache.NewHost(kvcache.Shape{Layers: 1, KVHeads: 1, HeadDim: 4}, kvcache.Float32)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"", "auto", "cpu", "CPU"} {
		b, reason, err := ChooseBackend(h, want)
		if err != nil || b.Name() != "cpu" || !strings.HasPrefix(reason, "cpu: ") {
			t.Fatalf("ChooseBackend(host, %q) = %v, %q, %v", want, b, reason, err)
		}
		if (want == "" || want == "auto") && !strings.Contains(reason, "host memory") {
			t.Fatalf("the reason does not say why the CPU: %q", reason)
		}
		t.Logf("%q: %.200s", want, reason)
	}
	if _, _, err := ChooseBackend(h, "cuda"); !errors.Is(err, ErrConfig) {
		t.Fatalf("cuda on a host cache: %v", err)
	}
	if _, _, err := ChooseBackend(h, "tpu"); !errors.Is(err, ErrConfig) {
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
	res, err := p.Compress(context.Background(), h, q, 4)
	if err != nil {
		t.Fatal(err)
	}
	if res.Backend != "cpu" || !strings.HasPrefix(res.BackendReason, "cpu: the cache") || h.Len(0, 0) != 16 {
		t.Fatalf("backend %q reason %q, %d rows", res.Backend, res.BackendReason, h.Len(0, 0))
	}
}
