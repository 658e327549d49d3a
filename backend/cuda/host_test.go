package cuda

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/compresskv/compresskv/kvcache"
)

// fakeSystem is an operating system where only the paths in ok open.
func fakeSystem(env map[string]string, globs map[string][]string, ok map[string]uintptr, tried *[]string) system {
	return system{
		getenv: func(k string) string { return env[k] },
		glob:   func(p string) ([]string, error) { return globs[p], nil },
		dlopen: func(p string) (uintptr, error) {
			*tried = append(*tried, p)
			if h, found := ok[p]; found {
				return h, nil
			}
			return 0, fmt.Errorf("%s: cannot open shared object file: No such file or directory", p)
		},
	}
}

// TestDiscoveryOrderAndError: the search goes through the project's
// directory, $CUDA_HOME, $CONDA_PREFIX/lib, /usr/local/cuda*/lib64 (the
// plain one, then the newest version first), the loader path, the fixed
// directories and Python's site-packages, in that order, and the error
// lists every attempt.
func TestDiscoveryOrderAndError(t *testing.T) {
	env := map[string]string{EnvLibDir: "/opt/mycuda", "HOME": "/home/u", "CUDA_HOME": "/opt/cuda-home", "CONDA_PREFIX": "/opt/conda/envs/x"}
	globs := map[string][]string{
		"/usr/local/cuda-*/lib64":                            {"/usr/local/cuda-12.4/lib64", "/usr/local/cuda-12.8/lib64"},
		"/usr/local/lib/python3*/dist-packages/nvidia/*/lib": {"/usr/local/lib/python3.11/dist-packages/nvidia/cuda_runtime/lib"},
	}
	var tried []string
	_, _, err := openFirst(fakeSystem(env, globs, nil, &tried), "CUDA runtime", runtimeSonames)
	if !errors.Is(err, ErrNoCUDA) {
		t.Fatalf("error %v does not wrap ErrNoCUDA", err)
	}
	var order []string
	for _, p := range tried {
		if strings.HasSuffix(p, "libcudart.so.12") {
			order = append(order, strings.TrimSuffix(p, "libcudart.so.12"))
		}
	}
	want := []string{
		"/opt/mycuda/", "/opt/cuda-home/lib64/", "/opt/cuda-home/lib/", "/opt/conda/envs/x/lib/",
		"/usr/local/cuda/lib64/", "/usr/local/cuda-12.8/lib64/", "/usr/local/cuda-12.4/lib64/",
		"", // the loader path
		"/usr/local/nvidia/lib64/", "/usr/lib/x86_64-linux-gnu/", "/usr/lib64/", "/usr/lib/wsl/lib/",
		"/usr/local/lib/python3.11/dist-packages/nvidia/cuda_runtime/lib/",
	}
	if !slices.Equal(order, want) {
		t.Fatalf("search order\n%q\nwant\n%q", order, want)
	}
	for _, p := range []string{"/opt/cuda-home/lib64/libcudart.so.13", "libcudart.so.12", "/usr/lib/wsl/lib/libcudart.so.13"} {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error does not list %s: %v", p, err)
		}
	}
	t.Logf("%v", err)

	// A library in site-packages is found, after the earlier candidates fail.
	tried = nil
	p := "/usr/local/lib/python3.11/dist-packages/nvidia/cuda_runtime/lib/libcudart.so.12"
	h, path, err := openFirst(fakeSystem(env, globs, map[string]uintptr{p: 42}, &tried), "CUDA runtime", runtimeSonames)
	if err != nil || h != 42 || path != p {
		t.Fatalf("openFirst = %d, %q, %v", h, path, err)
	}
}

