package cuda

// Every kernel of the embedded PTX, run by the executor on the fake device,
// against the CPU backend and the float64 reference on random inputs: odd
// lengths, head dimensions 64/128/256, GQA ratios 1/4/8, windows 8 and 16,
// the three storage types, and normal, tie-heavy and peaky keys.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/internal/reftest"
	"github.com/compresskv/compresskv/kvcache"
)

type kernelCase struct {
	L, d, G, ratio, W int
	dtype             kvcache.DType
	keys              string // "normal", "ties", "peaky"
	short             bool   // also in -short
}

var kernelCases = []kernelCase{
	{1, 64, 2, 4, 8, kvcache.Float32, "normal", true},
	{7, 128, 1, 8, 16, kvcache.Float16, "ties", true},
	{257, 64, 3, 4, 16, kvcache.Float32, "ties", false},
	{255, 64, 2, 8, 16, kvcache.Float16, "peaky", true},
	// G >= 2 and L > 256: after Compact one KV head holds more than a
	// tile of rows and another less, so pass 1 meets tiles past a head's
	// length (per head-dimension variant of window_pass).
	{257, 256, 2, 1, 8, kvcache.BFloat16, "peaky", false},
	{300, 128, 2, 4, 8, kvcache.Float32, "normal", false},
	// GQA 8 with peaky keys: every one of attend_partial's 8 query heads
	// per block sees exp flush to zero.
	{257, 128, 1, 8, 8, kvcache.BFloat16, "peaky", false},
	{600, 256, 1, 4, 16, kvcache.Float32, "peaky", false},
	{7, 256, 1, 8, 8, kvcache.Float16, "ties", false},
	{255, 33, 1, 4, 8, kvcache.Float16, "normal", false}, // odd rows of 16-bit values: gather_rows' 2-byte path
	{4099, 64, 1, 4, 8, kvcache.BFloat16, "normal", false},
}

// Bounds, relative to the float64 reference: window sums and attention
// weights within 1e-6 + 1e-4*|ref| (float32 rounding of logits of at most
// 256 terms, amplified by exp), decode attention within 1e-5 + 1e-4*|ref|.
const (
	sumAbs, sumRel = 1e-6, 1e-4
	attAbs, attRel = 1e-5, 1e-4
)

// keyRows draws n rows of d values of the given kind.
func keyRows(r *rand.Rand, kind string, n, d int) []float32 {
	x := reftest.Normal(r, n*d, 1)
	switch kind {
	case "ties": // every row one of 3 rows: exact ties everywhere
		pool := reftest.Normal(r, 3*d, 1)
		for i := 0; i < n; i++ {
			copy(x[i*d:(i+1)*d], pool[r.IntN(3)*d:])
		}
	case "peaky": // a few rows 6x larger
		for i := 0; i < n; i++ {
			if r.IntN(16) == 0 {
				for j := i * d; j < (i+1)*d; j++ {
					x[j] *= 6
				}
			}
		}
	}
	return x
}

// align makes row of d values point along the sum of the given query
// vectors with norm 2000: its logits reach 100s, so exp underflows for every
// other row (the kernels' flush-to-zero paths) and later tiles and splits
// merge with a factor of 0.
func align(row []float32, qs [][]float32) {
	u := make([]float64, len(row))
	for _, q := range qs {
		for i, v := range q {
			u[i] += float64(v)
		}
	}
	var n float64
	for _, v := range u {
		n += v * v
	}
	for i := range row {
		row[i] = float32(2000 * u[i] / math.Sqrt(n))
	}
}

