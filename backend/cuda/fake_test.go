package cuda

import (
	"fmt"
	"math"
	"sort"
	"sync"
	"syscall"
	"unsafe"

	"github.com/compresskv/compresskv/kvcache"
)

// fakeGPU implements the api table in Go memory: allocations are Go slices at
// made-up addresses, copies are copies, and each kernel launch is emulated in
// Go from its packed arguments (by the kernel's contract, not bit for bit),
// so that the backend's host logic runs end to end without a GPU. It counts
// live allocations, records launches and the OS threads that called it.
type fakeGPU struct {
	mu        sync.Mutex
	allocs    map[uintptr][]uint64 // base -> backing (8-byte aligned)
	sizes     map[uintptr]int
	next      uintptr
	failAfter int // cudaMalloc fails with cudaErrorMemoryAllocation once this many succeeded (0: never)
	mallocs   int
	launches  map[string]int
	tids      map[int]bool
	devices   int32
}

func newFakeGPU() *fakeGPU {
	return &fakeGPU{allocs: map[uintptr][]uint64{}, sizes: map[uintptr]int{}, next: 0x7000_0000_0000,
		launches: map[string]int{}, tids: map[int]bool{}, devices: 1}
}

func (f *fakeGPU) live() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.allocs)
}

func (f *fakeGPU) enter() {
	f.tids[syscall.Gettid()] = true
}

// mem returns n bytes of device memory at p, panicking (an error on the
// device thread) when they are not inside one allocation.
func (f *fakeGPU) mem(p uintptr, n int) []byte {
	for base, b := range f.allocs {
		size := f.sizes[base]
		if p >= base && p+uintptr(n) <= base+uintptr(size) {
			all := unsafe.Slice((*byte)(unsafe.Pointer(&b[0])), len(b)*8)
			return all[p-base : p-base+uintptr(n)]
		}
	}
	panic(fmt.Sprintf("fake GPU: %d bytes at %#x are not inside an allocation", n, p))
}

func (f *fakeGPU) f32(p uintptr, n int) []float32 {
	if n == 0 {
		return nil
	}
	b := f.mem(p, 4*n)
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n)
}

func (f *fakeGPU) i32(p uintptr, n int) []int32 {
	if n == 0 {
		return nil
	}
	b := f.mem(p, 4*n)
	return unsafe.Slice((*int32)(unsafe.Pointer(&b[0])), n)
}

// elem reads element i of a float32/float16/bfloat16 array at p.
func (f *fakeGPU) elem(p uintptr, i uint64, dtype int32) float32 {
	if dtype == 0 {
		return f.f32(p+uintptr(4*i), 1)[0]
	}
	b := f.mem(p+uintptr(2*i), 2)
	h := uint16(b[0]) | uint16(b[1])<<8
	if dtype == 1 {
		return kvcache.F16ToF32(h)
	}
	return kvcache.BF16ToF32(h)
}

