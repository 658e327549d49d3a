package cuda

import (
	"fmt"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/kvcache"
)

// Selection describes the token selection of one layer that SelectLayer runs
// on the device (backend.Selection).
type Selection = backend.Selection

// selectPlan is a validated selection of one layer.
type selectPlan struct {
	dc          *Cache
	W, L, P, k  int
	ne, nrows   int
	plan        *windowPlan
	sel         Selection
	qHeads      int
	q           []float32
	layer, kvGs int
}

// prepareSelect validates a SelectLayer or CompressLayer call.
func (b *Backend) prepareSelect(op string, c kvcache.KVCache, layer int, q []float32, qHeads int, sel Selection) (*selectPlan, error) {
	dc, err := b.cache(op, c, layer)
	if err != nil {
		return nil, err
	}
	W := sel.Window
	lens, err := checkWindow(op, dc, layer, q, W, qHeads, sel.Heads)
	if err != nil {
		return nil, err
	}
	G := dc.shape.KVHeads
	L := lens[0]
	for g, n := range lens {
		if n != L {
			return nil, fmt.Errorf("cuda: %s: layer %d: KV heads 0 and %d hold %d and %d rows; select on a prefilled layer", op, layer, g, L, n)
		}
	}
	ne := len(sel.Heads)
	if ne == 0 || sel.PerRow < 1 || ne%sel.PerRow != 0 {
		return nil, fmt.Errorf("cuda: %s: %d heads in rows of %d", op, ne, sel.PerRow)
	}
	nrows := ne / sel.PerRow
	if nrows != 1 && nrows != G {
		return nil, fmt.Errorf("cuda: %s: %d score rows for %d KV heads, want 1 or %d", op, nrows, G, G)
	}
	if sel.Kernel < 1 || sel.Kernel%2 == 0 {
		return nil, fmt.Errorf("cuda: %s: pooling kernel %d, want an odd size >= 1", op, sel.Kernel)
	}
	if sel.Pooling != backend.AvgPool && sel.Pooling != backend.MaxPool {
		return nil, fmt.Errorf("cuda: %s: unknown pooling %v", op, sel.Pooling)
	}
	P := L - W
	if P <= 0 {
		return nil, fmt.Errorf("cuda: %s: layer %d: %d rows leave no prefix before a window of %d", op, layer, L, W)
	}
	p, err := planWindow(lens, W, qHeads, dc.shape.HeadDim, sel.Heads)
	if err != nil {
		return nil, err
	}
	return &selectPlan{dc: dc, W: W, L: L, P: P, k: min(max(sel.Keep, 0), P), ne: ne, nrows: nrows, plan: p,
		sel: sel, qHeads: qHeads, q: q, layer: layer, kvGs: G}, nil
}

// topkSplit returns the blocks per row and the scores per block of the
// top-k kernels for rows of n scores, blocks of at least per scores.
func topkSplit(n, per int) (nb, chunk int) {
	nb = min(max(1, ceilDiv(n, per)), topkBlocks)
	return nb, ceilDiv(n, nb)
}

// selectDevice runs a selection on the device: the window sums, pooling and
// group means (pool_mean), and top-k. It returns a device buffer of sp.nrows
// NaN flags (1 + the index of a NaN score, or 0) followed by the k indices
// of each score row, ascending. 0 < k < P. On the device thread.
func (b *Backend) selectDevice(sp *selectPlan) (devptr, error) {
	out, err := b.windowSums(sp.dc, sp.layer, sp.q, sp.plan, sp.ne)
	if err != nil {
		return 0, err
	}
	src, stride, err := b.poolMean(out, sp.plan.lmax, sp.nrows, sp.P, sp.sel)
	if err != nil {
		return 0, err
	}
	return b.topK(src, stride, sp.nrows, sp.P, sp.k)
}

