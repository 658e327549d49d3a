package cpu

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/internal/finite"
	"github.com/compresskv/compresskv/kvcache"
)

// WindowScores implements backend.Backend.
//
// It works per KV head and per chunk of keys, never on the whole w x L matrix
// of logits at once unless it is small: a first pass computes, for every
// window query and chunk, the logits (keys decoded block by block, shared by
// the query heads of a KV head), their maximum, their exponentials relative
// to it and their sum; the chunk states are merged into the maximum and sum
// of each query's whole row; a second pass adds each chunk's exponentials,
// weighted by exp(chunk max - row max) / row sum, into out. The exponentials
// of a chunk are kept from the first pass to the second when all of them fit
// in the backend's store limit (64 MiB by default: 8 window queries x 32
// heads x 64K keys), else the second pass computes them again.
// Cost: w * L * HeadDim multiply-adds per head (twice that beyond the store
// limit), no allocation once warm.
func (b *Backend) WindowScores(c kvcache.KVCache, layer int, q []float32, w, qHeads int, heads []int, out [][]float32) error {
	const op = "WindowScores"
	hr, err := hostCache(op, c, layer)
	if err != nil {
		return err
	}
	s := c.Shape()
	if err := checkQueriesShape(op, s, q, w, qHeads); err != nil {
		return err
	}
	if w < 1 {
		return fmt.Errorf("cpu: %s: window of %d queries, want at least 1: %w", op, w, kvcache.ErrShape)
	}
	if len(out) != len(heads) {
		return fmt.Errorf("cpu: %s: %d output rows for %d heads: %w", op, len(out), len(heads), kvcache.ErrShape)
	}
	group := qHeads / s.KVHeads
	for j, h := range heads {
		if h < 0 || h >= qHeads {
			return fmt.Errorf("cpu: %s: head %d out of range [0, %d): %w", op, h, qHeads, kvcache.ErrShape)
		}
		g := h / group
		L := c.Len(layer, g)
		if w > L {
			return fmt.Errorf("cpu: %s: layer %d head %d: window of %d queries over %d rows of KV head %d, want w <= rows: %w",
				op, layer, h, w, L, g, kvcache.ErrShape)
		}
		if len(out[j]) != L {
			return fmt.Errorf("cpu: %s: layer %d head %d: output %d has %d values, want %d (rows of KV head %d): %w",
				op, layer, h, j, len(out[j]), L, g, kvcache.ErrShape)
		}
	}
	if err := checkFinite(op, q, qHeads, s.HeadDim); err != nil {
		return err
	}
	if len(heads) == 0 {
		return nil
	}

	j := windowPool.Get().(*windowJob)
	defer j.release()
	if err := j.setup(hr, layer, q, w, qHeads, heads, out); err != nil {
		return err
	}
	// One kernel per shape class for the whole call; a call whose groups
	// are all of one class (SnapKV's, CompressKV's) is timed for the plan.
	var keyBytes int64
	for i := range j.groups {
		keyBytes += int64(j.groups[i].L) * int64(s.HeadDim*c.DType().Size())
	}
	var (
		ch      chooser
		ki      int
		timed   bool
		classes int
	)
	for i := range j.groups {
		gr := &j.groups[i]
		g := b.chooserFor(class{op: opWindow, dt: c.DType(), group: gr.e1 - gr.e0, window: w,
			headDim: s.HeadDim, long: gr.L >= chunkRows, streams: keyBytes > llcBytes})
		if classes == 0 || g.e != ch.e {
			ch, classes = g, classes+1
			ki, timed = ch.pick()
		}
		gr.kernel = ch.e.cands[ki]
	}
	timed = timed && classes == 1
	t0 := time.Now()
	units := j.firstUnit[len(j.groups)]
	j.stored = j.storeSize*4 <= b.storeBytes
	if j.stored {
		j.store = growF32(j.store, j.storeSize)
	}
	j.pass = 1
	b.run(j, units, j.work, s.HeadDim)
	j.merge()
	j.pass = 2
	b.run(j, units, j.work, s.HeadDim)
	if timed {
		ch.e.record(ki, int(keyBytes/int64(s.HeadDim*c.DType().Size())), time.Since(t0))
	}

	for e, h := range heads {
		if i := finite.First(out[e]); i >= 0 {
			return fmt.Errorf("cpu: %s: layer %d head %d: score of row %d is %v (does the cache hold values that overflowed its storage type?): %w",
				op, layer, h, i, out[e][i], kvcache.ErrNonFinite)
		}
	}
	return nil
}

// checkQueriesShape wraps backend.CheckQueries with the operation's name.
func checkQueriesShape(op string, s kvcache.Shape, q []float32, n, qHeads int) error {
	if err := backend.CheckQueries(s, q, n, qHeads); err != nil {
		return fmt.Errorf("cpu: %s: %w", op, err)
	}
	return nil
}

