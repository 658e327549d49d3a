package compresskv

import (
	"fmt"
	"strings"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/backend/cuda"
	"github.com/compresskv/compresskv/kvcache"
)

// SelectBackend returns the backend to compute on cache c and the reason for
// the choice. want is "" or "auto" (the GPU when c lives in device memory,
// a *cuda.Cache; else the CPU), "cpu" or "cuda" (an error unless c is a
// device cache). The reason reads like "cuda: the cache lives on NVIDIA
// H200" or "cpu: the cache (*kvcache.Host) is in host memory"; asking for
// "cuda" with a host cache fails with what CUDA lookup found. A CUDA backend holds device scratch memory: close it (it implements
// io.Closer) when done.
func SelectBackend(c kvcache.KVCache, want string) (backend.Backend, string, error) {
	dc, onDevice := c.(*cuda.Cache)
	switch strings.ToLower(want) {
	case "", "auto":
		if onDevice {
			return dc.Device().NewBackend(), "cuda: the cache lives on " + dc.Device().Name(), nil
		}
		// No CUDA probe here: opening a device costs time and device
		// memory, and a host cache is computed on the CPU either way.
		return cpu.New(), fmt.Sprintf("cpu: the cache (%T) is in host memory", c), nil
	case "cpu":
		if onDevice {
			return nil, "", fmt.Errorf("compresskv: backend %q asked for a cache in device memory: %w", want, ErrConfig)
		}
		return cpu.New(), "cpu: asked for", nil
	case "cuda", "gpu":
		if !onDevice {
			reason := "CUDA is available: create the cache with cuda.Device.NewCache or Upload"
			if err := cuda.Available(); err != nil {
				reason = err.Error()
			}
			return nil, "", fmt.Errorf("compresskv: backend %q asked for, but the cache (%T) is in host memory (%s): %w", want, c, reason, ErrConfig)
		}
		return dc.Device().NewBackend(), "cuda: asked for, on " + dc.Device().Name(), nil
	}
	return nil, "", fmt.Errorf("compresskv: unknown backend %q (want auto, cpu or cuda): %w", want, ErrConfig)
}
