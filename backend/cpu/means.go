package cpu

import (
	"fmt"
	"sync"

	"github.com/compresskv/compresskv/kvcache"
)

// MeanRows writes to dst the element-wise mean of rows, each of len(dst)
// values, with the arithmetic of the plain loop
//
//	for _, r := range rows {
//		for i, v := range r {
//			dst[i] += v // from zero, in float32
//		}
//	}
//	dst[i] *= 1 / float32(len(rows))
//
// so that the result does not depend on how the work is split: long rows go
// to the backend's workers in chunks of 4,096 columns. dst may be rows[0]
// itself but must not overlap another row. MeanRows is not part of
// backend.Backend; a policy reaches it through an interface of its own.
func (b *Backend) MeanRows(dst []float32, rows [][]float32) error {
	if len(rows) == 0 {
		return fmt.Errorf("cpu: MeanRows: no rows: %w", kvcache.ErrShape)
	}
	for i, r := range rows {
		if len(r) != len(dst) {
			return fmt.Errorf("cpu: MeanRows: row %d has %d values, want %d: %w", i, len(r), len(dst), kvcache.ErrShape)
		}
		if i > 0 && len(r) > 0 && overlap(dst, r) {
			return fmt.Errorf("cpu: MeanRows: output overlaps row %d", i)
		}
	}
	if len(dst) == 0 {
		return nil
	}
	j := meanJobs.Get().(*meanJob)
	*j = meanJob{dst: dst, rows: rows}
	b.run(j, (len(dst)+poolChunk-1)/poolChunk, int64(len(dst))*int64(len(rows))*outputWork/8, 0)
	*j = meanJob{}
	meanJobs.Put(j)
	return nil
}

// meanJob is one MeanRows call, split in chunks of poolChunk columns.
type meanJob struct {
	dst  []float32
	rows [][]float32
}

var meanJobs = sync.Pool{New: func() any { return new(meanJob) }}

func (j *meanJob) unit(u int, _ *scratch) {
	c0 := u * poolChunk
	c1 := min(len(j.dst), c0+poolChunk)
	o := j.dst[c0:c1]
	copy(o, j.rows[0][c0:c1]) // 0 + x is x (but for the sign of zero)
	for _, r := range j.rows[1:] {
		axpy(o, 1, r[c0:c1]) // 1*x + y rounds once, as x + y
	}
	scale(o, 1/float32(len(j.rows)))
}
