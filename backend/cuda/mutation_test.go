package cuda

// Mutations of the embedded PTX that a GPU would run with a data race, each
// run on the fake device: the executor's race detector (and, behind it, the
// comparison of schedules) must report every one, naming the kernel, while
// the module as built runs the same operations clean.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/backend/cuda/internal/ptx"
	"github.com/compresskv/compresskv/internal/reftest"
	"github.com/compresskv/compresskv/kvcache"
)

// mutation replaces one instruction of a kernel: the match-th line (from
// 0; -1: the last) of the kernel whose text matches pattern and whose
// preceding contextLines lines match before (both over lines normalised as
// the unreachable entries' are: whitespace collapsed, ';' dropped) becomes
// repl, expanded with pattern's submatches ("" deletes the line).
type mutation struct {
	name, kernel    string
	pattern, before string
	match           int
	repl            string
	run             func(t *testing.T, dev *Device) error // launches the kernel
	want            string                                // in the fault's message
}

// mutate returns the module with m applied, or fails the test when m's
// patterns do not pick out exactly one line.
func (m mutation) mutate(t *testing.T) string {
	t.Helper()
	lines := strings.Split(ptxSource, "\n")
	norm := func(s string) string { return strings.TrimSuffix(strings.Join(strings.Fields(s), " "), ";") }
	start, end := -1, len(lines)
	for i, l := range lines {
		if strings.Contains(l, ".entry "+m.kernel+"(") {
			start = i
		} else if start >= 0 && strings.Contains(l, ".entry ") {
			end = i
			break
		}
	}
	if start < 0 {
		t.Fatalf("no kernel %s in the module", m.kernel)
	}
	pat, before := regexp.MustCompile(m.pattern), regexp.MustCompile(m.before)
	var hits []int
	for i := start; i < end; i++ {
		if !pat.MatchString(norm(lines[i])) {
			continue
		}
		var ctx []string
		for j := max(start, i-contextLines); j < i; j++ {
			ctx = append(ctx, norm(lines[j]))
		}
		if before.MatchString(strings.Join(ctx, "\n")) {
			hits = append(hits, i)
		}
	}
	k := m.match
	if k < 0 {
		k += len(hits)
	}
	if k < 0 || k >= len(hits) {
		t.Fatalf("%s: %d lines of %s match, want line %d", m.name, len(hits), m.kernel, m.match)
	}
	i := hits[k]
	t.Logf("%s: line %d %q becomes %q", m.name, i+1, norm(lines[i]), pat.ReplaceAllString(norm(lines[i]), m.repl))
	lines[i] = "\t" + pat.ReplaceAllString(norm(lines[i]), m.repl) + ";"
	if m.repl == "" {
		lines[i] = ""
	}
	return strings.Join(lines, "\n")
}

