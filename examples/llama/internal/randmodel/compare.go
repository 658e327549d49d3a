package randmodel

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// ErrMismatch is wrapped by Compare's error when a runner's output is
// outside the tolerance of a golden.
var ErrMismatch = errors.New("randmodel: output differs from llama.cpp")

// Tolerance is how far a runner's logits may be from llama.cpp's, in units
// of the standard deviation (population, over the whole vocabulary) of the
// golden's last logits.
type Tolerance struct {
	Logits float64
}

// DefaultTolerance returns the tolerance for models of a weight type (f32,
// f16, bf16, q8_0, q4_0, q4_k_m; 0 for another). f32's is the project's
// requirement, 2e-3. The others are about twice the largest difference
// measured between llama.cpp and a reference that rounds as llama.cpp does
// (F16 KV cache, Q rounded to F16 before Q.K, softmax output to F16 before
// P.V, activations converted to the weights' vec_dot_type) but sums in
// float64 or in float32 in another order: over four architectures such a
// reference lands up to 1.7e-3 std away on f32, 3.7e-3 on f16, 2.1e-2 on
// bf16, 6.8e-2 on q8_0, 6.0e-2 on q4_0 and 8.6e-2 on q4_k_m
// (tools/ggufgold/README.md). Rounding activations to F16 or BF16, or
// quantizing them to Q8 blocks, makes a difference of 1e-7 in a sum flip a
// rounding now and then, and the flips grow through the layers.
func DefaultTolerance(weightType string) Tolerance {
	switch weightType {
	case "f32":
		return Tolerance{Logits: 2e-3}
	case "f16":
		return Tolerance{Logits: 1e-2}
	case "bf16":
		return Tolerance{Logits: 4e-2}
	case "q8_0":
		return Tolerance{Logits: 0.15}
	case "q4_0":
		return Tolerance{Logits: 0.15}
	case "q4_k_m":
		return Tolerance{Logits: 0.2}
	}
	return Tolerance{}
}

// Report is what Compare measured.
type Report struct {
	// Std is the standard deviation of the golden's last logits; Bound is
	// the tolerance in logit units (Tolerance.Logits * Std).
	Std, Bound float64
	// MaxDiff is the largest |runner - golden| over the last logits, at
	// token WorstID; MaxDiffStd is MaxDiff / Std.
	MaxDiff, MaxDiffStd float64
	WorstID             int
	// StepMaxDiff is the largest difference over the steps' top-5 logits
	// that were compared, in logit units.
	StepMaxDiff float64
	// Steps is the number of golden steps; Agreed how many the runner chose
	// the same token for before the sequences parted (or all of them).
	Steps, Agreed int
	// TieStep is the step at which the runner chose another token than
	// llama.cpp because llama.cpp's top two were nearly tied (their gap at
	// most 2*Bound), after which the steps are not compared; -1 if none.
	TieStep int
	// TieGap is the golden's top-two gap at TieStep, in logit units.
	TieGap float64
}

// String summarises the report on one line.
func (r Report) String() string {
	s := fmt.Sprintf("max |diff| %.3g = %.3g std (bound %.3g std), greedy %d/%d",
		r.MaxDiff, r.MaxDiffStd, r.Bound/r.Std, r.Agreed, r.Steps)
	if r.TieStep >= 0 {
		s += fmt.Sprintf(", parted at step %d on a near tie (gap %.3g std)", r.TieStep, r.TieGap/r.Std)
	}
	return s
}

