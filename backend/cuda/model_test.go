package cuda

// The instruction-count model of the kernels: the executor runs them in
// lockstep (one count per warp instruction issued, as an SM's schedulers
// issue them) at two lengths, the counts are extrapolated linearly to 32K
// tokens, and a paper estimate of an H100 SXM's time follows from them.

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/internal/reftest"
	"github.com/compresskv/compresskv/kvcache"
)

var modelLens = flag.String("model.L", "", "the two lengths BenchmarkModel counts at, extrapolating to 32K (default: each case's)")

// An H100 SXM, for the paper estimate.
const (
	h100SMs        = 132
	h100IssueRate  = h100SMs * 4 * 1.755e9 // warp instructions per second: 4 schedulers per SM at the boost clock
	h100Bandwidth  = 3.35e12               // HBM3, bytes per second
	launchOverhead = 2.5e-6                // per kernel: the host's launch rate bounds a chain of short kernels
	syncOverhead   = 10e-6                 // per host synchronisation (a download the host waits for)
)

// modelCase is one operation on a Llama-3.1-8B layer (32 query heads, 8 KV
// heads, d = 128, float16) at L tokens, counted at two lengths where every
// kernel's work grows linearly with L (each grid's shape is that of 32K
// but for its length).
type modelCase struct {
	name  string
	lens  [2]int
	syncs int // host synchronisations the operation waits for
	run   func(tb testing.TB, b *Backend, c *Cache, q []float32, L int)
}

var modelCases = []modelCase{
	// From 6272 tokens on, decode attention runs the 49 splits of 32K
	// (attendSplit), each longer.
	{"decode attention", [2]int{8192, 16384}, 1, func(tb testing.TB, b *Backend, c *Cache, q []float32, L int) {
		out := make([]float32, 32*128)
		if err := b.Attend(c, 0, q[:32*128], 32, out); err != nil {
			tb.Fatal(err)
		}
	}},
	// From 4096 on, a top-k block per 4096 scores.
	{"CompressKV eviction (SR heads 0, 8, 16, 24; W 8; pool 5; keep L/16)", [2]int{4096, 8192}, 1, func(tb testing.TB, b *Backend, c *Cache, q []float32, L int) {
		sel := Selection{Window: 8, Heads: []int{0, 8, 16, 24}, PerRow: 4, Kernel: 5, Pooling: backend.AvgPool, Keep: L/16 - 8}
		if _, err := b.CompressLayer(c, 0, q[:8*32*128], 32, sel); err != nil {
			tb.Fatal(err)
		}
	}},
	// Counted short (the executor runs its 32 heads x 32 queries slowly):
	// its top-k, one block a row at both lengths, is off its 32K shape,
	// and understated by the fixed cost of 7 more blocks a row.
	{"SnapKV scoring (32 heads, W 32, pool 7, keep L/16)", [2]int{1024, 2048}, 1, func(tb testing.TB, b *Backend, c *Cache, q []float32, L int) {
		heads := make([]int, 32)
		for i := range heads {
			heads[i] = i
		}
		sel := Selection{Window: 32, Heads: heads, PerRow: 4, Kernel: 7, Pooling: backend.AvgPool, MeanFirst: true, Keep: L/16 - 32}
		if _, err := b.SelectLayer(c, 0, q, 32, sel); err != nil {
			tb.Fatal(err)
		}
	}},
}

// modelCount runs case mc at L tokens in the executor and returns what each
// kernel executed; dry, only the launches (their grids), not the kernels.
func modelCount(tb testing.TB, mc modelCase, L int, dry bool) map[string]*kernelCount {
	f := newFakeGPU()
	f.count, f.dry = true, dry
	dev, err := openAPI(f.api(), Options{})
	if err != nil {
		tb.Fatal(err)
	}
	defer dev.Close()
	r := rand.New(rand.NewPCG(uint64(L), 1))
	s := kvcache.Shape{Layers: 1, KVHeads: 8, HeadDim: 128}
	c, err := dev.NewCache(s, kvcache.Float16)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	k := reftest.Normal(r, L*8*128, 1)
	v := reftest.Normal(r, L*8*128, 1)
	if err := c.Append(0, k, v); err != nil {
		tb.Fatal(err)
	}
	q := reftest.Normal(r, 32*32*128, 1)
	b := dev.NewBackend()
	defer b.Close()
	f.mu.Lock()
	f.counts = nil
	f.mu.Unlock()
	mc.run(tb, b, c, q, L)
	if len(f.faults) > 0 && !dry {
		tb.Fatal(f.faults[0])
	}
	return f.counts
}

// modelRow is one kernel of a case, extrapolated to 32K tokens.
type modelRow struct {
	kernel                 string
	launches               int
	blocks                 float64
	warpInstr, bytes, secs float64
}

// extrapolate fits a + b*L through the counts at L1 and L2 and evaluates it
// at L.
func extrapolate(c1, c2 float64, L1, L2, L int) float64 {
	return c2 + (c2-c1)/float64(L2-L1)*float64(L-L2)
}

