package cuda

// Host-side defects shown on the fake GPU: the order of copies, syncs and
// frees when a cache grows, no leak when a step fails, Close racing calls,
// the JIT log of a failed module load, and faults blamed on kernels.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/compresskv/compresskv/internal/reftest"
	"github.com/compresskv/compresskv/kvcache"
)

// openWrapped opens a Device on a fake GPU whose table wrap may change
// first (and setup the fake itself); the test closes what it opens.
func openWrapped(t *testing.T, o Options, wrap func(a *api), setup ...func(*fakeGPU)) (*Device, *fakeGPU, error) {
	t.Helper()
	f := newFakeGPU()
	for _, s := range setup {
		s(f)
	}
	a := f.api()
	wrap(a)
	d, err := openAPI(a, o)
	return d, f, err
}

// TestGrowSyncsBeforeFree: when Append grows a layer, the old buffers are
// freed only once the copies out of them are done: a stream-ordered free
// (memory pools) queued after them, or, without pools, a free that follows
// a stream synchronisation after the last copy.
func TestGrowSyncsBeforeFree(t *testing.T) {
	for _, noPools := range []bool{false, true} {
		t.Run(fmt.Sprintf("pools=%v", !noPools), func(t *testing.T) {
			var events []string
			var mu sync.Mutex
			log := func(e string) { mu.Lock(); events = append(events, e); mu.Unlock() }
			d, f, err := openWrapped(t, Options{}, func(a *api) {
				dtod, sync_, free, freeAsync := a.cuMemcpyDtoD, a.cuStreamSynchronize, a.cuMemFree, a.cuMemFreeAsync
				a.cuMemcpyDtoD = func(dst, src, n, s uintptr) int32 {
					log(fmt.Sprintf("copy %#x", src))
					return dtod(dst, src, n, s)
				}
				a.cuStreamSynchronize = func(s uintptr) int32 { log("sync"); return sync_(s) }
				a.cuMemFree = func(p uintptr) int32 { log(fmt.Sprintf("free %#x", p)); return free(p) }
				a.cuMemFreeAsync = func(p, s uintptr) int32 { log(fmt.Sprintf("ordered free %#x", p)); return freeAsync(p, s) }
			}, func(f *fakeGPU) { f.noPools = noPools })
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(1, 2))
			s := kvcache.Shape{Layers: 1, KVHeads: 2, HeadDim: 8}
			c, err := d.NewCache(s, kvcache.Float16)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []int{10, 30, 100} { // grows twice, copying the rows each time
				k := reftest.Normal(r, n*s.KVHeads*s.HeadDim, 1)
				if err := c.Append(0, k, k); err != nil {
					t.Fatal(err)
				}
			}
			copies, frees := 0, 0
			for i, e := range events {
				if strings.HasPrefix(e, "ordered free ") != !noPools && strings.Contains(e, "free ") {
					t.Fatalf("pools %v: %s", !noPools, e)
				}
				if !strings.HasPrefix(e, "copy ") {
					continue
				}
				copies++
				src := strings.TrimPrefix(e, "copy ")
				synced := false
				for _, later := range events[i+1:] {
					if later == "sync" {
						synced = true
					}
					if later == "free "+src && !synced {
						t.Fatalf("buffer %s freed before a sync after the copy out of it: %v", src, events)
					}
					if later == "ordered free "+src {
						frees++
					}
				}
			}
			// A copy reads at an offset into the old buffer (per KV head):
			// the head-0 copies read from the buffer's base.
			if copies < 4 || (!noPools && frees < 2) {
				t.Fatalf("%d device-to-device copies, %d stream-ordered frees of their sources: %v", copies, frees, events)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if f.live() != 0 {
				t.Fatalf("fake GPU holds %d allocations", f.live())
			}
		})
	}
}

