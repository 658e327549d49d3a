package cuda

// Tests and benchmarks that need a GPU. They are compiled always and skip,
// saying why, where Open finds no CUDA. tools/gpucheck/run.sh runs them on a
// GPU machine from a test binary cross-compiled with CGO_ENABLED=0.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/internal/reftest"
	"github.com/compresskv/compresskv/kvcache"
)

var (
	gpuOnce sync.Once
	gpuDev  *Device
	gpuErr  error
)

// openGPU returns the process's real Device, or skips the test with the
// reason none is available.
func openGPU(tb testing.TB) *Device {
	tb.Helper()
	gpuOnce.Do(func() { gpuDev, gpuErr = Open(Options{}) })
	if gpuErr != nil {
		tb.Skipf("no CUDA GPU, GPU check skipped: %v", gpuErr)
	}
	return gpuDev
}

func randomHost(tb testing.TB, r *rand.Rand, s kvcache.Shape, dt kvcache.DType, L int) *kvcache.Host {
	h, err := kvcache.NewHost(s, dt)
	if err != nil {
		tb.Fatal(err)
	}
	for l := 0; l < s.Layers; l++ {
		for done := 0; done < L; {
			n := min(L-done, 4096)
			k := reftest.Normal(r, n*s.KVHeads*s.HeadDim, 1)
			v := reftest.Normal(r, n*s.KVHeads*s.HeadDim, 1)
			if err := h.Append(l, k, v); err != nil {
				tb.Fatal(err)
			}
			done += n
		}
	}
	return h
}

var gpuShapes = []struct {
	s     kvcache.Shape
	H, L  int
	dtype kvcache.DType
}{
	{kvcache.Shape{Layers: 1, KVHeads: 8, HeadDim: 128}, 32, 3000, kvcache.Float16},
	{kvcache.Shape{Layers: 1, KVHeads: 2, HeadDim: 64}, 8, 9000, kvcache.BFloat16},
	{kvcache.Shape{Layers: 1, KVHeads: 4, HeadDim: 96}, 4, 777, kvcache.Float32},
	{kvcache.Shape{Layers: 1, KVHeads: 1, HeadDim: 256}, 16, 300, kvcache.Float16},
}

// TestGPUSamePositions: the device selection keeps the CPU backend's
// positions on random inputs (up to near-ties under float32 rounding), and
// compaction keeps the same rows.
func TestGPUSamePositions(t *testing.T) {
	dev := openGPU(t)
	for _, sh := range gpuShapes {
		t.Run(fmt.Sprintf("%v_G%d_H%d_d%d_L%d", sh.dtype, sh.s.KVHeads, sh.H, sh.s.HeadDim, sh.L), func(t *testing.T) {
			r, _ := reftest.Rand(t)
			h := randomHost(t, r, sh.s, sh.dtype, sh.L)
			c, err := dev.Upload(h)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			b := dev.NewBackend()
			defer b.Close()
			const W = 8
			q := reftest.Normal(r, W*sh.H*sh.s.HeadDim, 1)
			all := make([]int, sh.H)
			for i := range all {
				all[i] = i
			}
			sr := []int{sh.H - 1, 0, sh.H / 2}
			for _, sel := range []Selection{
				{Window: W, Heads: sr, PerRow: len(sr), Kernel: 5, Pooling: backend.AvgPool, Keep: sh.L / 5},
				{Window: W, Heads: sr, PerRow: len(sr), Kernel: 7, Pooling: backend.MaxPool, Keep: sh.L / 3},
				{Window: W, Heads: all, PerRow: sh.H / sh.s.KVHeads, Kernel: 5, Pooling: backend.AvgPool, Keep: sh.L / 4},
				{Window: W, Heads: sr, PerRow: 1 * len(sr), Kernel: 17, Pooling: backend.AvgPool, Keep: 100},
			} {
				got, err := b.SelectLayer(c, 0, q, sh.H, sel)
				if err != nil {
					t.Fatal(err)
				}
				want := cpuSelect(t, h, q, sh.H, sel)
				for g := range got {
					checkKeepNearTies(t, got[g], want[g], sh.L-W)
				}
			}
			keep, err := b.CompressLayer(c, 0, q, sh.H, Selection{Window: W, Heads: all, PerRow: sh.H / sh.s.KVHeads, Kernel: 5, Keep: sh.L / 2})
			if err != nil {
				t.Fatal(err)
			}
			if err := h.Compact(0, keep); err != nil {
				t.Fatal(err)
			}
			sameRows(t, h, c, 0)
		})
	}
}

