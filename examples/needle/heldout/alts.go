package main

import (
	"fmt"
	"slices"
	"sort"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/kvcache"
)

// alternatives are the variants of Ada-CompressKV measured beside it
// (docs/RESULTS.md); they are built here from the library's pieces and are
// not part of its API.
var alternatives = map[string]func(cfg compresskv.Config) (*compresskv.Policy, error){
	// SR heads per group: k = 2, 6, 8 give 1, 3, 4 per group of 4.
	"adackv-k2": func(cfg compresskv.Config) (*compresskv.Policy, error) {
		cfg.SRHeads = 2
		return compresskv.New(compresskv.AdaCompressKV, cfg)
	},
	"adackv-k6": func(cfg compresskv.Config) (*compresskv.Policy, error) {
		cfg.SRHeads = 6
		return compresskv.New(compresskv.AdaCompressKV, cfg)
	},
	"adackv-k8": func(cfg compresskv.Config) (*compresskv.Policy, error) {
		cfg.SRHeads = 8
		return compresskv.New(compresskv.AdaCompressKV, cfg)
	},
	// Ada-KV's floor ratio.
	"adackv-f0": func(cfg compresskv.Config) (*compresskv.Policy, error) {
		cfg.FloorRatio = -1
		return compresskv.New(compresskv.AdaCompressKV, cfg)
	},
	"adackv-f05": func(cfg compresskv.Config) (*compresskv.Policy, error) {
		cfg.FloorRatio = 0.5
		return compresskv.New(compresskv.AdaCompressKV, cfg)
	},
	// Uniform layer budgets instead of the error-aware ones.
	"adackv-uniform": func(cfg compresskv.Config) (*compresskv.Policy, error) {
		cfg = withDefaults(cfg)
		return compresskv.Compose("adackv-uniform", cfg,
			compresskv.GroupSRScorer{Profile: cfg.Profile, K: cfg.SRHeads, Kernel: cfg.Kernel, Pooling: cfg.Pooling},
			compresskv.AdaKVSelector{FloorRatio: cfg.FloorRatio}, compresskv.UniformAllocator{})
	},
	// A layer floor of the window, so that budgets of 32 and less follow
	// the layer weights too.
	"adackv-lfloor8": func(cfg compresskv.Config) (*compresskv.Policy, error) {
		cfg.LayerFloor = 8
		return compresskv.New(compresskv.AdaCompressKV, cfg)
	},
	"compresskv-lfloor8": func(cfg compresskv.Config) (*compresskv.Policy, error) {
		cfg.LayerFloor = 8
		return compresskv.New(compresskv.CompressKV, cfg)
	},
	// CompressKV's shared SR scores choose the positions; each KV head's
	// count comes from Ada-KV's rule over SnapKV's per-head attention mass.
	"sr-shared-ada": func(cfg compresskv.Config) (*compresskv.Policy, error) {
		cfg = withDefaults(cfg)
		sc := sharedSRWithMass{
			sr:   compresskv.SRScorer{Profile: cfg.Profile, K: cfg.SRHeads, Kernel: cfg.Kernel, Pooling: cfg.Pooling},
			mass: compresskv.SnapKVScorer{Kernel: cfg.Kernel, Pooling: cfg.Pooling},
		}
		alloc := compresskv.Allocator(compresskv.UniformAllocator{})
		if cfg.Profile.LayerWeights != nil {
			alloc = compresskv.ErrorAwareAllocator{Weights: cfg.Profile.LayerWeights}
		}
		return compresskv.Compose("sr-shared-ada", cfg, sc, sharedSRSelector{ada: compresskv.AdaKVSelector{FloorRatio: cfg.FloorRatio}}, alloc)
	},
}

func altNames() []string {
	var out []string
	for k := range alternatives {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// withDefaults fills the fields the Compose alternatives read.
func withDefaults(cfg compresskv.Config) compresskv.Config {
	if cfg.SRHeads == 0 {
		cfg.SRHeads = compresskv.DefaultSRHeads
	}
	if cfg.FloorRatio == 0 {
		cfg.FloorRatio = compresskv.DefaultFloorRatio
	}
	return cfg
}

// build returns the policy named name: a method or an alternative.
func build(name string, cfg compresskv.Config) (*compresskv.Policy, error) {
	if f, ok := alternatives[name]; ok {
		return f(cfg)
	}
	m, err := compresskv.ParseMethod(name)
	if err != nil {
		return nil, fmt.Errorf("%v, or one of the alternatives %v", err, altNames())
	}
	return compresskv.New(m, cfg)
}

// sharedSRWithMass returns G+1 rows: SnapKV's score of each KV head, then
// CompressKV's shared SR row.
type sharedSRWithMass struct {
	sr   compresskv.SRScorer
	mass compresskv.SnapKVScorer
}

func (s sharedSRWithMass) Name() string                      { return "sr-with-mass" }
func (s sharedSRWithMass) QueryRows(L, window int) int       { return window }
func (s sharedSRWithMass) Fit(sh kvcache.Shape, h int) error { return s.sr.Fit(sh, h) }
func (s sharedSRWithMass) Validate(b, w int) error {
	if err := s.sr.Validate(b, w); err != nil {
		return err
	}
	return s.mass.Validate(b, w)
}

func (s sharedSRWithMass) Score(in *compresskv.ScoreInput) ([][]float32, error) {
	mass, err := s.mass.Score(in)
	if err != nil {
		return nil, err
	}
	sr, err := s.sr.Score(in)
	if err != nil {
		return nil, err
	}
	return append(mass, sr[0]), nil
}

// sharedSRSelector gives each KV head Ada-KV's capacity from the per-head
// rows and keeps that many positions by the last, shared row.
type sharedSRSelector struct{ ada compresskv.AdaKVSelector }

func (sharedSRSelector) Name() string { return "shared-sr-ada" }

func (s sharedSRSelector) Select(b backend.Backend, scores [][]float32, kvHeads, prefix, c int) ([][]int, error) {
	if len(scores) != kvHeads+1 {
		return nil, fmt.Errorf("shared-sr-ada: %d score rows for %d KV heads, want %d", len(scores), kvHeads, kvHeads+1)
	}
	byMass, err := s.ada.Select(b, scores[:kvHeads], kvHeads, prefix, c)
	if err != nil {
		return nil, err
	}
	keep := make([][]int, kvHeads)
	for g := range keep {
		if keep[g], err = b.TopK(nil, slices.Clone(scores[kvHeads]), len(byMass[g])); err != nil {
			return nil, err
		}
	}
	return keep, nil
}
