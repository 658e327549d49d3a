package cuda

// cuBLAS on the fake GPU, and the window sums computed with it compared
// with the CPU backend and with the fused kernels.

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"unsafe"

	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/internal/reftest"
	"github.com/compresskv/compresskv/kvcache"
)

// addBLAS gives the fake GPU's table a cuBLAS whose SGEMM is a Go GEMM
// accumulating in float64; gemms counts its calls.
func (f *fakeGPU) addBLAS(a *api, gemms *int) {
	b := &blasAPI{path: "fake/libcublas.so.12"}
	handle := uintptr(0)
	b.cublasCreate = func(h *uintptr) int32 {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.enter()
		handle = 0xb1a5
		*h = handle
		return 0
	}
	b.cublasDestroy = func(h uintptr) int32 {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.enter()
		if h != handle || h == 0 {
			return 1 // CUBLAS_STATUS_NOT_INITIALIZED
		}
		handle = 0
		return 0
	}
	b.cublasSetStream = func(h, s uintptr) int32 {
		if h != handle || h == 0 {
			return 1
		}
		return 0
	}
	b.cublasSgemmStridedBatched = func(h uintptr, ta, tb int32, m, n, k int32, alpha *float32, pa uintptr, lda int32, sa int64,
		pb uintptr, ldb int32, sb int64, beta *float32, pc uintptr, ldc int32, sc int64, batch int32) int32 {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.enter()
		if h != handle || h == 0 {
			return 1
		}
		if m < 0 || n < 0 || k < 0 || batch < 0 || ldc < max(1, m) ||
			(ta == blasOpN && lda < max(1, m)) || (ta == blasOpT && lda < max(1, k)) ||
			(tb == blasOpN && ldb < max(1, k)) || (tb == blasOpT && ldb < max(1, n)) {
			return 7 // CUBLAS_STATUS_INVALID_VALUE
		}
		*gemms++
		if m == 0 || n == 0 {
			return 0
		}
		// Elements spanned by a column-major rows x cols operand of leading
		// dimension ld.
		span := func(rows, cols, ld int32) int { return int(cols-1)*int(ld) + int(rows) }
		for bi := int64(0); bi < int64(batch); bi++ {
			var A, B []float32
			if k > 0 {
				if ta == blasOpN {
					A = f.f32(pa+uintptr(4*bi*sa), span(m, k, lda))
				} else {
					A = f.f32(pa+uintptr(4*bi*sa), span(k, m, lda))
				}
				if tb == blasOpN {
					B = f.f32(pb+uintptr(4*bi*sb), span(k, n, ldb))
				} else {
					B = f.f32(pb+uintptr(4*bi*sb), span(n, k, ldb))
				}
			}
			C := f.f32(pc+uintptr(4*bi*sc), span(m, n, ldc))
			for j := 0; j < int(n); j++ {
				for i := 0; i < int(m); i++ {
					var s float64
					for p := 0; p < int(k); p++ {
						var av, bv float32
						if ta == blasOpT {
							av = A[p+i*int(lda)]
						} else {
							av = A[i+p*int(lda)]
						}
						if tb == blasOpT {
							bv = B[j+p*int(ldb)]
						} else {
							bv = B[p+j*int(ldb)]
						}
						s += float64(av) * float64(bv)
					}
					r := float64(*alpha) * s
					if *beta != 0 {
						r += float64(*beta) * float64(C[i+j*int(ldc)])
					}
					C[i+j*int(ldc)] = float32(r)
				}
			}
		}
		return 0
	}
	a.blas = b
}

// openBLASFake opens a Device on a fake GPU with cuBLAS; the test closes it.
func openBLASFake(t *testing.T) (*Device, *fakeGPU, *int) {
	t.Helper()
	gemms := new(int)
	f := newFakeGPU()
	a := f.api()
	f.addBLAS(a, gemms)
	d, err := openAPI(a, Options{})
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
		if _, err := d.BLAS(); !errors.Is(err, ErrClosed) {
			t.Errorf("BLAS() after Close: %v", err)
		}
		if n := f.live(); n != 0 {
			t.Errorf("fake GPU holds %d allocations after Close", n)
		}
		if len(f.tids) != 1 {
			t.Errorf("CUDA was called from %d OS threads, want 1", len(f.tids))
		}
	})
	return d, f, gemms
}

