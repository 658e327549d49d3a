package randmodel

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// outputFrom builds an Output from logit vectors the way logits.cpp prints
// it: step s's token is the argmax (ties to the lower id) of steps[s] and
// its top 5 are the five largest (value descending, id ascending).
func outputFrom(ids []int, steps [][]float32) *Output {
	o := &Output{PromptIDs: slices.Clone(ids), LastLogits: slices.Clone(steps[0])}
	for _, l := range steps {
		idx := make([]int, len(l))
		for i := range idx {
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(a, b int) int {
			switch {
			case l[a] > l[b]:
				return -1
			case l[a] < l[b]:
				return 1
			}
			return a - b
		})
		st := Step{ID: idx[0]}
		for _, i := range idx[:5] {
			st.Top5 = append(st.Top5, Logit{ID: i, Value: l[i]})
		}
		o.Steps = append(o.Steps, st)
	}
	return o
}

// format prints o in the examples/logits format.
func format(o *Output) string {
	var b strings.Builder
	b.WriteString("prompt_ids")
	for _, id := range o.PromptIDs {
		fmt.Fprintf(&b, " %d", id)
	}
	b.WriteString("\nlast_logits")
	for _, v := range o.LastLogits {
		fmt.Fprintf(&b, " %.6g", v)
	}
	b.WriteByte('\n')
	for s, st := range o.Steps {
		fmt.Fprintf(&b, "step %d id %d top5", s, st.ID)
		for _, e := range st.Top5 {
			fmt.Fprintf(&b, " %d:%.6g", e.ID, e.Value)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// synthetic returns random step logits (vocabulary n, standard deviation
// about 1) with step 3's top two nearly tied (gap 0.001) and the others'
// top two at least 0.5 apart.
func synthetic(r *rand.Rand, n, steps int) [][]float32 {
	var out [][]float32
	for s := 0; s < steps; s++ {
		l := make([]float32, n)
		for i := range l {
			l[i] = float32(r.NormFloat64())
		}
		top := r.IntN(n)
		second := (top + 1 + r.IntN(n-1)) % n
		l[top] = 5
		l[second] = 4.5
		if s == 3 {
			l[second] = 4.999
		}
		out = append(out, l)
	}
	return out
}

func perturb(r *rand.Rand, steps [][]float32, amp float64) [][]float32 {
	out := make([][]float32, len(steps))
	for s, l := range steps {
		out[s] = slices.Clone(l)
		for i := range l {
			out[s][i] += float32(amp * (2*r.Float64() - 1))
		}
	}
	return out
}

func TestCompare(t *testing.T) {
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 2))
	const n, nsteps = 1000, 8
	ids := []int{1, 17, 42, 7}
	ref := synthetic(r, n, nsteps)
	g := &Golden{Model: "synthetic-f32", Output: *outputFrom(ids, ref)}
	tol := DefaultTolerance("f32")
	sd := stdDev(g.LastLogits)
	bound := tol.Logits * sd

	mustPass := func(name string, o *Output) Report {
		t.Helper()
		rep, err := Compare(g, o, tol)
		if err != nil {
			t.Fatalf("seed %d: %s: %v", seed, name, err)
		}
		return rep
	}
	mustFail := func(name string, o *Output) {
		t.Helper()
		if rep, err := Compare(g, o, tol); !errors.Is(err, ErrMismatch) {
			t.Fatalf("seed %d: %s passed (%v)", seed, name, rep)
		}
	}

	rep := mustPass("the golden itself", outputFrom(ids, ref))
	if rep.MaxDiff != 0 || rep.Agreed != nsteps || rep.TieStep != -1 {
		t.Errorf("self: %v", rep)
	}
	// Noise within the bound everywhere.
	rep = mustPass("noise 0.4 bound", outputFrom(ids, perturb(r, ref, 0.4*bound)))
	if rep.MaxDiffStd > tol.Logits || rep.MaxDiff == 0 {
		t.Errorf("noise: %v", rep)
	}
	// The printed text parses back to the same output and the same verdict.
	parsed, err := ParseOutput(strings.NewReader(format(outputFrom(ids, ref))))
	if err != nil {
		t.Fatal(err)
	}
	if rep := mustPass("parsed", parsed); rep.MaxDiffStd > 1e-5 {
		t.Errorf("%%.6g round trip: %v", rep)
	}

	// A near tie that a runner within the bound breaks the other way.
	flip := perturb(r, ref, 0)
	top := g.Steps[3].Top5[0].ID
	flip[3][top] -= float32(0.75 * bound) // the tie gap is 0.001, about half the bound
	rep = mustPass("near tie broken the other way", outputFrom(ids, flip))
	if rep.TieStep != 3 || rep.Agreed != 3 {
		t.Errorf("near tie: %v", rep)
	}

	// Wrong runners.
	mustFail("one last logit off by 1.5 bound", func() *Output {
		x := perturb(r, ref, 0)
		x[0][r.IntN(n)] += float32(1.5 * bound)
		return outputFrom(ids, x)
	}())
	mustFail("noise 3 bound", outputFrom(ids, perturb(r, ref, 3*bound)))
	mustFail("a NaN", func() *Output {
		x := perturb(r, ref, 0)
		x[0][r.IntN(n)] = float32(math.NaN())
		return outputFrom(ids, x)
	}())
	mustFail("prompt ids", outputFrom([]int{1, 17, 43, 7}, ref))
	mustFail("BOS missing", outputFrom(ids[1:], ref))
	mustFail("logits shifted by one token", func() *Output {
		x := perturb(r, ref, 0)
		for s := range x {
			x[s] = append(x[s][1:], x[s][0])
		}
		return outputFrom(ids, x)
	}())
	mustFail("short vocabulary", func() *Output {
		o := outputFrom(ids, ref)
		o.LastLogits = o.LastLogits[:n-1]
		return o
	}())
	mustFail("another token at a clear step", func() *Output {
		x := perturb(r, ref, 0)
		x[5][g.Steps[5].Top5[0].ID] -= 1 // the runner's step 5 differs by 1 (0.5 lead)
		return outputFrom(ids, x)
	}())
	mustFail("step top-5 values off", func() *Output {
		x := perturb(r, ref, 0)
		x[6][g.Steps[6].Top5[2].ID] += float32(3 * bound)
		return outputFrom(ids, x)
	}())
	mustFail("a wrong token in the top 5", func() *Output {
		o := outputFrom(ids, ref)
		o.Steps[2].Top5[1].ID = (o.Steps[2].Top5[1].ID + 1) % n
		return o
	}())
	mustFail("fewer steps", func() *Output {
		o := outputFrom(ids, ref)
		o.Steps = o.Steps[:nsteps-1]
		return o
	}())
	if _, err := Compare(g, outputFrom(ids, ref), Tolerance{}); !errors.Is(err, ErrMismatch) {
		t.Errorf("zero tolerance accepted: %v", err)
	}
}

// A runner that differs from llama.cpp the way a plausible bug does fails
// on the real goldens: here, the golden's own logits with the tokens'
// values rotated within each step by one position of the vocabulary.
func TestCompareGoldensAgainstWrongRunner(t *testing.T) {
	gs := goldens(t)
	for _, g := range gs[:min(3, len(gs))] {
		s, _ := Lookup(g.Model)
		tol := DefaultTolerance(s.Type)
		same := &Output{PromptIDs: g.PromptIDs, LastLogits: g.LastLogits, Steps: g.Steps}
		if rep, err := Compare(g, same, tol); err != nil || rep.Agreed != len(g.Steps) {
			t.Errorf("%s: the golden against itself: %v %v", g.Model, rep, err)
		}
		wrong := &Output{PromptIDs: g.PromptIDs, LastLogits: append(slices.Clone(g.LastLogits[1:]), g.LastLogits[0]), Steps: g.Steps}
		if _, err := Compare(g, wrong, tol); !errors.Is(err, ErrMismatch) {
			t.Errorf("%s: rotated logits passed: %v", g.Model, err)
		}
	}
}

func TestParseOutputErrors(t *testing.T) {
	good := "prompt_ids 1 2\nlast_logits 0.5 -1 2e-05\nstep 0 id 2 top5 2:2e-05 0:0.5\n"
	if o, err := ParseOutput(strings.NewReader(good)); err != nil || len(o.LastLogits) != 3 || o.Steps[0].Top5[1].Value != 0.5 {
		t.Fatalf("good output: %+v %v", o, err)
	}
	for _, bad := range []string{
		"",
		"prompt_ids 1 2\n",
		"last_logits 1 2\n",
		"prompt_ids 1 x\nlast_logits 1\n",
		"prompt_ids 1\nlast_logits 1 nan?\n",
		"prompt_ids 1\nlast_logits 1\nstep 1 id 0 top5 0:1\n",
		"prompt_ids 1\nlast_logits 1\nstep 0 id 0 top5 1:1\n",
		"prompt_ids 1\nlast_logits 1\nstep 0 id 0 top5 0=1\n",
		"prompt_ids 1\nlast_logits 1\nstep 0 id 0\n",
		"prompt_ids 1\nprompt_ids 1\nlast_logits 1\n",
		"prompt_ids 1\nlast_logits 1\nhello\n",
		"prompt_ids -1\nlast_logits 1\n",
	} {
		if _, err := ParseOutput(strings.NewReader(bad)); !errors.Is(err, ErrFormat) {
			t.Errorf("%q: %v, want ErrFormat", bad, err)
		}
	}
	if _, err := ParseGolden(strings.NewReader("# prompt \"unterminated\n" + good)); !errors.Is(err, ErrFormat) {
		t.Errorf("bad prompt: %v", err)
	}
	if _, err := ParseGolden(strings.NewReader(good)); !errors.Is(err, ErrFormat) {
		t.Errorf("no model line: %v", err)
	}
}

// Every golden is complete and not degenerate: 12 steps, logits over the
// whole vocabulary spread (standard deviation near 1), and steps whose top
// two are not all ties (the top two of 32000-50000 random logits are about
// 0.2 std apart on average).
func TestGoldensWellFormed(t *testing.T) {
	gs := goldens(t)
	seen := map[string]bool{}
	for _, g := range gs {
		s, err := Lookup(g.Model)
		if err != nil {
			t.Fatal(err)
		}
		seen[s.Family.Name] = true
		seen[s.Type] = true
		if len(g.Steps) != 12 || g.Commit == "" || len(g.PromptIDs) < 10 {
			t.Errorf("%s: %d steps, commit %q, %d prompt ids", g.Model, len(g.Steps), g.Commit, len(g.PromptIDs))
		}
		sd := stdDev(g.LastLogits)
		if sd < 0.5 || sd > 2 {
			t.Errorf("%s: std of the last logits %v", g.Model, sd)
		}
		clear := 0
		for _, st := range g.Steps {
			if float64(st.Top5[0].Value-st.Top5[1].Value) > 0.05*sd {
				clear++
			}
		}
		if clear < 6 {
			t.Errorf("%s: only %d of 12 steps lead by 0.05 std", g.Model, clear)
		}
	}
	for _, want := range append([]string{"llama2", "llama3", "qwen2", "qwen3"}, Types...) {
		if !seen[want] {
			t.Errorf("no golden for %s", want)
		}
	}
}

// Compare's use: parse a runner's output and hold it against a golden.
func ExampleCompare() {
	golden, _ := ParseGolden(strings.NewReader(`# model llama2-f32
prompt_ids 1 15043
last_logits 0.5 -1.25 2 0.25 -0.5 1.5
step 0 id 2 top5 2:2 5:1.5 0:0.5 3:0.25 4:-0.5
`))
	runner, _ := ParseOutput(strings.NewReader(`prompt_ids 1 15043
last_logits 0.5001 -1.25 2.0002 0.25 -0.5 1.5
step 0 id 2 top5 2:2.0002 5:1.5 0:0.5001 3:0.25 4:-0.5
`))
	rep, err := Compare(golden, runner, DefaultTolerance("f32"))
	fmt.Println(err)
	fmt.Printf("%.2g std, %d/%d steps\n", rep.MaxDiffStd, rep.Agreed, rep.Steps)
	// Output:
	// <nil>
	// 0.00018 std, 1/1 steps
}