// TestNoLeakOnFailure: a copy failing while a layer grows, or a gather
// failing while it compacts, leaves the layer's rows and the count of live
// allocations as they were, and the device can close once the cache is.
func TestNoLeakOnFailure(t *testing.T) {
	var failCopy, failLaunch bool
	d, f, err := openWrapped(t, Options{}, func(a *api) {
		dtod, launch := a.cuMemcpyDtoD, a.cuLaunchKernel
		a.cuMemcpyDtoD = func(dst, src, n, s uintptr) int32 {
			if failCopy {
				return 700
			}
			return dtod(dst, src, n, s)
		}
		a.cuLaunchKernel = func(fn uintptr, gx, gy, gz, bx, by, bz, sh uint32, s uintptr, p, e unsafe.Pointer) int32 {
			if failLaunch {
				return 701
			}
			return launch(fn, gx, gy, gz, bx, by, bz, sh, s, p, e)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	s := kvcache.Shape{Layers: 1, KVHeads: 2, HeadDim: 8}
	h, _ := kvcache.NewHost(s, kvcache.Float32)
	c, err := d.NewCache(s, kvcache.Float32)
	if err != nil {
		t.Fatal(err)
	}
	k := reftest.Normal(r, 20*s.KVHeads*s.HeadDim, 1)
	if err := c.Append(0, k, k); err != nil {
		t.Fatal(err)
	}
	if err := h.Append(0, k, k); err != nil {
		t.Fatal(err)
	}
	// A compaction that keeps every row leaves the cache's scratch
	// allocated, as any compaction does.
	all := [][]int{make([]int, 20), make([]int, 20)}
	for i := range all[0] {
		all[0][i], all[1][i] = i, i
	}
	if err := c.Compact(0, all); err != nil {
		t.Fatal(err)
	}
	n0, b0 := d.LiveAllocations()
	failCopy = true
	big := reftest.Normal(r, 100*s.KVHeads*s.HeadDim, 1)
	if err := c.Append(0, big, big); err == nil || !strings.Contains(err.Error(), "CUDA_ERROR_ILLEGAL_ADDRESS") {
		t.Fatalf("Append with a failing copy: %v", err)
	}
	failCopy = false
	if n, b := d.LiveAllocations(); n != n0 || b != b0 {
		t.Fatalf("failed grow: %d allocations (%d bytes) live, %d (%d) before", n, b, n0, b0)
	}
	sameRows(t, h, c, 0)

	failLaunch = true
	if err := c.Compact(0, [][]int{{1, 5}, {0}}); err == nil || !strings.Contains(err.Error(), "gather_rows") {
		t.Fatalf("Compact with a failing launch: %v", err)
	}
	failLaunch = false
	if n, b := d.LiveAllocations(); n != n0 || b != b0 {
		t.Fatalf("failed compaction: %d allocations (%d bytes) live, %d (%d) before", n, b, n0, b0)
	}
	sameRows(t, h, c, 0)

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Device.Close after failures: %v", err)
	}
	if f.live() != 0 {
		t.Fatalf("fake GPU holds %d allocations", f.live())
	}
}

// TestCloseRacingCalls closes a device while goroutines call it: every call
// either completes or reports ErrClosed; none panics ("send on closed
// channel") and none runs after the device's teardown.
func TestCloseRacingCalls(t *testing.T) {
	for round := 0; round < 20; round++ {
		var tornDown, lateCall bool
		var mu sync.Mutex
		d, _, err := openWrapped(t, Options{}, func(a *api) {
			info, release := a.cuMemGetInfo, a.cuDevicePrimaryCtxRelease
			a.cuMemGetInfo = func(fr, tot *uintptr) int32 {
				mu.Lock()
				if tornDown {
					lateCall = true
				}
				mu.Unlock()
				return info(fr, tot)
			}
			a.cuDevicePrimaryCtxRelease = func(dev int32) int32 {
				mu.Lock()
				tornDown = true
				mu.Unlock()
				return release(dev)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		var wg, started sync.WaitGroup
		errs := make(chan error, 64)
		for g := 0; g < 8; g++ {
			wg.Add(1)
			started.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					if r := recover(); r != nil {
						errs <- fmt.Errorf("panic: %v", r)
					}
				}()
				for i := 0; ; i++ {
					_, _, err := d.MemInfo()
					if i == 0 {
						started.Done()
					}
					if err != nil {
						if !errors.Is(err, ErrClosed) {
							errs <- err
						}
						return
					}
				}
			}()
		}
		started.Wait()
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: a call racing Close: %v", round, err)
		}
		if lateCall {
			t.Fatalf("round %d: a call ran after the context was released", round)
		}
	}
}

// TestModuleLoadLog: a failed JIT comes back with the driver's error log and
// a hint for the code.
func TestModuleLoadLog(t *testing.T) {
	for _, c := range []struct {
		code int32
		want string
	}{
		{218, "CUDA_ERROR_INVALID_PTX (218)"},
		{221, "CUDA_ERROR_JIT_COMPILER_NOT_FOUND (221): the driver could not JIT the bundled PTX (sm_80, PTX 7.0): the driver's PTX JIT compiler"},
		{223, "CUDA_ERROR_JIT_COMPILATION_DISABLED (223)"},
	} {
		const jitLog = "ptxas application ptx input, line 42; error   : Unknown symbol 'x'"
		var opts []int32
		_, f, err := openWrapped(t, Options{}, func(a *api) {
			a.cuModuleLoadDataEx = func(m *uintptr, img unsafe.Pointer, n uint32, o *int32, v *uintptr) int32 {
				opts = append(opts, unsafe.Slice(o, n)...)
				vals := unsafe.Slice(v, n)
				buf := unsafe.Slice(*(**byte)(unsafe.Pointer(&vals[0])), vals[1]) // the slot holds the buffer's address
				vals[1] = uintptr(copy(buf, jitLog+"\x00"))
				return c.code
			}
		})
		if err == nil {
			t.Fatalf("code %d: Open succeeded", c.code)
		}
		if !slices.Equal(opts, []int32{jitErrorLogBuffer, jitErrorLogBufferSize}) {
			t.Errorf("JIT options %v, want the error log buffer and its size", opts)
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "JIT log: "+jitLog) {
			t.Errorf("code %d: %v", c.code, err)
		}
		if f.live() != 0 {
			t.Errorf("a failed Open left %d allocations", f.live())
		}
	}
}

// TestFaultBlamedOnKernel: an asynchronous fault that a later call reports
// names the kernels launched since the last synchronisation; with
// SyncLaunches, the launch of the faulting kernel itself reports it.
func TestFaultBlamedOnKernel(t *testing.T) {
	for _, syncLaunches := range []bool{false, true} {
		t.Run(fmt.Sprintf("SyncLaunches=%v", syncLaunches), func(t *testing.T) {
			var lastKernel string
			fault := false
			d, _, err := openWrapped(t, Options{SyncLaunches: syncLaunches}, func(a *api) {
				launch, sync_, dtoh := a.cuLaunchKernel, a.cuStreamSynchronize, a.cuMemcpyDtoH
				a.cuLaunchKernel = func(fn uintptr, gx, gy, gz, bx, by, bz, sh uint32, s uintptr, p, e unsafe.Pointer) int32 {
					lastKernel = kernelSpecs[fn-1].name
					return launch(fn, gx, gy, gz, bx, by, bz, sh, s, p, e)
				}
				// attend_merge misbehaves: the fault surfaces at the next
				// synchronisation or copy, as on a GPU.
				a.cuStreamSynchronize = func(s uintptr) int32 {
					if fault || lastKernel == "attend_merge" {
						fault = true
						return 716
					}
					return sync_(s)
				}
				a.cuMemcpyDtoH = func(dst unsafe.Pointer, src, n, s uintptr) int32 {
					if fault || lastKernel == "attend_merge" {
						fault = true
						return 716
					}
					return dtoh(dst, src, n, s)
				}
				a.cuStreamQuery = func(uintptr) int32 {
					if fault || lastKernel == "attend_merge" {
						fault = true
						return 716
					}
					return errNotReady
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(5, 6))
			s := kvcache.Shape{Layers: 1, KVHeads: 2, HeadDim: 128}
			c, err := d.NewCache(s, kvcache.Float16)
			if err != nil {
				t.Fatal(err)
			}
			k := reftest.Normal(r, 40*s.KVHeads*s.HeadDim, 1)
			if err := c.Append(0, k, k); err != nil {
				t.Fatal(err)
			}
			b := d.NewBackend()
			defer func() {
				b.Close()
				c.Close()
				if err := d.Close(); err != nil {
					t.Error(err)
				}
			}()
			q := reftest.Normal(r, 4*s.HeadDim, 1)
			err = b.Attend(c, 0, q, 4, make([]float32, len(q)))
			if err == nil || !strings.Contains(err.Error(), "CUDA_ERROR_MISALIGNED_ADDRESS (716)") {
				t.Fatalf("Attend with a faulting kernel: %v", err)
			}
			if !strings.Contains(err.Error(), "attend_merge") {
				t.Errorf("the fault is not blamed on attend_merge: %v", err)
			}
			if syncLaunches == strings.Contains(err.Error(), "attend_partial_d128") {
				t.Errorf("SyncLaunches %v: blame %v", syncLaunches, err)
			}
			t.Log(err)
		})
	}
}

// TestThreadDoAfterStop: a call that reaches the device thread after it
// stopped (the window between Device.do's check and its hand-over) gets
// ErrClosed, and its closure never runs.
func TestThreadDoAfterStop(t *testing.T) {
	th, err := startThread(func() error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	ran := false
	if err := th.do(func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("do on a running thread: %v, ran %v", err, ran)
	}
	th.stop()
	ran = false
	err = func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v", r)
			}
		}()
		return th.do(func() error { ran = true; return nil })
	}()
	if !errors.Is(err, ErrClosed) || ran {
		t.Fatalf("do after stop: %v, ran %v; want ErrClosed without running", err, ran)
	}
}

// TestCompressLayerOneWait: CompressKV's eviction of a layer (the
// selection and the compaction) waits for the device once, for the kept
// indices, allocates only from the stream-ordered pool (the kept rows'
// buffers; the scratch is reused from the second layer on), and launches 8
// kernels: the window's two passes, pooling and mean, three radix passes,
// the write of the indices and the gather.
func TestCompressLayerOneWait(t *testing.T) {
	var syncs, blocking, ordered int
	d, _, err := openWrapped(t, Options{}, func(a *api) {
		sync_, alloc, free, allocAsync := a.cuStreamSynchronize, a.cuMemAlloc, a.cuMemFree, a.cuMemAllocAsync
		a.cuStreamSynchronize = func(s uintptr) int32 { syncs++; return sync_(s) }
		a.cuMemAlloc = func(p *uintptr, n uintptr) int32 { blocking++; return alloc(p, n) }
		a.cuMemFree = func(p uintptr) int32 { blocking++; return free(p) }
		a.cuMemAllocAsync = func(p *uintptr, n, s uintptr) int32 { ordered++; return allocAsync(p, n, s) }
	})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 8))
	s := kvcache.Shape{Layers: 2, KVHeads: 2, HeadDim: 64}
	c, err := d.NewCache(s, kvcache.Float16)
	if err != nil {
		t.Fatal(err)
	}
	for l := 0; l < s.Layers; l++ {
		k := reftest.Normal(r, 600*s.KVHeads*s.HeadDim, 1)
		if err := c.Append(l, k, k); err != nil {
			t.Fatal(err)
		}
	}
	b := d.NewBackend()
	q := reftest.Normal(r, 8*8*s.HeadDim, 1)
	sel := Selection{Window: 8, Heads: []int{1, 6}, PerRow: 2, Kernel: 5, Keep: 100}
	if _, err := b.CompressLayer(c, 0, q, 8, sel); err != nil {
		t.Fatal(err)
	}
	syncs, blocking, ordered = 0, 0, 0
	launches := d.Launches()
	if _, err := b.CompressLayer(c, 1, q, 8, sel); err != nil {
		t.Fatal(err)
	}
	if n := d.Launches() - launches; syncs != 1 || blocking != 0 || ordered != 2 || n != 8 {
		t.Fatalf("the second layer's eviction: %d waits, %d blocking allocations or frees, %d pool allocations, %d launches; want 1, 0, 2, 8",
			syncs, blocking, ordered, n)
	}
	b.Close()
	c.Close()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}
