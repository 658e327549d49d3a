package cuda

// The phases of tools/gpucheck/run.sh: each is a test that runs only when
// the script sets COMPRESSKV_GPUCHECK ("gpu": the real device; "fake": the
// fake device of these tests, whose kernels run in the PTX executor), and
// prints its results as lines starting "SUMMARY ", which the script
// collects as each phase ends. Sizes come from GPUCHECK_L (comma-separated
// lengths; the first for correctness).

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/backend/cuda/internal/ptx"
	"github.com/compresskv/compresskv/internal/reftest"
	"github.com/compresskv/compresskv/kvcache"
)

const envCheck = "COMPRESSKV_GPUCHECK"

// checkDevice opens the device of the check (skipping the test outside
// tools/gpucheck) and says whether it is the fake one.
func checkDevice(t *testing.T) (*Device, *fakeGPU) {
	t.Helper()
	switch os.Getenv(envCheck) {
	case "gpu":
		dev, err := Open(Options{})
		if err != nil {
			summary("preflight", "FAIL %s", firstLine(err.Error()))
			t.Fatal(err)
		}
		t.Cleanup(func() { dev.Close() })
		return dev, nil
	case "fake":
		f := newFakeGPU()
		dev, err := openAPI(f.api(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			for _, err := range f.faults {
				t.Errorf("kernel fault: %v", err)
			}
			dev.Close()
		})
		return dev, f
	}
	t.Skipf("a phase of tools/gpucheck/run.sh: set %s=gpu (or fake)", envCheck)
	return nil, nil
}

// summary prints one result line of phase for the script.
func summary(phase, format string, args ...any) {
	fmt.Printf("SUMMARY %-11s %s\n", phase+":", fmt.Sprintf(format, args...))
}

// checkLens returns the lengths of GPUCHECK_L, or def.
func checkLens(def ...int) []int {
	var out []int
	for _, f := range strings.Split(os.Getenv("GPUCHECK_L"), ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return def
	}
	return out
}

// llama8B is the shape of one Llama-3.1-8B layer: 32 query heads on 8 KV
// heads of d = 128, stored as float16.
var llama8B = kvcache.Shape{Layers: 1, KVHeads: 8, HeadDim: 128}

const llamaHeads = 32

// The selections the checks run: CompressKV's (4 SR heads on 4 KV heads, W
// 8, average pooling 5, one shared set, keeping L/16 with the window) and
// SnapKV's (every head, W 32, the group's mean pooled by 7, a set per KV
// head, keeping L/16 besides the window).
func compressKVSel(L int) Selection {
	return Selection{Window: 8, Heads: []int{0, 8, 16, 24}, PerRow: 4, Kernel: 5, Pooling: backend.AvgPool, Keep: L/16 - 8}
}

func snapKVSel(L, w int) Selection {
	heads := make([]int, llamaHeads)
	for i := range heads {
		heads[i] = i
	}
	return Selection{Window: w, Heads: heads, PerRow: llamaHeads / llama8B.KVHeads, Kernel: 7, Pooling: backend.AvgPool,
		MeanFirst: true, Keep: L / 16}
}

// TestGPUCheckPreflight: the driver, the device, its memory and compute
// capability, and what the backend runs without.
func TestGPUCheckPreflight(t *testing.T) {
	dev, f := checkDevice(t)
	free, total, err := dev.MemInfo()
	if err != nil {
		summary("preflight", "FAIL %v", err)
		t.Fatal(err)
	}
	i := dev.Info()
	kind := "GPU"
	if f != nil {
		kind = "FAKE device (the PTX executor; figures are models, not measurements)"
	}
	rt, drv := dev.Libraries()
	summary("preflight", "ok: %s", kind)
	summary("preflight", "%s", dev.Reason())
	summary("preflight", "sm_%d%d, %d SMs at %.2f GHz, %.1f of %.1f GiB free, L2 %d MiB, memory %.0f GB/s peak (clock x bus)",
		i.Major, i.Minor, i.SMs, float64(i.ClockKHz)/1e6, float64(free)/(1<<30), float64(total)/(1<<30), i.L2Bytes>>20, i.Bandwidth()/1e9)
	summary("preflight", "driver %s (CUDA %d.%d), runtime %q (%d), memory pools %v", drv, i.Driver/1000, i.Driver%1000/10, rt, i.Runtime, i.MemoryPools)
}

