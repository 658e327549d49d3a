package compresskv

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/compresskv/compresskv/backend"
)

// Method names a KV-cache compression method.
type Method string

// The methods the library implements (docs/DESIGN.md).
const (
	Full         Method = "full"         // no eviction
	StreamingLLM Method = "streamingllm" // first Sink tokens + the most recent ones
	H2O          Method = "h2o"          // accumulated attention of all prompt queries, per KV head
	SnapKV       Method = "snapkv"       // window attention of each KV head's own query heads
	PyramidKV    Method = "pyramidkv"    // SnapKV selection, budgets falling linearly with depth
	AdaKV        Method = "adakv"        // SnapKV scores, head-wise budgets from one layer-wide top-k
	CompressKV   Method = "compresskv"   // semantic retrieval heads + error-aware layer budgets
)

// Methods lists every method, baselines first.
var Methods = []Method{Full, StreamingLLM, H2O, SnapKV, PyramidKV, AdaKV, CompressKV}

// ParseMethod returns the method named s (case-insensitive; "streaming",
// "ada-kv" and "snap" style aliases are accepted).
func ParseMethod(s string) (Method, error) {
	switch strings.ToLower(strings.ReplaceAll(s, "-", "")) {
	case "full", "none":
		return Full, nil
	case "streamingllm", "streaming":
		return StreamingLLM, nil
	case "h2o":
		return H2O, nil
	case "snapkv", "snap":
		return SnapKV, nil
	case "pyramidkv", "pyramid":
		return PyramidKV, nil
	case "adakv", "ada":
		return AdaKV, nil
	case "compresskv":
		return CompressKV, nil
	}
	return "", fmt.Errorf("compresskv: unknown method %q (want one of %v)", s, Methods)
}

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

// ErrConfig is wrapped by every configuration error.
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
	// CompressKV scores with. Default: the profile's own count
	// (Profile.SRHeadsPerLayer) if it has one, 4 otherwise. A count the
	// profile's rankings cannot give (a layer ranks fewer heads) is an
	// error.
	SRHeads int
	// Sink is StreamingLLM's count of first tokens always kept. Default 4;
	// negative means none.
	Sink int
	// Beta is PyramidKV's ratio between the average and the smallest
	// selectable budget. Default 20.
	Beta int
	// FloorRatio is Ada-KV's share f of each head's budget that is
	// guaranteed. Default 0.2; negative means 0.
	FloorRatio float64
	// LayerFloor and LayerCap bound CompressKV's error-aware layer budgets.
	// Defaults: min(32, Budget) and 3*Budget.
	LayerFloor, LayerCap int
	// Profile holds the model's semantic retrieval heads and layer weights;
	// CompressKV requires its head ranking and uses its layer weights when
	// present (uniform budgets otherwise).
	Profile *Profile
	// Backend runs the compute; nil chooses per call with SelectBackend:
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

// validate checks a defaulted configuration for method m.
func (cfg Config) validate(m Method) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("compresskv: %s: %s: %w", m, fmt.Sprintf(format, a...), ErrConfig)
	}
	if m == Full {
		return nil
	}
	if cfg.Window < 1 {
		return bad("window %d must be at least 1", cfg.Window)
	}
	if cfg.Budget < cfg.Window {
		return bad("budget %d is below the observation window %d (the window is always kept)", cfg.Budget, cfg.Window)
	}
	if cfg.Kernel < 1 || cfg.Kernel%2 == 0 {
		return bad("pooling kernel %d must be odd and positive", cfg.Kernel)
	}
	if cfg.Pooling != backend.AvgPool && cfg.Pooling != backend.MaxPool {
		return bad("unknown pooling %v (want avg or max)", cfg.Pooling)
	}
	if cfg.SRHeads < 1 {
		return bad("SR heads per layer %d must be positive", cfg.SRHeads)
	}
	if cfg.Beta < 1 {
		return bad("PyramidKV beta %d must be positive", cfg.Beta)
	}
	if math.IsNaN(cfg.FloorRatio) || cfg.FloorRatio > 1 {
		return bad("Ada-KV floor ratio %v must lie in [0, 1]", cfg.FloorRatio)
	}
	if m == CompressKV {
		if cfg.LayerFloor < cfg.Window || cfg.LayerFloor > cfg.Budget {
			return bad("layer floor %d must lie between the window %d and the budget %d", cfg.LayerFloor, cfg.Window, cfg.Budget)
		}
		if cfg.LayerCap < cfg.Budget {
			return bad("layer cap %d is below the budget %d", cfg.LayerCap, cfg.Budget)
		}
		if cfg.Profile == nil {
			return bad("a profile with the model's semantic retrieval heads is required")
		}
		if err := cfg.Profile.Validate(); err != nil {
			return bad("%v", err)
		}
		if len(cfg.Profile.HeadRanking) == 0 {
			return bad("the profile has no head ranking")
		}
		if err := cfg.Profile.checkSRHeads(cfg.SRHeads); err != nil {
			return bad("%v", err)
		}
	}
	return nil
}
