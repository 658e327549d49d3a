package cuda

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/internal/reftest"
	"github.com/compresskv/compresskv/kvcache"
)

// randomProfile returns a profile for shape s with H query heads whose SR
// heads are a random permutation of every layer's heads.
func randomProfile(r *rand.Rand, s kvcache.Shape, H int) *compresskv.Profile {
	p := &compresskv.Profile{Version: compresskv.ProfileVersion,
		Model: compresskv.ModelInfo{Name: "random", Layers: s.Layers, QueryHeads: H, KVHeads: s.KVHeads, HeadDim: s.HeadDim}}
	for l := 0; l < s.Layers; l++ {
		p.HeadRanking = append(p.HeadRanking, r.Perm(H))
		p.LayerWeights = append(p.LayerWeights, r.Float64()+0.1)
	}
	return p
}

// TestPolicyUsesLayerSelector: a policy over a device cache picks the CUDA
// backend by itself (the cache is a backend.Resident) and selects through its
// fused SelectLayer; the kept sets equal those of the same policy on the CPU
// over a host copy, for SnapKV (group mean, then pooling) and CompressKV (pool
// each SR head, then mean), with average and max pooling.
func TestPolicyUsesLayerSelector(t *testing.T) {
	d, f := openFake(t)
	r, seed := reftest.Rand(t)
	s := kvcache.Shape{Layers: 2, KVHeads: 2, HeadDim: 16}
	const H, L, W = 8, 260, 8
	prof := randomProfile(r, s, H)
	for _, m := range []compresskv.Method{compresskv.SnapKV, compresskv.CompressKV} {
		for _, kind := range []backend.Pooling{backend.AvgPool, backend.MaxPool} {
			name := fmt.Sprintf("%s/%v seed %d", m, kind, seed)
			h, c := twin(t, r, d, s, kvcache.Float32, L)
			q := make([][]float32, s.Layers)
			for l := range q {
				q[l] = reftest.Normal(r, W*H*s.HeadDim, 1.5)
			}
			cfg := compresskv.Config{Budget: 64, Window: W, Kernel: 7, Pooling: kind, Profile: prof}
			p, err := compresskv.New(m, cfg)
			if err != nil {
				t.Fatal(err)
			}
			before := f.launches["topk_write"]
			res, err := p.Compress(context.Background(), c, q, H)
			if err != nil {
				t.Fatal(name, err)
			}
			if res.Backend != "cuda" || !strings.HasPrefix(res.BackendReason, "cuda: the cache lives on") {
				t.Fatalf("%s: backend %q (%q)", name, res.Backend, res.BackendReason)
			}
			if f.launches["topk_write"] == before {
				t.Fatalf("%s: the fused device selection did not run", name)
			}
			cfg.Backend = cpu.New()
			pc, err := compresskv.New(m, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pc.Compress(context.Background(), h, q, H); err != nil {
				t.Fatal(name, err)
			}
			for l := 0; l < s.Layers; l++ {
				for g := 0; g < s.KVHeads; g++ {
					got, want := c.Positions(l, g, nil), h.Positions(l, g, nil)
					checkKeepNearTies(t, toInts(got), toInts(want), L-W)
				}
			}
		}
	}
}

func toInts(p []int32) []int {
	out := make([]int, len(p))
	for i, v := range p {
		out[i] = int(v)
	}
	return out
}

// TestChooseBackendRegistered: linking this package registers "cuda", so a
// host cache asked to run on CUDA gets the lookup's reason, not "unknown".
func TestChooseBackendRegistered(t *testing.T) {
	if _, ok := backend.Registered("cuda"); !ok {
		t.Fatal("backend/cuda did not register itself")
	}
	h, _ := kvcache.NewHost(kvcache.Shape{Layers: 1, KVHeads: 1, HeadDim: 4}, kvcache.Float32)
	_, _, err := compresskv.ChooseBackend(h, "cuda")
	if err == nil || strings.Contains(err.Error(), "unlinked") || !strings.Contains(err.Error(), "host memory") {
		t.Fatalf("cuda on a host cache: %v", err)
	}
}

// TestGPUPolicyDeviceCache needs a GPU: a device cache picks CUDA, and a
// policy compresses it there with the same kept positions as on the CPU.
func TestGPUPolicyDeviceCache(t *testing.T) {
	dev := openGPU(t)
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
	p, _ := compresskv.New(compresskv.SnapKV, compresskv.Config{Budget: 16})
	q := [][]float32{reftest.Normal(r, 8*4*8, 1), reftest.Normal(r, 8*4*8, 1)}
	res, err := p.Compress(context.Background(), c, q, 4)
	if err != nil {
		t.Fatal(err)
	}
	if res.Backend != "cuda" || !strings.HasPrefix(res.BackendReason, "cuda: ") {
		t.Fatalf("backend %q, reason %q", res.Backend, res.BackendReason)
	}
	if _, err := p.Compress(context.Background(), h, q, 4); err != nil {
		t.Fatal(err)
	}
	for l := 0; l < s.Layers; l++ {
		for g := 0; g < s.KVHeads; g++ {
			checkKeepNearTies(t, toInts(c.Positions(l, g, nil)), toInts(h.Positions(l, g, nil)), 64-8)
		}
	}
}