// kernelBlock is the block size the host launches each kernel with.
func kernelBlock(k kernel) int {
	switch k {
	case kWindowPass, kWindowPassD128, kWindowPassD64:
		return tileRows
	case kAttendPartial, kAttendPartialD128, kAttendPartialD128H8, kAttendPartialD64:
		return 32 * attendWarps
	case kTopKHist, kTopKWrite:
		return topkThreads
	case kAttendMerge:
		return 128
	case kWindowMerge, kRowsSoftmax:
		return 32 * warps
	case kGatherRows:
		return int(gatherThreads(llama8B.HeadDim * 2))
	}
	return poolThreads
}

// TestGPUCheckResources: what the driver's JIT made of each kernel
// (cuFuncGetAttribute): registers, local memory (spills and stack) and
// static shared memory, and the blocks of its launch size that fit on an SM
// (cuOccupancyMaxActiveBlocksPerMultiprocessor).
func TestGPUCheckResources(t *testing.T) {
	dev, f := checkDevice(t)
	a := dev.api
	if f != nil {
		summary("resources", "(fake device: registers and local memory are the JIT's, unknown here; occupancy from threads and shared memory only)")
	}
	bad := 0
	err := dev.do(func() error {
		for k := kernel(0); k < numKernels; k++ {
			fn := dev.fn[k]
			attr := func(which int32) int {
				var v int32
				if err := drvErr("cuFuncGetAttribute", a.cuFuncGetAttribute(&v, which, fn)); err != nil {
					t.Error(err)
				}
				return int(v)
			}
			regs, local, smem, maxT := attr(funcNumRegs), attr(funcLocalBytes), attr(funcSharedBytes), attr(funcMaxThreads)
			block := kernelBlock(k)
			var n int32
			if err := drvErr("cuOccupancyMaxActiveBlocksPerMultiprocessor", a.cuOccupancyMaxActiveBlocksPerMultiprocessor(&n, fn, int32(block), 0)); err != nil {
				return err
			}
			note := ""
			if local > 0 {
				note = " LOCAL MEMORY (spills?)"
				bad++
			}
			if maxT < block {
				note += fmt.Sprintf(" MAX THREADS %d < %d", maxT, block)
				bad++
			}
			if k >= kAttendPartial && k <= kAttendPartialD64 && n < 2 {
				note += " FEWER THAN 2 BLOCKS A SM"
				bad++
			}
			summary("resources", "%-22s %4d threads  %3d regs  %4d B local  %6d B smem  %2d blocks/SM (%2d warps)%s",
				kernelSpecs[k].name, block, regs, local, smem, n, int(n)*block/32, note)
		}
		return nil
	})
	if err != nil {
		summary("resources", "FAIL %v", err)
		t.Fatal(err)
	}
	if bad > 0 {
		t.Errorf("%d kernels spill, exceed their launch size or miss the occupancy target", bad)
	}
}

