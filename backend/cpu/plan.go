package cpu

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/cpuid/v2"

	"github.com/compresskv/compresskv/kvcache"
)

// Which kernel computes decode attention or window scores is chosen by
// measurement, not by a rule: a rule such as "four heads at a time when the
// group is a multiple of 4" was right on one processor and 30% slow on
// another. For each shape class (operation, storage type, group, window,
// head dimension, whether the heads are long, and whether a call reads more
// than the last-level cache holds) the first calls run with the candidates
// in turn, a whole call with one candidate, and are timed; once every
// candidate has been timed on planSamples calls, the one with the smallest
// median time per row runs from then on,
// for the rest of the process (the per-head path unless another is
// planMargin faster). The measurement is on the calls' own data, so it sees
// the caches and the memory the real work sees. Whole calls, not units of
// work, are timed: two workers running different candidates side by side
// share the memory bus, and a memory-bound kernel then times like its
// neighbour (float32 decode at 32K measured within 3% on every path by
// units, 1.6x apart by calls).
//
// Every candidate of a class returns the same bits (kernels512_amd64.s
// says how the logit kernels share one order of summation; weighted sums
// add row after row everywhere), so the choice never changes a result and
// needs no fixing in tests.

// path is the way a candidate goes through a block of rows.
type path uint8

const (
	// pathPerHead decodes a block of 16-bit rows once into scratch (float32
	// rows are read in place) and runs one query row a pass over it: the
	// path of the backend before the four-head kernels.
	pathPerHead path = iota
	// pathQuad runs four query rows (the heads of a group, or the window
	// queries of a head) a pass, reading and converting each row in
	// registers once for the four.
	pathQuad
	// pathQuadBlock (window scores over 16-bit keys) decodes the block
	// once and runs four query rows a pass over the float32 rows.
	pathQuadBlock
)

var pathNames = [...]string{pathPerHead: "perhead", pathQuad: "quad", pathQuadBlock: "quadblock"}

// kernel is one candidate: a path, and the level of the logit and
// weighted-sum kernels it calls.
type kernel struct {
	path  path
	level level
}

func (k kernel) String() string { return pathNames[k.path] + "-" + k.level.String() }

// op is the operation a class belongs to.
type op uint8

const (
	opAttend op = iota // Attend: decode attention
	opWindow           // WindowScores
)

// class is a shape class: calls of one class share their choice.
type class struct {
	op      op
	dt      kvcache.DType
	group   int // Attend: query heads per KV head; WindowScores: scored heads of the KV head
	window  int // WindowScores: window queries; 0 for Attend
	headDim int
	long    bool // the KV head holds at least chunkRows rows
	// streams: the call reads more bytes than the last-level cache holds,
	// so its rows come from memory; a kernel that is fastest on rows the
	// cache holds may not be on rows it streams.
	streams bool
}

// llcBytes is the size of the last-level cache (cpuid; 32 MiB when the
// processor does not say).
var llcBytes = func() int64 {
	if n := cpuid.CPU.Cache.L3; n > 0 {
		return int64(n)
	}
	return 32 << 20
}()

// candidates returns the kernels that can compute class c, highest level
// first.
func (c class) candidates() []kernel {
	var ks []kernel
	for _, l := range kernelLevels(c.headDim) {
		ks = append(ks, kernel{pathPerHead, l})
		switch {
		case c.op == opAttend && c.group%4 == 0:
			ks = append(ks, kernel{pathQuad, l})
		case c.op == opWindow && c.window >= 4:
			ks = append(ks, kernel{pathQuad, l})
			if c.dt != kvcache.Float32 {
				ks = append(ks, kernel{pathQuadBlock, l})
			}
		}
	}
	return ks
}

const (
	// planSamples is the number of timed calls each candidate needs before
	// the choice.
	planSamples = 5
	// planMinRows is the number of rows below which a call is not timed.
	planMinRows = 64
	// planMargin is how much faster than the per-head path another
	// candidate must be, in the median, to be chosen.
	planMargin = 1.10
)

