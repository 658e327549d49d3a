package cuda

import (
	"fmt"
	"math"
	"sync"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/kvcache"
)

// Backend implements backend.Backend on a Device, for caches made by that
// device (*Cache). WindowScores, AttentionWeights and Attend run kernels on
// the device; only queries, descriptors and results cross the bus. Pool and
// TopK take host slices: they run on the CPU backend, because a round trip
// through the device costs more than their O(n) work (the device versions
// run inside SelectLayer, where the scores never leave the device). Every
// call is serialised on the device thread; a Backend is safe for concurrent
// use. Close releases its scratch memory.
type Backend struct {
	dev *Device
	cpu *cpu.Backend

	// gemmMinWindow is the smallest window that WindowScores computes with
	// cuBLAS (0: defaultGEMMWindow); gemmChunk bounds the bytes of logits
	// one SGEMM writes (0: defaultGEMMChunk). Tests and benchmarks set them.
	gemmMinWindow int
	gemmChunk     int64
	// logitBytes bounds the logits window_pass keeps between its passes
	// (0: defaultLogitBytes): beyond it, the second pass computes them
	// again instead of reading them.
	logitBytes int64
	// topkChunk is the fewest scores a top-k block takes (0: topkChunk),
	// smaller in tests so that short rows take several blocks.
	topkChunk int
	// foldRows is the most rows of a group whose statistics window_pass
	// folds itself (0: foldMaxRows; negative: never, window_merge does).
	foldRows int
	// attendRows fixes the rows of an attend_partial split (0: attendSplit
	// plans them), for the instruction-count tests.
	attendRows int

	mu     sync.Mutex
	closed bool
	arena  arena // used on the device thread only
}

var _ backend.Backend = (*Backend)(nil)

// NewBackend returns a backend that computes on d.
func (d *Device) NewBackend() *Backend {
	return &Backend{dev: d, cpu: cpu.New(), arena: arena{d: d}}
}

// Name implements backend.Backend: it returns "cuda".
func (b *Backend) Name() string { return "cuda" }

// Device returns the device the backend computes on.
func (b *Backend) Device() *Device { return b.dev }

// Close frees the backend's scratch memory; the backend is unusable after.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	return b.dev.do(func() error { return b.arena.release() })
}

// cache returns c as a *Cache of b's device after checking layer.
func (b *Backend) cache(op string, c kvcache.KVCache, layer int) (*Cache, error) {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("cuda: %s: backend: %w", op, ErrClosed)
	}
	dc, ok := c.(*Cache)
	if !ok {
		return nil, fmt.Errorf("cuda: %s: cache of type %T is not a device cache (*cuda.Cache); use Device.Upload or the CPU backend", op, c)
	}
	if dc.dev != b.dev {
		return nil, fmt.Errorf("cuda: %s: the cache lives on another Device", op)
	}
	if err := dc.check(op, layer); err != nil {
		return nil, err
	}
	return dc, nil
}

func checkFinite(op string, q []float32, qHeads, d int) error {
	for i, x := range q {
		if x-x != 0 {
			return fmt.Errorf("cuda: %s: query row %d head %d value %d is %v: %w", op, i/(qHeads*d), (i/d)%qHeads, i%d, x, kvcache.ErrNonFinite)
		}
	}
	return nil
}

// windowPlan is the device work of one window-sums call: the query rows
// grouped by KV head and their output entries.
type windowPlan struct {
	w, qHeads int
	heads     []int      // the query head of each entry
	lens      []int      // rows of each KV head
	groups    [][4]int32 // (g, L, first row, rows) per group, in row order
	rows      []int32    // (q offset, vis, out offset) per row
	entries   []int      // output entry of each row
	lmax      int        // longest head, the stride of the output entries
	ntiles    int
}

