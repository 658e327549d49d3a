//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package gguf

import (
	"errors"
	"os"
)

// mapFile reports that this system has no memory mapping here; Open then
// reads the file.
func mapFile(fd *os.File, size int) (data []byte, unmap func() error, err error) {
	return nil, nil, errors.New("gguf: no memory mapping on this system")
}

// canMap says whether Open maps files on this system.
const canMap = false
