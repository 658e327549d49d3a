package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/compresskv/calibrate"
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
	if o.kernel != 9 || o.probes != "needle" {
		t.Fatalf("defaults %+v", o)
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