func (f *fakeGPU) api() *api {
	a := &api{runtimePath: "fake/libcudart.so.12", driverPath: "fake/libcuda.so.1"}
	lock := func() func() { f.mu.Lock(); f.enter(); return f.mu.Unlock }
	a.cudaGetDeviceCount = func(n *int32) int32 { defer lock()(); *n = f.devices; return 0 }
	a.cudaSetDevice = func(int32) int32 { defer lock()(); return 0 }
	a.cudaMalloc = func(p *uintptr, n uintptr) int32 {
		defer lock()()
		if f.failAfter > 0 && f.mallocs >= f.failAfter {
			return 2
		}
		f.mallocs++
		base := f.next
		f.allocs[base] = make([]uint64, (n+7)/8)
		f.sizes[base] = int(n)
		f.next += (n + 511) &^ 255
		*p = base
		return 0
	}
	a.cudaFree = func(p uintptr) int32 {
		defer lock()()
		if _, ok := f.allocs[p]; !ok {
			return 1
		}
		delete(f.allocs, p)
		delete(f.sizes, p)
		return 0
	}
	a.cudaMemcpyHtoD = func(dst uintptr, src unsafe.Pointer, n uintptr, kind int32, _ uintptr) int32 {
		defer lock()()
		if kind != memcpyHtoD {
			return 21
		}
		copy(f.mem(dst, int(n)), unsafe.Slice((*byte)(src), n))
		return 0
	}
	a.cudaMemcpyDtoH = func(dst unsafe.Pointer, src uintptr, n uintptr, kind int32, _ uintptr) int32 {
		defer lock()()
		if kind != memcpyDtoH {
			return 21
		}
		copy(unsafe.Slice((*byte)(dst), n), f.mem(src, int(n)))
		return 0
	}
	a.cudaMemcpyDtoD = func(dst, src uintptr, n uintptr, kind int32, _ uintptr) int32 {
		defer lock()()
		if kind != memcpyDtoD {
			return 21
		}
		copy(f.mem(dst, int(n)), f.mem(src, int(n)))
		return 0
	}
	a.cudaMemsetAsync = func(p uintptr, v int32, n uintptr, _ uintptr) int32 {
		defer lock()()
		b := f.mem(p, int(n))
		for i := range b {
			b[i] = byte(v)
		}
		return 0
	}
	a.cudaStreamCreate = func(s *uintptr, _ uint32) int32 { defer lock()(); *s = 0x5; return 0 }
	a.cudaStreamDestroy = func(uintptr) int32 { defer lock()(); return 0 }
	a.cudaStreamSynchronize = func(uintptr) int32 { defer lock()(); return 0 }
	a.cudaStreamQuery = func(uintptr) int32 { defer lock()(); return 0 }
	a.cudaEventCreate = func(e *uintptr) int32 { defer lock()(); *e = 0x9; return 0 }
	a.cudaEventRecord = func(_, _ uintptr) int32 { return 0 }
	a.cudaEventSynchronize = func(uintptr) int32 { return 0 }
	a.cudaEventElapsedTime = func(ms *float32, _, _ uintptr) int32 { *ms = 1; return 0 }
	a.cudaEventDestroy = func(uintptr) int32 { return 0 }
	a.cudaMemGetInfo = func(fr, tot *uintptr) int32 {
		defer lock()()
		used := 0
		for _, s := range f.sizes {
			used += s
		}
		*tot = 1 << 30
		*fr = uintptr(1<<30 - used)
		return 0
	}
	a.cudaRuntimeGetVersion = func(v *int32) int32 { *v = 12080; return 0 }
	a.cudaGetLastError = func() int32 { return 0 }
	a.cuInit = func(uint32) int32 { defer lock()(); return 0 }
	a.cuDriverGetVersion = func(v *int32) int32 { *v = 12080; return 0 }
	a.cuDeviceGet = func(d *int32, o int32) int32 { *d = o; return 0 }
	a.cuDeviceGetName = func(name *byte, n int32, _ int32) int32 {
		copy(unsafe.Slice(name, n), "Fake GPU\x00")
		return 0
	}
	a.cuDevicePrimaryCtxRetain = func(c *uintptr, _ int32) int32 { defer lock()(); *c = 0xc0; return 0 }
	a.cuDevicePrimaryCtxRelease = func(int32) int32 { defer lock()(); return 0 }
	a.cuCtxSetCurrent = func(uintptr) int32 { defer lock()(); return 0 }
	a.cuModuleLoadData = func(m *uintptr, img unsafe.Pointer) int32 {
		// The image must be NUL-terminated PTX.
		b := unsafe.Slice((*byte)(img), len(ptxSource)+1)
		if b[len(ptxSource)] != 0 || string(b[:len(ptxSource)]) != ptxSource {
			return 218
		}
		*m = 0x3
		return 0
	}
	a.cuModuleLoadDataEx = func(m *uintptr, img unsafe.Pointer, _ uint32, _ *int32, _ *uintptr) int32 {
		return a.cuModuleLoadData(m, img)
	}
	a.cuModuleUnload = func(uintptr) int32 { return 0 }
	a.cuModuleGetFunction = func(fn *uintptr, _ uintptr, name *byte) int32 {
		var s []byte
		for p := unsafe.Pointer(name); *(*byte)(p) != 0; p = unsafe.Add(p, 1) {
			s = append(s, *(*byte)(p))
		}
		for k, spec := range kernelSpecs {
			if spec.name == string(s) {
				*fn = uintptr(k + 1)
				return 0
			}
		}
		return 500
	}
	a.cuLaunchKernel = func(fn uintptr, gx, gy, gz, bx, by, bz, shmem uint32, _ uintptr, params, extra unsafe.Pointer) int32 {
		defer lock()()
		k := kernel(fn - 1)
		if fn == 0 || k >= numKernels || extra != nil {
			return 400
		}
		spec := kernelSpecs[k]
		ptrs := unsafe.Slice((*unsafe.Pointer)(params), len(spec.args))
		args := make([]uint64, len(ptrs))
		for i, p := range ptrs {
			switch spec.args[i] {
			case argI32, argF32:
				args[i] = uint64(*(*uint32)(p))
			default:
				args[i] = *(*uint64)(p)
			}
		}
		f.launches[spec.name]++
		f.emulate(k, args, [3]int{int(gx), int(gy), int(gz)}, [3]int{int(bx), int(by), int(bz)})
		return 0
	}
	return a
}