// poolMean runs pool_mean over the score rows at src (stride floats apart,
// sel.PerRow of them for each of nrows outputs, n scores each): SnapKV
// averages each group and then pools, CompressKV pools each SR head and then
// averages (backend.Selection.MeanFirst). It returns the output rows and
// their stride (src itself when there is nothing to do). On the device
// thread.
func (b *Backend) poolMean(src devptr, stride, nrows, n int, sel Selection) (devptr, int, error) {
	if sel.Kernel == 1 && sel.PerRow == 1 {
		return src, stride, nil
	}
	scores, err := b.arena.get("scores", int64(4*nrows*n))
	if err != nil {
		return 0, 0, err
	}
	meanFirst := int32(0)
	if sel.MeanFirst {
		meanFirst = 1
	}
	if err := b.dev.launch(kPoolMean, dim3{uint32(ceilDiv(n, poolThreads)), uint32(nrows), 1}, dim3{poolThreads, 1, 1},
		src, scores, int32(n), int32(stride), int32(n), int32(sel.Kernel), int32(sel.Pooling), int32(sel.PerRow), meanFirst); err != nil {
		return 0, 0, err
	}
	return scores, n, nil
}

// topK runs the top-k kernels over nrows rows of n scores at src (stride
// floats apart): topk_hist once per radix digit, then topk_write. It
// returns a buffer of nrows NaN flags followed by the rows' k indices.
// 0 < k < n. On the device thread.
func (b *Backend) topK(src devptr, stride, nrows, n, k int) (devptr, error) {
	d := b.dev
	per := topkChunk
	if b.topkChunk > 0 {
		per = b.topkChunk
	}
	nb, chunk := topkSplit(n, per)
	hist, err := b.arena.get("hist", int64(4*topkPasses*nrows*nb*topkBins))
	if err != nil {
		return 0, err
	}
	nanb, err := b.arena.get("nanb", int64(4*nrows*nb))
	if err != nil {
		return 0, err
	}
	res, err := b.arena.get("topk", int64(4*nrows*(1+k)))
	if err != nil {
		return 0, err
	}
	grid, block := dim3{uint32(nb), uint32(nrows), 1}, dim3{topkThreads, 1, 1}
	for pass := 0; pass < topkPasses; pass++ {
		if err := d.launch(kTopKHist, grid, block, src, int32(n), int32(stride), int32(k), int32(nb), int32(chunk),
			hist, nanb, int32(pass)); err != nil {
			return 0, err
		}
	}
	if err := d.launch(kTopKWrite, grid, block, src, int32(n), int32(stride), int32(k), int32(nb), int32(chunk),
		hist, nanb, res+devptr(4*nrows), int32(k), res); err != nil {
		return 0, err
	}
	return res, nil
}

// keepLists turns the selected indices (nrows rows of k) into the rows each
// KV head keeps: the selection, then the window P..L-1.
func (sp *selectPlan) keepLists(idx []int32, nan []int32) ([][]int, error) {
	for r, v := range nan {
		if v != 0 {
			return nil, fmt.Errorf("cuda: SelectLayer: layer %d: score row %d position %d is NaN: %w", sp.layer, r, v-1, backend.ErrNaN)
		}
	}
	keep := make([][]int, sp.kvGs)
	for r := 0; r < sp.nrows; r++ {
		rows := make([]int, 0, sp.k+sp.W)
		if sp.k == sp.P {
			for j := 0; j < sp.P; j++ {
				rows = append(rows, j)
			}
		} else {
			for _, j := range idx[r*sp.k : (r+1)*sp.k] {
				rows = append(rows, int(j))
			}
		}
		for j := sp.P; j < sp.L; j++ {
			rows = append(rows, j)
		}
		if sp.nrows == 1 {
			for g := range keep {
				keep[g] = rows
			}
			break
		}
		keep[r] = rows
	}
	return keep, nil
}

