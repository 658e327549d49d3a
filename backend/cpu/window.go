package cpu

import (
	"fmt"
	"math"
	"sync"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/kvcache"
)

// WindowScores implements backend.Backend.
//
// It never holds more than one block of logits: a first pass over the keys
// finds, for every window query, the maximum and the sum of exponentials of
// its logits (merged across blocks as an online softmax); a second pass
// recomputes the logits and adds the normalised probabilities into out.
// Query heads that share a KV head share each decoded block of keys.
// Cost: 2 * w * L * HeadDim multiply-adds per head, no allocation once warm.
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
			return fmt.Errorf("cpu: %s: head %d out of range [0, %d)", op, h, qHeads)
		}
		g := h / group
		L := c.Len(layer, g)
		if w > L {
			return fmt.Errorf("cpu: %s: layer %d head %d: window of %d queries over %d rows of KV head %d, want w <= rows",
				op, layer, h, w, L, g)
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
	units := j.firstUnit[len(j.groups)]
	j.pass = 1
	b.run(j, units, j.work, s.HeadDim)
	j.merge()
	j.pass = 2
	b.run(j, units, j.work, s.HeadDim)

	for e, h := range heads {
		if i := firstNonFinite(out[e]); i >= 0 {
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
	state  int // offset of its (max, sum) pairs in windowJob.state
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
		gr := wgroup{k: k, L: k.N, e0: e0, e1: e1, rows: (e1 - e0) * w, chunks: chunks(k.N), state: nstate}
		nstate += 2 * gr.rows * gr.chunks
		j.work += 2 * int64(gr.rows) * int64(gr.L) * int64(d)
		j.groups = append(j.groups, gr)
		j.firstUnit = append(j.firstUnit, j.firstUnit[len(j.firstUnit)-1]+gr.chunks)
		e0 = e1
	}
	j.state = growF32(j.state, nstate)
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
	d, w, L := j.d, j.w, gr.L
	st := j.state[gr.state+2*c*gr.rows : gr.state+2*(c+1)*gr.rows]
	if j.pass == 1 {
		for r := range gr.rows {
			st[2*r], st[2*r+1] = float32(math.Inf(-1)), 0
		}
	}
	final := j.state[gr.state : gr.state+2*gr.rows] // after merge: (max, 1/sum) per row
	for j0 := c0; j0 < c1; j0 += blockRows {
		j1 := min(c1, j0+blockRows)
		keys := rowsBlock(gr.k, j0, j1, s.keys)
		if j.pass == 2 {
			for _, e := range j.entries[gr.e0:gr.e1] {
				clear(j.out[e][j0:j1])
			}
		}
		for ei, e := range j.entries[gr.e0:gr.e1] {
			h := j.heads[e]
			for i := range w {
				vis := min(j1, L-w+i+1) // window query i sees rows < vis
				if vis <= j0 {
					continue
				}
				nb := vis - j0
				qr := j.q[(i*j.qHeads+h)*d : (i*j.qHeads+h+1)*d]
				lg := s.logits[:nb]
				dots(lg, qr, keys[:nb*d], j.scale)
				r := ei*w + i
				if j.pass == 1 {
					m, sum := st[2*r], st[2*r+1]
					if bm := maxOf(lg); bm > m {
						sum *= expf(m - bm)
						m = bm
					}
					st[2*r], st[2*r+1] = m, sum+sumExpShift(lg, m)
				} else {
					accExpShift(j.out[e][j0:vis], lg, final[2*r], final[2*r+1])
				}
			}
		}
	}
}

// merge combines the per-chunk (max, sum) pairs of every window query into
// (max, 1/sum), stored where chunk 0's pair was.
func (j *windowJob) merge() {
	for gi := range j.groups {
		gr := &j.groups[gi]
		st := j.state[gr.state : gr.state+2*gr.rows*gr.chunks]
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
			st[2*r], st[2*r+1] = m, 1/sum
		}
	}
}