// TestGEMMWindowMatchesCPU: window sums over long windows (H2O's w = L, and
// w < L), computed with the SGEMM path in several chunks, agree with the CPU
// backend and with the fused kernels, for every storage type, head
// dimensions with and without a variant, GQA ratios 1 and 4, and heads that
// do and do not form runs.
func TestGEMMWindowMatchesCPU(t *testing.T) {
	cases := []struct {
		s     kvcache.Shape
		H, L  int
		w     int
		dtype kvcache.DType
		heads []int
		peaky bool // one query row whose logits reach 1000s: exp flushes to zero
	}{
		{kvcache.Shape{Layers: 1, KVHeads: 2, HeadDim: 16}, 8, 129, 129, kvcache.Float16, nil, false},
		{kvcache.Shape{Layers: 1, KVHeads: 3, HeadDim: 12}, 3, 131, 100, kvcache.BFloat16, nil, true},
		{kvcache.Shape{Layers: 2, KVHeads: 1, HeadDim: 40}, 4, 77, 77, kvcache.Float32, []int{3, 1, 2, 0}, false},
		{kvcache.Shape{Layers: 1, KVHeads: 2, HeadDim: 8}, 8, 150, 149, kvcache.Float32, []int{0, 1, 2, 5, 6, 7, 3}, false},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%v_G%d_H%d_d%d_L%d_w%d", tc.dtype, tc.s.KVHeads, tc.H, tc.s.HeadDim, tc.L, tc.w), func(t *testing.T) {
			r, seed := reftest.Rand(t)
			dev, f, gemms := openBLASFake(t)
			if path, err := dev.BLAS(); err != nil || path != "fake/libcublas.so.12" {
				t.Fatalf("BLAS() = %q, %v", path, err)
			}

			h, c := twin(t, r, dev, tc.s, tc.dtype, tc.L)
			heads := tc.heads
			if heads == nil {
				for i := 0; i < tc.H; i++ {
					heads = append(heads, i)
				}
			}
			q := reftest.Normal(r, tc.w*tc.H*tc.s.HeadDim, 1)
			layer := tc.s.Layers - 1
			if tc.peaky {
				// Key row 0 of KV head 0 is 10e and the last query row of
				// head 0 (it sees every key) 400e, for a unit vector e: that
				// row's logit for key 0 is 4000/sqrt(d), its others about
				// 400/sqrt(d) N(0,1), so exp flushes to zero in rows_softmax
				// and colsum_rows; the other rows' logits for key 0 are
				// about 10/sqrt(d) N(0,1), no harder than the rest.
				h, c = peakyTwin(t, r, dev, tc.s, tc.dtype, tc.L, layer, q[(tc.w-1)*tc.H*tc.s.HeadDim:][:tc.s.HeadDim])
			}
			want := make([][]float32, len(heads))
			for i := range want {
				want[i] = make([]float32, tc.L)
			}
			if err := cpu.New().WindowScores(h, layer, q, tc.w, tc.H, heads, want); err != nil {
				t.Fatal(err)
			}
			run := func(minWindow int, chunk int64) [][]float32 {
				b := dev.NewBackend()
				defer b.Close()
				b.gemmMinWindow, b.gemmChunk = minWindow, chunk
				got := make([][]float32, len(heads))
				for i := range got {
					got[i] = make([]float32, tc.L)
				}
				if err := b.WindowScores(c, layer, q, tc.w, tc.H, heads, got); err != nil {
					t.Fatal(err)
				}
				return got
			}
			// A chunk of about 40 query rows: several SGEMMs per run.
			chunk := int64(4 * 40 * tc.L * tc.H / tc.s.KVHeads)
			n0 := *gemms
			viaGEMM := run(1, chunk)
			if *gemms-n0 < 2 || f.launches["colsum_rows"] == 0 || f.launches["rows_softmax"] == 0 {
				t.Fatalf("%d SGEMMs, %d colsum_rows: the cuBLAS path did not run in chunks", *gemms-n0, f.launches["colsum_rows"])
			}
			if (tc.dtype != kvcache.Float32) != (f.launches["widen_rows"] > 0) {
				t.Fatalf("%d widen_rows launches for %v keys", f.launches["widen_rows"], tc.dtype)
			}
			passes := f.launches["window_pass"] + f.launches["window_pass_d64"] + f.launches["window_pass_d128"]
			if passes != 0 {
				t.Fatalf("the fused kernels ran (%d launches) on the cuBLAS path", passes)
			}
			fused := run(1<<30, 0)
			for e := range heads {
				for j := range want[e] {
					// Window sums add w probabilities each within float32
					// rounding of the reference.
					tol := 1e-6 + 1e-5*float64(want[e][j])
					if d := math.Abs(float64(viaGEMM[e][j] - want[e][j])); d > tol {
						t.Fatalf("seed %d: head %d key %d: cuBLAS path %v, CPU %v", seed, heads[e], j, viaGEMM[e][j], want[e][j])
					}
					if d := math.Abs(float64(viaGEMM[e][j] - fused[e][j])); d > tol {
						t.Fatalf("seed %d: head %d key %d: cuBLAS path %v, fused kernels %v", seed, heads[e], j, viaGEMM[e][j], fused[e][j])
					}
				}
			}
		})
	}
}