// wgroup is the part of a WindowScores call that reads one KV head.
type wgroup struct {
	k      kvcache.Rows
	L      int
	e0, e1 int // its entries: windowJob.entries[e0:e1]
	rows   int // (e1-e0) * w window queries
	chunks int
	state  int // offset of its (max, sum) pairs in windowJob.state: per chunk, then merged
	store  int // offset of its exponentials in windowJob.store
	kernel kernel
}

// windowJob is one WindowScores call.
type windowJob struct {
	q            []float32
	w, qHeads, d int
	scale        float32
	heads        []int
	out          [][]float32
	entries      []int // indices into heads, grouped by KV head
	groups       []wgroup
	firstUnit    []int // units of group i are [firstUnit[i], firstUnit[i+1])
	state        []float32
	counts       []int
	quads        []float32 // per entry (grouped order), the window queries of its head by fours: [w/4][4][d]
	storeSize    int       // rows x L over the groups: exponentials kept between passes
	store        []float32 // chunk c of group g: rows x chunk length at store + rows*c*chunkRows
	stored       bool      // the second pass reads store instead of recomputing
	work         int64
	pass         int
}

var windowPool = sync.Pool{New: func() any { return new(windowJob) }}

func (j *windowJob) release() {
	j.q, j.heads, j.out = nil, nil, nil
	for i := range j.groups {
		j.groups[i].k = kvcache.Rows{}
	}
	windowPool.Put(j)
}

func (j *windowJob) setup(c kvcache.HostReader, layer int, q []float32, w, qHeads int, heads []int, out [][]float32) error {
	s := c.Shape()
	G, d := s.KVHeads, s.HeadDim
	group := qHeads / G
	*j = windowJob{
		q: q, w: w, qHeads: qHeads, d: d,
		scale:     float32(1 / math.Sqrt(float64(d))),
		heads:     heads,
		out:       out,
		entries:   growInt(j.entries, len(heads)),
		groups:    j.groups[:0],
		firstUnit: append(j.firstUnit[:0], 0),
		state:     j.state[:0],
		counts:    growInt(j.counts, G+1),
		store:     j.store,
		quads:     j.quads,
	}
	// Counting sort of the entries by KV head, stable.
	clear(j.counts)
	for _, h := range heads {
		j.counts[h/group+1]++
	}
	for g := 0; g < G; g++ {
		j.counts[g+1] += j.counts[g]
	}
	for e, h := range heads {
		g := h / group
		j.entries[j.counts[g]] = e
		j.counts[g]++
	}
	e0, nstate := 0, 0
	for e0 < len(heads) {
		g := heads[j.entries[e0]] / group
		e1 := e0 + 1
		for e1 < len(heads) && heads[j.entries[e1]]/group == g {
			e1++
		}
		k, _, err := headRows("WindowScores", c, layer, g)
		if err != nil {
			return err
		}
		gr := wgroup{k: k, L: k.N, e0: e0, e1: e1, rows: (e1 - e0) * w, chunks: chunks(k.N), state: nstate, store: j.storeSize}
		nstate += 2 * gr.rows * (gr.chunks + 1)
		j.storeSize += gr.rows * gr.L
		j.work += 2 * int64(gr.rows) * int64(gr.L) * int64(d)
		j.groups = append(j.groups, gr)
		j.firstUnit = append(j.firstUnit, j.firstUnit[len(j.firstUnit)-1]+gr.chunks)
		e0 = e1
	}
	j.state = growF32(j.state, nstate)
	// The window queries of each entry's head, four by four, contiguous as
	// the four-query kernel reads them.
	quads := w / 4
	j.quads = growF32(j.quads, len(heads)*quads*4*d)
	for ei, e := range j.entries {
		h := heads[e]
		for i := range quads * 4 {
			copy(j.quads[(ei*quads*4+i)*d:(ei*quads*4+i+1)*d], q[(i*qHeads+h)*d:(i*qHeads+h+1)*d])
		}
	}
	return nil
}

// unit runs one chunk of keys of one group in the current pass.
func (j *windowJob) unit(u int, s *scratch) {
	gi := 0
	for j.firstUnit[gi+1] <= u {
		gi++
	}
	gr := &j.groups[gi]
	c := u - j.firstUnit[gi]
	c0, c1 := c*chunkRows, min(gr.L, (c+1)*chunkRows)
	n := c1 - c0
	st := j.state[gr.state+2*c*gr.rows : gr.state+2*(c+1)*gr.rows]
	// ex holds the chunk's logits, then their exponentials: row r (window
	// query i of entry ei, r = ei*w + i) at ex[r*n:(r+1)*n].
	var ex []float32
	if j.stored {
		off := gr.store + gr.rows*c0
		ex = j.store[off : off+gr.rows*n]
	} else {
		s.chunk = growF32(s.chunk, gr.rows*n)
		ex = s.chunk
	}
	if j.pass == 1 || !j.stored {
		j.logits(gr.kernel, gr, c0, c1, ex, s)
		for r := range gr.rows {
			row := ex[r*n : (r+1)*n]
			m := st[2*r]
			if j.pass == 1 {
				m = maxOf(row)
			}
			sum := float32(0)
			if m == float32(math.Inf(-1)) {
				sum = noneVisible(row)
			} else {
				sum = expShift(row, m)
			}
			if j.pass == 1 {
				st[2*r], st[2*r+1] = m, sum
			}
		}
		if j.pass == 1 {
			return
		}
	}
	final := j.state[gr.state+2*gr.chunks*gr.rows : gr.state+2*(gr.chunks+1)*gr.rows] // (max, 1/sum) per row
	for ei, e := range j.entries[gr.e0:gr.e1] {
		o := j.out[e][c0:c1]
		clear(o)
		for i := range j.w {
			r := ei*j.w + i
			if st[2*r+1] == 0 { // no visible row in this chunk
				continue
			}
			axpy(o, expf(st[2*r]-final[2*r])*final[2*r+1], ex[r*n:(r+1)*n])
		}
	}
}