// planWindow lays out the query rows of WindowScores: for entry e (query
// head heads[e] reading KV head g of L rows), the w rows (i*qHeads+h)*d with
// vis = L-w+i+1, output at e*lmax. Entries reading one KV head form one
// group, and share its key tiles.
func planWindow(lens []int, w, qHeads, d int, heads []int) (*windowPlan, error) {
	G := len(lens)
	group := qHeads / G
	p := &windowPlan{w: w, qHeads: qHeads, heads: heads, lens: lens}
	for _, h := range heads {
		p.lmax = max(p.lmax, lens[h/group])
	}
	if int64(len(heads))*int64(p.lmax) > math.MaxInt32 || int64(w)*int64(qHeads)*int64(d) > math.MaxInt32 {
		return nil, fmt.Errorf("cuda: window of %d queries over %d heads x %d rows is beyond int32 offsets", w, len(heads), p.lmax)
	}
	p.ntiles = ceilDiv(max(p.lmax, 1), tileRows)
	for g := 0; g < G; g++ {
		first := len(p.rows) / 3
		for e, h := range heads {
			if h/group != g {
				continue
			}
			L := lens[g]
			for i := 0; i < w; i++ {
				p.rows = append(p.rows, int32((i*qHeads+h)*d), int32(L-w+i+1), int32(e*p.lmax))
				p.entries = append(p.entries, e)
			}
		}
		if n := len(p.rows)/3 - first; n > 0 {
			p.groups = append(p.groups, [4]int32{int32(g), int32(lens[g]), int32(first), int32(n)})
		}
	}
	return p, nil
}

