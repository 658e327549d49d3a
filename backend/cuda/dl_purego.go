//go:build linux || darwin || freebsd || netbsd

package cuda

import "github.com/ebitengine/purego"

func dlopen(path string) (uintptr, error) {
	return purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
}

func dlclose(lib uintptr) { purego.Dlclose(lib) }

func dlsym(lib uintptr, name string) (uintptr, error) { return purego.Dlsym(lib, name) }

func registerFunc(fptr any, sym uintptr) { purego.RegisterFunc(fptr, sym) }