// TestGEMMRuns checks the runs of entries one strided-batched SGEMM covers.
func TestGEMMRuns(t *testing.T) {
	p := &windowPlan{qHeads: 8, lens: []int{10, 10}, heads: []int{0, 1, 2, 3, 4, 5, 7, 6, 2}}
	got := p.gemmRuns()
	want := []gemmRun{{0, 0, 4, 0}, {4, 4, 2, 1}, {6, 7, 1, 1}, {7, 6, 1, 1}, {8, 2, 1, 0}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("runs %v, want %v", got, want)
	}
	for _, c := range []struct{ w, n, L, rows int }{{1000, 4, 1000, 1000}, {1000, 4, 1 << 20, 32}, {5, 1, 1 << 30, 1}} {
		if got := gemmChunkRows(c.w, c.n, c.L, 512<<20); got != c.rows {
			t.Errorf("gemmChunkRows(%d, %d, %d) = %d, want %d", c.w, c.n, c.L, got, c.rows)
		}
	}
}

// TestNoBLAS: a device without cuBLAS says why and computes long windows
// with the fused kernels.
func TestNoBLAS(t *testing.T) {
	dev, f := openFake(t)
	if _, err := dev.BLAS(); err == nil {
		t.Fatal("BLAS() reports cuBLAS on a fake GPU without it")
	}
	r := rand.New(rand.NewPCG(7, 8))
	s := kvcache.Shape{Layers: 1, KVHeads: 1, HeadDim: 8}
	_, c := twin(t, r, dev, s, kvcache.Float32, 257)
	b := dev.NewBackend()
	defer b.Close()
	out := [][]float32{make([]float32, 257)}
	if err := b.WindowScores(c, 0, reftest.Normal(r, 257*8, 1), 257, 1, []int{0}, out); err != nil {
		t.Fatal(err)
	}
	if f.launches["window_pass_d64"] == 0 || f.launches["colsum_rows"] != 0 {
		t.Fatalf("launches %v: want the fused kernels", f.launches)
	}
}

// TestBLASCreateFails: a cuBLAS that loads but cannot create a handle
// leaves the device usable, with the reason in BLAS().
func TestBLASCreateFails(t *testing.T) {
	f := newFakeGPU()
	a := f.api()
	f.addBLAS(a, new(int))
	a.blas.cublasCreate = func(*uintptr) int32 { return 3 }
	d, err := openAPI(a, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.BLAS(); err == nil || !strings.Contains(err.Error(), "CUBLAS_STATUS_ALLOC_FAILED (3)") {
		t.Fatalf("BLAS() = %v", err)
	}
	if _, _, err := d.MemInfo(); err != nil {
		t.Fatal(err)
	}
}

// peakyTwin is twin with one peaked pair in the given layer: qt (a query
// row of d values, changed in place) becomes 400e for a random unit vector e,
// and key row 0 of KV head 0 becomes 10e.
func peakyTwin(t *testing.T, r *rand.Rand, dev *Device, s kvcache.Shape, dt kvcache.DType, n, layer int, qt []float32) (*kvcache.Host, *Cache) {
	t.Helper()
	e := reftest.Normal(r, s.HeadDim, 1)
	var norm float64
	for _, x := range e {
		norm += float64(x) * float64(x)
	}
	for i, x := range e {
		u := float64(x) / math.Sqrt(norm)
		qt[i], e[i] = float32(400*u), float32(10*u)
	}
	return twinEdit(t, r, dev, s, dt, n, func(l, i int, k []float32) {
		if l == layer && i == 0 {
			copy(k, e) // row 0, KV head 0
		}
	})
}

// f32 returns n float32 values of device memory at p (see mem).
func (f *fakeGPU) f32(p uintptr, n int) []float32 {
	if n == 0 {
		return nil
	}
	b := f.mem(p, 4*n)
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n)
}
