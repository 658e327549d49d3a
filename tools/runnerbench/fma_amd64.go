//go:build amd64

package main

import "github.com/klauspost/cpuid/v2"

//go:noescape
func fmaLoopAVX2(n uintptr)

//go:noescape
func fmaLoopAVX512(n uintptr)

// fmaPeak measures the float32 multiply-add throughput of one core in
// GFLOP (2 per multiply-add) per second of processor time, at the widest
// vectors the processor has: the best of five runs of about 50 ms each.
// Per processor-second, it is the core's peak whatever share of the core
// the scheduler gives the process.
func fmaPeak() float64 {
	loop, flops := fmaLoopAVX2, 160.0
	switch {
	case cpuid.CPU.Supports(cpuid.AVX512F):
		loop, flops = fmaLoopAVX512, 320.0
	case !cpuid.CPU.Supports(cpuid.AVX2, cpuid.FMA3):
		return 0
	}
	const n = 5_000_000
	best := 0.0
	for range 5 {
		c0 := cpuTime()
		loop(n)
		best = max(best, n*flops/(cpuTime()-c0).Seconds()/1e9)
	}
	return best
}