// TestLoadAPIBindsEverySymbol: every symbol is bound from its library (the
// driver's _v2 entry points where they exist); a driver missing a required
// one is skipped for the next candidate, with the reason in the error; the
// stream-ordered allocator is optional.
func TestLoadAPIBindsEverySymbol(t *testing.T) {
	ok := map[string]uintptr{"libcudart.so.12": 1, "libcuda.so.1": 2}
	var tried []string
	sys := fakeSystem(nil, nil, ok, &tried)
	bound := map[string]bool{}
	dlsym := func(lib uintptr, name string) (uintptr, error) {
		if strings.HasPrefix(name, "cu") && !strings.HasPrefix(name, "cuda") && lib != 2 || strings.HasPrefix(name, "cuda") && lib != 1 {
			return 0, fmt.Errorf("wrong library %d for %s", lib, name)
		}
		bound[name] = true
		return 0x1000, nil
	}
	n := 0
	a, err := loadAPI(sys, dlsym, func(fptr any, sym uintptr) { n++ })
	if err != nil {
		t.Fatal(err)
	}
	if n != len(a.symbols()) || a.runtimePath != "libcudart.so.12" || a.driverPath != "libcuda.so.1" {
		t.Fatalf("bound %d of %d symbols; runtime %q, driver %q", n, len(a.symbols()), a.runtimePath, a.driverPath)
	}
	for _, name := range []string{"cuMemAlloc_v2", "cuMemFree_v2", "cuMemcpyHtoDAsync_v2", "cuMemcpyDtoHAsync_v2",
		"cuMemcpyDtoDAsync_v2", "cuMemGetInfo_v2", "cuStreamDestroy_v2", "cuEventDestroy_v2", "cuDeviceTotalMem_v2",
		"cuDevicePrimaryCtxRelease_v2", "cuFuncGetAttribute", "cuOccupancyMaxActiveBlocksPerMultiprocessor", "cuMemAllocAsync"} {
		if !bound[name] {
			t.Errorf("%s not bound", name)
		}
	}
	for name := range bound {
		if strings.HasPrefix(name, "cuda") && name != "cudaRuntimeGetVersion" {
			t.Errorf("the runtime's %s is bound: only its version is read", name)
		}
	}
	// A driver missing a required symbol is passed over; a missing optional
	// one (the stream-ordered allocator, CUDA 11.2) is not.
	libs := map[string]uintptr{"libcuda.so.1": 2, "/usr/lib/x86_64-linux-gnu/libcuda.so.1": 3}
	a, err = loadAPI(fakeSystem(nil, nil, libs, &tried), func(lib uintptr, name string) (uintptr, error) {
		if lib == 2 && name == "cuOccupancyMaxActiveBlocksPerMultiprocessor" || lib == 3 && name == "cuMemAllocAsync" {
			return 0, errors.New("undefined symbol")
		}
		return lib, nil
	}, func(any, uintptr) {})
	if err != nil || a.driverPath != "/usr/lib/x86_64-linux-gnu/libcuda.so.1" {
		t.Fatalf("driver %v: %v", a, err)
	}
	// No driver: the error lists what was tried for it and why.
	_, err = loadAPI(fakeSystem(nil, nil, map[string]uintptr{"libcudart.so.13": 1, "libcuda.so.1": 2}, &tried),
		func(lib uintptr, name string) (uintptr, error) {
			if name == "cuDevicePrimaryCtxRelease_v2" {
				return 0, errors.New("undefined symbol")
			}
			return 1, nil
		}, func(any, uintptr) {})
	if !errors.Is(err, ErrNoCUDA) || !strings.Contains(err.Error(), "libcuda.so.1 (no symbol cuDevicePrimaryCtxRelease_v2") ||
		!strings.Contains(err.Error(), "/usr/lib/x86_64-linux-gnu/libcuda.so.1 (cannot open") {
		t.Fatalf("no usable driver: %v", err)
	}
}