// runModule runs m.run on a fake device loaded with module src and returns
// the executor's faults; with compare, without the race detector but with
// every launch run under every schedule, the outputs compared.
func runModule(t *testing.T, src string, m mutation, compare bool) ([]error, error) {
	t.Helper()
	f := newFakeGPU()
	if src != ptxSource {
		f.image = src
	}
	if compare {
		f.races, f.compare = nil, ptx.Schedules
	}
	dev, err := openAPI(f.api(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	runErr := m.run(t, dev)
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	return f.faults, runErr
}

// The operations the mutations run.

func mutTopK(ties bool) func(t *testing.T, dev *Device) error {
	return func(t *testing.T, dev *Device) error {
		r := rand.New(rand.NewPCG(11, 12))
		scores := make([]float32, 3000)
		for i := range scores {
			scores[i] = float32(r.NormFloat64())
			if ties {
				scores[i] = float32(r.IntN(4))
			}
		}
		b := dev.NewBackend()
		defer b.Close()
		return dev.do(func() error {
			src, err := b.arena.get("m_src", int64(4*len(scores)))
			if err != nil {
				return err
			}
			if err := dev.uploadF32(src, scores); err != nil {
				return err
			}
			if _, err := b.topK(src, len(scores), 1, len(scores), 900); err != nil {
				return err
			}
			return dev.sync()
		})
	}
}

func mutAttend(t *testing.T, dev *Device) error {
	r := rand.New(rand.NewPCG(13, 14))
	s := kvcache.Shape{Layers: 1, KVHeads: 2, HeadDim: 128}
	c, err := dev.NewCache(s, kvcache.Float16)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	k := reftest.Normal(r, 300*2*128, 1)
	if err := c.Append(0, k, k); err != nil {
		t.Fatal(err)
	}
	b := dev.NewBackend()
	defer b.Close()
	q := reftest.Normal(r, 8*128, 1)
	return b.Attend(c, 0, q, 8, make([]float32, len(q)))
}

// mutPool pools 3 rows of 300 scores into a buffer with a spare row after
// the last, so that a thread writing past its row writes into the next
// row, never out of bounds.
func mutPool(t *testing.T, dev *Device) error {
	r := rand.New(rand.NewPCG(15, 16))
	const rows, n = 3, 300
	scores := reftest.Normal(r, rows*n, 1)
	b := dev.NewBackend()
	defer b.Close()
	return dev.do(func() error {
		src, err := b.arena.get("m_src", 4*rows*n)
		if err != nil {
			return err
		}
		dst, err := b.arena.get("m_dst", 4*(rows+1)*n)
		if err != nil {
			return err
		}
		if err := dev.uploadF32(src, scores); err != nil {
			return err
		}
		if err := dev.launch(kPoolMean, dim3{uint32(ceilDiv(n, poolThreads)), rows, 1}, dim3{poolThreads, 1, 1},
			src, dst, int32(n), int32(n), int32(n), int32(5), int32(backend.AvgPool), int32(1), int32(0)); err != nil {
			return err
		}
		return dev.sync()
	})
}

var mutations = []mutation{
	// The two of the review: a warp's count read by the other warps
	// without the barrier after it is written, and the radix prefix read
	// without the barrier after the thread that found it writes it.
	{name: "topk_write without the barrier after the warps' counts", kernel: "topk_write",
		pattern: `^bar\.sync 0$`, before: `(?s)popc\.b32 .*\nst\.shared\.u32 \[%rd\d+\+128\], %r\d+\n\$L__BB\d+_\d+:$`,
		run: mutTopK(false), want: "race"},
	{name: "topk_write without the barrier after the prefix update", kernel: "topk_write",
		pattern: `^bar\.sync 0$`, before: `st\.shared\.u32 \[_ZZ10topk_writeE2sh_\$_1\], %r\d+\n\$L__BB\d+_\d+:$`,
		run: mutTopK(false), want: "race"},
	// Two more: the warps of a decode-attention block merging their
	// states before all have written them, and the histogram of a top-k
	// block counted with plain loads and stores instead of atomics.
	{name: "attend_partial_d128 without the barrier before the warps merge", kernel: "attend_partial_d128",
		pattern: `^bar\.sync 0$`, match: -1, run: mutAttend, want: "race"},
	{name: "topk_hist with a plain read-modify-write for its histogram", kernel: "topk_hist",
		pattern: `^atom\.shared\.add\.u32 (%r\d+), \[(%rd\d+)\], (%r\d+)$`,
		repl:    "ld.shared.u32 $1, [$2]; add.s32 $1, $1, $3; st.shared.u32 [$2], $1",
		run:     mutTopK(true), want: "race"},
	// And one between blocks: pool_mean's bound check off by one, so
	// that the thread just past a row's end writes the next row's first
	// score, which that row's first block writes too. Blocks run one after
	// another in the executor, so only the race detector sees it (the
	// schedules' comparison would, with blocks in an order that puts the
	// next row first).
	{name: "pool_mean writing one past its row", kernel: "pool_mean",
		pattern: `^setp\.ge\.s32 (%p\d+), (%r\d+), (%r\d+)$`, before: `mad\.lo\.s32 %r\d+, %r\d+, %r\d+, %r\d+$`,
		repl: "setp.gt.s32 $1, $2, $3", run: mutPool, want: "write-write race on global"},
}

// TestMutationsCaught: each mutation is reported as a race in its kernel,
// where the module as built runs the same operation without a fault; with
// the race detector off, the comparison of the schedules' outputs reports
// it too.
func TestMutationsCaught(t *testing.T) {
	for _, m := range mutations {
		t.Run(strings.ReplaceAll(m.name, " ", "_"), func(t *testing.T) {
			if faults, err := runModule(t, ptxSource, m, false); len(faults) != 0 || err != nil {
				t.Fatalf("the module as built: %v, %v", faults, err)
			}
			mutated := m.mutate(t)
			faults, err := runModule(t, mutated, m, false)
			if err == nil || len(faults) == 0 {
				t.Fatalf("the mutation went unnoticed (error %v, faults %v)", err, faults)
			}
			var f *ptx.Fault
			if !errors.As(faults[0], &f) || f.Kernel != m.kernel || f.Class != "race" || !strings.Contains(f.Error(), m.want) {
				t.Fatalf("fault %v, want a %q in %s", faults[0], m.want, m.kernel)
			}
			t.Log(f)
			if testing.Short() {
				return
			}
			if faults, err := runModule(t, ptxSource, m, true); len(faults) != 0 || err != nil {
				t.Fatalf("the module as built, every schedule: %v, %v", faults, err)
			}
			faults, err = runModule(t, mutated, m, true)
			if err == nil || len(faults) == 0 || !strings.Contains(faults[0].Error(), "ptx: "+m.kernel+": ") {
				t.Fatalf("the schedules' comparison missed the mutation (error %v, faults %v)", err, faults)
			}
			t.Log(faults[0])
		})
	}
}

// TestSchedulesAgree runs every kernel of the backend on a fake device that
// runs each launch under every schedule of ptx.Schedules (warps forward,
// reversed and seeded-random; lanes serial, in lockstep and interleaved;
// blocks forward, reversed and random) from the same memory and requires
// the memory each leaves to be the same bit for bit, with the race detector
// on: window sums (the three ways), decode attention for each kernel
// variant, the selection of SnapKV and of CompressKV on the device, the
// compactions, and the cuBLAS path's kernels. With -short (the race
// detector's run), the serial schedules only.
func TestSchedulesAgree(t *testing.T) {
	scheds := ptx.Schedules
	if testing.Short() {
		scheds = rotation()
	}
	r, _ := reftest.Rand(t)
	for _, c := range []struct {
		d, ratio int
		dtype    kvcache.DType
	}{{64, 4, kvcache.Float16}, {128, 4, kvcache.BFloat16}, {128, 8, kvcache.Float32}, {200, 2, kvcache.Float16}} {
		t.Run(fmt.Sprintf("d%d_x%d_%v", c.d, c.ratio, c.dtype), func(t *testing.T) {
			dev, f := openFake(t)
			dev2, f2, _ := openBLASFake(t)
			for _, ff := range []*fakeGPU{f, f2} {
				ff.mu.Lock()
				ff.compare = scheds
				ff.mu.Unlock()
			}
			const G, L = 2, 300
			H := G * c.ratio
			s := kvcache.Shape{Layers: 1, KVHeads: G, HeadDim: c.d}
			_, cache := twin(t, r, dev, s, c.dtype, L)
			b := dev.NewBackend()
			defer b.Close()
			const W = 8
			q := reftest.Normal(r, W*H*c.d, 1)
			heads := []int{0, H - 1, 1}
			out := make([][]float32, len(heads))
			for i := range out {
				out[i] = make([]float32, L)
			}
			for _, m := range []struct{ fold, logits int64 }{{0, 0}, {-1, 0}, {-1, 1}} {
				b.foldRows, b.logitBytes = int(m.fold), m.logits
				if err := b.WindowScores(cache, 0, q, W, H, heads, out); err != nil {
					t.Fatal(err)
				}
			}
			b.foldRows, b.logitBytes = 0, 0
			if err := b.Attend(cache, 0, q[:H*c.d], H, make([]float32, H*c.d)); err != nil {
				t.Fatal(err)
			}
			all := make([]int, H)
			for i := range all {
				all[i] = i
			}
			snap := Selection{Window: W, Heads: all, PerRow: c.ratio, Kernel: 7, Pooling: backend.AvgPool, MeanFirst: true, Keep: L / 3}
			if _, err := b.SelectLayer(cache, 0, q, H, snap); err != nil {
				t.Fatal(err)
			}
			b.topkChunk = 100 // several top-k blocks
			sr := Selection{Window: W, Heads: []int{H - 1, 0}, PerRow: 2, Kernel: 5, Pooling: backend.MaxPool, Keep: L / 4}
			if _, err := b.CompressLayer(cache, 0, q, H, sr); err != nil {
				t.Fatal(err)
			}
			if err := cache.Compact(0, [][]int{{0, 3, 5}, {1, 2}}); err != nil {
				t.Fatal(err)
			}
			// the cuBLAS path (widen_rows for 16-bit keys, rows_softmax,
			// colsum_rows)
			_, c2 := twin(t, r, dev2, s, c.dtype, 40)
			b2 := dev2.NewBackend()
			defer b2.Close()
			b2.gemmMinWindow, b2.gemmChunk = 1, 2048
			qw := reftest.Normal(r, 40*H*c.d, 1)
			o2 := [][]float32{make([]float32, 40)}
			if err := b2.WindowScores(c2, 0, qw, 40, H, []int{1}, o2); err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			f2.mu.Lock()
			n := f.compared + f2.compared
			f2.mu.Unlock()
			f.mu.Unlock()
			if n < 20 {
				t.Fatalf("%d launches compared", n)
			}
			t.Logf("%d launches, each under %d schedules, bit-identical", n, len(scheds))
		})
	}
}