// planEntry is the choice for one class: the candidates, their times while
// they are measured, and then the chosen one.
type planEntry struct {
	class  class
	cands  []kernel
	chosen atomic.Int32 // index+1 into cands once chosen

	mu      sync.Mutex
	turn    int
	samples [][]float64 // per candidate: ns per row of each timed unit, planSamples at most
}

var plans struct {
	sync.RWMutex
	m map[class]*planEntry
}

// planFor returns the entry of class c, created on first use.
func planFor(c class) *planEntry {
	plans.RLock()
	e := plans.m[c]
	plans.RUnlock()
	if e != nil {
		return e
	}
	plans.Lock()
	defer plans.Unlock()
	if e = plans.m[c]; e != nil {
		return e
	}
	if plans.m == nil {
		plans.m = map[class]*planEntry{}
	}
	e = &planEntry{class: c, cands: c.candidates()}
	e.samples = make([][]float64, len(e.cands))
	for i := range e.samples {
		e.samples[i] = make([]float64, 0, planSamples)
	}
	if len(e.cands) == 1 {
		e.chosen.Store(1)
	}
	plans.m[c] = e
	return e
}

// next returns the candidate for a call and whether to time it.
func (e *planEntry) next() (int, bool) {
	if c := e.chosen.Load(); c > 0 {
		return int(c - 1), false
	}
	e.mu.Lock()
	n := len(e.cands)
	// In turn, shifted by one every round of n, so that callers that
	// alternate (two layers, say) do not each keep to some candidates.
	k := (e.turn + e.turn/n) % n
	e.turn++
	e.mu.Unlock()
	return k, true
}

