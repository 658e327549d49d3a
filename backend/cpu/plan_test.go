package cpu

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/compresskv/compresskv/kvcache"
)

// TestCandidatesSameBits runs decode attention and window scores with
// every candidate kernel of their shape class, forced with WithKernel, on
// one worker and on several, and checks that all return the same bits (the
// plan may choose any of them) and agree with the float64 reference: odd
// lengths, groups of 4 and 8 (the four-head path) and of 2 and 3, head
// dimensions the assembly takes whole, with a masked half, and not at all.
func TestCandidatesSameBits(t *testing.T) {
	r, seed := newRand(t)
	for _, dt := range dtypes {
		for _, sh := range []struct{ H, G int }{{8, 2}, {8, 1}, {4, 2}, {3, 1}} {
			for _, d := range []int{8, 24, 64, 128, 12} {
				for _, L := range []int{1, 37, chunkRows + 77} {
					if L > 100 && d != 24 && d != 128 {
						continue
					}
					name := fmt.Sprintf("%v/H%d-G%d/d%d/L%d (seed %d)", dt, sh.H, sh.G, d, L, seed)
					c := newCache(t, r, 1, sh.G, d, L, dt)
					q := randVec(r, 8*sh.H*d, 1.5)
					group := sh.H / sh.G
					cl := class{op: opAttend, dt: dt, group: group, headDim: d, long: L >= chunkRows}
					var first []float32
					for _, k := range cl.candidates() {
						for _, b := range []*Backend{NewWithWorkers(1), parallel()} {
							b, err := b.WithKernel(k.String())
							if err != nil {
								t.Fatal(err)
							}
							out := make([]float32, sh.H*d)
							if err := b.Attend(c, 0, q[:sh.H*d], sh.H, out); err != nil {
								t.Fatalf("%s %v: %v", name, k, err)
							}
							if first == nil {
								first = out
								want, _ := refAttend(c, 0, q[:sh.H*d], sh.H)
								for i := range want {
									if e := math.Abs(float64(out[i]) - want[i]); e > tolerance(L) {
										t.Fatalf("%s %v: value %d = %g, want %g", name, k, i, out[i], want[i])
									}
								}
							} else if !slices.Equal(first, out) {
								t.Fatalf("attend %s: %v differs from %v", name, k, cl.candidates()[0])
							}
						}
					}
					w := min(L, 8)
					if L > 1 && w > 4 {
						w-- // a window that is not a multiple of 4
					}
					heads := []int{sh.H - 1, 0}
					if group >= 4 {
						heads = []int{0, 1, 2, 3, sh.H - 1}
					}
					wc := class{op: opWindow, dt: dt, group: 1, window: w, headDim: d, long: L >= chunkRows}
					if group >= 4 {
						wc.group = 4
					}
					var firstW [][]float32
					for _, k := range wc.candidates() {
						b, err := parallel().WithKernel(k.String())
						if err != nil {
							t.Fatal(err)
						}
						out := make([][]float32, len(heads))
						for i := range out {
							out[i] = make([]float32, L)
						}
						if err := b.WindowScores(c, 0, q[:w*sh.H*d], w, sh.H, heads, out); err != nil {
							t.Fatalf("%s %v: %v", name, k, err)
						}
						if firstW == nil {
							firstW = out
							want := refWindowScores(c, 0, q[:w*sh.H*d], w, sh.H, heads[0])
							if e, at := maxRelErr(out[0], want, 1e-30); e > tolerance(L) {
								t.Fatalf("window %s %v: row %d = %g, want %g", name, k, at, out[0][at], want[at])
							}
							continue
						}
						for i := range out {
							if !slices.Equal(firstW[i], out[i]) {
								t.Fatalf("window %s w %d head %d: %v differs from %v", name, w, heads[i], k, wc.candidates()[0])
							}
						}
					}
				}
			}
		}
	}
}

