package compresskv

import (
	"fmt"
	"strings"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/kvcache"
)

// ChooseBackend returns the backend to compute on cache c and the reason for
// the choice. want is "" or "auto" (the backend the cache names when it lives
// elsewhere, a backend.Resident such as a cuda.Cache; else the CPU), "cpu",
// or the name of a backend package that the program links in and that
// registered itself ("cuda"; an error unless c lives there). The reason
// reads like "cuda: the cache lives on NVIDIA H200" or "cpu: the cache
// (*kvcache.Host) is in host memory"; asking for "cuda" with a host cache
// fails with what the CUDA lookup found. A backend that implements io.Closer
// (the CUDA one holds device scratch memory) must be closed when done.
//
// Package compresskv imports no device backend: a program that never creates
// a device cache links none of its code.
func ChooseBackend(c kvcache.KVCache, want string) (backend.Backend, string, error) {
	res, resident := c.(backend.Resident)
	name := strings.ToLower(want)
	switch name {
	case "", "auto":
		if resident {
			b, reason := res.Backend()
			return b, reason, nil
		}
		// No device probe here: opening a device costs time and device
		// memory, and a host cache is computed on the CPU either way.
		return cpu.New(), fmt.Sprintf("cpu: the cache (%T) is in host memory", c), nil
	case "cpu":
		if resident {
			return nil, "", fmt.Errorf("compresskv: backend %q asked for a cache (%T) that lives on another backend: %w", want, c, ErrConfig)
		}
		return cpu.New(), "cpu: asked for", nil
	}
	if name == "gpu" {
		name = "cuda"
	}
	if resident {
		b, reason := res.Backend()
		if b.Name() == name {
			return b, reason + " (asked for)", nil
		}
		if cl, ok := b.(interface{ Close() error }); ok {
			cl.Close()
		}
		return nil, "", fmt.Errorf("compresskv: backend %q asked for, but the cache (%T) lives on %q: %w", want, c, b.Name(), ErrConfig)
	}
	probe, ok := backend.Registered(name)
	if !ok {
		hint := ""
		if name == "cuda" {
			hint = ": import github.com/compresskv/compresskv/backend/cuda and create the cache with cuda.Device.NewCache or Upload"
		}
		return nil, "", fmt.Errorf("compresskv: unknown or unlinked backend %q (want auto, cpu or a linked device backend)%s: %w", want, hint, ErrConfig)
	}
	reason := "it is available: create the cache on the device (for CUDA: cuda.Device.NewCache or Upload)"
	if err := probe(); err != nil {
		reason = err.Error()
	}
	return nil, "", fmt.Errorf("compresskv: backend %q asked for, but the cache (%T) is in host memory (%s): %w", want, c, reason, ErrConfig)
}
