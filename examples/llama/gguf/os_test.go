package gguf_test

import "io/fs"

var errNotExist = fs.ErrNotExist
