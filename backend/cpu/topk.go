package cpu

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sync"

	"github.com/compresskv/compresskv/backend"
)

// TopK implements backend.Backend.
//
// Each score and its index are packed into one uint64 whose ascending order
// is (score descending, index ascending), a total order that makes the
// answer unique: it is exactly the first k of a full sort by that order
// (-0 and +0 count as equal scores). A quickselect with median-of-three
// pivots finds the k smallest keys, and a bitmap of the chosen indices
// returns them in ascending order. Long inputs are split in parts of 8,192
// scores that select their own k best on the backend's workers before one
// last selection among those candidates (the same answer: it is unique).
// Cost: O(len(scores)) expected, with an O(n log n) bound; no allocation
// once warm beyond growing dst.
func (b *Backend) TopK(dst []int, scores []float32, k int) ([]int, error) {
	n := len(scores)
	if uint64(n) > math.MaxUint32 {
		return dst[:0], fmt.Errorf("cpu: TopK: %d scores, at most %d supported", n, uint64(math.MaxUint32))
	}
	for i, v := range scores {
		if v != v {
			return dst[:0], fmt.Errorf("cpu: TopK: score %d is NaN: %w", i, backend.ErrNaN)
		}
	}
	dst = dst[:0]
	if k <= 0 {
		return dst, nil
	}
	if k >= n {
		for i := range n {
			dst = append(dst, i)
		}
		return dst, nil
	}
	sc := topkPool.Get().(*topkScratch)
	defer topkPool.Put(sc)
	if cap(sc.keys) < n {
		sc.keys = make([]uint64, n)
	}
	keys := sc.keys[:n]
	// Parts of topkPart scores select their own k best on the workers; the
	// best k of the whole are among those candidates.
	parts := (n + topkPart - 1) / topkPart
	j := &sc.job
	*j = topkJob{scores: scores, keys: keys, k: k}
	b.run(j, parts, int64(n)*outputWork, 0)
	j.scores, j.keys = nil, nil
	m := 0
	for p := 0; p < parts; p++ {
		lo := p * topkPart
		c := min(k, min(n, lo+topkPart)-lo)
		copy(keys[m:m+c], keys[lo:lo+c])
		m += c
	}
	if k < m {
		selectSmallest(keys[:m], k)
	}
	// Mark the chosen indices in a bitmap and read it back in order.
	words := (n + 63) / 64
	if cap(sc.bits) < words {
		sc.bits = make([]uint64, words)
	}
	bm := sc.bits[:words]
	clear(bm)
	for _, key := range keys[:k] {
		i := uint32(key)
		bm[i/64] |= 1 << (i % 64)
	}
	for w, word := range bm {
		for word != 0 {
			dst = append(dst, w*64+bits.TrailingZeros64(word))
			word &= word - 1
		}
	}
	return dst, nil
}

// topkPart is the number of scores of one unit of TopK's parallel work.
const topkPart = 8192

// topkJob packs the keys of one part of the scores and moves the part's k
// smallest keys to its front.
type topkJob struct {
	scores []float32
	keys   []uint64
	k      int
}

func (j *topkJob) unit(u int, _ *scratch) {
	lo := u * topkPart
	hi := min(len(j.scores), lo+topkPart)
	keys := j.keys[lo:hi]
	for i, v := range j.scores[lo:hi] {
		keys[i] = uint64(orderKey(v))<<32 | uint64(lo+i)
	}
	if j.k < len(keys) {
		selectSmallest(keys, j.k)
	}
}

type topkScratch struct {
	job  topkJob
	keys []uint64
	bits []uint64
}

var topkPool = sync.Pool{New: func() any { return new(topkScratch) }}

// orderKey maps a non-NaN float32 to a uint32 whose ascending order is the
// float's descending order; -0 and +0 map to the same key.
func orderKey(v float32) uint32 {
	if v == 0 {
		v = 0 // -0 -> +0
	}
	u := math.Float32bits(v)
	if u&(1<<31) != 0 {
		u = ^u // negative: reverse
	} else {
		u |= 1 << 31
	}
	return ^u // ascending float -> descending key
}

// selectSmallest reorders a (distinct values) so that a[:k] holds its k
// smallest values, in any order (0 < k < len(a)). It is a quickselect with
// median-of-three pivots that falls back to sorting the remaining range
// after too many unbalanced rounds.
func selectSmallest(a []uint64, k int) {
	lo, hi := 0, len(a) // the boundary k lies in [lo, hi)
	budget := 2 * bits.Len(uint(len(a)))
	for hi-lo > 16 {
		if budget == 0 {
			slices.Sort(a[lo:hi])
			return
		}
		budget--
		p := partition(a[lo:hi]) + lo // a[lo:p] < a[p] < a[p+1:hi]
		switch {
		case p == k || p == k-1:
			return
		case p > k:
			hi = p
		default:
			lo = p + 1
		}
	}
	slices.Sort(a[lo:hi])
}

// partition places a median-of-three pivot at its sorted position p of a
// (len(a) >= 3, distinct values) with smaller values before it and larger
// ones after, and returns p.
func partition(a []uint64) int {
	n := len(a)
	m := n / 2
	// Order a[0], a[m], a[n-1]; the median goes to a[n-1] as the pivot.
	if a[m] < a[0] {
		a[m], a[0] = a[0], a[m]
	}
	if a[n-1] < a[0] {
		a[n-1], a[0] = a[0], a[n-1]
	}
	if a[m] < a[n-1] {
		a[m], a[n-1] = a[n-1], a[m]
	}
	pivot := a[n-1]
	i := 0
	for j := 0; j < n-1; j++ {
		if a[j] < pivot {
			a[i], a[j] = a[j], a[i]
			i++
		}
	}
	a[i], a[n-1] = a[n-1], a[i]
	return i
}