// record adds the time a call over rows took with candidate k, and
// chooses once every candidate has planSamples.
func (e *planEntry) record(k, rows int, took time.Duration) {
	if rows < planMinRows {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.chosen.Load() > 0 || len(e.samples[k]) >= planSamples {
		return
	}
	e.samples[k] = append(e.samples[k], float64(took.Nanoseconds())/float64(rows))
	for _, s := range e.samples {
		if len(s) < planSamples {
			return
		}
	}
	e.chosen.Store(int32(e.best() + 1))
}

// best returns the candidate with the smallest median time per row, unless
// the first (the per-head path at the highest level, the path of the
// backend before the four-head kernels) is within planMargin of it: a
// kernel must be clearly faster to displace it, so that a tie measured on
// a noisy machine keeps the established path.
func (e *planEntry) best() int {
	best := 0
	for i, s := range e.samples {
		if median(s) < median(e.samples[best]) {
			best = i
		}
	}
	if median(e.samples[0]) <= median(e.samples[best])*planMargin {
		return 0
	}
	return best
}

// reason says why the entry's kernel was chosen (e.mu held).
func (e *planEntry) reason() string {
	k := e.chosen.Load()
	if k == 0 {
		n := 0
		for _, s := range e.samples {
			n += len(s)
		}
		return fmt.Sprintf("measuring: %d calls timed so far", n)
	}
	if len(e.cands) == 1 {
		return "the only candidate"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "smallest median time per row over %d calls each (the first kept unless another is %.0f%% faster):",
		planSamples, 100*(planMargin-1))
	for i, c := range e.cands {
		fmt.Fprintf(&b, " %v %.2f ns", c, median(e.samples[i]))
		if i < len(e.cands)-1 {
			b.WriteByte(',')
		}
	}
	return b.String()
}

// median returns the median of x (0 for none) without changing x or
// allocating for up to planSamples values.
func median(x []float64) float64 {
	var buf [planSamples]float64
	s := append(buf[:0], x...)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// chooser hands out the candidate of each unit of one call: the kernel a
// backend was told to run (WithKernel), else the plan's.
type chooser struct {
	e      *planEntry
	forced int // index into e.cands, or -1
}

// chooserFor returns the chooser of class c for backend b.
func (b *Backend) chooserFor(c class) chooser {
	e := planFor(c)
	ch := chooser{e: e, forced: -1}
	if b.kernel != "" {
		for i, k := range e.cands {
			if k.String() == b.kernel {
				ch.forced = i
			}
		}
	}
	return ch
}

// pick returns the index of the kernel of one call (every unit of a call
// runs the same kernel, so that the call's time is that kernel's) and
// whether to time the call for the plan.
func (ch chooser) pick() (int, bool) {
	if ch.forced >= 0 {
		return ch.forced, false
	}
	return ch.e.next()
}

// ErrKernel reports a kernel name no shape class of this processor knows.
var ErrKernel = errors.New("unknown kernel")

// WithKernel returns a copy of b that runs the named kernel (as Plan names
// them: "perhead-avx2", "quad-avx512", ...) in every shape class that has
// it as a candidate, and the plan's choice in the others. It is for
// measuring one kernel against another (tools/kernelguard); results are
// the same bits whichever kernel runs.
func (b *Backend) WithKernel(name string) (*Backend, error) {
	ok := false
	for p := range pathNames {
		for l := levelGo; l <= levelAVX512; l++ {
			ok = ok || kernel{path(p), l}.String() == name
		}
	}
	if !ok {
		return nil, fmt.Errorf("cpu: WithKernel(%q): %w", name, ErrKernel)
	}
	c := *b
	c.kernel = name
	return &c, nil
}

// Choice is the kernel the backend runs for one shape class, and why.
type Choice struct {
	Op      string        // "attend" (decode attention) or "window" (window scores)
	DType   kvcache.DType // storage type of the cache
	Group   int           // attend: query heads per KV head; window: scored heads of one KV head
	Window  int           // window: window queries (0 for attend)
	HeadDim int
	Long    bool // heads of at least 1,024 rows
	// Streams: calls that read more than the last-level cache holds.
	Streams bool

	// Kernel is the chosen candidate, "" while the candidates are still
	// being measured.
	Kernel string
	// Candidates lists every candidate with its median time per row over
	// the calls timed so far.
	Candidates []Candidate
	Reason     string
}

// Candidate is one kernel of a shape class and its measured time.
type Candidate struct {
	Kernel   string
	NsPerRow float64 // median over Calls timed calls (0 if none)
	Calls    int
}

// String formats c on one line.
func (c Choice) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %v group %d", c.Op, c.DType, c.Group)
	if c.Op == "window" {
		fmt.Fprintf(&b, " window %d", c.Window)
	}
	fmt.Fprintf(&b, " d %d", c.HeadDim)
	if c.Long {
		b.WriteString(" long")
	}
	if c.Streams {
		b.WriteString(" streaming")
	}
	if c.Kernel == "" {
		b.WriteString(": measuring")
	} else {
		fmt.Fprintf(&b, ": %s", c.Kernel)
	}
	fmt.Fprintf(&b, " (%s)", c.Reason)
	return b.String()
}

// Plan returns the kernels chosen so far in this process, one Choice per
// shape class met, and why each was chosen. The choices are the process's:
// every Backend shares them.
func (b *Backend) Plan() []Choice {
	plans.RLock()
	es := make([]*planEntry, 0, len(plans.m))
	for _, e := range plans.m {
		es = append(es, e)
	}
	plans.RUnlock()
	out := make([]Choice, 0, len(es))
	for _, e := range es {
		e.mu.Lock()
		c := Choice{
			Op: "attend", DType: e.class.dt, Group: e.class.group, Window: e.class.window,
			HeadDim: e.class.headDim, Long: e.class.long, Streams: e.class.streams, Reason: e.reason(),
		}
		if e.class.op == opWindow {
			c.Op = "window"
		}
		if k := e.chosen.Load(); k > 0 {
			c.Kernel = e.cands[k-1].String()
		}
		for i, k := range e.cands {
			cd := Candidate{Kernel: k.String(), Calls: len(e.samples[i])}
			if cd.Calls > 0 {
				cd.NsPerRow = median(e.samples[i])
			}
			c.Candidates = append(c.Candidates, cd)
		}
		e.mu.Unlock()
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Choice) int {
		return cmp.Or(cmp.Compare(a.Op, b.Op), cmp.Compare(a.DType, b.DType), cmp.Compare(a.Group, b.Group),
			cmp.Compare(a.Window, b.Window), cmp.Compare(a.HeadDim, b.HeadDim), boolCmp(a.Long, b.Long),
			boolCmp(a.Streams, b.Streams))
	})
	return out
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case b:
		return -1
	}
	return 1
}
