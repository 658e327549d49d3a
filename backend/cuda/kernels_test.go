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
	// 8 query heads a block at d <= 128 with KV heads of different
	// lengths after Compact: an attend_partial_d128_h8 split past a
	// head's end has no rows.
	{300, 96, 2, 8, 8, kvcache.Float16, "normal", false},
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
			if err := ref.WindowScores(h, 0, q, W, H, heads, want); err != nil {
				t.Fatal(err)
			}
			// window_pass's three ways: the statistics folded in the second
			// pass (few rows) or by window_merge, the logits read back or
			// computed again.
			worst := 0.0
			refs := make([][]float64, H)
			for i, hh := range heads {
				refs[i] = reftest.WindowSums(h, 0, q, W, H, hh)
			}
			for _, m := range []struct{ fold, logits int64 }{{0, 0}, {-1, 0}, {-1, 1}} {
				b.foldRows, b.logitBytes = int(m.fold), m.logits
				if err := b.WindowScores(c, 0, q, W, H, heads, got); err != nil {
					t.Fatal(err)
				}
				for i, hh := range heads {
					for j, r := range refs[i] {
						e := math.Abs(float64(got[i][j]) - r)
						if e > sumAbs+sumRel*r {
							t.Fatalf("window sum (fold %d, logit budget %d) head %d row %d = %v, reference %v (CPU %v)",
								m.fold, m.logits, hh, j, got[i][j], r, want[i][j])
						}
						worst = max(worst, e/(sumAbs+sumRel*r))
					}
				}
			}
			b.foldRows, b.logitBytes = 0, 0

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

			// pool_mean + topk_hist + topk_write on the CPU's window sums:
			// the same input gives exactly the CPU's kept set.
			if P := kc.L - W; P >= 2 {
				rows := make([][]float32, H)
				for i := range rows {
					rows[i] = want[i][:P]
				}
				for _, c := range []struct {
					kern      int
					kind      backend.Pooling
					per       int
					meanFirst bool
					keep      int
				}{
					{1, backend.AvgPool, H, false, P / 3},
					{1, backend.MaxPool, kc.ratio, true, P / 4},
					{5, backend.AvgPool, kc.ratio, false, P / 5},
					{7, backend.AvgPool, kc.ratio, true, 1},
					{7, backend.MaxPool, H, false, P - 1},
					{17, backend.AvgPool, kc.ratio, false, P / 3},
					{17, backend.MaxPool, kc.ratio, true, P / 2},
					{13, backend.AvgPool, H, true, P / 2},
					{19, backend.AvgPool, H, true, P / 3},
					{11, backend.AvgPool, kc.ratio, false, P / 2},
					{19, backend.MaxPool, H, false, P / 4},
				} {
					poolMeanTopK(t, dev, b, rows, c.per, c.kern, c.kind, c.meanFirst, max(1, c.keep), 0)
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
			// decode attention too: splits past a head's length are empty
			if err := b.Attend(c, 0, q1, H, out); err != nil {
				t.Fatal(err)
			}
			refOut, _ = reftest.Attend(h, 0, q1, H)
			for i := range out {
				if math.Abs(float64(out[i])-refOut[i]) > attAbs+attRel*math.Abs(refOut[i]) {
					t.Fatalf("after Compact: Attend[%d] = %v, reference %v", i, out[i], refOut[i])
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

// TestKernelVariantsMatchCPU runs window sums and decode attention for
// every kernel variant (d <= 64, <= 128 with 4 or 8 query heads a block,
// <= 256) with every storage type, for head dimensions that are multiples
// of 8 (16-byte loads) and that are not (element loads), against the
// float64 reference, on small caches: the code paths of each
// instantiation run.
func TestKernelVariantsMatchCPU(t *testing.T) {
	// 40, 104 and 200 hold an odd number of 16-byte words (the unrolled
	// loops' remainder), 33, 100 and 201 take element loads.
	dims := []int{40, 33, 104, 100, 200, 201}
	if testing.Short() {
		dims = []int{40, 100}
	}
	for _, d := range dims {
		for _, ratio := range []int{4, 8} {
			for _, dt := range []kvcache.DType{kvcache.Float32, kvcache.Float16, kvcache.BFloat16} {
				t.Run(fmt.Sprintf("d%d_x%d_%v", d, ratio, dt), func(t *testing.T) {
					r, _ := reftest.Rand(t)
					dev, _ := openFake(t)
					s := kvcache.Shape{Layers: 1, KVHeads: 1, HeadDim: d}
					const L, W = 70, 3
					H := ratio
					h, c := twin(t, r, dev, s, dt, L)
					b := dev.NewBackend()
					defer b.Close()
					q := reftest.Normal(r, W*H*d, 1)
					heads := []int{0, H - 1}
					got := [][]float32{make([]float32, L), make([]float32, L)}
					if err := b.WindowScores(c, 0, q, W, H, heads, got); err != nil {
						t.Fatal(err)
					}
					for e, hh := range heads {
						for j, rv := range reftest.WindowSums(h, 0, q, W, H, hh) {
							if math.Abs(float64(got[e][j])-rv) > sumAbs+sumRel*rv {
								t.Fatalf("window sum head %d row %d = %v, reference %v", hh, j, got[e][j], rv)
							}
						}
					}
					out := make([]float32, H*d)
					if err := b.Attend(c, 0, q[:H*d], H, out); err != nil {
						t.Fatal(err)
					}
					want, _ := reftest.Attend(h, 0, q[:H*d], H)
					for i := range out {
						if math.Abs(float64(out[i])-want[i]) > attAbs+attRel*math.Abs(want[i]) {
							t.Fatalf("Attend[%d] = %v, reference %v", i, out[i], want[i])
						}
					}
				})
			}
		}
	}
}

// poolMeanTopK runs pool_mean over rows (groups of per rows, pooling with
// kern and kind before or after the mean) and top-k on the device, with
// top-k blocks of at least chunk scores (0: the default), and requires the
// CPU's pooled means bit for bit (the policies' float32 means, the CPU's
// Pool) and exactly the CPU's kept set.
func poolMeanTopK(t *testing.T, dev *Device, b *Backend, rows [][]float32, per, kern int, kind backend.Pooling, meanFirst bool, k, chunk int) {
	t.Helper()
	ne, n := len(rows), len(rows[0])
	nrows := ne / per
	ref := cpu.New()
	pool := func(row []float32) []float32 { // as the policies: kernel 1 leaves the row as it is
		out := slices.Clone(row)
		if kern > 1 {
			if err := ref.Pool(out, row, kern, kind); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	mean := func(rs [][]float32) []float32 {
		out := make([]float32, n)
		for j := range out {
			var acc float32
			for _, r := range rs {
				acc += r[j]
			}
			out[j] = acc * (1 / float32(per))
		}
		return out
	}
	want := make([][]float32, nrows)
	wantIdx := make([][]int, nrows)
	for o := range want {
		group := rows[o*per : (o+1)*per]
		if kern == 1 && per == 1 { // nothing to do: the rows themselves
			want[o] = slices.Clone(group[0])
		} else if meanFirst {
			want[o] = pool(mean(group))
		} else {
			pooled := make([][]float32, per)
			for i, r := range group {
				pooled[i] = pool(r)
			}
			want[o] = mean(pooled)
		}
		var err error
		if wantIdx[o], err = ref.TopK(nil, want[o], k); err != nil {
			t.Fatal(err)
		}
	}
	flat := make([]float32, 0, ne*n)
	for _, row := range rows {
		flat = append(flat, row...)
	}
	b.topkChunk = chunk
	defer func() { b.topkChunk = 0 }()
	got, res := make([]float32, nrows*n), make([]int32, nrows*(1+k))
	err := dev.do(func() error {
		src, err := b.arena.get("t_src", int64(4*ne*n))
		if err != nil {
			return err
		}
		if err := dev.uploadF32(src, flat); err != nil {
			return err
		}
		sel := Selection{Kernel: kern, Pooling: kind, PerRow: per, MeanFirst: meanFirst}
		out, stride, err := b.poolMean(src, n, nrows, n, sel)
		if err != nil {
			return err
		}
		for o := 0; o < nrows; o++ {
			if err := dev.downloadF32(got[o*n:(o+1)*n], out+devptr(4*o*stride)); err != nil {
				return err
			}
		}
		if k >= n {
			return nil
		}
		buf, err := b.topK(out, stride, nrows, n, k)
		if err != nil {
			return err
		}
		return dev.downloadI32(res, buf)
	})
	if err != nil {
		t.Fatal(err)
	}
	what := fmt.Sprintf("n=%d kernel %d %v per %d mean first %v k=%d chunk %d", n, kern, kind, per, meanFirst, k, chunk)
	for o := range want {
		for j := range want[o] {
			if math.Float32bits(want[o][j]) != math.Float32bits(got[o*n+j]) {
				t.Fatalf("%s: row %d [%d] = %v, CPU %v", what, o, j, got[o*n+j], want[o][j])
			}
		}
		if k >= n {
			continue
		}
		if res[o] != 0 {
			t.Fatalf("%s: row %d reports a NaN at %d", what, o, res[o]-1)
		}
		g := make([]int, k)
		for i, x := range res[nrows+o*k : nrows+(o+1)*k] {
			g[i] = int(x)
		}
		if !slices.Equal(g, wantIdx[o]) {
			t.Fatalf("%s: row %d keeps %v, CPU %v", what, o, g, wantIdx[o])
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
			poolMeanTopK(t, dev, b, rows, 1, 1, backend.AvgPool, false, max(k, 1), 0)
			poolMeanTopK(t, dev, b, rows, 1, 5, backend.MaxPool, false, max(k, 1), 0)
			// several top-k blocks a row (at most 9), the last one short
			poolMeanTopK(t, dev, b, rows, 2, 1, backend.AvgPool, true, max(k, 1), max(100, n/8))
			poolMeanTopK(t, dev, b, rows, 1, 3, backend.AvgPool, false, max(k, 1), 1000)
		}
	}
	// Scores without ties, in several blocks: digits of every parity.
	for _, k := range []int{1, 700, 1500, 2999} {
		rows := [][]float32{make([]float32, 3000)}
		for j := range rows[0] {
			rows[0][j] = float32(r.NormFloat64())
		}
		poolMeanTopK(t, dev, b, rows, 1, 1, backend.AvgPool, false, k, 500)
	}
	// NaN: topk_write reports 1 + the index of the first NaN, in whichever
	// block it is, and writes nothing for that row; another row is kept
	// whole.
	scores := []float32{1, 2, float32(math.NaN()), 3, 0, 5, 6, float32(math.NaN()), 2, 1, 0, 4}
	good := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	res := make([]int32, 2+2*2)
	b.topkChunk = 4
	defer func() { b.topkChunk = 0 }()
	err := dev.do(func() error {
		src, _ := b.arena.get("n_src", 4*int64(2*len(scores)))
		if err := dev.uploadF32(src, append(append([]float32(nil), good...), scores...)); err != nil {
			return err
		}
		buf, err := b.topK(src, len(scores), 2, len(scores), 2)
		if err != nil {
			return err
		}
		return dev.downloadI32(res, buf)
	})
	if err != nil || res[0] != 0 || res[1] != 3 || res[2] != 10 || res[3] != 11 {
		t.Fatalf("rows without and with NaNs (first at 2): flags %d %d, first row %v: %v", res[0], res[1], res[2:4], err)
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
