package cpu

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/compresskv/compresskv/internal/finite"
	"github.com/compresskv/compresskv/kvcache"
)

// Attend implements backend.Backend.
//
// One pass over the keys and values of each KV head serves all the query
// heads of its group: every block of rows is decoded once, its logits are
// folded into a running (max, sum, weighted values) state per query head
// (online softmax), and the states of the chunks of a long head are merged at
// the end. Cost: 2 * qHeads * L * HeadDim multiply-adds, no allocation once
// warm (on one worker).
func (b *Backend) Attend(c kvcache.KVCache, layer int, q []float32, qHeads int, out []float32) error {
	const op = "Attend"
	hr, err := hostCache(op, c, layer)
	if err != nil {
		return err
	}
	s := c.Shape()
	if err := checkQueriesShape(op, s, q, 1, qHeads); err != nil {
		return err
	}
	if len(out) != qHeads*s.HeadDim {
		return fmt.Errorf("cpu: %s: output of %d values, want %d (%d heads x %d): %w",
			op, len(out), qHeads*s.HeadDim, qHeads, s.HeadDim, kvcache.ErrShape)
	}
	if err := checkFinite(op, q, qHeads, s.HeadDim); err != nil {
		return err
	}
	j := attendPool.Get().(*attendJob)
	defer j.release()
	if err := j.setup(op, hr, layer, q, qHeads); err != nil {
		return err
	}
	j.out = out
	ch := b.chooserFor(class{op: opAttend, dt: c.DType(), group: j.group, headDim: s.HeadDim, long: j.long,
		streams: 2*j.rows*int64(s.HeadDim*c.DType().Size()) > llcBytes})
	ki, timed := ch.pick()
	j.kernel = ch.e.cands[ki]
	t0 := time.Now()
	b.run(j, j.firstUnit[s.KVHeads], j.work, s.HeadDim)
	j.merge()
	if timed {
		ch.e.record(ki, int(j.rows), time.Since(t0))
	}
	if i := finite.First(out); i >= 0 {
		return fmt.Errorf("cpu: %s: layer %d head %d: output value %d is %v (does the cache hold values that overflowed its storage type?): %w",
			op, layer, i/s.HeadDim, i%s.HeadDim, out[i], kvcache.ErrNonFinite)
	}
	return nil
}

// AttentionWeights implements backend.Backend. The logits are written into
// out[h] itself, then turned into probabilities in place.
// Cost: qHeads * L * HeadDim multiply-adds.
func (b *Backend) AttentionWeights(c kvcache.KVCache, layer int, q []float32, qHeads int, out [][]float32) ([][]float32, error) {
	const op = "AttentionWeights"
	hr, err := hostCache(op, c, layer)
	if err != nil {
		return out, err
	}
	s := c.Shape()
	if err := checkQueriesShape(op, s, q, 1, qHeads); err != nil {
		return out, err
	}
	if err := checkFinite(op, q, qHeads, s.HeadDim); err != nil {
		return out, err
	}
	j := attendPool.Get().(*attendJob)
	defer j.release()
	if err := j.setup(op, hr, layer, q, qHeads); err != nil {
		return out, err
	}
	if cap(out) < qHeads {
		out = append(out[:cap(out)], make([][]float32, qHeads-cap(out))...)
	}
	out = out[:qHeads]
	for h := range out {
		out[h] = growF32(out[h], j.L[h/j.group])
	}
	j.weights = out
	j.pass = 1
	b.run(j, j.firstUnit[s.KVHeads], j.work, s.HeadDim)
	j.pass = 2
	b.run(j, qHeads, j.work, s.HeadDim)
	for h := range out {
		if i := finite.First(out[h]); i >= 0 {
			return out, fmt.Errorf("cpu: %s: layer %d head %d: weight of row %d is %v (does the cache hold values that overflowed its storage type?): %w",
				op, layer, h, i, out[h][i], kvcache.ErrNonFinite)
		}
	}
	return out, nil
}

// attendJob is one Attend or AttentionWeights call.
type attendJob struct {
	q                []float32
	qHeads, group, d int
	scale            float32
	k, v             []kvcache.Rows // per KV head
	L                []int          // rows per KV head
	firstUnit        []int          // units of KV head g are [firstUnit[g], firstUnit[g+1])
	state            []float32      // Attend: per unit and query head of the group, (max, sum, acc[d])
	out              []float32      // Attend
	weights          [][]float32    // AttentionWeights
	pass             int            // AttentionWeights: 1 logits, 2 softmax; 0 for Attend
	work             int64
	long             bool   // a KV head holds at least chunkRows rows
	rows             int64  // rows over the KV heads
	kernel           kernel // Attend: the kernel of every unit
}

var attendPool = sync.Pool{New: func() any { return new(attendJob) }}

func (j *attendJob) release() {
	j.q, j.out, j.weights = nil, nil, nil
	clear(j.k)
	clear(j.v)
	attendPool.Put(j)
}

func (j *attendJob) setup(op string, c kvcache.HostReader, layer int, q []float32, qHeads int) error {
	s := c.Shape()
	G, d := s.KVHeads, s.HeadDim
	j.q, j.qHeads, j.group, j.d = q, qHeads, qHeads/G, d
	j.scale = float32(1 / math.Sqrt(float64(d)))
	j.k, j.v, j.L = j.k[:0], j.v[:0], j.L[:0]
	j.firstUnit = append(j.firstUnit[:0], 0)
	j.pass, j.work, j.long, j.rows = 0, 0, false, 0
	for g := 0; g < G; g++ {
		k, v, err := headRows(op, c, layer, g)
		if err != nil {
			return err
		}
		if k.N == 0 {
			return fmt.Errorf("cpu: %s: layer %d KV head %d holds no rows to attend to: %w", op, layer, g, kvcache.ErrShape)
		}
		j.k, j.v, j.L = append(j.k, k), append(j.v, v), append(j.L, k.N)
		j.firstUnit = append(j.firstUnit, j.firstUnit[g]+chunks(k.N))
		j.work += int64(j.group) * int64(k.N) * int64(d)
		j.long = j.long || k.N >= chunkRows
		j.rows += int64(k.N)
	}
	j.state = growF32(j.state, j.firstUnit[G]*j.group*(d+2))
	return nil
}

