// Package paired times several functions in interleaved rounds on the same
// data, each round beside one read of the bandwidth probe of backend/cpu, and
// summarises the rounds as min / median / max and as per-round ratios. The
// tools of this module use it so that a figure such as "1.12x" or "85% of
// the probe" always means a comparison made within one round: a round slowed
// by other tenants of the machine slows both sides of its ratio.
package paired

import (
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/compresskv/compresskv/backend/cpu"
)

// Rounds is what Run measured: Sec[i][r] is the time of function i in round
// r, Probe[r] the probe's bandwidth (GB/s, two goroutines) read at the start
// of round r.
type Rounds struct {
	Sec   [][]float64
	Probe []float64
}

// Run calls every function of fs once untimed (warm), then times them in
// reps rounds. Each round reads the probe (when p is not nil) and then runs
// the functions once each, in an order rotated by one every round, so that
// each function runs first, second, ... equally often. prepare, when not
// nil, is called untimed before each timed call with the function's index
// (to restore a cache a function modifies, say).
func Run(p *cpu.Probe, reps int, prepare func(i int), fs ...func()) Rounds {
	n := len(fs)
	rs := Rounds{Sec: make([][]float64, n)}
	for i, f := range fs {
		if prepare != nil {
			prepare(i)
		}
		f()
	}
	for r := range reps {
		if p != nil {
			g, _ := p.Read(2)
			rs.Probe = append(rs.Probe, g)
		}
		for k := range n {
			i := (k + r) % n
			if prepare != nil {
				prepare(i)
			}
			runtime.Gosched()
			t0 := time.Now()
			fs[i]()
			rs.Sec[i] = append(rs.Sec[i], time.Since(t0).Seconds())
		}
	}
	return rs
}

// Ratio returns the per-round ratios Sec[i][r] / Sec[j][r].
func (rs Rounds) Ratio(i, j int) []float64 {
	x := make([]float64, len(rs.Sec[i]))
	for r := range x {
		x[r] = rs.Sec[i][r] / rs.Sec[j][r]
	}
	return x
}

// Share returns, per round, the bytes function i must read per second as a
// percentage of the probe's bandwidth in that round.
func (rs Rounds) Share(i int, bytes float64) []float64 {
	x := make([]float64, len(rs.Sec[i]))
	for r := range x {
		x[r] = 100 * bytes / rs.Sec[i][r] / 1e9 / rs.Probe[r]
	}
	return x
}

// Stat is the minimum, median and maximum of a set of figures.
type Stat struct{ Min, Med, Max float64 }

// Of returns the Stat of x (zero for an empty x).
func Of(x []float64) Stat {
	if len(x) == 0 {
		return Stat{}
	}
	s := slices.Sorted(slices.Values(x))
	return Stat{Min: s[0], Med: median(s), Max: s[len(s)-1]}
}

func median(s []float64) float64 {
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Scaled returns s with every figure multiplied by k.
func (s Stat) Scaled(k float64) Stat { return Stat{s.Min * k, s.Med * k, s.Max * k} }

// String formats s as "min / median / max" with one decimal.
func (s Stat) String() string { return fmt.Sprintf("%.1f / %.1f / %.1f", s.Min, s.Med, s.Max) }

// Spread returns (max - min) / median of x: how far apart its rounds are.
func Spread(x []float64) float64 {
	s := Of(x)
	if s.Med == 0 {
		return 0
	}
	return (s.Max - s.Min) / s.Med
}

// Pairs is what RunPairs measured: Base[i][r] and Other[i][r] are the
// times of the base function and of function i, run back to back in round
// r; Probe[r] the probe's bandwidth read at the start of round r.
type Pairs struct {
	Base, Other [][]float64
	Probe       []float64
}

// RunPairs calls base and every function of others once untimed (warm),
// then times them in reps rounds. Each round reads the probe (when p is not
// nil), then runs, for each function of others in an order rotated by one
// every round, base and that function back to back (base first in even
// rounds, second in odd ones), so that each ratio compares two runs made
// as close together as possible.
func RunPairs(p *cpu.Probe, reps int, base func(), others ...func()) Pairs {
	n := len(others)
	ps := Pairs{Base: make([][]float64, n), Other: make([][]float64, n)}
	base()
	for _, f := range others {
		f()
	}
	timed := func(f func()) float64 {
		runtime.Gosched()
		t0 := time.Now()
		f()
		return time.Since(t0).Seconds()
	}
	for r := range reps {
		if p != nil {
			g, _ := p.Read(2)
			ps.Probe = append(ps.Probe, g)
		}
		for k := range n {
			i := (k + r) % n
			var tb, to float64
			if r%2 == 0 {
				tb = timed(base)
				to = timed(others[i])
			} else {
				to = timed(others[i])
				tb = timed(base)
			}
			ps.Base[i] = append(ps.Base[i], tb)
			ps.Other[i] = append(ps.Other[i], to)
		}
	}
	return ps
}

// Append adds the rounds of q to ps.
func (ps *Pairs) Append(q Pairs) {
	if ps.Base == nil {
		*ps = q
		return
	}
	for i := range ps.Base {
		ps.Base[i] = append(ps.Base[i], q.Base[i]...)
		ps.Other[i] = append(ps.Other[i], q.Other[i]...)
	}
	ps.Probe = append(ps.Probe, q.Probe...)
}

// Ratio returns the per-round ratios Base[i][r] / Other[i][r].
func (ps Pairs) Ratio(i int) []float64 {
	x := make([]float64, len(ps.Base[i]))
	for r := range x {
		x[r] = ps.Base[i][r] / ps.Other[i][r]
	}
	return x
}

// ShareOf returns, per round, bytes per second of the times t as a
// percentage of the probe's bandwidth in that round.
func (ps Pairs) ShareOf(t []float64, bytes float64) []float64 {
	x := make([]float64, len(t))
	for r := range x {
		x[r] = 100 * bytes / t[r] / 1e9 / ps.Probe[r]
	}
	return x
}