// SelectLayer implements backend.LayerSelector: it scores, pools, averages
// and selects on the device, and returns the rows each KV head of layer keeps
// (ascending, the window included): the same computation as the policies'
// SnapKV and SR scorers with the top-k selector, with the scores never
// leaving the device. Only the kept indices come back, in one download.
// Every KV head of the layer must hold the same number L > W of rows. Cost:
// the window kernels, then O(L) per score row in four passes.
func (b *Backend) SelectLayer(c kvcache.KVCache, layer int, q []float32, qHeads int, sel Selection) ([][]int, error) {
	const op = "SelectLayer"
	sp, err := b.prepareSelect(op, c, layer, q, qHeads, sel)
	if err != nil {
		return nil, err
	}
	res := make([]int32, sp.nrows*(1+sp.k))
	if sp.k > 0 && sp.k < sp.P {
		err = b.dev.do(func() error {
			buf, err := b.selectDevice(sp)
			if err != nil {
				return err
			}
			return b.dev.downloadI32(res, buf)
		})
		if err != nil {
			return nil, fmt.Errorf("cuda: %s: layer %d: %w", op, layer, err)
		}
	}
	return sp.keepLists(res[sp.nrows:], res[:sp.nrows])
}

// CompressLayer runs SelectLayer and compacts the layer to the kept rows,
// in one pass on the device: the gather reads the selected indices where
// top-k wrote them, into buffers of the kept size from the device's
// stream-ordered pool, and the old ones go back to the pool; the host waits
// once, for the indices. A NaN score leaves the layer as it was.
func (b *Backend) CompressLayer(c kvcache.KVCache, layer int, q []float32, qHeads int, sel Selection) ([][]int, error) {
	const op = "CompressLayer"
	sp, err := b.prepareSelect(op, c, layer, q, qHeads, sel)
	if err != nil {
		return nil, err
	}
	if sp.k == 0 || sp.k == sp.P {
		keep, err := b.SelectLayer(c, layer, q, qHeads, sel)
		if err != nil {
			return nil, err
		}
		return keep, b.Compact(c, layer, keep)
	}
	dc := sp.dc
	L := &dc.layers[layer]
	kept := sp.k + sp.W
	res := make([]int32, sp.nrows*(1+sp.k))
	err = b.dev.do(func() error {
		d := b.dev
		buf, err := b.selectDevice(sp)
		if err != nil {
			return err
		}
		size := dc.bufBytes(kept)
		nk, err := d.alloc(size)
		if err != nil {
			return err
		}
		nv, err := d.alloc(size)
		if err != nil {
			d.free(nk, size)
			return err
		}
		fail := func(err error) error {
			d.sync()
			d.free(nk, size)
			d.free(nv, size)
			return err
		}
		idxStride := int32(sp.k)
		if sp.nrows == 1 {
			idxStride = 0
		}
		rowBytes := dc.shape.HeadDim * dc.dtype.Size()
		if err := d.launch(kGatherRows, dim3{uint32(ceilDiv(kept, gatherRows)), uint32(sp.kvGs), 2}, dim3{gatherThreads(rowBytes), 1, 1},
			L.k, L.v, nk, nv, uint64(L.cap)*uint64(rowBytes), uint64(kept)*uint64(rowBytes), int32(rowBytes),
			buf+devptr(4*sp.nrows), idxStride, devptr(0), int32(kept), int32(sp.k), int32(sp.P)); err != nil {
			return fail(err)
		}
		if err := d.downloadI32(res, buf); err != nil {
			return fail(err)
		}
		for _, v := range res[:sp.nrows] {
			if v != 0 {
				d.free(nk, size)
				d.free(nv, size)
				return nil // reported below
			}
		}
		return dc.swap(L, nk, nv, kept)
	})
	if err != nil {
		return nil, fmt.Errorf("cuda: %s: layer %d: %w", op, layer, err)
	}
	keep, err := sp.keepLists(res[sp.nrows:], res[:sp.nrows])
	if err != nil {
		return nil, err
	}
	dc.keepPositions(layer, keep)
	return keep, nil
}

func init() { backend.Register("cuda", Available) }

var (
	_ backend.Resident      = (*Cache)(nil)
	_ backend.LayerSelector = (*Backend)(nil)
	_ backend.Backend       = (*Backend)(nil)
)

// Backend implements backend.Resident: a new Backend on the cache's device
// (close it when done), and why it was chosen, with what the device does
// without (Device.Reason: no cuBLAS, no CUDA runtime).
func (c *Cache) Backend() (backend.Backend, string) {
	return c.dev.NewBackend(), "cuda: the cache lives on " + c.dev.Reason()
}
