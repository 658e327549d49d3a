package cpu

import (
	"slices"
	"sync"
	"testing"
	"time"
)

var (
	probeOnce sync.Once
	probe     *Probe
)

// benchProbe returns the package's bandwidth probe, built once.
func benchProbe(b *testing.B) *Probe {
	probeOnce.Do(func() {
		var err error
		if probe, err = NewProbe(0); err != nil {
			b.Fatal(err)
		}
	})
	return probe
}

// atWall runs f in max(3, b.N) rounds, each after one read of the bandwidth
// probe on two goroutines, and reports the kernel's time (ns/op: the
// median round; ms-min), the probe's bandwidth (GB/s-probe-min, GB/s-probe
// median, GB/s-probe-max: how far it swung over the rounds) and
// the kernel's bytes per second as a share of it: %bw, the median of the
// per-round ratios (a round slowed by the machine's other load slows the
// probe beside it too), and %bw-best, the fastest round against the
// fastest probe (what the kernel does when the machine lets it). bytes is
// what f must read at least.
func atWall(b *testing.B, bytes float64, f func()) {
	b.Helper()
	p := benchProbe(b)
	f() // warm: scratch, pools, pages
	rounds := max(3, b.N)
	var ns, bw, share []float64
	for range rounds {
		g, _ := p.Read(2)
		t0 := time.Now()
		f()
		sec := time.Since(t0).Seconds()
		ns = append(ns, sec*1e9)
		bw = append(bw, g)
		share = append(share, 100*bytes/sec/1e9/g)
	}
	slices.Sort(ns)
	slices.Sort(bw)
	slices.Sort(share)
	b.ReportMetric(ns[len(ns)/2], "ns/op")
	b.ReportMetric(ns[0]/1e6, "ms-min")
	b.ReportMetric(bw[0], "GB/s-probe-min")
	b.ReportMetric(bw[len(bw)/2], "GB/s-probe")
	b.ReportMetric(bw[len(bw)-1], "GB/s-probe-max")
	b.ReportMetric(share[len(share)/2], "%bw")
	b.ReportMetric(100*bytes/ns[0]/bw[len(bw)-1], "%bw-best")
}
