package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/compresskv/calibrate"
	"github.com/compresskv/compresskv/examples/internal/cli"
	"github.com/compresskv/compresskv/examples/internal/tinymodel"
)

var stories = filepath.Join("..", "..", "..", "shared", "models", "stories260K")

func TestDefaults(t *testing.T) {
	o, err := parse(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.out != filepath.Join("out", "retrieval.profile.json") {
		t.Fatalf("default output %q: it must stay under out/, away from the committed profile", o.out)
	}
	if o.kernel != 0 || o.probes != "needle" || o.chat != "auto" {
		t.Fatalf("defaults %+v (the kernel is the model's, chosen once it is open)", o)
	}
	if o, err := parse([]string{"-probes", "stories"}, io.Discard); err != nil || o.kernel != compresskv.DefaultKernel {
		t.Fatalf("stories: kernel %d, %v", o.kernel, err)
	}
	if _, err := parse([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v, want flag.ErrHelp (main exits 0 on it)", err)
	}
	for _, bad := range [][]string{{"-probes", "riddles"}, {"-lengths", "0"}, {"extra"}} {
		if _, err := parse(bad, io.Discard); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestStoriesEndToEnd: calibrating stories260K (skipped without ../shared)
// writes a valid profile, and a second run with the same seed is reported
// equal to the first by -check.
func TestStoriesEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("seconds of model runs; minutes under the race detector")
	}
	model := filepath.Join(stories, "stories260K.bin")
	if _, err := os.Stat(model); err != nil {
		t.Skipf("stories260K not present at %s: %v", stories, err)
	}
	dir := t.TempDir()
	args := []string{"-probes", "stories", "-model", model, "-tokenizer", filepath.Join(stories, "tok512.bin"),
		"-haystack", "../../testdata/haystack/calib.txt", "-leads", "0,4", "-sentences", "3", "-per", "3", "-text-samples", "2", "-steps", "4", "-min", "1"}
	var out strings.Builder
	first := filepath.Join(dir, "a.json")
	if err := run(context.Background(), append(args, "-out", first), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	prof, err := compresskv.LoadProfile(first)
	if err != nil {
		t.Fatal(err)
	}
	if len(prof.HeadRanking) != 5 || len(prof.LayerWeights) != 5 || !strings.Contains(out.String(), "probes lead 4, 3 after:") {
		t.Fatalf("profile %+v\n%s", prof, out.String())
	}
	out.Reset()
	if err := run(context.Background(), append(args, "-out", filepath.Join(dir, "b.json"), "-check", first), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "equal to "+first) {
		t.Fatalf("a second run differs:\n%s", out.String())
	}
	// The default needle probes are not answered by a story model: the error counts them.
	err = run(context.Background(), []string{"-model", model, "-tokenizer", filepath.Join(stories, "tok512.bin"), "-haystack", "../../testdata/haystack/calib.txt",
		"-lengths", "128", "-depths", "2", "-needles", "1", "-out", filepath.Join(dir, "c.json")}, io.Discard, io.Discard)
	if !errors.Is(err, calibrate.ErrTooFewProbes) || !strings.Contains(err.Error(), "0 of 2 probes answered") {
		t.Fatalf("error %v", err)
	}
}

func TestCompare(t *testing.T) {
	a := &compresskv.Profile{Model: compresskv.ModelInfo{Layers: 1, QueryHeads: 2}, HeadRanking: [][]int{{0, 1}}, HeadScores: [][]float64{{2, 1}}, LayerWeights: []float64{1}}
	b := &compresskv.Profile{Model: a.Model, HeadRanking: [][]int{{1, 0}}, HeadScores: [][]float64{{1, 2}}, LayerWeights: []float64{1}}
	if d := compare(a, a); len(d) != 0 {
		t.Fatalf("a profile differs from itself: %v", d)
	}
	d := compare(a, b)
	if len(d) != 2 || !strings.Contains(d[0], "layer 0 ranking [0 1], want [1 0]") || !strings.Contains(d[1], "SR scores differ by up to 1") {
		t.Fatalf("differences %q", d)
	}
}

// TestCalibrateGGUF runs calibration on a small random model of each
// architecture: the probes are built in the model's own tokens (a chat
// model's needles in its template), the values span several tokens, every
// probe is decoded, and, as random weights answer none, the error counts
// them and says what to change on the command line.
func TestCalibrateGGUF(t *testing.T) {
	for _, spec := range tinymodel.Trio {
		for _, probes := range []string{"needle", "stories"} {
			path := tinymodel.WriteTemp(t, spec)
			var out, progress strings.Builder
			err := run(context.Background(), []string{"-model", path, "-probes", probes, "-haystack", "../../testdata/haystack/calib.txt",
				"-lengths", "128,200", "-depths", "2", "-needles", "1", "-leads", "0", "-sentences", "3", "-per", "3",
				"-text-samples", "2", "-out", filepath.Join(t.TempDir(), "p.json")}, &out, &progress)
			if !errors.Is(err, calibrate.ErrTooFewProbes) || !strings.Contains(err.Error(), "with this command: shorter prompts (-lengths)") {
				t.Fatalf("%s %s: %v", spec.Name(), probes, err)
			}
			lines := strings.Split(out.String(), "\n")
			if !strings.HasPrefix(lines[0], "model "+path+": "+spec.Arch) {
				t.Fatalf("%s: %q", spec.Name(), lines[0])
			}
			var n, lo, hi, slo, shi int
			var kind string
			if _, err := fmt.Sscanf(lines[1], "probe prompts: %d %s probes in the model's tokens, %d to %d tokens; answers of %d to %d tokens", &n, &kind, &lo, &hi, &slo, &shi); err != nil {
				t.Fatalf("%s: %q: %v", spec.Name(), lines[1], err)
			}
			if kind != probes || (probes == "needle" && (n != 4 || lo < 118 || hi > 200 || slo < 2 || shi > 5)) || (probes == "stories" && (n != 3 || slo < 1)) {
				t.Fatalf("%s: %q", spec.Name(), lines[1])
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("0 of %d probes answered", n)) || !strings.Contains(progress.String(), fmt.Sprintf("probes: %d/%d (answered 0)", n, n)) {
				t.Fatalf("%s: every probe is decoded and counted: %v\n%s", spec.Name(), err, progress.String())
			}
		}
	}
}

// TestCalibrateConverted: the project's model converted to GGUF is
// calibrated to the checkpoint's profile (-check: rankings identical,
// scores and weights within 1e-9), its probes answered alike.
func TestCalibrateConverted(t *testing.T) {
	if testing.Short() {
		t.Skip("two calibrations of the project's model")
	}
	dir := t.TempDir()
	gg := filepath.Join(dir, "retrieval.gguf")
	if _, _, err := cli.Convert(cli.DefaultModel, "", gg, "retrieval"); err != nil {
		t.Fatal(err)
	}
	args := []string{"-quick", "-haystack", "../../testdata/haystack/calib.txt"}
	var want, got strings.Builder
	ref := filepath.Join(dir, "checkpoint.json")
	if err := run(context.Background(), append(args, "-out", ref), &want, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), append(args, "-model", gg, "-out", filepath.Join(dir, "gguf.json"), "-check", ref), &got, io.Discard); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + got.String())
	if !strings.Contains(got.String(), "equal to "+ref+": rankings identical") || answered(got.String()) != answered(want.String()) || answered(want.String()) == "" {
		t.Fatalf("the converted model's calibration:\n%s\nthe checkpoint's:\n%s", got.String(), want.String())
	}
}

// answered returns the per-group lines of a calibration's output.
func answered(out string) string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "probes ") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// TestStoriesConverted: stories260K converted to GGUF (skipped without
// ../shared) answers the character-name probes as the checkpoint does and
// is calibrated to the same profile.
func TestStoriesConverted(t *testing.T) {
	if testing.Short() {
		t.Skip("two calibrations of stories260K")
	}
	model := filepath.Join(stories, "stories260K.bin")
	if _, err := os.Stat(model); err != nil {
		t.Skipf("stories260K not present at %s: %v", stories, err)
	}
	dir := t.TempDir()
	gg := filepath.Join(dir, "stories260K.gguf")
	if _, _, err := cli.Convert(model, filepath.Join(stories, "tok512.bin"), gg, "stories260K"); err != nil {
		t.Fatal(err)
	}
	args := []string{"-probes", "stories", "-haystack", "../../testdata/haystack/calib.txt", "-per", "8", "-text-samples", "6"}
	var want, got strings.Builder
	ref := filepath.Join(dir, "checkpoint.json")
	if err := run(context.Background(), append(args, "-model", model, "-tokenizer", filepath.Join(stories, "tok512.bin"), "-out", ref), &want, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), append(args, "-model", gg, "-out", filepath.Join(dir, "gguf.json"), "-check", ref), &got, io.Discard); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + got.String())
	if !strings.Contains(got.String(), "equal to "+ref+": rankings identical") || answered(got.String()) != answered(want.String()) {
		t.Fatalf("the converted model's calibration:\n%s\nthe checkpoint's:\n%s", got.String(), want.String())
	}
}