// TestGPUCheckCorrectness: one Llama-3.1-8B layer at the first GPUCHECK_L
// tokens (32K by default): decode attention and window sums against the
// float64 reference, the CompressKV and SnapKV selections against the CPU
// backend (kept sets identical up to near-ties), and the compaction the
// same rows as the host cache's.
func TestGPUCheckCorrectness(t *testing.T) {
	dev, _ := checkDevice(t)
	L := checkLens(32 << 10)[0]
	r := rand.New(rand.NewPCG(uint64(L), 20))
	t0 := time.Now()
	h := randomHost(t, r, llama8B, kvcache.Float16, L)
	c, err := dev.Upload(h)
	if err != nil {
		summary("correctness", "FAIL upload: %v", err)
		t.Fatal(err)
	}
	defer c.Close()
	b := dev.NewBackend()
	defer b.Close()
	q1 := reftest.Normal(r, llamaHeads*128, 1)
	out := make([]float32, len(q1))
	if err := b.Attend(c, 0, q1, llamaHeads, out); err != nil {
		summary("correctness", "FAIL Attend: %v", err)
		t.Fatal(err)
	}
	want, _ := reftest.Attend(h, 0, q1, llamaHeads)
	worst := 0.0
	for i := range out {
		worst = max(worst, math.Abs(float64(out[i])-want[i])/(attAbs+attRel*math.Abs(want[i])))
	}
	status := "ok"
	if worst > 1 {
		status = "FAIL"
		t.Errorf("decode attention: worst error %.3f of the bound", worst)
	}
	summary("correctness", "%s L=%d decode attention: worst error %.3f of the bound 1e-5 + 1e-4|ref|", status, L, worst)

	const W = 8
	q := reftest.Normal(r, 32*llamaHeads*128, 1)
	heads := []int{0, 8, 31}
	sums := [][]float32{make([]float32, L), make([]float32, L), make([]float32, L)}
	if err := b.WindowScores(c, 0, q[:W*llamaHeads*128], W, llamaHeads, heads, sums); err != nil {
		summary("correctness", "FAIL WindowScores: %v", err)
		t.Fatal(err)
	}
	worst = 0
	for e, hh := range heads {
		for j, rv := range reftest.WindowSums(h, 0, q[:W*llamaHeads*128], W, llamaHeads, hh) {
			worst = max(worst, math.Abs(float64(sums[e][j])-rv)/(sumAbs+sumRel*rv))
		}
	}
	status = "ok"
	if worst > 1 {
		status = "FAIL"
		t.Errorf("window sums: worst error %.3f of the bound", worst)
	}
	summary("correctness", "%s L=%d window sums (W 8, heads 0, 8, 31): worst error %.3f of the bound 1e-6 + 1e-4 ref", status, L, worst)

	for _, s := range []struct {
		name string
		sel  Selection
	}{{"CompressKV", compressKVSel(L)}, {"SnapKV", snapKVSel(L, 32)}} {
		qs := q[:s.sel.Window*llamaHeads*128]
		got, err := b.SelectLayer(c, 0, qs, llamaHeads, s.sel)
		if err != nil {
			summary("correctness", "FAIL %s SelectLayer: %v", s.name, err)
			t.Fatal(err)
		}
		ref := cpuSelect(t, h, qs, llamaHeads, s.sel)
		same, near := 0, 0
		for g := range got {
			if slices.Equal(got[g], ref[g]) {
				same++
				continue
			}
			near++
			checkKeepNearTies(t, got[g], ref[g], L-s.sel.Window)
		}
		status := "ok"
		if t.Failed() {
			status = "FAIL"
		}
		summary("correctness", "%s L=%d %s kept sets (%d rows each): %d of %d KV heads identical to the CPU backend's, %d differ only at near-ties",
			status, L, s.name, len(got[0]), same, len(got), near)
	}
	keep, err := b.CompressLayer(c, 0, q[:W*llamaHeads*128], llamaHeads, compressKVSel(L))
	if err != nil {
		summary("correctness", "FAIL CompressLayer: %v", err)
		t.Fatal(err)
	}
	if err := h.Compact(0, keep); err != nil {
		t.Fatal(err)
	}
	sameRows(t, h, c, 0)
	status = "ok"
	if t.Failed() {
		status = "FAIL"
	}
	summary("correctness", "%s L=%d CompressLayer: %d rows kept per KV head, the same rows as the host cache's; checks took %v",
		status, L, len(keep[0]), time.Since(t0).Round(time.Millisecond))
}