func TestKernelsMatchCPU(t *testing.T) {
	for _, kc := range kernelCases {
		if testing.Short() && !kc.short {
			continue
		}
		name := fmt.Sprintf("L%d_d%d_G%d_x%d_W%d_%v_%s", kc.L, kc.d, kc.G, kc.ratio, kc.W, kc.dtype, kc.keys)
		t.Run(name, func(t *testing.T) {
			r, _ := reftest.Rand(t)
			dev, f := openFake(t)
			s := kvcache.Shape{Layers: 1, KVHeads: kc.G, HeadDim: kc.d}
			H := kc.G * kc.ratio
			W := min(kc.W, kc.L)
			h, err := kvcache.NewHost(s, kc.dtype)
			if err != nil {
				t.Fatal(err)
			}
			c, err := dev.NewCache(s, kc.dtype)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			q := reftest.Normal(r, W*H*kc.d, 1) // window queries [W][H][d]
			q1 := reftest.Normal(r, H*kc.d, 1)  // decode query [H][d]
			// Rows are interleaved per KV head: draw per head, then lay out.
			k := make([]float32, kc.L*kc.G*kc.d)
			v := reftest.Normal(r, kc.L*kc.G*kc.d, 1)
			for g := 0; g < kc.G; g++ {
				rows := keyRows(r, kc.keys, kc.L, kc.d)
				if kc.keys == "peaky" && kc.L > 1 {
					var wq, dq [][]float32
					for hh := g * kc.ratio; hh < (g+1)*kc.ratio; hh++ {
						dq = append(dq, q1[hh*kc.d:(hh+1)*kc.d])
						for i := 0; i < W; i++ {
							wq = append(wq, q[(i*H+hh)*kc.d:(i*H+hh+1)*kc.d])
						}
					}
					align(rows[:kc.d], wq)
					align(rows[kc.d:2*kc.d], dq)
				}
				for j := 0; j < kc.L; j++ {
					copy(k[(j*kc.G+g)*kc.d:(j*kc.G+g+1)*kc.d], rows[j*kc.d:])
				}
			}
			if err := h.Append(0, k, v); err != nil {
				t.Fatal(err)
			}
			if err := c.Append(0, k, v); err != nil {
				t.Fatal(err)
			}
			b := dev.NewBackend()
			defer b.Close()
			ref := cpu.New()

			// window_pass + window_merge: every query head of the layer
			heads := make([]int, H)
			for i := range heads {
				heads[i] = i
			}
			got, want := make([][]float32, H), make([][]float32, H)
			for i := range got {
				got[i], want[i] = make([]float32, kc.L), make([]float32, kc.L)
			}
			if err := b.WindowScores(c, 0, q, W, H, heads, got); err != nil {
				t.Fatal(err)
			}
			if err := ref.WindowScores(h, 0, q, W, H, heads, want); err != nil {
				t.Fatal(err)
			}
			worst := 0.0
			for i, hh := range heads {
				ref64 := reftest.WindowSums(h, 0, q, W, H, hh)
				for j := range ref64 {
					e := math.Abs(float64(got[i][j]) - ref64[j])
					if e > sumAbs+sumRel*ref64[j] {
						t.Fatalf("window sum head %d row %d = %v, reference %v (CPU %v)", hh, j, got[i][j], ref64[j], want[i][j])
					}
					worst = max(worst, e/(sumAbs+sumRel*ref64[j]))
				}
			}

			// attend_partial + attend_merge, and the attention weights
			out := make([]float32, H*kc.d)
			if err := b.Attend(c, 0, q1, H, out); err != nil {
				t.Fatal(err)
			}
			cpuOut := make([]float32, H*kc.d)
			if err := ref.Attend(h, 0, q1, H, cpuOut); err != nil {
				t.Fatal(err)
			}
			refOut, weights := reftest.Attend(h, 0, q1, H)
			worstAtt, worstCPU := 0.0, 0.0
			for i := range out {
				e := math.Abs(float64(out[i]) - refOut[i])
				bound := attAbs + attRel*math.Abs(refOut[i])
				if e > bound {
					t.Fatalf("Attend[%d] = %v, reference %v (CPU %v)", i, out[i], refOut[i], cpuOut[i])
				}
				worstAtt = max(worstAtt, e/bound)
				worstCPU = max(worstCPU, math.Abs(float64(cpuOut[i])-refOut[i])/bound)
			}
			aw, err := b.AttentionWeights(c, 0, q1, H, nil)
			if err != nil {
				t.Fatal(err)
			}
			for hh := range aw {
				for j := range aw[hh] {
					if math.Abs(float64(aw[hh][j])-weights[hh][j]) > sumAbs+sumRel*weights[hh][j] {
						t.Fatalf("weight[%d][%d] = %v, reference %v", hh, j, aw[hh][j], weights[hh][j])
					}
				}
			}
			t.Logf("worst error / bound: window sums %.3f, Attend %.3f (CPU backend %.3f)", worst, worstAtt, worstCPU)

			// pool1d + mean_groups + topk_rows on the CPU's window sums:
			// the same input gives exactly the CPU's kept set.
			if P := kc.L - W; P >= 2 {
				rows := make([][]float32, H)
				for i := range rows {
					rows[i] = want[i][:P]
				}
				for _, c := range []struct {
					kern int
					kind backend.Pooling
					per  int
					keep int
				}{
					{1, backend.AvgPool, H, P / 3},
					{7, backend.AvgPool, kc.ratio, 1},
					{7, backend.MaxPool, H, P - 1},
					{17, backend.AvgPool, kc.ratio, P / 3},
					{17, backend.MaxPool, kc.ratio, P / 2},
					{13, backend.AvgPool, H, P / 2},
				} {
					poolMeanTopK(t, dev, b, rows, c.per, c.kern, c.kind, max(1, c.keep), topkThreads)
				}
			}

			// gather_rows: compaction with different counts per head
			keep := make([][]int, kc.G)
			for g := range keep {
				for j := 0; j < kc.L; j++ {
					if (g == 0 && kc.G > 1) || r.IntN(2+g) == 0 || j == kc.L-1 {
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
			// window sums again, now that KV heads hold different row
			// counts: tiles past a head's length are skipped
			Wc := W
			for _, kg := range keep {
				Wc = min(Wc, len(kg))
			}
			for i := range got {
				n := len(keep[heads[i]/kc.ratio])
				got[i], want[i] = make([]float32, n), make([]float32, n)
			}
			if err := b.WindowScores(c, 0, q[:Wc*H*kc.d], Wc, H, heads, got); err != nil {
				t.Fatal(err)
			}
			for i, hh := range heads {
				ref64 := reftest.WindowSums(h, 0, q[:Wc*H*kc.d], Wc, H, hh)
				for j := range ref64 {
					if math.Abs(float64(got[i][j])-ref64[j]) > sumAbs+sumRel*ref64[j] {
						t.Fatalf("after Compact: window sum head %d row %d = %v, reference %v", hh, j, got[i][j], ref64[j])
					}
				}
			}
			for _, kname := range []string{"window_pass", "window_merge", "attend_partial", "attend_merge", "gather_rows"} {
				n := 0
				for name, c := range f.launches {
					if strings.HasPrefix(name, kname) { // specialisations included
						n += c
					}
				}
				if n == 0 {
					t.Fatalf("%s never launched: %v", kname, f.launches)
				}
			}
		})
	}
}

// poolMeanTopK runs pool1d (unless kern == 1), mean_groups over groups of
// per rows, and topk_rows on the device, and requires the CPU's pooled rows
// bit for bit, the policies' float32 means bit for bit, and exactly the
// CPU's kept set. topk_rows runs with blocks of the given threads.
func poolMeanTopK(t *testing.T, dev *Device, b *Backend, rows [][]float32, per, kern int, kind backend.Pooling, k, threads int) {
	t.Helper()
	ne, n := len(rows), len(rows[0])
	nrows := ne / per
	ref := cpu.New()
	pooled := make([][]float32, ne)
	for i, row := range rows {
		pooled[i] = make([]float32, n)
		if err := ref.Pool(pooled[i], row, kern, kind); err != nil {
			t.Fatal(err)
		}
	}
	means := make([][]float32, nrows)
	want := make([][]int, nrows)
	for o := range means {
		means[o] = make([]float32, n)
		for j := range means[o] {
			var acc float32
			for _, p := range pooled[o*per : (o+1)*per] {
				acc += p[j]
			}
			means[o][j] = acc * (1 / float32(per))
		}
		var err error
		if want[o], err = ref.TopK(nil, means[o], k); err != nil {
			t.Fatal(err)
		}
	}
	flat := make([]float32, 0, ne*n)
	for _, row := range rows {
		flat = append(flat, row...)
	}
	gotPooled, gotMean, gotIdx := make([]float32, ne*n), make([]float32, nrows*n), make([]int32, nrows*k)
	err := dev.do(func() error {
		src, err := b.arena.get("t_src", int64(4*ne*n))
		if err != nil {
			return err
		}
		dst, _ := b.arena.get("t_dst", int64(4*ne*n))
		mean, _ := b.arena.get("t_mean", int64(4*nrows*n))
		idx, _ := b.arena.get("t_idx", int64(4*nrows*k))
		nan, _ := b.arena.get("t_nan", int64(4*nrows))
		if err := dev.uploadF32(src, flat); err != nil {
			return err
		}
		if err := dev.memset(nan, 4*nrows); err != nil {
			return err
		}
		from := src
		if kern > 1 {
			if err := dev.launch(kPool1d, dim3{uint32(ceilDiv(n, poolThreads)), uint32(ne), 1}, dim3{poolThreads, 1, 1},
				src, dst, int32(n), int32(n), int32(n), int32(kern), int32(kind)); err != nil {
				return err
			}
			from = dst
			if err := dev.downloadF32(gotPooled, dst); err != nil {
				return err
			}
		}
		if err := dev.launch(kMeanGroups, dim3{uint32(ceilDiv(n, poolThreads)), uint32(nrows), 1}, dim3{poolThreads, 1, 1},
			from, mean, int32(n), int32(n), int32(per)); err != nil {
			return err
		}
		if err := dev.downloadF32(gotMean, mean); err != nil {
			return err
		}
		if k >= n {
			return nil
		}
		if err := dev.launch(kTopKRows, dim3{uint32(nrows), 1, 1}, dim3{uint32(threads), 1, 1},
			mean, int32(n), int32(n), int32(k), idx, int32(k), nan); err != nil {
			return err
		}
		return dev.downloadI32(gotIdx, idx)
	})
	if err != nil {
		t.Fatal(err)
	}
	what := fmt.Sprintf("n=%d kernel %d %v per %d k=%d", n, kern, kind, per, k)
	if kern > 1 {
		for i := range rows {
			for j := range pooled[i] {
				if math.Float32bits(pooled[i][j]) != math.Float32bits(gotPooled[i*n+j]) {
					t.Fatalf("%s: pooled[%d][%d] = %v, CPU %v", what, i, j, gotPooled[i*n+j], pooled[i][j])
				}
			}
		}
	}
	for o := range means {
		for j := range means[o] {
			if math.Float32bits(means[o][j]) != math.Float32bits(gotMean[o*n+j]) {
				t.Fatalf("%s: mean[%d][%d] = %v, want %v", what, o, j, gotMean[o*n+j], means[o][j])
			}
		}
		if k >= n {
			continue
		}
		got := make([]int, k)
		for i, x := range gotIdx[o*k : (o+1)*k] {
			got[i] = int(x)
		}
		if !slices.Equal(got, want[o]) {
			t.Fatalf("%s: row %d keeps %v, CPU %v", what, o, got, want[o])
		}
	}
}

// TestTopKExactOnTies: topk_rows on scores full of ties, -0 and +0, at the
// odd lengths, against the CPU's TopK; a NaN is reported with its index.
func TestTopKExactOnTies(t *testing.T) {
	r, _ := reftest.Rand(t)
	dev, _ := openFake(t)
	b := dev.NewBackend()
	defer b.Close()
	lengths := []int{2, 7, 255, 257, 4099}
	if testing.Short() {
		lengths = lengths[:3]
	}
	for _, n := range lengths {
		rows := make([][]float32, 2)
		for i := range rows {
			rows[i] = make([]float32, n)
			for j := range rows[i] {
				rows[i][j] = float32(r.IntN(5)) / 4
				switch r.IntN(12) {
				case 0:
					rows[i][j] = float32(math.Copysign(0, -1))
				case 1:
					rows[i][j] = float32(r.NormFloat64())
				case 2:
					rows[i][j] = -float32(r.IntN(3))
				}
			}
		}
		for _, k := range []int{1, n / 2, n - 1} {
			poolMeanTopK(t, dev, b, rows, 1, 1, backend.AvgPool, max(k, 1), topkThreads)
			poolMeanTopK(t, dev, b, rows, 1, 5, backend.MaxPool, max(k, 1), topkThreads)
			// any block size: 3 warps leave remainders in its warp loops
			poolMeanTopK(t, dev, b, rows, 2, 1, backend.AvgPool, max(k, 1), 96)
		}
	}
	// NaN: topk_rows reports 1 + the index of a NaN and stops.
	scores := []float32{1, 2, float32(math.NaN()), 3, 0}
	nanOut := make([]int32, 1)
	err := dev.do(func() error {
		src, _ := b.arena.get("n_src", 4*int64(len(scores)))
		idx, _ := b.arena.get("n_idx", 8)
		nan, _ := b.arena.get("n_nan", 4)
		if err := dev.uploadF32(src, scores); err != nil {
			return err
		}
		if err := dev.memset(nan, 4); err != nil {
			return err
		}
		if err := dev.launch(kTopKRows, dim3{1, 1, 1}, dim3{topkThreads, 1, 1},
			src, int32(len(scores)), int32(len(scores)), int32(2), idx, int32(2), nan); err != nil {
			return err
		}
		return dev.downloadI32(nanOut, nan)
	})
	if err != nil || nanOut[0] != 3 {
		t.Fatalf("NaN at index 2 reported as %d, %v", nanOut[0], err)
	}
}

// TestFakeRejectsUnknownInstruction: a module with an instruction the
// executor does not implement fails to load on the fake device, the error
// naming the instruction, so that a kernel change that needs one fails here
// rather than on a user's GPU.
func TestFakeRejectsUnknownInstruction(t *testing.T) {
	i := strings.Index(ptxSource, "rcp.rn.f32")
	if i < 0 {
		t.Fatal("no rcp.rn.f32 in the module")
	}
	img := append([]byte(ptxSource[:i]+"sin.approx.f32"+ptxSource[i+len("rcp.rn.f32"):]), 0)
	f := newFakeGPU()
	a := f.api()
	var m uintptr
	if code := a.cuModuleLoadData(&m, unsafe.Pointer(&img[0])); code != 218 {
		t.Fatalf("cuModuleLoadData = %d, want 218 (CUDA_ERROR_INVALID_PTX)", code)
	}
	if len(f.faults) != 1 || !strings.Contains(f.faults[0].Error(), "sin.approx.f32 not implemented") {
		t.Fatalf("load errors: %v", f.faults)
	}
	img = ptxImage()
	if code := a.cuModuleLoadData(&m, unsafe.Pointer(&img[0])); code != 0 {
		t.Fatalf("the embedded module: cuModuleLoadData = %d: %v", code, f.faults)
	}
}
