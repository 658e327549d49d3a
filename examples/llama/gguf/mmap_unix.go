//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package gguf

import (
	"os"
	"syscall"
)

// mapFile maps the size bytes of fd read-only and shared (pages come from
// the page cache, nothing is copied). A nil unmap with a nil error means
// there is nothing to map (an empty file).
func mapFile(fd *os.File, size int) (data []byte, unmap func() error, err error) {
	if size == 0 {
		return nil, nil, nil
	}
	data, err = syscall.Mmap(int(fd.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return data, func() error { return syscall.Munmap(data) }, nil
}

// canMap says whether Open maps files on this system.
const canMap = true