// TestRuntimeOptional: without a CUDA runtime or cuBLAS the table loads on
// the driver alone, and says why each is missing; the device's reason names
// both.
func TestRuntimeOptional(t *testing.T) {
	var tried []string
	a, err := loadAPI(fakeSystem(nil, nil, map[string]uintptr{"libcuda.so.1": 2}, &tried),
		func(lib uintptr, name string) (uintptr, error) { return lib, nil }, func(any, uintptr) {})
	if err != nil {
		t.Fatal(err)
	}
	if a.runtimePath != "" || a.cudaRuntimeGetVersion != nil || !errors.Is(a.runtimeErr, ErrNoCUDA) || a.blas != nil || !errors.Is(a.blasErr, ErrNoCUDA) {
		t.Fatalf("runtime %q (%v), cuBLAS %v (%v)", a.runtimePath, a.runtimeErr, a.blas, a.blasErr)
	}
	// On the fake device, with neither library.
	f := newFakeGPU()
	fa := f.api()
	fa.runtimePath, fa.cudaRuntimeGetVersion, fa.runtimeErr = "", nil, a.runtimeErr
	fa.blas, fa.blasErr = nil, a.blasErr
	d, err := openAPI(fa, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	reason := d.Reason()
	for _, want := range []string{"Fake GPU (sm_90, 132 SMs", "driver 12.8", "no cuBLAS (not found): long windows run on the fused kernels", "no CUDA runtime (libcudart), not needed"} {
		if !strings.Contains(reason, want) {
			t.Errorf("reason %q does not say %q", reason, want)
		}
	}
	if d.RuntimeVersion() != 0 {
		t.Errorf("runtime version %d without a runtime", d.RuntimeVersion())
	}
	c, err := d.NewCache(kvcache.Shape{Layers: 1, KVHeads: 1, HeadDim: 8}, kvcache.Float32)
	if err != nil {
		t.Fatal(err)
	}
	be, why := c.Backend()
	if !strings.HasPrefix(why, "cuda: the cache lives on Fake GPU") || !strings.Contains(why, "no cuBLAS") || !strings.Contains(why, "no CUDA runtime") {
		t.Errorf("the backend's reason %q does not say what is missing", why)
	}
	be.(*Backend).Close()
	c.Close()
}

// TestSystemDiscovery runs the real search on this machine: with no CUDA it
// must fail with the list of paths tried.
func TestSystemDiscovery(t *testing.T) {
	d, err := Open(Options{})
	if err == nil {
		blas, berr := d.BLAS()
		if berr != nil {
			blas = "none: " + berr.Error()
		}
		t.Logf("CUDA found: %s, driver %d, libraries %v; cuBLAS %s", d.Name(), d.DriverVersion(), fmt.Sprint(d.Libraries()), blas)
		d.Close()
		return
	}
	if !errors.Is(err, ErrNoCUDA) {
		t.Logf("CUDA libraries found but unusable: %v", err)
		return
	}
	if !strings.Contains(err.Error(), "tried") && !strings.Contains(err.Error(), "present") {
		t.Fatalf("the error does not say what was tried: %v", err)
	}
	t.Logf("no CUDA here, as expected on a CPU machine: %.300s...", err)
}

func TestErrorNames(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{drvErr("cuMemAllocAsync", 2), "cuda: cuMemAllocAsync: CUDA_ERROR_OUT_OF_MEMORY (2)"},
		{drvErr("cuMemcpyDtoHAsync_v2", 700), "cuda: cuMemcpyDtoHAsync_v2: CUDA_ERROR_ILLEGAL_ADDRESS (700)"},
		{drvErr("cuModuleLoadData", 218), "cuda: cuModuleLoadData: CUDA_ERROR_INVALID_PTX (218)"},
		{drvErr("cuInit", 100), "cuda: cuInit: CUDA_ERROR_NO_DEVICE (100)"},
		{drvErr("cuLaunchKernel", 12345), "cuda: cuLaunchKernel: CUresult(unknown code) (12345)"},
		{drvErr("cuModuleLoadDataEx", 221), "cuda: cuModuleLoadDataEx: CUDA_ERROR_JIT_COMPILER_NOT_FOUND (221)"},
		{drvErr("cuModuleLoadDataEx", 223), "cuda: cuModuleLoadDataEx: CUDA_ERROR_JIT_COMPILATION_DISABLED (223)"},
		{drvErr("cuStreamSynchronize", 710), "cuda: cuStreamSynchronize: CUDA_ERROR_ASSERT (710)"},
		{drvErr("cuStreamSynchronize", 715), "cuda: cuStreamSynchronize: CUDA_ERROR_ILLEGAL_INSTRUCTION (715)"},
		{drvErr("cuStreamQuery", 600), "cuda: cuStreamQuery: CUDA_ERROR_NOT_READY (600)"},
		{drvErr("cuCtxSynchronize", 716), "cuda: cuCtxSynchronize: CUDA_ERROR_MISALIGNED_ADDRESS (716)"},
	} {
		if c.err == nil || c.err.Error() != c.want {
			t.Errorf("got %v, want %s", c.err, c.want)
		}
	}
	if drvErr("x", 0) != nil || blasErr("x", 0) != nil {
		t.Error("success is an error")
	}
}

