//go:build !(linux || darwin || freebsd || netbsd)

package cuda

import (
	"errors"
	"runtime"
)

var errUnsupported = errors.New("dlopen is not supported on " + runtime.GOOS)

func dlopen(string) (uintptr, error) { return 0, errUnsupported }

func dlclose(uintptr) {}

func dlsym(uintptr, string) (uintptr, error) { return 0, errUnsupported }

func registerFunc(any, uintptr) {}
