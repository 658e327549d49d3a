package compresskv

import (
	"errors"
	"fmt"

	"github.com/compresskv/compresskv/backend"
)

// Reference defaults (docs/DESIGN.md).
const (
	DefaultWindow     = 8   // observation window W
	DefaultKernel     = 5   // pooling kernel K
	DefaultSRHeads    = 4   // semantic retrieval heads per layer k
	DefaultSink       = 4   // StreamingLLM sink tokens S
	DefaultBeta       = 20  // PyramidKV beta
	DefaultFloorRatio = 0.2 // Ada-KV floor ratio f
	DefaultLayerFloor = 32  // error-aware allocation floor per layer
	DefaultCapFactor  = 3   // error-aware allocation cap: DefaultCapFactor * Budget
)

// ErrConfig is wrapped by every error about a policy's configuration or
// its use: a bad Config, an unknown method, a profile that does not fit the
// model, a nil policy, cache or plan.
var ErrConfig = errors.New("invalid configuration")

// Config sets the knobs of a policy. A zero field takes the reference default
// named beside it; only Budget is required (except for Full).
type Config struct {
	// Budget is the average number of tokens kept per layer, the observation
	// window included (per KV head for Ada-KV). It must be at least Window.
	Budget int
	// Window is the observation window W: the last W prompt tokens, whose
	// queries score the prefix and which are always kept. Default 8.
	Window int
	// Kernel is the odd pooling kernel K along positions (1 disables
	// pooling). Default 5.
	Kernel int
	// Pooling is the kind of pooling: backend.AvgPool (default) or MaxPool.
	Pooling backend.Pooling
	// SRHeads is the number k of semantic retrieval heads per layer that
	// CompressKV scores with (Ada-CompressKV: ceil(k/G) per group of each
	// KV head's H/G query heads). Default: the profile's own count
	// (Profile.SRHeadsPerLayer) if it has one, 4 otherwise. A count the
	// profile's rankings cannot give (a layer ranks fewer heads) is an
	// error.
	SRHeads int
	// Sink is StreamingLLM's count of first tokens always kept, and the
	// first positions expected attention leaves out of its statistics and
	// always keeps. Default 4; negative means none.
	Sink int
	// Beta is PyramidKV's ratio between the average and the smallest
	// selectable budget. Default 20.
	Beta int
	// FloorRatio is Ada-KV's (and Ada-CompressKV's) share f of each head's
	// budget that is guaranteed. Default 0.2; negative means 0.
	FloorRatio float64
	// LayerFloor and LayerCap bound the error-aware layer budgets of
	// CompressKV and Ada-CompressKV.
	// Defaults: min(32, Budget) and 3*Budget.
	LayerFloor, LayerCap int
	// Rotary is the model's rotary position embedding; the expected-attention
	// methods require it (they undo the queries' rotation and turn their
	// statistics to the positions to come), the others ignore it.
	Rotary *Rotary
	// Profile holds the model's semantic retrieval heads and layer weights;
	// CompressKV and Ada-CompressKV require its head ranking and use its
	// layer weights when present (uniform budgets otherwise).
	Profile *Profile
	// Backend runs the compute; nil chooses per call with ChooseBackend:
	// the GPU for a cache in device memory, the CPU otherwise (the reason
	// is in Result.BackendReason).
	Backend backend.Backend
}

// withDefaults returns cfg with zero fields replaced by defaults.
func (cfg Config) withDefaults() Config {
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Kernel == 0 {
		cfg.Kernel = DefaultKernel
	}
	if cfg.SRHeads == 0 {
		cfg.SRHeads = DefaultSRHeads
		if cfg.Profile != nil && cfg.Profile.SRHeadsPerLayer > 0 {
			cfg.SRHeads = cfg.Profile.SRHeadsPerLayer
		}
	}
	switch {
	case cfg.Sink == 0:
		cfg.Sink = DefaultSink
	case cfg.Sink < 0:
		cfg.Sink = 0
	}
	if cfg.Beta == 0 {
		cfg.Beta = DefaultBeta
	}
	switch {
	case cfg.FloorRatio == 0:
		cfg.FloorRatio = DefaultFloorRatio
	case cfg.FloorRatio < 0:
		cfg.FloorRatio = 0
	}
	if cfg.LayerFloor == 0 {
		cfg.LayerFloor = min(DefaultLayerFloor, cfg.Budget)
	}
	if cfg.LayerCap == 0 {
		cfg.LayerCap = DefaultCapFactor * cfg.Budget
	}
	return cfg
}

// validate checks the settings every method shares, for the policy its
// messages name label (Full needs none); each piece then checks its own
// (Validator).
func (cfg Config) validate(label string, full bool) error {
	if full {
		return nil
	}
	if cfg.Window < 1 {
		return fmt.Errorf("compresskv: %s: window %d must be at least 1: %w", label, cfg.Window, ErrConfig)
	}
	if cfg.Budget < cfg.Window {
		return fmt.Errorf("compresskv: %s: budget %d is below the observation window %d (the window is always kept): %w", label, cfg.Budget, cfg.Window, ErrConfig)
	}
	return nil
}
