package compresskv

import (
	"fmt"

	"github.com/compresskv/compresskv/alloc"
)

// BudgetInput is what an Allocator knows when it spreads the budget.
type BudgetInput struct {
	Layers    int // layers of the cache
	PromptLen int // rows per KV head of the layers to compress
	Budget    int // the policy's average budget per layer (Config.Budget), window included
	Window    int // the policy's observation window, kept by every layer
}

// Allocator spreads the policy's total budget, Layers x Budget, over layers.
type Allocator interface {
	// Name identifies the allocator.
	Name() string
	// Budgets returns the budget (tokens, window included) of each layer.
	Budgets(in BudgetInput) ([]int, error)
}

// UniformAllocator gives every layer the policy's budget.
type UniformAllocator struct{}

// Name implements Allocator.
func (UniformAllocator) Name() string { return "uniform" }

// Budgets implements Allocator.
func (UniformAllocator) Budgets(in BudgetInput) ([]int, error) {
	return alloc.Uniform(in.Layers, in.Budget)
}

// PyramidAllocator gives budgets that fall linearly from the first layer to
// the last (PyramidKV, docs/DESIGN.md ("Baselines")).
type PyramidAllocator struct {
	Beta int // ratio of the average to the smallest selectable budget
}

// Name implements Allocator.
func (PyramidAllocator) Name() string { return "pyramid" }

// Validate implements Validator.
func (a PyramidAllocator) Validate(_, _ int) error {
	if a.Beta < 1 {
		return fmt.Errorf("pyramid: beta %d must be positive: %w", a.Beta, ErrConfig)
	}
	return nil
}

// Budgets implements Allocator.
func (a PyramidAllocator) Budgets(in BudgetInput) ([]int, error) {
	return alloc.Pyramid(in.Layers, in.Budget, in.Window, in.PromptLen, a.Beta)
}

// ErrorAwareAllocator spreads Layers x Budget tokens in proportion to
// measured layer weights, between Floor and Cap per layer (docs/DESIGN.md
// ("Error-aware layer budgets")).
type ErrorAwareAllocator struct {
	Weights    []float64 // per-layer weights (normalised eviction errors)
	Floor, Cap int       // bounds of each layer's budget; 0: min(32, Budget) and 3 x Budget
}

// Name implements Allocator.
func (ErrorAwareAllocator) Name() string { return "error-aware" }

func (a ErrorAwareAllocator) bounds(budget int) (floor, cap int) {
	floor, cap = a.Floor, a.Cap
	if floor == 0 {
		floor = min(DefaultLayerFloor, budget)
	}
	if cap == 0 {
		cap = DefaultCapFactor * budget
	}
	return floor, cap
}

// Validate implements Validator: the floor lies between the window and the
// budget, the cap at or above the budget.
func (a ErrorAwareAllocator) Validate(budget, window int) error {
	floor, cap := a.bounds(budget)
	if floor < window || floor > budget {
		return fmt.Errorf("error-aware: layer floor %d must lie between the window %d and the budget %d: %w", floor, window, budget, ErrConfig)
	}
	if cap < budget {
		return fmt.Errorf("error-aware: layer cap %d is below the budget %d: %w", cap, budget, ErrConfig)
	}
	if len(a.Weights) == 0 {
		return fmt.Errorf("error-aware: no layer weights: %w", ErrConfig)
	}
	return nil
}

// Budgets implements Allocator.
func (a ErrorAwareAllocator) Budgets(in BudgetInput) ([]int, error) {
	if len(a.Weights) != in.Layers {
		return nil, fmt.Errorf("error-aware: %d layer weights for %d layers", len(a.Weights), in.Layers)
	}
	floor, cap := a.bounds(in.Budget)
	return alloc.ErrorAware(a.Weights, in.Budget, floor, cap)
}