// model runs mc at two lengths and extrapolates each kernel to L, with the
// launches and grids of a dry run at L.
func model(tb testing.TB, mc modelCase, L1, L2, L int) []modelRow {
	a, b, full := modelCount(tb, mc, L1, false), modelCount(tb, mc, L2, false), modelCount(tb, mc, L, true)
	var rows []modelRow
	for name, cf := range full {
		ca, cb := a[name], b[name]
		if ca == nil {
			ca = &kernelCount{}
		}
		if cb == nil {
			cb = &kernelCount{}
		}
		r := modelRow{kernel: name, launches: cf.launches,
			blocks:    float64(cf.blocks),
			warpInstr: extrapolate(float64(ca.warpInstr), float64(cb.warpInstr), L1, L2, L),
			bytes:     32 * extrapolate(float64(ca.sectors), float64(cb.sectors), L1, L2, L)}
		// The issue rate of the SMs the grid occupies, one block per SM
		// at least; the memory time of the distinct sectors touched.
		issue := r.warpInstr / (h100IssueRate * math.Min(1, r.blocks/h100SMs))
		r.secs = math.Max(issue, r.bytes/h100Bandwidth)
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].kernel < rows[j].kernel })
	return rows
}

// pathTime is the paper time of a case: each kernel at least the launch
// overhead, plus the host synchronisations.
func pathTime(rows []modelRow, syncs int) float64 {
	t := float64(syncs) * syncOverhead
	for _, r := range rows {
		t += math.Max(r.secs, float64(r.launches)*launchOverhead)
	}
	return t
}

// BenchmarkModel prints, per case and kernel, the warp instructions and
// DRAM bytes extrapolated to 32K tokens and the paper time on an H100 SXM,
// and reports each case's totals. Run with
// go test -run '^$' -bench Model -benchtime 1x ./backend/cuda.
func BenchmarkModel(b *testing.B) {
	const L = 32 << 10
	for _, mc := range modelCases {
		L1, L2 := mc.lens[0], mc.lens[1]
		if *modelLens != "" {
			lens := strings.Split(*modelLens, ",")
			L1, _ = strconv.Atoi(lens[0])
			L2, _ = strconv.Atoi(lens[len(lens)-1])
		}
		b.Run(strings.Fields(mc.name)[0], func(b *testing.B) {
			var rows []modelRow
			for i := 0; i < b.N; i++ {
				rows = model(b, mc, L1, L2, L)
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintf(w, "%s at 32K (from %d and %d)\tlaunches\tblocks\tMwarp-instr\tMB\tinstr/B\tus issue\tus memory\tus est.\t\n", mc.name, L1, L2)
			var instr, bytes float64
			for _, r := range rows {
				fmt.Fprintf(w, "%s\t%d\t%.0f\t%.2f\t%.2f\t%.3f\t%.1f\t%.1f\t%.1f\t\n", r.kernel, r.launches, r.blocks, r.warpInstr/1e6, r.bytes/1e6,
					r.warpInstr/math.Max(r.bytes, 1), 1e6*r.warpInstr/(h100IssueRate*math.Min(1, r.blocks/h100SMs)), 1e6*r.bytes/h100Bandwidth, 1e6*r.secs)
				instr += r.warpInstr
				bytes += r.bytes
			}
			t := pathTime(rows, mc.syncs)
			fmt.Fprintf(w, "total (%d host syncs, %.1f us launches)\t\t\t%.2f\t%.2f\t%.3f\t\t\t%.1f\t\n", mc.syncs,
				1e6*launchOverhead*float64(len(rows)), instr/1e6, bytes/1e6, instr/bytes, 1e6*t)
			w.Flush()
			b.ReportMetric(instr/1e6, "Mwarp-instr")
			b.ReportMetric(instr/bytes, "instr/B")
			b.ReportMetric(t*1e6, "us-est")
		})
	}
}

// TestAttendInstructionBudget holds decode attention to its target: at most
// 0.2 warp instructions issued per byte of keys and values read (an H100
// issues about 0.92e12 warp instructions a second against 3.35e12 bytes, so
// at 0.2 the issue takes at most 55% of the memory time). Counted in
// lockstep for one KV head of d = 128 in float16 with 4 query heads: 8192
// rows in 4 splits of 2048, then the cache compacted to 4096 rows in 4
// splits of 1024, the same grid: the difference is the cost of the 4096
// added rows, which is what the 21 tiles a warp of a 32K split mostly pay.
func TestAttendInstructionBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("counts 12K rows in lockstep")
	}
	f := newFakeGPU()
	f.count = true
	dev, err := openAPI(f.api(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	r := rand.New(rand.NewPCG(9, 10))
	s := kvcache.Shape{Layers: 1, KVHeads: 1, HeadDim: 128}
	c, err := dev.NewCache(s, kvcache.Float16)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	k := reftest.Normal(r, 8192*128, 1)
	if err := c.Append(0, k, k); err != nil {
		t.Fatal(err)
	}
	b := dev.NewBackend()
	defer b.Close()
	q := reftest.Normal(r, 4*128, 1)
	count := func(rows int) uint64 {
		b.attendRows = rows
		f.mu.Lock()
		f.counts = nil
		f.mu.Unlock()
		if err := b.Attend(c, 0, q, 4, make([]float32, 4*128)); err != nil {
			t.Fatal(err)
		}
		return f.counts["attend_partial_d128"].warpInstr
	}
	full := count(2048)
	if err := c.Compact(0, [][]int{seq(4096)}); err != nil {
		t.Fatal(err)
	}
	half := count(1024)
	perByte := float64(full-half) / (4096 * 2 * 128 * 2)
	t.Logf("decode attention: %d warp instructions for 8192 rows, %d for 4096 (4 splits each): %.3f a byte of the added rows", full, half, perByte)
	if perByte > 0.2 {
		t.Fatalf("%.3f warp instructions a byte of keys and values, more than 0.2", perByte)
	}
}

// seq returns 0..n-1.
func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}
