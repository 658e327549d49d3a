package main

import (
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/examples/internal/tinymodel"
	"github.com/compresskv/compresskv/examples/niah"
)

// TestHalfWidth: the Wilson interval of 360 of 400 is 0.9 +- about 0.029.
func TestHalfWidth(t *testing.T) {
	if h := halfWidth(360, 400); math.Abs(h-0.0292) > 0.0005 {
		t.Errorf("halfWidth(360, 400) = %g, want about 0.0292", h)
	}
	if h := halfWidth(0, 0); h != 0 {
		t.Errorf("halfWidth(0, 0) = %g", h)
	}
}

// TestHaystackHeldOut: the generated haystack is the committed one, has no
// digits, and shares no key word with any needle list; the held-out words
// are in no other list and in none of the haystack texts.
func TestHaystackHeldOut(t *testing.T) {
	text := newHaystackGen(1).text(200000)
	committed, err := os.ReadFile("../../../testdata/haystack/heldout.txt")
	if err != nil {
		t.Fatal(err)
	}
	if string(committed) != text {
		t.Fatal("testdata/haystack/heldout.txt is not what -write-haystack writes")
	}
	if strings.ContainsAny(text, "0123456789") {
		t.Fatal("the haystack holds digits, which a needle's value could be confused with")
	}
	all := map[string]bool{}
	for _, f := range []string{"train", "calib", "eval", "heldout"} {
		b, err := os.ReadFile("../../../testdata/haystack/" + f + ".txt")
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range regexp.MustCompile(`[A-Za-z]+`).FindAllString(string(b), -1) {
			all[strings.ToLower(w)] = true
		}
	}
	lists := map[string]bool{}
	for _, w := range append(niah.EvalWords, niah.CalibWords...) {
		lists[w] = true
	}
	for _, w := range HeldoutWords {
		if all[w] || lists[w] {
			t.Errorf("held-out word %q occurs in a haystack text or another word list", w)
		}
	}
	if len(HeldoutWords) < 40 {
		t.Errorf("%d held-out words", len(HeldoutWords))
	}
}

// TestSpreadLayers: on the project's profile the rule shares layer 0 (SR
// heads 7, 4, 0, 1 read both KV heads) and not layer 1 (1, 2, 0, 3 read KV
// head 0), so adackv-spread is adackv-shared-l0 there.
func TestSpreadLayers(t *testing.T) {
	prof, err := compresskv.LoadProfile("../../../testdata/retrieval.profile.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		k    int
		want []int
	}{{1, nil}, {2, nil}, {3, []int{0}}, {4, []int{0}}, {5, []int{0, 1}}} {
		got, err := spreadLayers(prof, tc.k)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("k=%d: shared layers %v, want %v", tc.k, got, tc.want)
		}
	}
}

// TestHeldoutGGUF runs the held-out comparison on a small random model of
// each architecture, with a profile of its shape: every prompt is in the
// model's tokens (a chat model's in its template), every cell is counted,
// and random weights answer none.
func TestHeldoutGGUF(t *testing.T) {
	for _, spec := range tinymodel.Trio {
		path := tinymodel.WriteTemp(t, spec)
		prof := filepath.Join(t.TempDir(), "p.json")
		if err := tinymodel.WriteProfile(prof, spec, 3); err != nil {
			t.Fatal(err)
		}
		csv := filepath.Join(t.TempDir(), "h.csv")
		var out strings.Builder
		err := run([]string{"-model", path, "-profile", prof, "-haystack", "../../../testdata/haystack/heldout.txt",
			"-lengths", "96,160", "-prompts", "2", "-seeds", "1", "-budgets", "24", "-csv", csv}, &out, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		text := out.String()
		if !strings.HasPrefix(text, "model "+path+": "+spec.Arch) || !strings.Contains(text, "full cache: 0.0% of 4") ||
			!strings.Contains(text, "      24     all  4") {
			t.Fatalf("%s:\n%s", spec.Name(), text)
		}
		b, err := os.ReadFile(csv)
		if err != nil {
			t.Fatal(err)
		}
		if rows := strings.Count(string(b), "\n"); rows != 1+4*7 {
			t.Fatalf("%s: %d lines in the CSV, want a header and 4 prompts x 7 policies", spec.Name(), rows)
		}
	}
}
