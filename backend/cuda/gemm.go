package cuda

import (
	"math"

	"github.com/compresskv/compresskv/kvcache"
)

const (
	// defaultGEMMWindow is the smallest window of queries whose window sums
	// run on cuBLAS: below it (SnapKV's and CompressKV's windows of 8 to 64
	// queries) the products are too skinny for a GEMM to beat the fused
	// kernels, which never store the logits; H2O's window is the whole
	// prompt.
	defaultGEMMWindow = 256
	// defaultGEMMChunk bounds the logits one SGEMM writes (bytes): the
	// query rows of a window are taken in chunks of at most this much.
	defaultGEMMChunk = 128 << 20
)

func (b *Backend) gemmWindow() int {
	if b.gemmMinWindow > 0 {
		return b.gemmMinWindow
	}
	return defaultGEMMWindow
}

func (b *Backend) gemmChunkBytes() int64 {
	if b.gemmChunk > 0 {
		return b.gemmChunk
	}
	return defaultGEMMChunk
}

// gemmRun is a run of consecutive plan entries e0.. e0+n-1 whose query
// heads h0.. h0+n-1 are consecutive and read KV head g: one strided-batched
// SGEMM covers them (their queries are d floats apart).
type gemmRun struct{ e0, h0, n, g int }

// gemmRuns splits the entries of p into runs, in entry order.
func (p *windowPlan) gemmRuns() []gemmRun {
	group := p.qHeads / len(p.lens)
	var runs []gemmRun
	for e, h := range p.heads {
		if n := len(runs); n > 0 {
			r := &runs[n-1]
			if r.g == h/group && h == r.h0+r.n && e == r.e0+r.n {
				r.n++
				continue
			}
		}
		runs = append(runs, gemmRun{e0: e, h0: h, n: 1, g: h / group})
	}
	return runs
}

// gemmChunkRows returns how many query rows of a run of n heads over L keys
// one chunk takes: at most w, at least 1, and n*rows*L floats within budget
// bytes.
func gemmChunkRows(w, n, L int, budget int64) int {
	rows := budget / (4 * int64(n) * int64(max(L, 1)))
	return int(max(1, min(int64(w), rows)))
}

// windowSumsGEMM computes the window sums of plan p with cuBLAS: per run of
// query heads of one KV head and per chunk of query rows, one SGEMM writes
// the scaled logits (chunk rows x L keys, per head), rows_softmax folds each
// row into its (max, 1/sum) over its visible keys, and colsum_rows adds the
// normalised probabilities into the output entries. Keys stored as
// float16/bfloat16 are widened to float32 first (widen_rows), so both
// operands are the CPU's float32 values. Memory: the logits of one chunk
// (gemmChunkBytes) and one KV head's widened keys. On the device thread.
func (b *Backend) windowSumsGEMM(c *Cache, l int, q []float32, p *windowPlan, nEntries int) (devptr, error) {
	d := b.dev
	L := &c.layers[l]
	hd := c.shape.HeadDim
	qd, err := b.arena.get("q", int64(4*len(q)))
	if err != nil {
		return 0, err
	}
	outBytes := int64(4) * int64(nEntries) * int64(p.lmax)
	out, err := b.arena.get("out", outBytes)
	if err != nil {
		return 0, err
	}
	if err := d.uploadF32(qd, q); err != nil {
		return 0, err
	}
	if err := d.memset(out, int(outBytes)); err != nil {
		return 0, err
	}
	scale := float32(log2e / math.Sqrt(float64(hd))) // logits in log2 units, as rows_softmax and colsum_rows take them
	size := int64(c.dtype.Size())
	// Scratch sized once for every run, so that no buffer a queued kernel
	// uses is freed and regrown between launches.
	runs := p.gemmRuns()
	chunks := make([]int, len(runs))
	var lgBytes, finBytes, kfBytes int64
	for i, run := range runs {
		Lg := p.lens[run.g]
		chunks[i] = gemmChunkRows(p.w, run.n, Lg, b.gemmChunkBytes())
		lgBytes = max(lgBytes, 4*int64(run.n)*int64(chunks[i])*int64(Lg))
		finBytes = max(finBytes, 8*int64(run.n)*int64(chunks[i]))
		kfBytes = max(kfBytes, 4*int64(Lg)*int64(hd))
	}
	lg, err := b.arena.get("lg", lgBytes)
	if err != nil {
		return 0, err
	}
	fin, err := b.arena.get("gfin", finBytes)
	if err != nil {
		return 0, err
	}
	var kf devptr
	if c.dtype != kvcache.Float32 {
		if kf, err = b.arena.get("kf32", kfBytes); err != nil {
			return 0, err
		}
	}
	widened := -1 // the KV head whose keys are in kf
	for ri, run := range runs {
		Lg := p.lens[run.g]
		keys := L.k + devptr(int64(run.g)*int64(L.cap)*int64(hd)*size)
		if c.dtype != kvcache.Float32 {
			if widened != run.g {
				n := int64(Lg) * int64(hd)
				blocks := uint32(min(ceilDiv(int(n), poolThreads), 65535))
				if err := d.launch(kWidenRows, dim3{blocks, 1, 1}, dim3{poolThreads, 1, 1}, keys, kf, uint64(n), int32(c.dtype)); err != nil {
					return 0, err
				}
				widened = run.g
			}
			keys = kf
		}
		C := chunks[ri]
		dst := out + devptr(4*int64(run.e0)*int64(p.lmax))
		for i0 := 0; i0 < p.w; i0 += C {
			rows := min(C, p.w-i0)
			// Column-major: logits (Lg x rows, ld Lg) = K^T (Lg x hd) * Q (hd x rows);
			// K is row-major [Lg][hd], i.e. hd x Lg column-major (lda hd);
			// query row i of head h is at (i*qHeads + h)*hd (ldb qHeads*hd),
			// the next head's d floats later.
			qoff := devptr(4 * ((int64(i0)*int64(p.qHeads) + int64(run.h0)) * int64(hd)))
			if err := d.sgemmBatched(blasOpT, blasOpN, Lg, rows, hd, scale, keys, hd, 0,
				qd+qoff, p.qHeads*hd, int64(hd), 0, lg, Lg, int64(rows)*int64(Lg), run.n); err != nil {
				return 0, err
			}
			visBase := Lg - p.w + i0 + 1
			nrows := run.n * rows
			if err := d.launch(kRowsSoftmax, dim3{uint32(ceilDiv(nrows, warps)), 1, 1}, dim3{32 * warps, 1, 1},
				lg, int32(Lg), int32(Lg), int32(rows), int32(nrows), int32(visBase), fin); err != nil {
				return 0, err
			}
			if err := d.launch(kColsumRows, dim3{uint32(ceilDiv(Lg, poolThreads)), uint32(run.n), 1}, dim3{poolThreads, 1, 1},
				lg, int32(Lg), int32(Lg), int32(rows), int32(visBase), fin, dst, int32(p.lmax)); err != nil {
				return 0, err
			}
		}
	}
	return out, nil
}