// Compare checks a runner's output against a golden:
//   - the prompt ids are equal;
//   - every last logit is within Bound = tol.Logits * std(golden last
//     logits) of llama.cpp's (a NaN or a missing entry fails);
//   - at each step, while the tokens chosen so far agree: the runner's
//     top-5 values are within Bound of the golden's, position by position
//     (the k-th largest of two vectors within Bound of each other are
//     within Bound); a token in both top-5 lists has values within Bound; a
//     token in only one list has a value at most the other list's fifth
//     plus Bound; and the runner chooses the same token unless the golden's
//     top two are nearly tied, gap <= 2*Bound (two values each within Bound
//     of the golden's can swap order only then), after which the sequences
//     part and the remaining steps are not compared. The runner must print
//     as many steps as the golden.
//
// The error wraps ErrMismatch and says what differs first; the Report holds
// what was measured up to there.
func Compare(g *Golden, got *Output, tol Tolerance) (Report, error) {
	rep := Report{TieStep: -1, Steps: len(g.Steps), WorstID: -1}
	fail := func(format string, a ...any) (Report, error) {
		return rep, fmt.Errorf("%w: %s: %s", ErrMismatch, g.Model, fmt.Sprintf(format, a...))
	}
	if !slices.Equal(g.PromptIDs, got.PromptIDs) {
		i := 0
		for i < len(g.PromptIDs) && i < len(got.PromptIDs) && g.PromptIDs[i] == got.PromptIDs[i] {
			i++
		}
		return fail("prompt ids differ at position %d: runner %v, llama.cpp %v", i, got.PromptIDs, g.PromptIDs)
	}
	if len(got.LastLogits) != len(g.LastLogits) {
		return fail("runner printed %d last logits, llama.cpp %d", len(got.LastLogits), len(g.LastLogits))
	}
	if tol.Logits <= 0 || math.IsNaN(tol.Logits) {
		return fail("tolerance %v is not positive", tol.Logits)
	}
	rep.Std = stdDev(g.LastLogits)
	rep.Bound = tol.Logits * rep.Std
	for i, v := range got.LastLogits {
		d := math.Abs(float64(v) - float64(g.LastLogits[i]))
		if math.IsNaN(d) {
			rep.MaxDiff, rep.WorstID = math.NaN(), i
			break
		}
		if d > rep.MaxDiff || rep.WorstID < 0 {
			rep.MaxDiff, rep.WorstID = d, i
		}
	}
	rep.MaxDiffStd = rep.MaxDiff / rep.Std
	if !(rep.MaxDiff <= rep.Bound) {
		return fail("last logit of token %d: runner %g, llama.cpp %g: |diff| %.3g std > %.3g std",
			rep.WorstID, got.LastLogits[rep.WorstID], g.LastLogits[rep.WorstID], rep.MaxDiffStd, tol.Logits)
	}
	if len(got.Steps) != len(g.Steps) {
		return fail("runner printed %d steps, llama.cpp %d", len(got.Steps), len(g.Steps))
	}
	for s := range g.Steps {
		ref, run := g.Steps[s], got.Steps[s]
		if err := rep.checkTop5(s, ref.Top5, run.Top5); err != nil {
			return fail("%v", err)
		}
		if run.ID == ref.ID {
			rep.Agreed++
			continue
		}
		if len(ref.Top5) < 2 {
			return fail("step %d: runner chose %d, llama.cpp %d", s, run.ID, ref.ID)
		}
		gap := float64(ref.Top5[0].Value) - float64(ref.Top5[1].Value)
		if gap > 2*rep.Bound {
			return fail("step %d: runner chose %d, llama.cpp %d whose lead over the next is %.3g std > 2 x %.3g std",
				s, run.ID, ref.ID, gap/rep.Std, tol.Logits)
		}
		rep.TieStep, rep.TieGap = s, gap
		break
	}
	return rep, nil
}

// checkTop5 compares one step's top-5 lists within rep.Bound.
func (rep *Report) checkTop5(s int, ref, run []Logit) error {
	if len(run) != len(ref) {
		return fmt.Errorf("step %d: runner printed %d top entries, llama.cpp %d", s, len(run), len(ref))
	}
	b := rep.Bound
	for i := range ref {
		d := math.Abs(float64(run[i].Value) - float64(ref[i].Value))
		if !(d <= b) {
			return fmt.Errorf("step %d: top-5 value %d: runner %g, llama.cpp %g: |diff| %.3g std > bound", s, i, run[i].Value, ref[i].Value, d/rep.Std)
		}
		rep.StepMaxDiff = max(rep.StepMaxDiff, d)
	}
	// A token in one list only must be close to the other list's smallest.
	check := func(a, other []Logit, who string) error {
		last := float64(other[len(other)-1].Value)
		for _, e := range a {
			j := slices.IndexFunc(other, func(o Logit) bool { return o.ID == e.ID })
			if j >= 0 {
				d := math.Abs(float64(e.Value) - float64(other[j].Value))
				if !(d <= b) {
					return fmt.Errorf("step %d: token %d: runner and llama.cpp differ by %.3g std > bound", s, e.ID, d/rep.Std)
				}
				rep.StepMaxDiff = max(rep.StepMaxDiff, d)
				continue
			}
			if float64(e.Value) > last+b {
				return fmt.Errorf("step %d: token %d (%g) is in the %s top 5 only, above the other's fifth (%g) by more than the bound",
					s, e.ID, e.Value, who, last)
			}
		}
		return nil
	}
	if err := check(run, ref, "runner's"); err != nil {
		return err
	}
	return check(ref, run, "llama.cpp's")
}

// stdDev returns the population standard deviation of x.
func stdDev(x []float32) float64 {
	if len(x) == 0 {
		return 0
	}
	var m float64
	for _, v := range x {
		m += float64(v)
	}
	m /= float64(len(x))
	var s float64
	for _, v := range x {
		d := float64(v) - m
		s += d * d
	}
	return math.Sqrt(s / float64(len(x)))
}
