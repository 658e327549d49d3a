package cuda

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// EnvLibDir names the environment variable that points at a directory holding
// the CUDA libraries; it is searched first.
const EnvLibDir = "COMPRESSKV_CUDA_LIB"

// Sonames searched, newest first. Only the driver is required.
var (
	driverSonames  = []string{"libcuda.so.1"}
	runtimeSonames = []string{"libcudart.so.13", "libcudart.so.12"}
)

// fixedDirs are searched after the loader path: where container runtimes
// and distributions put the driver, and WSL's.
var fixedDirs = []string{"/usr/local/nvidia/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib/wsl/lib"}

// sitePackageGlobs find the nvidia/*/lib folders of Python installations
// (the wheels nvidia-cuda-runtime-cu12, nvidia-cublas-cu12 and friends put
// libraries there).
var sitePackageGlobs = []string{
	"/usr/lib/python3*/site-packages/nvidia/*/lib",
	"/usr/lib/python3*/dist-packages/nvidia/*/lib",
	"/usr/local/lib/python3*/site-packages/nvidia/*/lib",
	"/usr/local/lib/python3*/dist-packages/nvidia/*/lib",
	"/opt/conda/lib/python3*/site-packages/nvidia/*/lib",
}

// system is what discovery needs from the operating system; tests replace it.
type system struct {
	getenv func(string) string
	glob   func(string) ([]string, error)
	dlopen func(path string) (uintptr, error)
	// dlclose releases a library that was opened but not used; nil: keep it.
	dlclose func(lib uintptr)
}

// searchDirs returns the directories to search, in order: EnvLibDir,
// $CUDA_HOME/lib64 and /lib, $CONDA_PREFIX/lib, /usr/local/cuda*/lib64
// (/usr/local/cuda first, then the versioned ones newest first), then, after
// the loader path (see candidates), the fixed directories and Python's
// site-packages.
func searchDirs(sys system) (before, after []string) {
	if d := sys.getenv(EnvLibDir); d != "" {
		before = append(before, d)
	}
	if h := sys.getenv("CUDA_HOME"); h != "" {
		before = append(before, filepath.Join(h, "lib64"), filepath.Join(h, "lib"))
	}
	if p := sys.getenv("CONDA_PREFIX"); p != "" {
		before = append(before, filepath.Join(p, "lib"))
	}
	before = append(before, "/usr/local/cuda/lib64")
	versioned, _ := sys.glob("/usr/local/cuda-*/lib64")
	sort.Sort(sort.Reverse(sort.StringSlice(versioned))) // cuda-12.8 before cuda-12.4 (and cuda-9.x, rightly, last)
	before = append(before, versioned...)
	after = append(after, fixedDirs...)
	globs := append([]string(nil), sitePackageGlobs...)
	for _, v := range []string{"VIRTUAL_ENV", "CONDA_PREFIX"} {
		if p := sys.getenv(v); p != "" {
			globs = append(globs, filepath.Join(p, "lib/python3*/site-packages/nvidia/*/lib"))
		}
	}
	if h := sys.getenv("HOME"); h != "" {
		globs = append(globs, filepath.Join(h, ".local/lib/python3*/site-packages/nvidia/*/lib"))
	}
	for _, g := range globs {
		m, _ := sys.glob(g)
		after = append(after, m...)
	}
	return before, after
}

// candidates returns the paths to try for one library, in order: each
// soname in the directories before the loader path, the bare sonames (the
// loader path: LD_LIBRARY_PATH, the ld.so cache), then in the directories
// after it.
func candidates(sys system, sonames []string) []string {
	before, after := searchDirs(sys)
	var out []string
	for _, d := range before {
		for _, s := range sonames {
			out = append(out, filepath.Join(d, s))
		}
	}
	out = append(out, sonames...)
	for _, d := range after {
		for _, s := range sonames {
			out = append(out, filepath.Join(d, s))
		}
	}
	return out
}

// openFirst opens the first candidate that loads, or returns an error
// wrapping ErrNoCUDA that lists every path tried and why it failed.
func openFirst(sys system, what string, sonames []string) (uintptr, string, error) {
	var h uintptr
	path, err := openEach(sys, what, sonames, func(lib uintptr, _ string) error {
		h = lib
		return nil
	})
	return h, path, err
}

// openEach tries the candidates in order: each that loads is handed to use,
// and the first that use accepts (a nil error) is the answer. A library use
// rejects is closed. Without an accepted one, the error wraps ErrNoCUDA and
// lists every path tried with why it failed: not loadable, or use's error.
func openEach(sys system, what string, sonames []string, use func(lib uintptr, path string) error) (string, error) {
	var tried []string
	seen := map[string]bool{}
	for _, p := range candidates(sys, sonames) {
		if seen[p] {
			continue
		}
		seen[p] = true
		h, err := sys.dlopen(p)
		if err == nil && h != 0 {
			uerr := use(h, p)
			if uerr == nil {
				return p, nil
			}
			if sys.dlclose != nil {
				sys.dlclose(h)
			}
			tried = append(tried, p+" ("+firstLine(uerr.Error())+")")
			continue
		}
		why := "not loadable"
		if err != nil {
			why = strings.TrimPrefix(firstLine(err.Error()), p+": ")
		}
		tried = append(tried, p+" ("+why+")")
	}
	return "", fmt.Errorf("cuda: %w: %s: tried %s", ErrNoCUDA, what, strings.Join(tried, ", "))
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// osSystem is the real operating system.
func osSystem() system {
	return system{getenv: os.Getenv, glob: filepath.Glob, dlopen: dlopen, dlclose: dlclose}
}
