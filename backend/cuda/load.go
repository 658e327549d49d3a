package cuda

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// EnvLibDir names the environment variable that points at a directory holding
// the CUDA libraries; it is searched first.
const EnvLibDir = "COMPRESSKV_CUDA_LIB"

// Sonames searched, newest first.
var (
	runtimeSonames = []string{"libcudart.so.13", "libcudart.so.12"}
	driverSonames  = []string{"libcuda.so.1"}
)

// fixedDirs are searched after the environment variable and the loader path.
var fixedDirs = []string{"/usr/local/cuda/lib64", "/usr/local/nvidia/lib64", "/usr/lib/x86_64-linux-gnu"}

// sitePackageGlobs find the nvidia/*/lib folders of Python installations
// (the wheels nvidia-cuda-runtime-cu12 and friends put libraries there).
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

// candidates returns the paths to try for one library, in order: the
// directory of EnvLibDir, the bare sonames (the loader path: LD_LIBRARY_PATH,
// the ld.so cache), the fixed directories, then Python site-packages.
func candidates(sys system, sonames []string) []string {
	var dirs []string
	if d := sys.getenv(EnvLibDir); d != "" {
		dirs = append(dirs, d)
	}
	var out []string
	for _, d := range dirs {
		for _, s := range sonames {
			out = append(out, filepath.Join(d, s))
		}
	}
	out = append(out, sonames...)
	dirs = append([]string(nil), fixedDirs...)
	var globs []string
	globs = append(globs, sitePackageGlobs...)
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
		dirs = append(dirs, m...)
	}
	for _, d := range dirs {
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