func (j *attendJob) unit(u int, s *scratch) {
	if j.pass == 2 {
		j.softmax(u)
		return
	}
	g := 0
	for j.firstUnit[g+1] <= u {
		g++
	}
	c := u - j.firstUnit[g]
	c0, c1 := c*chunkRows, min(j.L[g], (c+1)*chunkRows)
	d, group := j.d, j.group
	if j.pass == 1 {
		for j0 := c0; j0 < c1; j0 += blockRows {
			j1 := min(c1, j0+blockRows)
			keys := rowsBlock(j.k[g], j0, j1, s.keys)
			for h := g * group; h < (g+1)*group; h++ {
				dots(j.weights[h][j0:j1], j.q[h*d:(h+1)*d], keys, j.scale)
			}
		}
		return
	}
	k := j.kernel
	// The unit's state: the running maximum and sum of each query head of
	// the group, then their weighted sums of values, d each.
	st := j.state[u*group*(d+2) : (u+1)*group*(d+2)]
	ms, sums, accs := st[:group], st[group:2*group], st[2*group:]
	for hi := range group {
		ms[hi], sums[hi] = float32(math.Inf(-1)), 0
	}
	clear(accs)
	for j0 := c0; j0 < c1; j0 += blockRows {
		j1 := min(c1, j0+blockRows)
		if k.path == pathQuad {
			j.blockQuad(k.level, g, j0, j1, ms, sums, accs, s)
		} else {
			j.blockPerHead(k.level, g, j0, j1, ms, sums, accs, s)
		}
	}
}

// blockPerHead folds rows [j0, j1) of KV head g into the states of its
// query heads one head at a time, over the block decoded once into
// scratch (float32 rows are read in place).
func (j *attendJob) blockPerHead(l level, g, j0, j1 int, ms, sums, accs []float32, s *scratch) {
	d, nb := j.d, j1-j0
	keys := rowsBlock(j.k[g], j0, j1, s.keys)
	vals := rowsBlock(j.v[g], j0, j1, s.vals)
	lg := s.logits[:nb]
	for hi := range j.group {
		h := g*j.group + hi
		dotsAt(l, lg, j.q[h*d:(h+1)*d], keys, j.scale)
		m, acc := ms[hi], accs[hi*d:(hi+1)*d]
		if bm := maxOf(lg); bm > m {
			f := expf(m - bm)
			sums[hi] *= f
			scale(acc, f)
			m = bm
		}
		mm := [4]float32{m, m, m, m}
		expQuad(lg, &mm)
		sums[hi] += blockSum(lg)
		accRowsAt(l, acc, lg, vals)
		ms[hi] = m
	}
}

// blockQuad folds rows [j0, j1) of KV head g into the states of its query
// heads four at a time: each key and value row is read (and converted) in
// registers once for the four. The arithmetic is blockPerHead's.
func (j *attendJob) blockQuad(l level, g, j0, j1 int, ms, sums, accs []float32, s *scratch) {
	d, nb := j.d, j1-j0
	lg := s.logits[:4*nb]
	for h4 := 0; h4 < j.group; h4 += 4 {
		h := g*j.group + h4
		m := (*[4]float32)(ms[h4 : h4+4])
		bm := *m
		logitsQuadAt(l, lg, j.q[h*d:(h+4)*d], j.k[g], j0, j1, s.keys, j.scale, &bm)
		acc := accs[h4*d : (h4+4)*d]
		for i := range 4 {
			if bm[i] > m[i] {
				f := expf(m[i] - bm[i])
				sums[h4+i] *= f
				scale(acc[i*d:(i+1)*d], f)
				m[i] = bm[i]
			}
		}
		bs := expSumQuad(lg, m)
		for i := range 4 {
			sums[h4+i] += bs[i]
		}
		accQuadAt(l, acc, lg, j.v[g], j0, j1, s.vals)
	}
}

// merge combines the chunk states of every query head into out.
func (j *attendJob) merge() {
	d, group := j.d, j.group
	for h := 0; h < j.qHeads; h++ {
		g, hi := h/group, h%group
		o := j.out[h*d : (h+1)*d]
		u0, u1 := j.firstUnit[g], j.firstUnit[g+1]
		// state returns the maximum, sum and values of head hi in unit u.
		state := func(u int) (float32, float32, []float32) {
			st := j.state[u*group*(d+2) : (u+1)*group*(d+2)]
			return st[hi], st[group+hi], st[2*group+hi*d : 2*group+(hi+1)*d]
		}
		if u1-u0 == 1 {
			_, sum, acc := state(u0)
			copy(o, acc)
			scale(o, 1/sum)
			continue
		}
		m := float32(math.Inf(-1))
		for u := u0; u < u1; u++ {
			um, _, _ := state(u)
			m = max(m, um)
		}
		clear(o)
		var sum float32
		for u := u0; u < u1; u++ {
			um, us, acc := state(u)
			f := expf(um - m)
			sum += us * f
			axpy(o, f, acc)
		}
		scale(o, 1/sum)
	}
}

// softmax turns the logits of query head h into probabilities in place.
func (j *attendJob) softmax(h int) {
	x := j.weights[h]
	m := maxOf(x)
	sum := expShift(x, m)
	scale(x, 1/sum)
}
