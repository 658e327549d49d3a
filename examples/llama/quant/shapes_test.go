package quant

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/compresskv/compresskv/internal/reftest"
)

// A transformer layer's weight matrices (rows x cols): q, k, v, o, gate,
// up, down.
type layerShape struct {
	name                 string
	dim, kv, hidden      int
	qRows, kvRows, oCols int
}

var benchShapes = []layerShape{
	{name: "qwen2.5-0.5b", dim: 896, kv: 128, hidden: 4864, qRows: 896, kvRows: 128, oCols: 896},
	{name: "llama3.2-1b", dim: 2048, kv: 512, hidden: 8192, qRows: 2048, kvRows: 512, oCols: 2048},
}

func (s layerShape) matrices() [][2]int {
	return [][2]int{
		{s.qRows, s.dim}, {s.kvRows, s.dim}, {s.kvRows, s.dim}, {s.dim, s.oCols},
		{s.hidden, s.dim}, {s.hidden, s.dim}, {s.dim, s.hidden},
	}
}

// cpuTime returns the user and system time this process has used.
func cpuTime() time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// BenchmarkLayer multiplies one layer's seven weight matrices, of the real
// models' shapes, with one activation row (decoding: GB/s of weights) and
// with 512 (a prompt chunk: GFLOP/s). cpu-GFLOP/s divides by the processor
// time the process used rather than the wall-clock time, so that it
// measures the kernels' efficiency on a machine other processes share
// (compare it with the cores' FMA peak); the wall-clock figures are the
// ones a user sees. Types whose blocks do not divide a width are skipped.
func BenchmarkLayer(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, s := range benchShapes {
		for _, typ := range []Type{Q8_0, Q4_K, Q6_K, Q5_0, Q4_0, F16, BF16} {
			var ms []Matrix
			bytes := 0
			ok := true
			for _, rc := range s.matrices() {
				if rc[1]%typ.BlockSize() != 0 {
					ok = false
					break
				}
				data := randomRows(r, typ, rc[0], rc[1])
				m, err := NewMatrix(typ, rc[0], rc[1], data)
				if err != nil {
					b.Fatal(err)
				}
				ms = append(ms, m)
				bytes += len(data)
			}
			if !ok {
				continue
			}
			for _, n := range []int{1, 512} {
				maxCols := max(s.dim, s.hidden)
				x := reftest.Normal(r, n*maxCols, 1)
				out := make([]float32, n*max(s.hidden, s.dim))
				flops := 0
				for _, m := range ms {
					flops += 2 * m.Rows * m.Cols * n
				}
				b.Run(fmt.Sprintf("%s/%v/n=%d", s.name, typ, n), func(b *testing.B) {
					c0 := cpuTime()
					for b.Loop() {
						for _, m := range ms {
							m.MulMat(out[:n*m.Rows], x[:n*m.Cols], n)
						}
					}
					sec := b.Elapsed().Seconds() / float64(b.N)
					cpu := (cpuTime() - c0).Seconds() / float64(b.N)
					if n == 1 {
						b.ReportMetric(float64(bytes)/sec/1e9, "GB/s")
						b.ReportMetric(float64(bytes)/cpu/1e9, "cpu-GB/s")
					}
					b.ReportMetric(float64(flops)/sec/1e9, "GFLOP/s")
					b.ReportMetric(float64(flops)/cpu/1e9, "cpu-GFLOP/s")
				})
			}
		}
	}
}

// BenchmarkTiles multiplies a 128 x 2048 weight (held in the cache) with 64
// activation rows on one goroutine: the kernels' arithmetic throughput
// without the memory's, in GFLOP/s of processor time.
func BenchmarkTiles(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	const rows, cols, n = 128, 2048, 64
	for _, typ := range []Type{Q8_0, Q4_0, Q5_0, Q4_K, Q6_K, F16, BF16, F32} {
		m, err := NewMatrix(typ, rows, cols, randomRows(r, typ, rows, cols))
		if err != nil {
			b.Fatal(err)
		}
		x := reftest.Normal(r, n*cols, 1)
		out := make([]float32, n*rows)
		b.Run(typ.String(), func(b *testing.B) {
			c0 := cpuTime()
			for b.Loop() {
				m.MulMat(out, x, n)
			}
			cpu := (cpuTime() - c0).Seconds() / float64(b.N)
			b.ReportMetric(2*rows*cols*n/cpu/1e9, "cpu-GFLOP/s")
		})
	}
}

// BenchmarkDecode multiplies the output projections of the two models
// (vocabulary x embedding: 151936 x 896 and 128256 x 2048, larger than
// the last-level cache) with one activation row: decoding's access pattern,
// the weights streamed from memory once. cpu-GB/s is the rate while the
// process runs (compare with backend/cpu's probe, as tools/runnerbench
// does).
func BenchmarkDecode(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, s := range []struct {
		name       string
		rows, cols int
	}{{"qwen2.5-0.5b", 151936, 896}, {"llama3.2-1b", 128256, 2048}} {
		for _, typ := range []Type{Q8_0, Q4_K, Q6_K, Q5_0, F16} {
			if s.cols%typ.BlockSize() != 0 {
				continue
			}
			m, err := NewMatrix(typ, s.rows, s.cols, randomRows(r, typ, s.rows, s.cols))
			if err != nil {
				b.Fatal(err)
			}
			x := reftest.Normal(r, s.cols, 1)
			out := make([]float32, s.rows)
			b.Run(fmt.Sprintf("%s/%v", s.name, typ), func(b *testing.B) {
				c0 := cpuTime()
				for b.Loop() {
					m.MulMat(out, x, 1)
				}
				sec := b.Elapsed().Seconds() / float64(b.N)
				cpu := (cpuTime() - c0).Seconds() / float64(b.N)
				b.ReportMetric(float64(len(m.Data))/sec/1e9, "GB/s")
				b.ReportMetric(float64(len(m.Data))/cpu/1e9, "cpu-GB/s")
			})
		}
	}
}
