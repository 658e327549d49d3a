//go:build !amd64 || noasm

package cpu

import "testing"

// levels runs f once: without assembly the Go kernels are the only level.
func levels(t *testing.T, f func(t *testing.T)) { t.Run("go", f) }

// testLevels returns the one level: Go.
func testLevels() []level { return []level{levelGo} }
