package cuda

import (
	"fmt"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/kvcache"
)

// Selection describes the token selection of one layer that SelectLayer runs
// on the device (backend.Selection).
type Selection = backend.Selection

// SelectLayer implements backend.LayerSelector: it scores, pools, averages
// and selects on the device, and returns the rows each KV head of layer keeps
// (ascending, the window included): the same computation as the policies'
// SnapKV and SR scorers with the top-k selector, with the scores never
// leaving the device. Only the kept indices come back. Every KV head of the
// layer must hold the same number L > W of rows. Cost: the window kernels,
// then O(L) per score row.
func (b *Backend) SelectLayer(c kvcache.KVCache, layer int, q []float32, qHeads int, sel Selection) ([][]int, error) {
	const op = "SelectLayer"
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
	k := min(max(sel.Keep, 0), P)
	p, err := planWindow(lens, W, qHeads, dc.shape.HeadDim, sel.Heads)
	if err != nil {
		return nil, err
	}
	idx := make([]int32, nrows*k)
	nan := make([]int32, nrows)
	if k > 0 && k < P {
		err = b.dev.do(func() error {
			d := b.dev
			out, err := b.windowSums(dc, layer, q, p, ne)
			if err != nil {
				return err
			}
			// SnapKV averages each group and then pools; CompressKV pools
			// each SR head and then averages (backend.Selection.MeanFirst).
			src, stride := out, p.lmax
			pool := func(rows int) error {
				if sel.Kernel == 1 {
					return nil
				}
				pooled, err := b.arena.get("pooled", int64(4*rows*P))
				if err != nil {
					return err
				}
				if err := d.launch(kPool1d, dim3{uint32(ceilDiv(P, poolThreads)), uint32(rows), 1}, dim3{poolThreads, 1, 1},
					src, pooled, int32(P), int32(stride), int32(P), int32(sel.Kernel), int32(sel.Pooling)); err != nil {
					return err
				}
				src, stride = pooled, P
				return nil
			}
			mean := func() error {
				if sel.PerRow == 1 {
					return nil
				}
				m, err := b.arena.get("mean", int64(4*nrows*stride))
				if err != nil {
					return err
				}
				if err := d.launch(kMeanGroups, dim3{uint32(ceilDiv(P, poolThreads)), uint32(nrows), 1}, dim3{poolThreads, 1, 1},
					src, m, int32(P), int32(stride), int32(sel.PerRow)); err != nil {
					return err
				}
				src = m
				return nil
			}
			if sel.MeanFirst {
				if err := mean(); err != nil {
					return err
				}
				if err := pool(nrows); err != nil {
					return err
				}
			} else {
				if err := pool(ne); err != nil {
					return err
				}
				if err := mean(); err != nil {
					return err
				}
			}
			idxd, err := b.arena.get("idx", int64(4*len(idx)))
			if err != nil {
				return err
			}
			nand, err := b.arena.get("nan", int64(4*nrows))
			if err != nil {
				return err
			}
			if err := d.memset(nand, 4*nrows); err != nil {
				return err
			}
			if err := d.launch(kTopKRows, dim3{uint32(nrows), 1, 1}, dim3{topkThreads, 1, 1},
				src, int32(P), int32(stride), int32(k), idxd, int32(k), nand); err != nil {
				return err
			}
			if err := d.downloadI32(nan, nand); err != nil {
				return err
			}
			return d.downloadI32(idx, idxd)
		})
		if err != nil {
			return nil, fmt.Errorf("cuda: %s: layer %d: %w", op, layer, err)
		}
	}
	for r, v := range nan {
		if v != 0 {
			return nil, fmt.Errorf("cuda: %s: layer %d: score row %d position %d is NaN: %w", op, layer, r, v-1, backend.ErrNaN)
		}
	}
	keep := make([][]int, G)
	for r := 0; r < nrows; r++ {
		rows := make([]int, 0, k+W)
		if k == P {
			for j := 0; j < P; j++ {
				rows = append(rows, j)
			}
		} else {
			for _, j := range idx[r*k : (r+1)*k] {
				rows = append(rows, int(j))
			}
		}
		for j := P; j < L; j++ {
			rows = append(rows, j)
		}
		if nrows == 1 {
			for g := range keep {
				keep[g] = rows
			}
			break
		}
		keep[r] = rows
	}
	return keep, nil
}

// CompressLayer runs SelectLayer and compacts the layer to the kept rows.
func (b *Backend) CompressLayer(c kvcache.KVCache, layer int, q []float32, qHeads int, sel Selection) ([][]int, error) {
	keep, err := b.SelectLayer(c, layer, q, qHeads, sel)
	if err != nil {
		return nil, err
	}
	return keep, b.Compact(c, layer, keep)
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