// TestPlanChooses feeds a plan entry call times and checks that it keeps
// handing out every candidate until each has planSamples, then chooses the
// smallest median and says so.
func TestPlanChooses(t *testing.T) {
	e := &planEntry{cands: []kernel{{pathPerHead, levelGo}, {pathQuad, levelGo}, {pathQuadBlock, levelGo}}}
	e.samples = make([][]float64, len(e.cands))
	seen := map[int]int{}
	for i := range planSamples * len(e.cands) {
		k, timed := e.next()
		if !timed {
			t.Fatalf("call %d: not timed before the choice", i)
		}
		seen[k]++
		// Candidate 1 is the fastest in the median, though candidate 2
		// has the fastest single call.
		ns := []float64{10, 5, 7}[k]
		if k == 2 && seen[k] == 1 {
			ns = 1
		}
		if k == 0 && i < 3 {
			e.record(k, planMinRows-1, time.Nanosecond) // too short: not counted
		}
		e.record(k, 100, time.Duration(ns*100))
		if k == 1 && seen[k] == planSamples {
			// Beyond planSamples a candidate's calls are not counted.
			e.record(k, 100, time.Nanosecond)
		}
	}
	for k := range e.cands {
		if seen[k] != planSamples || len(e.samples[k]) != planSamples {
			t.Fatalf("candidate %d ran %d calls, %d timed, want %d", k, seen[k], len(e.samples[k]), planSamples)
		}
	}
	k, timed := e.next()
	if k != 1 || timed {
		t.Fatalf("after the measurement: candidate %d (timed %v), want 1, untimed", k, timed)
	}
	if r := e.reason(); !strings.Contains(r, "quad-go 5.00 ns") || !strings.Contains(r, "perhead-go 10.00 ns") {
		t.Fatalf("reason %q", r)
	}
	// A candidate within planMargin of the per-head path does not displace
	// it.
	for _, c := range []struct {
		first, other float64
		want         int
	}{{10, 9.3, 0}, {10, 8.9, 1}, {10, 11, 0}} {
		e := &planEntry{cands: e.cands[:2], samples: [][]float64{{c.first}, {c.other}}}
		if got := e.best(); got != c.want {
			t.Errorf("per-head %g ns, other %g ns: chose %d, want %d", c.first, c.other, got, c.want)
		}
	}
}

// TestPlanReport checks Plan after real calls: the classes met, a kernel
// chosen among the listed candidates, and WithKernel's errors.
func TestPlanReport(t *testing.T) {
	r, _ := newRand(t)
	const H, G, d, L = 8, 2, 64, 2*chunkRows + 3
	c := newCache(t, r, 1, G, d, L, kvcache.BFloat16)
	q := randVec(r, H*d, 1)
	b := parallel()
	out := make([]float32, H*d)
	for range 4 * planSamples {
		if err := b.Attend(c, 0, q, H, out); err != nil {
			t.Fatal(err)
		}
	}
	var got *Choice
	for _, ch := range b.Plan() {
		if ch.Op == "attend" && ch.DType == kvcache.BFloat16 && ch.Group == H/G && ch.HeadDim == d && ch.Long {
			got = &ch
		}
	}
	if got == nil {
		t.Fatalf("no attend choice in %v", b.Plan())
	}
	if got.Kernel == "" || !slices.ContainsFunc(got.Candidates, func(cd Candidate) bool { return cd.Kernel == got.Kernel }) {
		t.Fatalf("choice %v: kernel not among the candidates", got)
	}
	for _, cd := range got.Candidates {
		if cd.Calls != planSamples || !(cd.NsPerRow > 0) {
			t.Errorf("candidate %+v: want %d calls timed and a time", cd, planSamples)
		}
	}
	if s := got.String(); !strings.Contains(s, got.Kernel) || !strings.Contains(s, "smallest median") {
		t.Errorf("String() = %q", s)
	}
	if _, err := b.WithKernel("fastest-please"); !errors.Is(err, ErrKernel) {
		t.Errorf("WithKernel of an unknown name: %v", err)
	}
	if _, err := b.WithKernel("quad-go"); err != nil {
		t.Errorf("WithKernel(quad-go): %v", err)
	}
}

// TestPlanConcurrent measures one class from several goroutines at once
// (run it with -race).
func TestPlanConcurrent(t *testing.T) {
	r, _ := newRand(t)
	const H, G, d, L = 8, 1, 40, 300
	c := newCache(t, r, 1, G, d, L, kvcache.Float16)
	q := randVec(r, H*d, 1)
	want := make([]float32, H*d)
	if err := NewWithWorkers(1).Attend(c, 0, q, H, want); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]float32, H*d)
			for range 20 {
				if err := parallel().Attend(c, 0, q, H, out); err != nil {
					t.Error(err)
					return
				}
				if !slices.Equal(out, want) {
					t.Error("a concurrent call returned other bits")
					return
				}
				_ = New().Plan()
			}
		}()
	}
	wg.Wait()
}