func i32(u uint64) int       { return int(int32(uint32(u))) }
func f32of(u uint64) float32 { return math.Float32frombits(uint32(u)) }

// emulate runs kernel k over the launched grid, block by block where the
// grid decides what is computed, so that a grid that is too small leaves
// outputs unwritten.
func (f *fakeGPU) emulate(k kernel, a []uint64, grid, block [3]int) {
	exp := func(x float32) float32 { return float32(math.Exp(float64(x))) }
	inf := float32(math.Inf(1))
	switch k {
	case kWindowPass, kWindowPassD128, kWindowPassD64:
		keys, hs, dt, d, scale := uintptr(a[0]), a[1], int32(a[2]), i32(a[3]), f32of(a[4])
		q, groups, rows, stats, fin, out, ntiles, pass := uintptr(a[5]), uintptr(a[6]), uintptr(a[7]), uintptr(a[8]), uintptr(a[9]), uintptr(a[10]), i32(a[11]), i32(a[12])
		if block[0] != tileRows {
			panic("window_pass: block of " + fmt.Sprint(block[0]))
		}
		for gi := 0; gi < grid[1]; gi++ {
			gr := f.i32(groups+uintptr(16*gi), 4)
			g, L, r0, nr := int(gr[0]), int(gr[1]), int(gr[2]), int(gr[3])
			for tile := 0; tile < grid[0]; tile++ {
				j0 := tile * tileRows
				for r := r0; r < r0+nr; r++ {
					row := f.i32(rows+uintptr(12*r), 3)
					qv := f.f32(q+uintptr(4*row[0]), d)
					vis := min(int(row[1]), L)
					var lg []float32
					for j := j0; j < min(j0+tileRows, vis); j++ {
						var s float32
						for x := 0; x < d; x++ {
							s += qv[x] * f.elem(keys, hs*uint64(g)+uint64(j*d+x), dt)
						}
						lg = append(lg, s*scale)
					}
					if pass == 1 {
						m, s := -inf, float32(0)
						for _, l := range lg {
							m = max(m, l)
						}
						for _, l := range lg {
							s += exp(l - m)
						}
						st := f.f32(stats+uintptr(8*(r*ntiles+tile)), 2)
						st[0], st[1] = m, s
						continue
					}
					fn := f.f32(fin+uintptr(8*r), 2)
					o := f.f32(out+uintptr(4*int(row[2])), L)
					for jj, l := range lg {
						o[j0+jj] += exp(l-fn[0]) * fn[1]
					}
				}
			}
		}
	case kWindowMerge:
		stats, fin, nrows, ntiles := uintptr(a[0]), uintptr(a[1]), i32(a[2]), i32(a[3])
		for r := 0; r < min(nrows, grid[0]*block[0]/32); r++ {
			st := f.f32(stats+uintptr(8*r*ntiles), 2*ntiles)
			m, s := -inf, float32(0)
			for t := 0; t < ntiles; t++ {
				m = max(m, st[2*t])
			}
			for t := 0; t < ntiles; t++ {
				if st[2*t+1] != 0 {
					s += st[2*t+1] * exp(st[2*t]-m)
				}
			}
			fn := f.f32(fin+uintptr(8*r), 2)
			fn[0], fn[1] = m, 1/s
		}
	case kPool1d:
		src, dst, n, ss, ds, kern, kind := uintptr(a[0]), uintptr(a[1]), i32(a[2]), i32(a[3]), i32(a[4]), i32(a[5]), i32(a[6])
		for y := 0; y < grid[1]; y++ {
			s := f.f32(src+uintptr(4*y*ss), n)
			o := f.f32(dst+uintptr(4*y*ds), n)
			for i := 0; i < min(n, grid[0]*block[0]); i++ {
				lo, hi := max(0, i-kern/2), min(n, i+kern/2+1)
				if kind == 1 {
					m := s[lo]
					for _, v := range s[lo+1 : hi] {
						m = max(m, v)
					}
					o[i] = m
					continue
				}
				var sum float64
				for _, v := range s[lo:hi] {
					sum += float64(v)
				}
				o[i] = float32(sum * (1 / float64(kern)))
			}
		}
	case kMeanGroups:
		src, dst, n, stride, per := uintptr(a[0]), uintptr(a[1]), i32(a[2]), i32(a[3]), i32(a[4])
		for o := 0; o < grid[1]; o++ {
			out := f.f32(dst+uintptr(4*o*stride), n)
			for j := 0; j < min(n, grid[0]*block[0]); j++ {
				var acc float32
				for r := 0; r < per; r++ {
					acc += f.f32(src+uintptr(4*((o*per+r)*stride+j)), 1)[0]
				}
				out[j] = acc * (1 / float32(per))
			}
		}
	case kTopKRows:
		scores, n, stride, kk, out, os, nan := uintptr(a[0]), i32(a[1]), i32(a[2]), i32(a[3]), uintptr(a[4]), i32(a[5]), uintptr(a[6])
		for r := 0; r < grid[0]; r++ {
			s := f.f32(scores+uintptr(4*r*stride), n)
			idx := make([]int, n)
			for i := range idx {
				idx[i] = i
				if s[i] != s[i] {
					f.i32(nan+uintptr(4*r), 1)[0] = int32(i + 1)
				}
			}
			sort.SliceStable(idx, func(x, y int) bool { return s[idx[x]] > s[idx[y]] })
			sel := idx[:kk]
			sort.Ints(sel)
			o := f.i32(out+uintptr(4*r*os), kk)
			for i, v := range sel {
				o[i] = int32(v)
			}
		}
	case kGatherRows:
		src, dst, ss, ds, units, wide, idx, is, counts := uintptr(a[0]), uintptr(a[1]), a[2], a[3], uint64(i32(a[4])), i32(a[5]), uintptr(a[6]), i32(a[7]), uintptr(a[8])
		w := uint64(2)
		if wide == 1 {
			w = 4
		}
		for g := 0; g < grid[1]; g++ {
			cnt := int(f.i32(counts+uintptr(4*g), 1)[0])
			for i := 0; i < min(cnt, grid[0]*gatherRows); i++ {
				sr := uint64(f.i32(idx+uintptr(4*(g*is+i)), 1)[0])
				copy(f.mem(dst+uintptr(w*(uint64(g)*ds+uint64(i)*units)), int(w*units)),
					f.mem(src+uintptr(w*(uint64(g)*ss+sr*units)), int(w*units)))
			}
		}
	case kAttendPartial, kAttendPartialD128, kAttendPartialD64:
		keys, vals, hs, dt, d, scale := uintptr(a[0]), uintptr(a[1]), a[2], int32(a[3]), i32(a[4]), f32of(a[5])
		q, lens, group, splitRows, nsplit, part := uintptr(a[6]), uintptr(a[7]), i32(a[8]), i32(a[9]), i32(a[10]), uintptr(a[11])
		for split := 0; split < grid[0]; split++ {
			for g := 0; g < grid[1]; g++ {
				L := int(f.i32(lens+uintptr(4*g), 1)[0])
				for z := 0; z < grid[2]; z++ {
					for hh := z * headChunk; hh < min(group, (z+1)*headChunk); hh++ {
						h := g*group + hh
						qv := f.f32(q+uintptr(4*h*d), d)
						m, s, acc := -inf, float32(0), make([]float32, d)
						for j := split * splitRows; j < min(L, (split+1)*splitRows); j++ {
							var l float32
							for x := 0; x < d; x++ {
								l += qv[x] * f.elem(keys, hs*uint64(g)+uint64(j*d+x), dt)
							}
							l *= scale
							if l > m {
								fct := exp(m - l)
								s *= fct
								for x := range acc {
									acc[x] *= fct
								}
								m = l
							}
							e := exp(l - m)
							s += e
							for x := range acc {
								acc[x] += e * f.elem(vals, hs*uint64(g)+uint64(j*d+x), dt)
							}
						}
						p := f.f32(part+uintptr(4*(h*nsplit+split)*(d+2)), d+2)
						p[0], p[1] = m, s
						copy(p[2:], acc)
					}
				}
			}
		}
	case kAttendMerge:
		part, nsplit, d, out := uintptr(a[0]), i32(a[1]), i32(a[2]), uintptr(a[3])
		for h := 0; h < grid[0]; h++ {
			ph := f.f32(part+uintptr(4*h*nsplit*(d+2)), nsplit*(d+2))
			M := -inf
			for s := 0; s < nsplit; s++ {
				if ph[s*(d+2)+1] != 0 {
					M = max(M, ph[s*(d+2)])
				}
			}
			o := f.f32(out+uintptr(4*h*d), d)
			for x := 0; x < min(d, block[0]*((d+block[0]-1)/block[0])); x++ {
				var S, acc float32
				for s := 0; s < nsplit; s++ {
					p := ph[s*(d+2):]
					if p[1] == 0 {
						continue
					}
					e := exp(p[0] - M)
					S += p[1] * e
					acc += p[2+x] * e
				}
				o[x] = acc / S
			}
		}
	default:
		f.emulateGEMMKernels(k, a, grid, block) // fake_cublas_test.go
	}
}