// batches splits the groups so that each batch (one launch) holds at most
// maxRows query rows and 65535 groups (the grid's y limit); a group split
// across batches keeps its rows in order, and appears at most once in a
// batch, so that no two blocks of one launch add to the same output.
// It returns, per batch, its group descriptors.
func (p *windowPlan) batches(maxRows int) [][][4]int32 {
	maxRows = max(maxRows, warps)
	var out [][][4]int32
	var cur [][4]int32
	n := 0
	for _, gr := range p.groups {
		first, rows := int(gr[2]), int(gr[3])
		for rows > 0 {
			take := min(rows, maxRows-n)
			cur = append(cur, [4]int32{gr[0], gr[1], int32(first), int32(take)})
			first += take
			rows -= take
			n += take
			if n == maxRows || len(cur) == 65535 {
				out = append(out, cur)
				cur, n = nil, 0
			}
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// defaultLogitBytes bounds the logits of window_pass's first pass that the
// second reads back (keys read once): SnapKV's 32 heads x W = 32 at 32K
// tokens hold 128 MiB of them; beyond the bound (long windows or caches),
// the second pass computes them again.
const defaultLogitBytes = 256 << 20

func (b *Backend) logitBudget() int64 {
	if b.logitBytes > 0 {
		return b.logitBytes
	}
	return defaultLogitBytes
}

// window_pass modes
const (
	passStats = 1 // tile statistics (and the logits, with a logit buffer)
	passSums  = 2 // the sums (from the logit buffer, or computed again)
	passFold  = 4 // with passSums: fold the statistics in the block
)

// windowSums runs the window kernels for plan p over layer l of c, with
// queries q, leaving the sums in the arena buffer "out" (len(heads) rows of
// p.lmax floats) and returning it: with cuBLAS for windows of at least
// gemmMinWindow queries (see windowSumsGEMM), else with the fused kernels:
// window_pass's first pass writes each row's per-tile statistics and, within
// logitBudget, the logits; window_merge folds the statistics (or, for groups
// of at most foldMaxRows rows over few tiles, the second pass does it
// itself); the second pass stores the sums, reading the logits back or
// computing them again. Every (entry, key below its head's length) is
// written. On the device thread.
func (b *Backend) windowSums(c *Cache, l int, q []float32, p *windowPlan, nEntries int) (devptr, error) {
	if b.dev.blas != 0 && p.w >= b.gemmWindow() {
		return b.windowSumsGEMM(c, l, q, p, nEntries)
	}
	d := b.dev
	L := &c.layers[l]
	nrows := len(p.rows) / 3
	qd, err := b.arena.get("q", int64(4*len(q)))
	if err != nil {
		return 0, err
	}
	rowsd, err := b.arena.get("rows", int64(4*len(p.rows)))
	if err != nil {
		return 0, err
	}
	out, err := b.arena.get("out", int64(4)*int64(nEntries)*int64(p.lmax))
	if err != nil {
		return 0, err
	}
	batches := p.batches(math.MaxInt32)
	stats, err := b.arena.get("stats", int64(8)*int64(nrows)*int64(p.ntiles))
	if err != nil {
		return 0, err
	}
	limit := foldMaxRows
	if b.foldRows != 0 {
		limit = min(b.foldRows, foldMaxRows)
	}
	fold := limit > 0
	for _, gr := range p.groups {
		if int(gr[3]) > limit || int(gr[3])*p.ntiles > 16384 {
			fold = false
		}
	}
	var fin devptr
	if !fold {
		if fin, err = b.arena.get("fin", int64(8*nrows)); err != nil {
			return 0, err
		}
	}
	var lg devptr
	lgStride := uint64(p.ntiles) * tileRows
	if lgBytes := int64(4) * int64(nrows) * int64(lgStride); lgBytes <= b.logitBudget() {
		if lg, err = b.arena.get("logits", lgBytes); err != nil {
			return 0, err
		}
	}
	groupsd, err := b.arena.get("groups", int64(16*(len(p.groups)+len(batches))))
	if err != nil {
		return 0, err
	}
	if err := d.uploadF32(qd, q); err != nil {
		return 0, err
	}
	if err := d.uploadI32(rowsd, p.rows); err != nil {
		return 0, err
	}
	scale2 := float32(log2e / math.Sqrt(float64(c.shape.HeadDim)))
	headStride := uint64(L.cap) * uint64(c.shape.HeadDim)
	dt, hd := int32(c.dtype), int32(c.shape.HeadDim)
	block := dim3{tileRows, 1, 1}
	pass := windowPassFor(c.shape.HeadDim)
	var flat []int32
	offs := make([]int, len(batches))
	for i, bt := range batches {
		offs[i] = len(flat) / 4
		for _, gr := range bt {
			flat = append(flat, gr[:]...)
		}
	}
	if err := d.uploadI32(groupsd, flat); err != nil {
		return 0, err
	}
	run := func(mode int32) error {
		for i, bt := range batches {
			gd := groupsd + devptr(16*offs[i])
			grid := dim3{uint32(p.ntiles), uint32(len(bt)), 1}
			if err := d.launch(pass, grid, block, L.k, headStride, dt, hd, scale2, qd, gd, rowsd,
				stats, fin, out, lg, lgStride, int32(p.ntiles), mode); err != nil {
				return err
			}
		}
		return nil
	}
	if err := run(passStats); err != nil {
		return 0, err
	}
	mode := int32(passSums)
	if fold {
		mode |= passFold
	} else if err := d.launch(kWindowMerge, dim3{uint32(ceilDiv(nrows, warps)), 1, 1}, dim3{32 * warps, 1, 1},
		stats, fin, int32(nrows), int32(p.ntiles)); err != nil {
		return 0, err
	}
	if err := run(mode); err != nil {
		return 0, err
	}
	return out, nil
}

// checkWindow validates a WindowScores call like the CPU backend and
// returns the rows of each KV head.
func checkWindow(op string, c *Cache, layer int, q []float32, w, qHeads int, heads []int) ([]int, error) {
	s := c.shape
	if err := backend.CheckQueries(s, q, w, qHeads); err != nil {
		return nil, fmt.Errorf("cuda: %s: %w", op, err)
	}
	if w < 1 {
		return nil, fmt.Errorf("cuda: %s: window of %d queries, want at least 1: %w", op, w, kvcache.ErrShape)
	}
	lens := make([]int, s.KVHeads)
	for g := range lens {
		lens[g] = c.Len(layer, g)
	}
	group := qHeads / s.KVHeads
	for _, h := range heads {
		if h < 0 || h >= qHeads {
			return nil, fmt.Errorf("cuda: %s: head %d out of range [0, %d)", op, h, qHeads)
		}
		if L := lens[h/group]; w > L {
			return nil, fmt.Errorf("cuda: %s: layer %d head %d: window of %d queries over %d rows of KV head %d, want w <= rows",
				op, layer, h, w, L, h/group)
		}
	}
	return lens, checkFinite(op, q, qHeads, s.HeadDim)
}

// WindowScores implements backend.Backend on the device: fused logits, causal
// window mask and two-pass stable softmax per tile of 128 keys (the keys
// read once when the logits fit logitBudget), then the sums are copied to
// out.
// Cost: 2 * w * L * HeadDim multiply-adds per head; key reads shared by the
// query heads of one KV head.
func (b *Backend) WindowScores(c kvcache.KVCache, layer int, q []float32, w, qHeads int, heads []int, out [][]float32) error {
	const op = "WindowScores"
	dc, err := b.cache(op, c, layer)
	if err != nil {
		return err
	}
	lens, err := checkWindow(op, dc, layer, q, w, qHeads, heads)
	if err != nil {
		return err
	}
	if len(out) != len(heads) {
		return fmt.Errorf("cuda: %s: %d output rows for %d heads: %w", op, len(out), len(heads), kvcache.ErrShape)
	}
	group := qHeads / dc.shape.KVHeads
	for j, h := range heads {
		if L := lens[h/group]; len(out[j]) != L {
			return fmt.Errorf("cuda: %s: layer %d head %d: output %d has %d values, want %d (rows of KV head %d): %w",
				op, layer, h, j, len(out[j]), L, h/group, kvcache.ErrShape)
		}
	}
	if len(heads) == 0 {
		return nil
	}
	p, err := planWindow(lens, w, qHeads, dc.shape.HeadDim, heads)
	if err != nil {
		return err
	}
	all := make([]float32, len(heads)*p.lmax)
	err = b.dev.do(func() error {
		buf, err := b.windowSums(dc, layer, q, p, len(heads))
		if err != nil {
			return err
		}
		return b.dev.downloadF32(all, buf)
	})
	for e := range heads {
		copy(out[e], all[e*p.lmax:])
	}
	if err != nil {
		return fmt.Errorf("cuda: %s: layer %d: %w", op, layer, err)
	}
	for e, h := range heads {
		for i, x := range out[e] {
			if x-x != 0 {
				return fmt.Errorf("cuda: %s: layer %d head %d: score of row %d is %v (does the cache hold values that overflowed its storage type?): %w",
					op, layer, h, i, x, kvcache.ErrNonFinite)
			}
		}
	}
	return nil
}

// Pool implements backend.Backend on the CPU (the scores are host slices);
// see SelectLayer for pooling on the device.
func (b *Backend) Pool(dst, src []float32, kernel int, kind backend.Pooling) error {
	return b.cpu.Pool(dst, src, kernel, kind)
}

// TopK implements backend.Backend on the CPU (the scores are host slices);
// see SelectLayer for top-k on the device. Both give the same set.
func (b *Backend) TopK(dst []int, scores []float32, k int) ([]int, error) {
	return b.cpu.TopK(dst, scores, k)
}

// Compact implements backend.Backend: c.Compact, on the device.
func (b *Backend) Compact(c kvcache.KVCache, layer int, keep [][]int) error {
	dc, err := b.cache("Compact", c, layer)
	if err != nil {
		return err
	}
	return dc.Compact(layer, keep)
}

// attendSplit returns the rows per split and the number of splits of
// attend_partial for heads of at most L rows, with blocks blocks per split
// (KV heads x chunks of query heads) on a device of sms multiprocessors
// holding perSM blocks each: one wave of blocks that fills the device,
// each split a multiple of 32 rows (a warp's tile) and at least 128 (a
// tile per warp).
func attendSplit(L, blocks, sms, perSM int) (rows, splits int) {
	splits = max(1, sms*perSM/max(blocks, 1))
	splits = min(splits, max(1, L/(32*attendWarps)))
	rows = ceilDiv(ceilDiv(L, splits), 32) * 32
	return rows, max(1, ceilDiv(L, rows))
}

// Attend implements backend.Backend on the device: each block takes one
// split of the rows of one KV head for 4 or 8 of its query heads (an online
// softmax per warp, a lane per key for the logits, the keys and values read
// in 16-byte words; the warps merged in the block), and a second kernel
// merges the splits. Cost: 2 * qHeads * L * HeadDim multiply-adds; keys and
// values read once per block's query heads.
func (b *Backend) Attend(c kvcache.KVCache, layer int, q []float32, qHeads int, out []float32) error {
	const op = "Attend"
	dc, err := b.cache(op, c, layer)
	if err != nil {
		return err
	}
	s := dc.shape
	if err := backend.CheckQueries(s, q, 1, qHeads); err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	if len(out) != qHeads*s.HeadDim {
		return fmt.Errorf("cuda: %s: output of %d values, want %d (%d heads x %d): %w",
			op, len(out), qHeads*s.HeadDim, qHeads, s.HeadDim, kvcache.ErrShape)
	}
	if err := checkFinite(op, q, qHeads, s.HeadDim); err != nil {
		return err
	}
	lens := make([]int32, s.KVHeads)
	lmax := 0
	for g := range lens {
		n := dc.Len(layer, g)
		if n == 0 {
			return fmt.Errorf("cuda: %s: layer %d KV head %d holds no rows to attend to", op, layer, g)
		}
		lens[g] = int32(n)
		lmax = max(lmax, n)
	}
	group := qHeads / s.KVHeads
	d := s.HeadDim
	partial, chunk, perSM := attendPartialFor(d, group)
	zc := ceilDiv(group, chunk)
	rows, splits := attendSplit(lmax, s.KVHeads*zc, b.dev.info.SMs, perSM)
	if b.attendRows > 0 {
		rows, splits = b.attendRows, ceilDiv(lmax, b.attendRows)
	}
	L := &dc.layers[layer]
	err = b.dev.do(func() error {
		qd, err := b.arena.get("aq", int64(4*len(q)))
		if err != nil {
			return err
		}
		lensd, err := b.arena.get("lens", int64(4*len(lens)))
		if err != nil {
			return err
		}
		part, err := b.arena.get("part", int64(4)*int64(qHeads)*int64(splits)*int64(d+2))
		if err != nil {
			return err
		}
		outd, err := b.arena.get("aout", int64(4*len(out)))
		if err != nil {
			return err
		}
		if err := b.dev.uploadF32(qd, q); err != nil {
			return err
		}
		if err := b.dev.uploadI32(lensd, lens); err != nil {
			return err
		}
		grid := dim3{uint32(splits), uint32(s.KVHeads), uint32(zc)}
		if err := b.dev.launch(partial, grid, dim3{32 * attendWarps, 1, 1}, L.k, L.v,
			uint64(L.cap)*uint64(d), int32(dc.dtype), int32(d), float32(log2e/math.Sqrt(float64(d))),
			qd, lensd, int32(group), int32(rows), int32(splits), part); err != nil {
			return err
		}
		if err := b.dev.launch(kAttendMerge, dim3{uint32(qHeads), 1, 1}, dim3{uint32(min(256, ceilDiv(d, 32)*32)), 1, 1},
			part, int32(splits), int32(d), outd); err != nil {
			return err
		}
		return b.dev.downloadF32(out, outd)
	})
	if err != nil {
		return fmt.Errorf("cuda: %s: layer %d: %w", op, layer, err)
	}
	for i, x := range out {
		if x-x != 0 {
			return fmt.Errorf("cuda: %s: layer %d head %d: output value %d is %v (does the cache hold values that overflowed its storage type?): %w",
				op, layer, i/d, i%d, x, kvcache.ErrNonFinite)
		}
	}
	return nil
}

// AttentionWeights implements backend.Backend with the window kernels: the
// weights of one query are its window sums with a window of one.
func (b *Backend) AttentionWeights(c kvcache.KVCache, layer int, q []float32, qHeads int, out [][]float32) ([][]float32, error) {
	const op = "AttentionWeights"
	dc, err := b.cache(op, c, layer)
	if err != nil {
		return out, err
	}
	s := dc.shape
	if err := backend.CheckQueries(s, q, 1, qHeads); err != nil {
		return out, fmt.Errorf("cuda: %s: %w", op, err)
	}
	group := qHeads / s.KVHeads
	for g := 0; g < s.KVHeads; g++ {
		if dc.Len(layer, g) == 0 {
			return out, fmt.Errorf("cuda: %s: layer %d KV head %d holds no rows to attend to", op, layer, g)
		}
	}
	if cap(out) < qHeads {
		out = append(out[:cap(out)], make([][]float32, qHeads-cap(out))...)
	}
	out = out[:qHeads]
	heads := make([]int, qHeads)
	for h := range out {
		heads[h] = h
		n := dc.Len(layer, h/group)
		if cap(out[h]) < n {
			out[h] = make([]float32, n)
		}
		out[h] = out[h][:n]
	}
	return out, b.WindowScores(c, layer, q, 1, qHeads, heads, out)
}
