package main

import (
	"context"
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
	"adackv-f1": func(cfg compresskv.Config) (*compresskv.Policy, error) {
		cfg.FloorRatio = 1 // every KV head keeps c: no head-wise budgets
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

func (s sharedSRWithMass) Score(ctx context.Context, in *compresskv.ScoreInput) ([][]float32, error) {
	mass, err := s.mass.Score(ctx, in)
	if err != nil {
		return nil, err
	}
	sr, err := s.sr.Score(ctx, in)
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

// fallbackScorer is GroupSRScorer, except that a group whose best SR score
// is below Ratio times the layer's best (a group without retrieval heads),
// and every group of the layers listed in Shared, is scored with the
// layer's shared SR row, as CompressKV scores every head.
type fallbackScorer struct {
	group  compresskv.GroupSRScorer
	Ratio  float64
	Shared []int
}

func (s fallbackScorer) Name() string                      { return "group-sr-fallback" }
func (s fallbackScorer) QueryRows(L, window int) int       { return window }
func (s fallbackScorer) Fit(sh kvcache.Shape, h int) error { return s.group.Fit(sh, h) }
func (s fallbackScorer) Validate(b, w int) error {
	if s.group.Profile != nil && s.group.Profile.HeadScores == nil {
		return fmt.Errorf("group-sr-fallback: the profile has no SR scores: %w", compresskv.ErrConfig)
	}
	return s.group.Validate(b, w)
}

func (s fallbackScorer) Score(ctx context.Context, in *compresskv.ScoreInput) ([][]float32, error) {
	rows, err := s.group.Score(ctx, in)
	if err != nil {
		return nil, err
	}
	scores := s.group.Profile.HeadScores[in.Layer]
	per := in.QHeads / len(rows)
	var shared []float32
	for g := range rows {
		if !slices.Contains(s.Shared, in.Layer) && slices.Max(scores[g*per:(g+1)*per]) >= s.Ratio*slices.Max(scores) {
			continue
		}
		if shared == nil {
			sr := compresskv.SRScorer{Profile: s.group.Profile, K: s.group.K, Kernel: s.group.Kernel, Pooling: s.group.Pooling}
			r, err := sr.Score(ctx, in)
			if err != nil {
				return nil, err
			}
			shared = r[0]
		}
		rows[g] = shared
	}
	return rows, nil
}

func init() {
	fallback := func(name string, ratio float64, shared ...int) func(compresskv.Config) (*compresskv.Policy, error) {
		return func(cfg compresskv.Config) (*compresskv.Policy, error) {
			cfg = withDefaults(cfg)
			sc := fallbackScorer{group: compresskv.GroupSRScorer{Profile: cfg.Profile, K: cfg.SRHeads, Kernel: cfg.Kernel, Pooling: cfg.Pooling}, Ratio: ratio, Shared: shared}
			alloc := compresskv.Allocator(compresskv.UniformAllocator{})
			if cfg.Profile.LayerWeights != nil {
				alloc = compresskv.ErrorAwareAllocator{Weights: cfg.Profile.LayerWeights}
			}
			return compresskv.Compose(name, cfg, sc, compresskv.AdaKVSelector{FloorRatio: cfg.FloorRatio}, alloc)
		}
	}
	alternatives["adackv-fallback"] = fallback("adackv-fallback", 0.1)
	// Attribution: CompressKV's shared scores in one layer, Ada-CompressKV's
	// in the other (identical rows give both KV heads the same set).
	alternatives["adackv-shared-l0"] = fallback("adackv-shared-l0", 0, 0)
	alternatives["adackv-shared-l1"] = fallback("adackv-shared-l1", 0, 1)
	// The rule the attribution suggests, read from the profile: one shared
	// set in every layer whose first k SR heads lie in more than one group.
	alternatives["adackv-spread"] = func(cfg compresskv.Config) (*compresskv.Policy, error) {
		cfg = withDefaults(cfg)
		shared, err := spreadLayers(cfg.Profile, cfg.SRHeads)
		if err != nil {
			return nil, err
		}
		return fallback("adackv-spread", 0, shared...)(cfg)
	}
}

// spreadLayers returns the layers whose first k SR heads read more than one
// KV head.
func spreadLayers(p *compresskv.Profile, k int) ([]int, error) {
	if p == nil {
		return nil, fmt.Errorf("adackv-spread needs a profile")
	}
	per := p.Model.QueryHeads / p.Model.KVHeads
	var out []int
	for l := range p.HeadRanking {
		heads, err := p.SRHeads(l, k)
		if err != nil {
			return nil, err
		}
		for _, h := range heads {
			if h/per != heads[0]/per {
				out = append(out, l)
				break
			}
		}
	}
	return out, nil
}