func TestPackArgs(t *testing.T) {
	spec := kernelSpec{"k", []argKind{argPtr, argI32, argU64, argF32}}
	slots, ptrs, err := packArgs(spec, []any{devptr(0xdead0000), int32(-3), uint64(1 << 40), float32(0.5)})
	if err != nil {
		t.Fatal(err)
	}
	if slots[0] != 0xdead0000 || int32(uint32(slots[1])) != -3 || slots[2] != 1<<40 || *(*float32)(ptrs[3]) != 0.5 {
		t.Fatalf("slots %x", slots)
	}
	for i := range ptrs {
		if ptrs[i] != unsafe.Pointer(&slots[i]) {
			t.Fatalf("pointer %d does not point at its slot", i)
		}
	}
	if _, _, err := packArgs(spec, []any{devptr(1), 3, uint64(1), float32(1)}); err == nil {
		t.Error("an int accepted for an int32 parameter")
	}
	if _, _, err := packArgs(spec, []any{devptr(1)}); err == nil {
		t.Error("too few arguments accepted")
	}
}

func TestGeometry(t *testing.T) {
	if err := (dim3{1024, 1, 1}).check(true); err != nil {
		t.Error(err)
	}
	for _, d := range []dim3{{1025, 1, 1}, {0, 1, 1}, {32, 32, 2}} {
		if d.check(true) == nil {
			t.Errorf("block %v accepted", d)
		}
	}
	if (dim3{1, 65536, 1}).check(false) == nil {
		t.Error("grid y of 65536 accepted")
	}
	for _, L := range []int{1, 7, 255, 256, 257, 4096, 32768, 131072, 1 << 22} {
		for _, c := range []struct{ blocks, sms, perSM int }{{8, 132, 3}, {16, 132, 2}, {1, 108, 3}, {64, 132, 3}} {
			rows, splits := attendSplit(L, c.blocks, c.sms, c.perSM)
			if rows%32 != 0 || splits < 1 || rows*splits < L || rows*(splits-1) >= L ||
				(L >= 128 && rows < 128) || splits*c.blocks > max(c.sms*c.perSM, c.blocks) {
				t.Errorf("attendSplit(%d, %+v) = %d rows x %d splits", L, c, rows, splits)
			}
		}
	}
	// Llama-3.1-8B at 32K on an H100: 8 KV heads x 49 splits fill the 396
	// places of 132 SMs x 3 blocks in one wave.
	if rows, splits := attendSplit(32768, 8, 132, 3); splits != 49 || rows != 672 {
		t.Errorf("attendSplit(32K) = %d rows x %d splits", rows, splits)
	}
	p, err := planWindow([]int{100, 90}, 4, 4, 8, []int{3, 0, 2})
	if err != nil {
		t.Fatal(err)
	}
	// Heads 0 reads KV head 0 (100 rows); heads 3 and 2 read KV head 1 (90).
	if len(p.groups) != 2 || p.groups[0] != [4]int32{0, 100, 0, 4} || p.groups[1] != [4]int32{1, 90, 4, 8} {
		t.Fatalf("groups %v", p.groups)
	}
	// Row 4 is entry 0 (head 3), window query 0: q offset (0*4+3)*8, vis 90-4+1, out 0.
	if got := p.rows[12:15]; got[0] != 24 || got[1] != 87 || got[2] != 0 {
		t.Fatalf("row 4 = %v", got)
	}
	if p.lmax != 100 || p.ntiles != 1 {
		t.Fatalf("lmax %d ntiles %d", p.lmax, p.ntiles)
	}
	b := p.batches(8) // batches hold at least 8 rows (one chunk of window_pass)
	if len(b) != 2 || len(b[0]) != 2 || b[0][0] != [4]int32{0, 100, 0, 4} || b[0][1] != [4]int32{1, 90, 4, 4} || b[1][0] != [4]int32{1, 90, 8, 4} {
		t.Fatalf("batches %v", b)
	}
}

// TestPTXMatchesSpecs checks that every kernel the Go side launches is in
// the committed PTX with as many parameters as kernelSpecs packs.
func TestPTXMatchesSpecs(t *testing.T) {
	for _, s := range kernelSpecs {
		re := regexp.MustCompile(`(?s)\.entry ` + s.name + `\((.*?)\)`)
		m := re.FindStringSubmatch(ptxSource)
		if m == nil {
			t.Errorf("kernel %s is not in kernels/compresskv.ptx", s.name)
			continue
		}
		if n := strings.Count(m[1], ".param"); n != len(s.args) {
			t.Errorf("kernel %s takes %d parameters in the PTX, %d in kernelSpecs", s.name, n, len(s.args))
		}
	}
	img := ptxImage()
	if img[len(img)-1] != 0 || bytes.IndexByte(img[:len(img)-1], 0) >= 0 {
		t.Error("ptxImage is not one NUL-terminated string")
	}
}