// kernelTimer records a CUDA event before and after every launch (the
// device's launchHook) and sums the elapsed times per kernel.
type kernelTimer struct {
	dev    *Device
	events []uintptr
	names  []string
	next   int
}

func (kt *kernelTimer) event() uintptr {
	if kt.next == len(kt.events) {
		var e uintptr
		if err := drvErr("cuEventCreate", kt.dev.api.cuEventCreate(&e, 0)); err != nil {
			panic(err)
		}
		kt.events = append(kt.events, e)
	}
	kt.next++
	return kt.events[kt.next-1]
}

func (kt *kernelTimer) hook(k kernel, after bool) {
	if !after {
		kt.names = append(kt.names, kernelSpecs[k].name)
	}
	kt.dev.api.cuEventRecord(kt.event(), kt.dev.stream)
}

// run times f, which calls the backend: its total from the first kernel's
// start to the last one's end, and per kernel, in milliseconds.
func (kt *kernelTimer) run(f func() error) (total float64, per map[string]float64, err error) {
	d := kt.dev
	d.do(func() error {
		kt.next, kt.names = 0, nil
		d.launchHook = kt.hook
		return nil
	})
	ferr := f()
	err = d.do(func() error {
		d.launchHook = nil
		if ferr != nil {
			return ferr
		}
		if err := d.sync(); err != nil || kt.next < 2 {
			return err
		}
		per = map[string]float64{}
		ms := func(a, b uintptr) float64 {
			var v float32
			d.api.cuEventElapsedTime(&v, a, b)
			return float64(v)
		}
		for i, name := range kt.names {
			per[name] += ms(kt.events[2*i], kt.events[2*i+1])
		}
		total = ms(kt.events[0], kt.events[kt.next-1])
		return nil
	})
	return total, per, err
}

func (kt *kernelTimer) close() {
	kt.dev.do(func() error {
		for _, e := range kt.events {
			kt.dev.api.cuEventDestroy(e)
		}
		return nil
	})
}

// TestGPUCheckTiming: CUDA-event times of decode attention, the CompressKV
// eviction path (selection and compaction) and SnapKV's scoring on a
// Llama-3.1-8B layer at each GPUCHECK_L length (32K and 128K by default):
// the median of several runs from the first kernel's start to the last's
// end, the host's wall time, and the time per kernel, beside the memory
// bandwidth it implies and the paper estimate of docs/GPU.md.
func TestGPUCheckTiming(t *testing.T) {
	dev, f := checkDevice(t)
	lens := checkLens(32<<10, 128<<10)
	unit := ""
	if f != nil {
		unit = " (model)"
		summary("timing", "fake device: the times are the executor's instruction counts at an H100's issue rate plus 2 us a launch, a model, not a measurement")
	}
	kt := &kernelTimer{dev: dev}
	defer kt.close()
	bw := dev.Info().Bandwidth()
	for _, L := range lens {
		c := benchCache(t, dev, L)
		b := dev.NewBackend()
		q := reftest.Normal(rand.New(rand.NewPCG(3, 4)), 32*llamaHeads*128, 1)
		reps := 10
		if f != nil {
			reps = 1
		}
		report := func(name string, bytes float64, f func() error) {
			var totals, walls []float64
			var per map[string]float64
			for i := 0; i < reps+1; i++ {
				t0 := time.Now()
				total, p, err := kt.run(f)
				wall := time.Since(t0).Seconds() * 1e3
				if err != nil {
					summary("timing", "FAIL L=%d %s: %v", L, name, err)
					t.Fatal(err)
				}
				if i > 0 || reps == 1 { // the first is a warm-up
					totals, walls, per = append(totals, total), append(walls, wall), p
				}
			}
			sort.Float64s(totals)
			sort.Float64s(walls)
			med, wmed := totals[len(totals)/2], walls[len(walls)/2]
			summary("timing", "L=%d %-32s %8.3f ms GPU%s, %8.3f ms wall; %6.0f GB/s (%.0f%% of %.0f)", L, name, med, unit, wmed,
				bytes/(med*1e-3)/1e9, 100*bytes/(med*1e-3)/bw, bw/1e9)
			names := make([]string, 0, len(per))
			for n := range per {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				summary("timing", "L=%d   %-30s %8.3f ms", L, n, per[n])
			}
		}
		att := make([]float32, llamaHeads*128)
		report("decode attention", 2*8*float64(L)*128*2, func() error { return b.Attend(c, 0, q[:llamaHeads*128], llamaHeads, att) })
		sr := compressKVSel(L)
		keptBytes := float64(2 * 8 * (sr.Keep + sr.Window) * 128 * 2)
		report("CompressKV eviction", 4*float64(L)*128*2+2*keptBytes, func() error {
			cc, err := c.Clone()
			if err != nil {
				return err
			}
			defer cc.Close()
			_, err = b.CompressLayer(cc, 0, q[:8*llamaHeads*128], llamaHeads, sr)
			return err
		})
		report("SnapKV scoring (W 32)", 8*float64(L)*128*2, func() error {
			_, err := b.SelectLayer(c, 0, q, llamaHeads, snapKVSel(L, 32))
			return err
		})
		b.Close()
		c.Close()
	}
}