// TestGPUPoolTopKExact runs the device pooling, mean and top-k kernels on
// scores uploaded from the host, full of ties, and requires exactly the CPU
// backend's values and sets.
func TestGPUPoolTopKExact(t *testing.T) {
	dev := openGPU(t)
	r, _ := reftest.Rand(t)
	b := dev.NewBackend()
	defer b.Close()
	for _, n := range []int{2, 100, 1025, 4097, 70000} {
		for _, kern := range []int{1, 5, 17} {
			for _, kind := range []backend.Pooling{backend.AvgPool, backend.MaxPool} {
				rows := make([][]float32, 2)
				for i := range rows {
					rows[i] = make([]float32, n)
					for j := range rows[i] {
						rows[i][j] = float32(r.IntN(7)) / 8 // many ties
						if r.IntN(10) == 0 {
							rows[i][j] = float32(r.NormFloat64())
						}
					}
					if n > 2 {
						rows[i][1] = float32(math.Copysign(0, -1))
					}
				}
				k := min(max(1, n/3), n-1)
				poolMeanTopK(t, dev, b, rows, 1, kern, kind, false, k, 0)
				poolMeanTopK(t, dev, b, rows, 2, kern, kind, true, k, 0)
			}
		}
	}
}

// TestGPUAttendReference: decode attention, attention weights and window
// sums within float32 rounding of the float64 reference.
func TestGPUAttendReference(t *testing.T) {
	dev := openGPU(t)
	for _, sh := range gpuShapes {
		t.Run(fmt.Sprintf("%v_G%d_H%d_d%d_L%d", sh.dtype, sh.s.KVHeads, sh.H, sh.s.HeadDim, sh.L), func(t *testing.T) {
			r, _ := reftest.Rand(t)
			h := randomHost(t, r, sh.s, sh.dtype, sh.L)
			c, err := dev.Upload(h)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			b := dev.NewBackend()
			defer b.Close()
			q := reftest.Normal(r, sh.H*sh.s.HeadDim, 1)
			out := make([]float32, len(q))
			if err := b.Attend(c, 0, q, sh.H, out); err != nil {
				t.Fatal(err)
			}
			want, weights := reftest.Attend(h, 0, q, sh.H)
			for i := range out {
				if math.Abs(float64(out[i])-want[i]) > 1e-5+1e-4*math.Abs(want[i]) {
					t.Fatalf("Attend[%d] = %v, reference %v", i, out[i], want[i])
				}
			}
			aw, err := b.AttentionWeights(c, 0, q, sh.H, nil)
			if err != nil {
				t.Fatal(err)
			}
			for hh := range aw {
				for j := range aw[hh] {
					if math.Abs(float64(aw[hh][j])-weights[hh][j]) > 1e-6+1e-4*weights[hh][j] {
						t.Fatalf("weight[%d][%d] = %v, reference %v", hh, j, aw[hh][j], weights[hh][j])
					}
				}
			}
			const W = 8
			qw := reftest.Normal(r, W*sh.H*sh.s.HeadDim, 1)
			heads := []int{0, sh.H - 1}
			sums := [][]float32{make([]float32, sh.L), make([]float32, sh.L)}
			if err := b.WindowScores(c, 0, qw, W, sh.H, heads, sums); err != nil {
				t.Fatal(err)
			}
			for e, hh := range heads {
				ref := reftest.WindowSums(h, 0, qw, W, sh.H, hh)
				for j := range ref {
					if math.Abs(float64(sums[e][j])-ref[j]) > 1e-6+1e-4*ref[j] {
						t.Fatalf("window sum head %d row %d = %v, reference %v", hh, j, sums[e][j], ref[j])
					}
				}
			}
		})
	}
}