// logits writes into ex the scaled logits of every window query of group gr
// over rows [c0, c1), -Inf where the causal mask hides the row, with kernel
// k. Blocks of rows that every window query sees go four queries of a head
// at a time through the quad kernels when k's path is quad (rows converted
// in registers for each four) or quadblock (16-bit rows decoded once into
// scratch); the block the mask cuts, the w%4 last queries and the perhead
// path go one query at a time through dots over the decoded block.
func (j *windowJob) logits(k kernel, gr *wgroup, c0, c1 int, ex []float32, s *scratch) {
	d, w, L, n := j.d, j.w, gr.L, c1-c0
	quads := w / 4
	for j0 := c0; j0 < c1; j0 += blockRows {
		j1 := min(c1, j0+blockRows)
		nb := j1 - j0
		// Window query 0 sees rows < L-w+1: before that every query sees
		// the whole block.
		open := j1 <= L-w+1 && k.path != pathPerHead && quads > 0
		var keys []float32
		if !open || quads*4 < w || k.path == pathQuadBlock {
			keys = rowsBlock(gr.k, j0, j1, s.keys)
		}
		for ei, e := range j.entries[gr.e0:gr.e1] {
			h := j.heads[e]
			i0 := 0
			if open {
				for t := range quads {
					lg := s.logits[:4*nb]
					var mx [4]float32
					qq := j.quads[((gr.e0+ei)*quads+t)*4*d : ((gr.e0+ei)*quads+t+1)*4*d]
					if k.path == pathQuadBlock {
						kr := kvcache.Rows{DType: kvcache.Float32, N: nb, D: d, F32: keys}
						logitsQuadAt(k.level, lg, qq, kr, 0, nb, nil, j.scale, &mx)
					} else {
						logitsQuadAt(k.level, lg, qq, gr.k, j0, j1, s.keys, j.scale, &mx)
					}
					for c := range 4 {
						row := ex[(ei*w+4*t+c)*n+j0-c0 : (ei*w+4*t+c)*n+j1-c0]
						for jj := range row {
							row[jj] = lg[jj*4+c]
						}
					}
				}
				i0 = quads * 4
			}
			for i := i0; i < w; i++ {
				r := ei*w + i
				row := ex[r*n : (r+1)*n]
				vis := max(j0, min(j1, L-w+i+1)) // window query i sees rows < L-w+i+1
				qr := j.q[(i*j.qHeads+h)*d : (i*j.qHeads+h+1)*d]
				dotsAt(k.level, row[j0-c0:vis-c0], qr, keys[:(vis-j0)*d], j.scale)
				for k := vis - c0; k < j1-c0; k++ {
					row[k] = float32(math.Inf(-1))
				}
			}
		}
	}
}

// noneVisible handles a chunk row whose logits are all -Inf or NaN (no row
// visible to the query, or an overflowed cache): visible rows get 0, NaN
// stays NaN, and so does the returned sum.
func noneVisible(row []float32) float32 {
	var sum float32
	for k, x := range row {
		if x == x {
			row[k] = 0
		} else {
			sum = x
		}
	}
	return sum
}

// merge combines the per-chunk (max, sum) pairs of every window query into
// (max, 1/sum), stored after the pairs of the last chunk.
func (j *windowJob) merge() {
	for gi := range j.groups {
		gr := &j.groups[gi]
		st := j.state[gr.state : gr.state+2*gr.rows*(gr.chunks+1)]
		for r := 0; r < gr.rows; r++ {
			m := st[2*r]
			for c := 1; c < gr.chunks; c++ {
				m = max(m, st[2*(c*gr.rows+r)])
			}
			var sum float32
			for c := 0; c < gr.chunks; c++ {
				if cs := st[2*(c*gr.rows+r)+1]; cs != 0 {
					sum += cs * expf(st[2*(c*gr.rows+r)]-m)
				}
			}
			st[2*(gr.chunks*gr.rows+r)], st[2*(gr.chunks*gr.rows+r)+1] = m, 1/sum
		}
	}
}