// TestGPUCheckSanitize is the short subset compute-sanitizer's racecheck
// and synccheck run (tools/gpucheck/run.sh): every kernel on a small
// cache. On the fake device it runs each launch under every schedule of
// the executor instead, comparing the outputs, with its race detector on.
func TestGPUCheckSanitize(t *testing.T) {
	dev, f := checkDevice(t)
	if f != nil {
		f.mu.Lock()
		f.compare = ptx.Schedules
		f.mu.Unlock()
	}
	r := rand.New(rand.NewPCG(21, 22))
	s := kvcache.Shape{Layers: 1, KVHeads: 2, HeadDim: 128}
	const L, H, W = 300, 8, 8
	h := randomHost(t, r, s, kvcache.Float16, L)
	c, err := dev.Upload(h)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := dev.NewBackend()
	defer b.Close()
	q := reftest.Normal(r, W*H*128, 1)
	heads := []int{0, 7}
	out := [][]float32{make([]float32, L), make([]float32, L)}
	for _, m := range []struct{ fold, logits int64 }{{0, 0}, {-1, 0}, {-1, 1}} {
		b.foldRows, b.logitBytes = int(m.fold), m.logits
		if err := b.WindowScores(c, 0, q, W, H, heads, out); err != nil {
			t.Fatal(err)
		}
	}
	b.foldRows, b.logitBytes = 0, 0
	if err := b.Attend(c, 0, q[:H*128], H, make([]float32, H*128)); err != nil {
		t.Fatal(err)
	}
	all := []int{0, 1, 2, 3, 4, 5, 6, 7}
	if _, err := b.SelectLayer(c, 0, q, H, Selection{Window: W, Heads: all, PerRow: 4, Kernel: 7, MeanFirst: true, Keep: 100}); err != nil {
		t.Fatal(err)
	}
	b.topkChunk = 100
	if _, err := b.CompressLayer(c, 0, q, H, Selection{Window: W, Heads: []int{1, 6}, PerRow: 2, Kernel: 5, Keep: 90}); err != nil {
		t.Fatal(err)
	}
	if err := c.Compact(0, [][]int{{0, 2, 4}, {1}}); err != nil {
		t.Fatal(err)
	}
	if f != nil {
		f.mu.Lock()
		n := f.compared
		f.mu.Unlock()
		summary("sanitizer", "fake device: %d launches, each under %d schedules (warps forward, reversed, random; lanes serial, lockstep, interleaved; blocks forward, reversed, random) bit-identical, race detector and memcheck quiet",
			n, len(ptx.Schedules))
		return
	}
	summary("sanitizer", "subset ran: %d kernels launched", dev.Launches())
}