// TestGPUCycles creates, fills, compresses and closes caches and backends
// 1,000 times (100 with -short): no allocation stays live, and device memory
// returns to where it stood after a few warm-up cycles (the first ones load
// the module's kernels lazily and let the driver set up its allocation
// pools, which it keeps).
func TestGPUCycles(t *testing.T) {
	dev := openGPU(t)
	r, _ := reftest.Rand(t)
	s := kvcache.Shape{Layers: 2, KVHeads: 8, HeadDim: 128}
	h := randomHost(t, r, s, kvcache.Float16, 4096)
	q := reftest.Normal(r, 8*32*s.HeadDim, 1)
	cycle := func() {
		c, err := dev.Upload(h)
		if err != nil {
			t.Fatal(err)
		}
		b := dev.NewBackend()
		for l := 0; l < s.Layers; l++ {
			if _, err := b.CompressLayer(c, l, q, 32, Selection{Window: 8, Heads: []int{3, 9, 17, 30}, PerRow: 4, Kernel: 5, Keep: 500}); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	freeCold, total, err := dev.MemInfo()
	if err != nil {
		t.Fatal(err)
	}
	const warmup = 5
	for i := 0; i < warmup; i++ {
		cycle()
	}
	free0, _, err := dev.MemInfo()
	if err != nil {
		t.Fatal(err)
	}
	cycles := 1000
	if testing.Short() {
		cycles = 100
	}
	start := time.Now()
	for i := 0; i < cycles; i++ {
		cycle()
	}
	free1, _, err := dev.MemInfo()
	if err != nil {
		t.Fatal(err)
	}
	if n, bytes := dev.LiveAllocations(); n != 0 {
		t.Fatalf("%d allocations (%d bytes) live after %d cycles", n, bytes, cycles)
	}
	t.Logf("%d cycles in %v; free device memory %d before, %d after %d warm-up cycles, %d after the cycles, of %d",
		cycles, time.Since(start), freeCold, free0, warmup, free1, total)
	if free1 < free0 {
		t.Fatalf("device memory not back to its level after warm-up, %d cycles later: %d bytes fewer free", cycles, free0-free1)
	}
}

// Benchmarks at a Llama-3.1-8B layer shape: 32 query heads, 8 KV heads,
// d = 128, float16.

var benchLens = []int{32 << 10, 128 << 10}

func benchCache(b testing.TB, dev *Device, L int) *Cache {
	r := rand.New(rand.NewPCG(1, 2))
	s := kvcache.Shape{Layers: 1, KVHeads: 8, HeadDim: 128}
	c, err := dev.NewCache(s, kvcache.Float16)
	if err != nil {
		b.Fatal(err)
	}
	for done := 0; done < L; {
		n := min(L-done, 8192)
		k := reftest.Normal(r, n*s.KVHeads*s.HeadDim, 1)
		if err := c.Append(0, k, k); err != nil {
			b.Fatal(err)
		}
		done += n
	}
	return c
}

// BenchmarkGPUSelectCompact: CompressKV's selection of one layer on the
// device (4 SR heads on 4 KV heads, W = 8, avg pooling 5, budget 2048) and
// the compaction of its 8 KV heads. GB/s counts the keys of the SR heads'
// KV heads read once and the kept rows read and written.
func BenchmarkGPUSelectCompact(b *testing.B) {
	dev := openGPU(b)
	for _, L := range benchLens {
		b.Run(fmt.Sprintf("L=%dK", L>>10), func(b *testing.B) {
			pristine := benchCache(b, dev, L)
			defer pristine.Close()
			be := dev.NewBackend()
			defer be.Close()
			q := reftest.Normal(rand.New(rand.NewPCG(3, 4)), 8*32*128, 1)
			sel := Selection{Window: 8, Heads: []int{0, 8, 16, 24}, PerRow: 4, Kernel: 5, Keep: 2040}
			var total time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				c, err := pristine.Clone()
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				t0 := time.Now()
				if _, err := be.CompressLayer(c, 0, q, 32, sel); err != nil {
					b.Fatal(err)
				}
				total += time.Since(t0)
				b.StopTimer()
				c.Close()
				b.StartTimer()
			}
			ms := total.Seconds() * 1e3 / float64(b.N)
			bytes := 4.0*float64(L)*128*2 + 2*2*8*2048*128*2
			b.ReportMetric(ms, "ms/layer")
			b.ReportMetric(bytes/(ms*1e-3)/1e9, "GB/s")
		})
	}
}

// BenchmarkGPUAttend: decode attention of one token over one layer; GB/s
// counts every key and value read once.
func BenchmarkGPUAttend(b *testing.B) {
	dev := openGPU(b)
	for _, L := range benchLens {
		b.Run(fmt.Sprintf("L=%dK", L>>10), func(b *testing.B) {
			c := benchCache(b, dev, L)
			defer c.Close()
			be := dev.NewBackend()
			defer be.Close()
			q := reftest.Normal(rand.New(rand.NewPCG(5, 6)), 32*128, 1)
			out := make([]float32, len(q))
			b.ResetTimer()
			t0 := time.Now()
			for i := 0; i < b.N; i++ {
				if err := be.Attend(c, 0, q, 32, out); err != nil {
					b.Fatal(err)
				}
			}
			ms := time.Since(t0).Seconds() * 1e3 / float64(b.N)
			bytes := 2.0 * 8 * float64(L) * 128 * 2
			b.ReportMetric(ms, "ms/token")
			b.ReportMetric(bytes/(ms*1e-3)/1e9, "GB/s")
		})
	}
}

// TestGPUGEMMWindow: on a GPU with cuBLAS, H2O's all-query window sums
// computed with SGEMM agree with the fused kernels and with the float64
// reference.
func TestGPUGEMMWindow(t *testing.T) {
	dev := openGPU(t)
	if _, err := dev.BLAS(); err != nil {
		t.Skipf("no cuBLAS: %v", err)
	}
	for _, sh := range gpuShapes {
		L := min(sh.L, 1500)
		t.Run(fmt.Sprintf("%v_G%d_H%d_d%d_L%d", sh.dtype, sh.s.KVHeads, sh.H, sh.s.HeadDim, L), func(t *testing.T) {
			r, _ := reftest.Rand(t)
			h := randomHost(t, r, sh.s, sh.dtype, L)
			c, err := dev.Upload(h)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			q := reftest.Normal(r, L*sh.H*sh.s.HeadDim, 1)
			heads := []int{0, sh.H - 1}
			sums := func(minWindow int) [][]float32 {
				b := dev.NewBackend()
				defer b.Close()
				b.gemmMinWindow, b.gemmChunk = minWindow, 1<<20 // several chunks
				out := [][]float32{make([]float32, L), make([]float32, L)}
				if err := b.WindowScores(c, 0, q, L, sh.H, heads, out); err != nil {
					t.Fatal(err)
				}
				return out
			}
			gemm, fused := sums(1), sums(1<<30)
			for e, hh := range heads {
				ref := reftest.WindowSums(h, 0, q, L, sh.H, hh)
				for j := range ref {
					tol := 1e-6 + 1e-4*ref[j]
					if math.Abs(float64(gemm[e][j])-ref[j]) > tol || math.Abs(float64(fused[e][j])-ref[j]) > tol {
						t.Fatalf("head %d key %d: cuBLAS %v, fused %v, reference %v", hh, j, gemm[e][j], fused[e][j], ref[j])
					}
				}
			}
		})
	}
}

// BenchmarkGPUH2OScores: H2O's scoring of one layer (every prompt query
// against every key, causal, all 32 query heads), with cuBLAS SGEMM and with
// the fused window kernels. TFLOP/s counts the 2*L*L*d multiply-adds of the
// logits per head (the causal half included, as both compute it).
func BenchmarkGPUH2OScores(b *testing.B) {
	dev := openGPU(b)
	for _, L := range []int{4 << 10, 16 << 10} {
		c := benchCache(b, dev, L)
		q := reftest.Normal(rand.New(rand.NewPCG(7, 8)), L*32*128, 1)
		heads := make([]int, 32)
		out := make([][]float32, 32)
		for i := range heads {
			heads[i], out[i] = i, make([]float32, L)
		}
		for _, path := range []string{"cublas", "fused"} {
			b.Run(fmt.Sprintf("L=%dK/%s", L>>10, path), func(b *testing.B) {
				be := dev.NewBackend()
				defer be.Close()
				if path == "fused" {
					be.gemmMinWindow = 1 << 30
				} else if _, err := dev.BLAS(); err != nil {
					b.Skipf("no cuBLAS: %v", err)
				}
				if err := be.WindowScores(c, 0, q, L, 32, heads, out); err != nil { // warm-up
					b.Fatal(err)
				}
				b.ResetTimer()
				t0 := time.Now()
				for i := 0; i < b.N; i++ {
					if err := be.WindowScores(c, 0, q, L, 32, heads, out); err != nil {
						b.Fatal(err)
					}
				}
				ms := time.Since(t0).Seconds() * 1e3 / float64(b.N)
				b.ReportMetric(ms, "ms/layer")
				b.ReportMetric(2*32*float64(L)*float64(L)*128/(ms*1e-3)/1e12, "TFLOP/s")
			})
		}
		c.Close()
	}
}
