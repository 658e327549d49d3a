package cuda

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/internal/reftest"
	"github.com/compresskv/compresskv/kvcache"
)

// openFake opens a Device on a fake GPU and closes it at the end of the test,
// checking that nothing leaked.
func openFake(t *testing.T) (*Device, *fakeGPU) {
	t.Helper()
	f := newFakeGPU()
	d, err := openAPI(f.api(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if n, b := d.LiveAllocations(); n != 0 {
			t.Errorf("%d allocations (%d bytes) live at the end", n, b)
		}
		if err := d.Close(); err != nil {
			t.Error(err)
		}
		if n := f.live(); n != 0 {
			t.Errorf("fake GPU holds %d allocations after Close", n)
		}
		if len(f.tids) != 1 {
			t.Errorf("CUDA was called from %d OS threads, want 1", len(f.tids))
		}
		for _, err := range f.faults {
			t.Errorf("kernel fault: %v", err)
		}
	})
	return d, f
}

// twin fills a host cache and a device cache with the same random rows.
func twin(t *testing.T, r *rand.Rand, d *Device, s kvcache.Shape, dt kvcache.DType, n int) (*kvcache.Host, *Cache) {
	t.Helper()
	return twinEdit(t, r, d, s, dt, n, nil)
}

// twinEdit is twin with edit (when not nil) applied to the keys of append i
// (0 or 1) of layer l before they go into both caches.
func twinEdit(t *testing.T, r *rand.Rand, d *Device, s kvcache.Shape, dt kvcache.DType, n int, edit func(l, i int, k []float32)) (*kvcache.Host, *Cache) {
	t.Helper()
	h, err := kvcache.NewHost(s, dt)
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.NewCache(s, dt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for l := 0; l < s.Layers; l++ {
		// Two appends, so that the device buffers grow once.
		for i, m := range []int{n / 3, n - n/3} {
			k := reftest.Normal(r, m*s.KVHeads*s.HeadDim, 1)
			v := reftest.Normal(r, m*s.KVHeads*s.HeadDim, 1)
			if edit != nil {
				edit(l, i, k)
			}
			if err := h.Append(l, k, v); err != nil {
				t.Fatal(err)
			}
			if err := c.Append(l, k, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	return h, c
}

func sameRows(t *testing.T, h *kvcache.Host, c *Cache, l int) {
	t.Helper()
	for g := 0; g < h.Shape().KVHeads; g++ {
		hp, cp := h.Positions(l, g, nil), c.Positions(l, g, nil)
		if !slices.Equal(hp, cp) {
			t.Fatalf("layer %d head %d: positions %v, host %v", l, g, cp, hp)
		}
		hk, hv := h.Rows(l, g)
		ck, cv, err := c.ReadRows(l, g)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(hk.F32, ck.F32) || !slices.Equal(hk.U16, ck.U16) || !slices.Equal(hv.F32, cv.F32) || !slices.Equal(hv.U16, cv.U16) {
			t.Fatalf("layer %d head %d: device rows differ from the host's", l, g)
		}
	}
	if h.Bytes() != c.Bytes() || h.Seen(l) != c.Seen(l) {
		t.Fatalf("Bytes %d Seen %d, host %d %d", c.Bytes(), c.Seen(l), h.Bytes(), h.Seen(l))
	}
}

func closeTo(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Abs(float64(got[i]-want[i])) > tol*(1+math.Abs(float64(want[i]))) {
			t.Fatalf("%s[%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}

var fakeShapes = []struct {
	s     kvcache.Shape
	H, L  int
	dtype kvcache.DType
}{
	{kvcache.Shape{Layers: 2, KVHeads: 2, HeadDim: 16}, 4, 300, kvcache.Float32},
	{kvcache.Shape{Layers: 1, KVHeads: 1, HeadDim: 8}, 2, 40, kvcache.Float16},
	{kvcache.Shape{Layers: 1, KVHeads: 3, HeadDim: 12}, 6, 530, kvcache.BFloat16},
}

// TestFakeMatchesCPU runs the backend on the fake GPU (the PTX kernels in the
// executor) and compares every operation with the CPU backend.
func TestFakeMatchesCPU(t *testing.T) {
	for i, sh := range fakeShapes {
		if testing.Short() && i == len(fakeShapes)-1 {
			continue // the largest shape: kernels/compresskv.ptx runs in the executor
		}
		t.Run(fmt.Sprintf("%v_G%d_H%d_d%d_L%d", sh.dtype, sh.s.KVHeads, sh.H, sh.s.HeadDim, sh.L), func(t *testing.T) {
			r, _ := reftest.Rand(t)
			dev, f := openFake(t)
			h, c := twin(t, r, dev, sh.s, sh.dtype, sh.L)
			sameRows(t, h, c, 0)
			b := dev.NewBackend()
			defer b.Close()
			ref := cpu.New()
			const W = 8
			q := reftest.Normal(r, W*sh.H*sh.s.HeadDim, 1)
			heads := []int{sh.H - 1, 0, sh.H / 2, 0}
			got, want := make([][]float32, len(heads)), make([][]float32, len(heads))
			for i := range heads {
				got[i], want[i] = make([]float32, sh.L), make([]float32, sh.L)
			}
			if err := b.WindowScores(c, 0, q, W, sh.H, heads, got); err != nil {
				t.Fatal(err)
			}
			if err := ref.WindowScores(h, 0, q, W, sh.H, heads, want); err != nil {
				t.Fatal(err)
			}
			for i := range heads {
				closeTo(t, fmt.Sprintf("WindowScores head %d", heads[i]), got[i], want[i], 1e-4)
			}
			q1 := q[:sh.H*sh.s.HeadDim]
			out, wantOut := make([]float32, len(q1)), make([]float32, len(q1))
			if err := b.Attend(c, 0, q1, sh.H, out); err != nil {
				t.Fatal(err)
			}
			if err := ref.Attend(h, 0, q1, sh.H, wantOut); err != nil {
				t.Fatal(err)
			}
			closeTo(t, "Attend", out, wantOut, 1e-4)
			aw, err := b.AttentionWeights(c, 0, q1, sh.H, nil)
			if err != nil {
				t.Fatal(err)
			}
			awant, _ := ref.AttentionWeights(h, 0, q1, sh.H, nil)
			for i := range aw {
				closeTo(t, "AttentionWeights", aw[i], awant[i], 1e-4)
			}

			// Device selection against the CPU pipeline on the same scores
			// up to rounding: SR style (one shared row) and SnapKV style.
			for _, kind := range []backend.Pooling{backend.AvgPool, backend.MaxPool} {
				sel := Selection{Window: W, Heads: heads[:3], PerRow: 3, Kernel: 5, Pooling: kind, Keep: sh.L / 4}
				keep, err := b.SelectLayer(c, 0, q, sh.H, sel)
				if err != nil {
					t.Fatal(err)
				}
				checkKeepNearTies(t, keep[0], cpuSelect(t, h, q, sh.H, sel)[0], sh.L-W)
				all := make([]int, sh.H)
				for i := range all {
					all[i] = i
				}
				sel = Selection{Window: W, Heads: all, PerRow: sh.H / sh.s.KVHeads, Kernel: 3, Pooling: kind, Keep: sh.L / 3}
				keep, err = b.SelectLayer(c, 0, q, sh.H, sel)
				if err != nil {
					t.Fatal(err)
				}
				wantKeep := cpuSelect(t, h, q, sh.H, sel)
				for g := range keep {
					checkKeepNearTies(t, keep[g], wantKeep[g], sh.L-W)
				}
			}

			// Compaction with different counts per head; then append more.
			keep := make([][]int, sh.s.KVHeads)
			for g := range keep {
				for j := 0; j < sh.L; j++ {
					if r.IntN(3+g) == 0 {
						keep[g] = append(keep[g], j)
					}
				}
			}
			if err := b.Compact(c, 0, keep); err != nil {
				t.Fatal(err)
			}
			if err := h.Compact(0, keep); err != nil {
				t.Fatal(err)
			}
			sameRows(t, h, c, 0)
			k := reftest.Normal(r, 2*sh.s.KVHeads*sh.s.HeadDim, 1)
			if err := c.Append(0, k, k); err != nil {
				t.Fatal(err)
			}
			if err := h.Append(0, k, k); err != nil {
				t.Fatal(err)
			}
			sameRows(t, h, c, 0)
			if f.launches["gather_rows"] == 0 || f.launches["topk_write"] == 0 || f.launches["attend_merge"] == 0 {
				t.Fatalf("kernels launched: %v", f.launches)
			}
		})
	}
}

// cpuSelect is the policies' selection on the CPU backend: window sums of
// sel.Heads, pooled, averaged per row, top-k, plus the window.
func cpuSelect(t *testing.T, h *kvcache.Host, q []float32, H int, sel Selection) [][]int {
	t.Helper()
	b := cpu.New()
	L := h.Len(0, 0)
	P := L - sel.Window
	rows := make([][]float32, len(sel.Heads))
	for i := range rows {
		rows[i] = make([]float32, L)
	}
	if err := b.WindowScores(h, 0, q, sel.Window, H, sel.Heads, rows); err != nil {
		t.Fatal(err)
	}
	var keep [][]int
	for o := 0; o < len(rows)/sel.PerRow; o++ {
		mean := make([]float32, P)
		for _, r := range rows[o*sel.PerRow : (o+1)*sel.PerRow] {
			p := make([]float32, P)
			if err := b.Pool(p, r[:P], sel.Kernel, sel.Pooling); err != nil {
				t.Fatal(err)
			}
			for j, v := range p {
				mean[j] += v
			}
		}
		for j := range mean {
			mean[j] *= 1 / float32(sel.PerRow)
		}
		idx, err := b.TopK(nil, mean, sel.Keep)
		if err != nil {
			t.Fatal(err)
		}
		for j := P; j < L; j++ {
			idx = append(idx, j)
		}
		keep = append(keep, idx)
	}
	if len(keep) == 1 {
		for len(keep) < h.Shape().KVHeads {
			keep = append(keep, keep[0])
		}
	}
	return keep
}

// checkKeepNearTies requires the same kept rows, except that at most a few
// positions may trade places when their scores differ by rounding only; the
// caller's scores are not at hand here, so any difference is reported, and
// more than 2 is a failure.
func checkKeepNearTies(t *testing.T, got, want []int, prefix int) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("kept %d rows, want %d", len(got), len(want))
	}
	if !slices.IsSorted(got) {
		t.Fatalf("kept rows not ascending: %v", got)
	}
	diff := 0
	for _, j := range got {
		if _, ok := slices.BinarySearch(want, j); !ok {
			diff++
		}
	}
	if diff > 0 {
		t.Logf("%d kept positions differ from the CPU's (near-ties under float32 rounding)", diff)
	}
	if diff > 2 {
		t.Fatalf("kept %v, CPU keeps %v", got, want)
	}
}

// TestFakeCycles creates, compresses and closes caches and backends many
// times: no allocation stays live, on the wrapper's count and the fake's.
func TestFakeCycles(t *testing.T) {
	dev, f := openFake(t)
	r, _ := reftest.Rand(t)
	s := kvcache.Shape{Layers: 2, KVHeads: 2, HeadDim: 8}
	cycles := 100
	if testing.Short() {
		cycles = 20
	}
	for i := 0; i < cycles; i++ {
		c, err := dev.NewCache(s, kvcache.DType(i%3))
		if err != nil {
			t.Fatal(err)
		}
		b := dev.NewBackend()
		for l := 0; l < s.Layers; l++ {
			k := reftest.Normal(r, 40*s.KVHeads*s.HeadDim, 1)
			if err := c.Append(l, k, k); err != nil {
				t.Fatal(err)
			}
			q := reftest.Normal(r, 4*4*s.HeadDim, 1)
			if _, err := b.CompressLayer(c, l, q, 4, Selection{Window: 4, Heads: []int{1, 2}, PerRow: 2, Kernel: 3, Keep: 10}); err != nil {
				t.Fatal(err)
			}
			if c.Len(l, 0) != 14 {
				t.Fatalf("%d rows after compression, want 14", c.Len(l, 0))
			}
		}
		if err := dev.Close(); err == nil {
			t.Fatal("Device.Close succeeded with a cache open")
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if n, _ := dev.LiveAllocations(); n != 0 || f.live() != 0 {
			t.Fatalf("cycle %d: %d allocations live (fake: %d)", i, n, f.live())
		}
	}
	free, total, err := dev.MemInfo()
	if err != nil || free != total {
		t.Fatalf("MemInfo: free %d of %d, %v", free, total, err)
	}
}

// TestFakeConcurrent uses one backend from several goroutines on distinct
// layers; every CUDA call still comes from one OS thread (openFake checks).
func TestFakeConcurrent(t *testing.T) {
	dev, _ := openFake(t)
	r, _ := reftest.Rand(t)
	s := kvcache.Shape{Layers: 4, KVHeads: 2, HeadDim: 8}
	h, c := twin(t, r, dev, s, kvcache.Float16, 64)
	b := dev.NewBackend()
	defer b.Close()
	q := reftest.Normal(r, 4*s.HeadDim, 1)
	var wg sync.WaitGroup
	outs := make([][]float32, s.Layers)
	errs := make([]error, s.Layers)
	for l := 0; l < s.Layers; l++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[l] = make([]float32, len(q))
			for i := 0; i < 5 && errs[l] == nil; i++ {
				errs[l] = b.Attend(c, l, q, 4, outs[l])
			}
		}()
	}
	wg.Wait()
	for l, err := range errs {
		if err != nil {
			t.Fatalf("layer %d: %v", l, err)
		}
		want := make([]float32, len(q))
		if err := cpu.New().Attend(h, l, q, 4, want); err != nil {
			t.Fatal(err)
		}
		closeTo(t, fmt.Sprintf("layer %d Attend", l), outs[l], want, 1e-4)
	}
}

// TestFakeErrors checks that CUDA failures come back as named errors and
// leave the cache as it was, and that misuse is reported.
func TestFakeErrors(t *testing.T) {
	dev, f := openFake(t)
	s := kvcache.Shape{Layers: 1, KVHeads: 2, HeadDim: 4}
	c, err := dev.NewCache(s, kvcache.Float32)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	k := make([]float32, 3*s.KVHeads*s.HeadDim)
	if err := c.Append(0, k, k); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.failAfter = f.mallocs
	f.mu.Unlock()
	big := make([]float32, 100*s.KVHeads*s.HeadDim)
	err = c.Append(0, big, big)
	var ce *Error
	if !errors.As(err, &ce) || ce.Name != "CUDA_ERROR_OUT_OF_MEMORY" || !strings.Contains(err.Error(), "cuMemAllocAsync") {
		t.Fatalf("Append with a failing allocation: %v", err)
	}
	if c.Len(0, 0) != 3 || c.Seen(0) != 3 {
		t.Fatalf("failed Append changed the cache: %d rows, seen %d", c.Len(0, 0), c.Seen(0))
	}
	f.mu.Lock()
	f.failAfter = 0
	f.mu.Unlock()
	k[0] = float32(math.NaN())
	if err := c.Append(0, k, k); !errors.Is(err, kvcache.ErrNonFinite) {
		t.Fatalf("NaN append: %v", err)
	}
	if err := c.Compact(0, [][]int{{1, 0}, {0}}); err == nil {
		t.Fatal("Compact with unsorted rows succeeded")
	}
	b := dev.NewBackend()
	defer b.Close()
	hc, _ := kvcache.NewHost(s, kvcache.Float32)
	if err := b.Attend(hc, 0, make([]float32, 2*4), 2, make([]float32, 8)); err == nil || !strings.Contains(err.Error(), "not a device cache") {
		t.Fatalf("Attend on a host cache: %v", err)
	}
	if _, err := dev.NewCache(kvcache.Shape{Layers: 1, KVHeads: 1, HeadDim: 512}, kvcache.Float32); err == nil {
		t.Fatal("head dimension 512 accepted")
	}
	c2, _ := dev.NewCache(s, kvcache.Float32)
	c2.Close()
	if err := c2.Append(0, k[:8], k[:8]); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
}

// TestFakeUpload: Upload copies a host cache, compacted unevenly, to the
// device: the same positions, rows, Seen and Bytes.
func TestFakeUpload(t *testing.T) {
	r, _ := reftest.Rand(t)
	dev, _ := openFake(t)
	s := kvcache.Shape{Layers: 2, KVHeads: 2, HeadDim: 16}
	for _, dt := range []kvcache.DType{kvcache.Float32, kvcache.BFloat16} {
		h, err := kvcache.NewHost(s, dt)
		if err != nil {
			t.Fatal(err)
		}
		for l := 0; l < s.Layers; l++ {
			k := reftest.Normal(r, 50*s.KVHeads*s.HeadDim, 1)
			if err := h.Append(l, k, k); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.Compact(1, [][]int{{0, 7, 9}, {3}}); err != nil {
			t.Fatal(err)
		}
		c, err := dev.Upload(h)
		if err != nil {
			t.Fatal(err)
		}
		for l := 0; l < s.Layers; l++ {
			sameRows(t, h, c, l)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
