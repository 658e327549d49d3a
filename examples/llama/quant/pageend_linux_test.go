//go:build linux && amd64 && !noasm

package quant

import (
	"syscall"
	"testing"
)

// atPageEnd returns a copy of b whose last byte is the last readable byte
// before a page mapped without access, so that reading past it faults.
func atPageEnd(t *testing.T, b []byte) []byte {
	t.Helper()
	page := syscall.Getpagesize()
	size := (len(b)+page-1)/page*page + page
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Munmap(mem) })
	if err := syscall.Mprotect(mem[size-page:], syscall.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	out := mem[size-page-len(b) : size-page]
	copy(out, b)
	return out
}