// TestPTXFresh regenerates the PTX with clang-16 and compares it with the
// committed file (CI installs clang-16 for it).
func TestPTXFresh(t *testing.T) {
	clang, err := exec.LookPath("clang-16")
	if err != nil {
		t.Skip("clang-16 not installed (apt-get install clang-16): cannot check that kernels/compresskv.ptx matches kernels/compresskv.cu")
	}
	out := filepath.Join(t.TempDir(), "compresskv.ptx")
	cmd := exec.Command(clang, "-x", "cuda", "--cuda-device-only", "--cuda-gpu-arch=sm_80", "-nocudainc", "-nocudalib",
		"-O3", "-S", "-Xclang", "-target-feature", "-Xclang", "+ptx70", "-ffp-contract=off", "-o", out, "kernels/compresskv.cu")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd, err, msg)
	}
	fresh, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(fresh) != ptxSource {
		t.Fatal("kernels/compresskv.ptx is stale: run `go generate ./backend/cuda` and commit the result")
	}
}

// TestGenerateLineMatchesTest keeps the go:generate command and the
// freshness test's command the same.
func TestGenerateLineMatchesTest(t *testing.T) {
	src, err := os.ReadFile("ptx.go")
	if err != nil {
		t.Fatal(err)
	}
	want := "//go:generate clang-16 -x cuda --cuda-device-only --cuda-gpu-arch=sm_80 -nocudainc -nocudalib -O3 -S -Xclang -target-feature -Xclang +ptx70 -ffp-contract=off -o kernels/compresskv.ptx kernels/compresskv.cu"
	if !strings.Contains(string(src), want) {
		t.Fatal("ptx.go's go:generate line differs from the command TestPTXFresh runs")
	}
}

// exactKernels compute what backend/cpu computes bit for bit: no fused
// multiply-add may enter them.
var exactKernels = []string{"pool_mean", "topk_hist", "topk_write", "gather_rows", "widen_rows"}

// kernelText returns the PTX of kernel name: from its .entry to the next.
func kernelText(name string) string {
	i := strings.Index(ptxSource, ".entry "+name+"(")
	if i < 0 {
		return ""
	}
	j := strings.Index(ptxSource[i+1:], ".entry ")
	if j < 0 {
		return ptxSource[i:]
	}
	return ptxSource[i : i+1+j]
}

// TestPTXContractionOff checks that the module's float arithmetic is what
// the source writes: every add, sub and mul carries an explicit rounding
// (.rn), which forbids the driver's JIT to fuse them, and fused
// multiply-adds appear only where the source asks for them (fmaf in the
// softmax kernels, whose tolerance allows it), never in the kernels that
// must match the CPU bit for bit.
func TestPTXContractionOff(t *testing.T) {
	unrounded := regexp.MustCompile(`\b(add|sub|mul)(\.ftz)?(\.sat)?\.f(32|64)\b`).FindAllString(ptxSource, -1)
	if len(unrounded) != 0 {
		t.Errorf("the PTX has %d float add/sub/mul without .rn (%s), which the JIT may fuse", len(unrounded), unrounded[0])
	}
	fma := regexp.MustCompile(`\bfma\.[a-z]+\.f(32|64)`)
	for _, k := range exactKernels {
		text := kernelText(k)
		if text == "" {
			t.Errorf("no kernel %s in the PTX", k)
		}
		if n := fma.FindAllString(text, -1); len(n) != 0 {
			t.Errorf("%s has %d fused multiply-adds (%s): it must round as the CPU does", k, len(n), n[0])
		}
	}
	if !strings.Contains(kernelText("attend_partial_d128"), "fma.rn.f32") || !strings.Contains(kernelText("pool_mean"), "add.rn.f64") {
		t.Error("the PTX lacks the fma of attention or the float64 sums of pooling: is the module empty?")
	}
}

