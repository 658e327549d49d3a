package cuda

import (
	"syscall"
	"testing"
	"time"

	"github.com/compresskv/compresskv/internal/reftest"
	"github.com/compresskv/compresskv/kvcache"
)

// BenchmarkExecutor runs the real kernels of window sums and decode
// attention in the PTX executor (one goroutine) and reports the executor's
// speed in thread-instructions per second.
func BenchmarkExecutor(b *testing.B) {
	f := newFakeGPU()
	dev, err := openAPI(f.api(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer dev.Close()
	r, _ := reftest.Rand(b)
	s := kvcache.Shape{Layers: 1, KVHeads: 2, HeadDim: 128}
	const L, H, W = 1000, 8, 8
	c, err := dev.NewCache(s, kvcache.Float16)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	k := reftest.Normal(r, L*s.KVHeads*s.HeadDim, 1)
	if err := c.Append(0, k, k); err != nil {
		b.Fatal(err)
	}
	be := dev.NewBackend()
	defer be.Close()
	q := reftest.Normal(r, W*H*s.HeadDim, 1)
	heads := []int{0, 5}
	out := [][]float32{make([]float32, L), make([]float32, L)}
	att := make([]float32, H*s.HeadDim)
	f.instructions = 0
	cpu0 := cpuSeconds()
	start := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := be.WindowScores(c, 0, q, W, H, heads, out); err != nil {
			b.Fatal(err)
		}
		if err := be.Attend(c, 0, q[:H*s.HeadDim], H, att); err != nil {
			b.Fatal(err)
		}
	}
	el := time.Since(start).Seconds()
	b.ReportMetric(float64(f.instructions)/el/1e6, "Minstr/s")
	// per CPU-second of the process: less sensitive to a shared machine
	b.ReportMetric(float64(f.instructions)/(cpuSeconds()-cpu0)/1e6, "Minstr/cpu-s")
	b.ReportMetric(float64(f.instructions)/float64(b.N), "instr/op")
	if len(f.faults) > 0 {
		b.Fatal(f.faults[0])
	}
}

// cpuSeconds is the process's user and system CPU time.
func cpuSeconds() float64 {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0
	}
	return float64(u.Utime.Sec+u.Stime.Sec) + float64(u.Utime.Usec+u.Stime.Usec)/1e6
}
