package llama

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/compresskv/calibrate"
)

// repoModel loads the project's byte-level model from testdata.
func repoModel(t *testing.T) *Model {
	t.Helper()
	m, err := Load(filepath.Join("..", "..", DefaultModel))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func repoHaystack(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "haystack", "calib.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

// TestCalibrationRun checks the adapter's run on the project's model: the
// attention rows are distributions over every position run; a shadow that
// keeps everything reproduces the full outputs bit for bit; a real shadow
// eviction keeps its budget and changes them.
func TestCalibrationRun(t *testing.T) {
	m := repoModel(t)
	cal := &Calibration{Model: m, Name: "retrieval"}
	pt := ProbeTokenizer{ByteTokenizer()}
	needles, _ := calibrate.Needles(calibrate.DefaultNeedleTemplates, []string{"acorn"}, 1, 5, 1)
	p, err := calibrate.BuildNeedle(pt, repoHaystack(t), 0, 200, 0.5, needles[0])
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, keepAll := range []bool{true, false} {
		cr, err := cal.Start(ctx, p.Prompt)
		if err != nil {
			t.Fatal(err)
		}
		attn, err := cr.Attention(nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(attn) != m.Layers || len(attn[0]) != m.Heads {
			t.Fatalf("attention of %d layers x %d heads", len(attn), len(attn[0]))
		}
		for l := range attn {
			for h, row := range attn[l] {
				sum := 0.0
				for _, w := range row {
					sum += float64(w)
				}
				if len(row) != len(p.Prompt) || sum < 0.999 || sum > 1.001 {
					t.Fatalf("layer %d head %d: %d weights summing to %v, want %d summing to 1", l, h, len(row), sum, len(p.Prompt))
				}
			}
		}
		if _, _, err := cr.Outputs(); err == nil {
			t.Fatal("outputs before any shadow step")
		}
		cache, q, err := cr.Prompt(8)
		if err != nil {
			t.Fatal(err)
		}
		keep := make([][][]int, m.Layers)
		if !keepAll {
			prof := &compresskv.Profile{Version: compresskv.ProfileVersion, Model: cal.Info(), HeadRanking: [][]int{{0, 1, 2, 3, 4, 5, 6, 7}, {1, 2, 0, 3, 4, 5, 6, 7}}}
			pol, err := compresskv.New(compresskv.CompressKV, compresskv.Config{Budget: 32, Profile: prof})
			if err != nil {
				t.Fatal(err)
			}
			plan, err := pol.Plan(context.Background(), cache, q, m.Heads)
			if err != nil {
				t.Fatal(err)
			}
			keep = plan.Keep
		}
		if err := cr.Shadow(keep); err != nil {
			t.Fatal(err)
		}
		if cache.Len(0, 0) != len(p.Prompt) {
			t.Fatalf("the shadow eviction changed the full cache: %d rows", cache.Len(0, 0))
		}
		differ := false
		for step := 0; step < 3; step++ {
			if err := cr.Decode(ctx, cr.Next()); err != nil {
				t.Fatal(err)
			}
			full, shadow, err := cr.Outputs()
			if err != nil {
				t.Fatal(err)
			}
			for l := range full {
				if len(full[l]) != m.Dim || len(shadow[l]) != m.Dim {
					t.Fatalf("outputs of %d and %d values, want %d", len(full[l]), len(shadow[l]), m.Dim)
				}
				same := slices.Equal(full[l], shadow[l])
				if keepAll && !same {
					t.Fatalf("step %d layer %d: a shadow keeping every row differs from the full output", step, l)
				}
				differ = differ || !same
			}
		}
		if !keepAll && !differ {
			t.Fatal("a shadow of 32 rows out of 200 gave the full outputs exactly")
		}
		r := cr.(*run)
		if !keepAll && r.shadow.Len(1, 0) != 32+3 {
			t.Fatalf("shadow holds %d rows, want 32 kept + 3 decoded", r.shadow.Len(1, 0))
		}
		if err := cr.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCalibrateRepoModel: one library call calibrates the project's model on
// a small grid; every needle is answered, and layer 1 ranks first head 1 and
// then the rest of the four heads whose masking removes retrieval
// (docs/RESULTS.md, masking ablation: heads 1.1 1.2 1.0 1.3).
func TestCalibrateRepoModel(t *testing.T) {
	if testing.Short() {
		t.Skip("a few seconds of model runs")
	}
	m := repoModel(t)
	pt := ProbeTokenizer{ByteTokenizer()}
	hay := repoHaystack(t)
	probes, err := calibrate.NeedleProbes(pt, calibrate.NeedleGrid{Haystack: hay, Lengths: []int{256}, Depths: 3, Keys: []string{"acorn", "birch", "cedar"}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	texts, err := calibrate.TextPrompts(pt, hay, []int{128}, 2)
	if err != nil {
		t.Fatal(err)
	}
	prof, rep, err := calibrate.Profile(context.Background(), &Calibration{Model: m, Name: "retrieval"}, calibrate.Config{
		Probes: probes, Tokenizer: pt, ErrSets: []calibrate.ErrSet{{Name: "text", Prompts: texts, Steps: 4}},
		Shadow: compresskv.Config{Kernel: DefaultKernel},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Answered != len(probes) {
		t.Fatalf("%d of %d needles answered", rep.Answered, len(probes))
	}
	top := slices.Clone(prof.HeadRanking[1][:4])
	slices.Sort(top)
	if prof.HeadRanking[1][0] != 1 || !slices.Equal(top, []int{0, 1, 2, 3}) {
		t.Fatalf("layer 1 ranks %v, want head 1 first and heads 0-3 on top", prof.HeadRanking[1])
	}
	t.Logf("ranking %v, weights %v", prof.HeadRanking, prof.LayerWeights)
}

// TestCalibrateStories: stories260K answers some character-name probes and
// gets a profile; needle probes, placed in its subword tokens, it does not
// answer, and the error says so.
func TestCalibrateStories(t *testing.T) {
	m, tok := loadStories(t)
	pt := ProbeTokenizer{tok}
	cal := &Calibration{Model: m, Name: "stories260K"}
	var probes []calibrate.Probe
	for _, name := range []string{"Tom", "Sam", "Mia", "Sara"} {
		p, err := calibrate.NewProbe(pt, "Once upon a time, there was a little girl named "+name+". "+name+
			" liked to play outside. She liked to play with her toys. She had a big red ball. She went to the park with her mom. One day,", name)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(tok.Decode(p.Prompt[p.AnswerStart:p.AnswerEnd])); got != name {
			t.Fatalf("span holds %q, want %q", got, name)
		}
		probes = append(probes, p)
	}
	prof, rep, err := calibrate.Profile(context.Background(), cal, calibrate.Config{Probes: probes, Tokenizer: pt, MinAnswered: 1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Answered == 0 {
		t.Fatal("no probe answered")
	}
	if err := prof.Validate(); err != nil || len(prof.LayerWeights) != m.Layers {
		t.Fatalf("profile %v, %d weights", err, len(prof.LayerWeights))
	}
	t.Logf("%d of %d answered; ranking %v; weights %v", rep.Answered, rep.Probes, prof.HeadRanking, prof.LayerWeights)

	needles, err := calibrate.NeedleProbes(pt, calibrate.NeedleGrid{Haystack: strings.Repeat("The sun was warm. Tom had a red ball. ", 30),
		Lengths: []int{128}, Depths: 2, Keys: []string{"acorn"}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range needles {
		if len(p.Prompt) > 128 || len(p.Prompt) < 120 {
			t.Fatalf("needle prompt of %d subword tokens for a length of 128", len(p.Prompt))
		}
		if got := tok.Decode(p.Prompt[p.AnswerStart:p.AnswerEnd]); !strings.Contains(got, p.Answer) {
			t.Fatalf("span holds %q, want %q", got, p.Answer)
		}
	}
	_, _, err = calibrate.Profile(context.Background(), cal, calibrate.Config{Probes: needles, Tokenizer: pt})
	if !errors.Is(err, calibrate.ErrTooFewProbes) || !strings.Contains(err.Error(), "0 of 2 probes answered") {
		t.Fatalf("error %v, want 0 of 2 answered", err)
	}
}