// TestKernelVariants checks the choice of kernel variant by head dimension
// and group: each covers the dimensions the host gives it, and the variants
// take the parameters of the kernel they specialise.
func TestKernelVariants(t *testing.T) {
	for d := 1; d <= maxHeadDim; d++ {
		for _, group := range []int{1, 4, 5, 8} {
			w := windowPassFor(d)
			k, heads, perSM := attendPartialFor(d, group)
			var wantW, wantA kernel
			wantHeads := 4
			switch {
			case d <= 64:
				wantW, wantA, wantHeads = kWindowPassD64, kAttendPartialD64, 8
			case d <= 128 && group > 4:
				wantW, wantA, wantHeads = kWindowPassD128, kAttendPartialD128H8, 8
			case d <= 128:
				wantW, wantA = kWindowPassD128, kAttendPartialD128
			default:
				wantW, wantA = kWindowPass, kAttendPartial
			}
			if w != wantW || k != wantA || heads != wantHeads || perSM != map[int]int{4: 3, 8: 2}[heads] {
				t.Fatalf("d=%d group %d: %s and %s (%d heads, %d a SM), want %s and %s (%d heads)", d, group,
					kernelSpecs[w].name, kernelSpecs[k].name, heads, perSM, kernelSpecs[wantW].name, kernelSpecs[wantA].name, wantHeads)
			}
		}
	}
	for _, v := range []kernel{kWindowPassD128, kWindowPassD64} {
		if !slices.Equal(kernelSpecs[v].args, kernelSpecs[kWindowPass].args) {
			t.Errorf("%s's parameters differ from window_pass's", kernelSpecs[v].name)
		}
	}
	for _, v := range []kernel{kAttendPartialD128, kAttendPartialD128H8, kAttendPartialD64} {
		if !slices.Equal(kernelSpecs[v].args, kernelSpecs[kAttendPartial].args) {
			t.Errorf("%s's parameters differ from attend_partial's", kernelSpecs[v].name)
		}
	}
}

// TestLoadBLAS: cuBLAS is searched like the driver, in the runtime's major
// version when there is a runtime, else in the newest the driver serves,
// skipping a candidate that lacks a symbol; without one the table loads
// anyway and says why there is no cuBLAS.
func TestLoadBLAS(t *testing.T) {
	var tried []string
	libs := map[string]uintptr{"libcudart.so.12": 1, "libcuda.so.1": 2, "libcublas.so.13": 3,
		"libcublas.so.12": 4, "/usr/local/cuda/lib64/libcublas.so.12": 5}
	dlsym := func(lib uintptr, name string) (uintptr, error) {
		if lib == 4 && name == "cublasSgemmStridedBatched" {
			return 0, errors.New("undefined symbol")
		}
		return lib<<16 | 1, nil
	}
	var blasLib uintptr
	register := func(fptr any, sym uintptr) {
		if _, ok := fptr.(*func(handle *uintptr) int32); ok {
			blasLib = sym >> 16
		}
	}
	a, err := loadAPI(fakeSystem(nil, nil, libs, &tried), dlsym, register)
	if err != nil {
		t.Fatal(err)
	}
	if a.blas == nil || a.blas.path != "/usr/local/cuda/lib64/libcublas.so.12" || blasLib != 5 {
		t.Fatalf("cuBLAS %+v (bound from %d), error %v", a.blas, blasLib, a.blasErr)
	}
	if slices.Contains(tried, "libcublas.so.13") {
		t.Error("a cuBLAS 13 was tried beside a CUDA 12 runtime")
	}
	delete(libs, "/usr/local/cuda/lib64/libcublas.so.12")
	a, err = loadAPI(fakeSystem(nil, nil, libs, &tried), dlsym, register)
	if err != nil {
		t.Fatal(err)
	}
	if a.blas != nil || !errors.Is(a.blasErr, ErrNoCUDA) || !strings.Contains(a.blasErr.Error(), "libcublas.so.12 (no symbol cublasSgemmStridedBatched") {
		t.Fatalf("cuBLAS %+v, error %v", a.blas, a.blasErr)
	}
	for _, c := range []struct {
		rt   string
		drv  int
		want []string
	}{
		{"/opt/x/libcudart.so.13", 13000, []string{"libcublas.so.13"}},
		{"libcudart.so.12", 13000, []string{"libcublas.so.12"}},
		{"", 13000, []string{"libcublas.so.13", "libcublas.so.12"}},
		{"", 12080, []string{"libcublas.so.12"}},
	} {
		if got := blasSonames(c.rt, c.drv); !slices.Equal(got, c.want) {
			t.Errorf("sonames for runtime %q, driver %d: %v, want %v", c.rt, c.drv, got, c.want)
		}
	}
}
