package main

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/examples/niah"
	"github.com/compresskv/compresskv/kvcache"
)

func TestKeptWhole(t *testing.T) {
	for _, tc := range []struct {
		heads      [][]int
		start, end int
		want       bool
	}{
		{nil, 3, 8, true}, // a layer that kept everything
		{[][]int{{0, 3, 4, 5, 6, 7, 9}}, 3, 8, true},
		{[][]int{{0, 3, 4, 5, 6, 7, 9}, {3, 4, 5, 6, 7}}, 3, 8, true},
		{[][]int{{0, 3, 4, 5, 6, 7, 9}, {3, 4, 6, 7, 8}}, 3, 8, false}, // the second head lost 5
		{[][]int{{3, 4, 5, 6}}, 3, 8, false},                           // the end is missing
		{[][]int{{4, 5, 6, 7}}, 3, 8, false},
		{[][]int{{}}, 3, 8, false},
		{[][]int{{1, 2}}, 3, 8, false},
	} {
		if got := keptWhole(tc.heads, tc.start, tc.end); got != tc.want {
			t.Errorf("keptWhole(%v, %d, %d) = %v", tc.heads, tc.start, tc.end, got)
		}
	}
}

func TestZeroNote(t *testing.T) {
	grid := [][]cell{{{0, 3}, {0, 3}}, {{0, 3}, {0, 3}}}
	ps := &planStats{budgets: map[int][]int{256: {242, 14}, 1024: {242, 14}}, value: []int{12, 0}, n: 12}
	got := zeroNote("pyramidkv", 128, 8, grid, ps, []int{256, 1024})
	want := "pyramidkv answers none at budget 128: its layers keep 242 and 14 tokens at 256; layer 1, left with the 8-token window and 6 more, kept the needle's whole value in 0 of 12 prompts"
	if got != want {
		t.Errorf("zeroNote:\n got %s\nwant %s", got, want)
	}
	// Budgets that change with the length are shown at both ends; equal
	// losses go to the layer with the smaller budget.
	ps = &planStats{budgets: map[int][]int{256: {40, 24}, 1024: {48, 16}}, value: []int{0, 0}, n: 12}
	got = zeroNote("x", 32, 8, grid, ps, []int{1024, 256})
	want = "x answers none at budget 32: its layers keep 40 and 24 tokens at 256, its layers keep 48 and 16 tokens at 1024; layer 1, left with the 8-token window and 8 more, kept the needle's whole value in 0 of 12 prompts"
	if got != want {
		t.Errorf("zeroNote:\n got %s\nwant %s", got, want)
	}
	grid[1][1].ok = 1
	if got := zeroNote("x", 32, 8, grid, ps, []int{256}); got != "" {
		t.Errorf("a policy with a right answer got a note: %s", got)
	}
}

func TestParseQuick(t *testing.T) {
	o, err := parse([]string{"-quick"})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.lengths) != 3 || o.depths != 5 || o.needles != 1 || len(o.budgets) != 3 {
		t.Errorf("-quick: lengths %v, %d depths, %d needles, budgets %v", o.lengths, o.depths, o.needles, o.budgets)
	}
	o, err = parse([]string{"-quick", "-depths", "11", "-budgets", "64"})
	if err != nil {
		t.Fatal(err)
	}
	if o.depths != 11 || len(o.budgets) != 1 || o.budgets[0] != 64 || o.needles != 1 {
		t.Errorf("explicit flags lost under -quick: %d depths, budgets %v, %d needles", o.depths, o.budgets, o.needles)
	}
	for _, bad := range [][]string{{"-depths", "0"}, {"-needles", "-1"}, {"-lengths", "x"}, {"-policies", "nope"}} {
		if _, err := parse(bad); err == nil {
			t.Errorf("parse(%v) accepted", bad)
		}
	}
}

// TestRunSmallGrid runs the benchmark on the project's model over a tiny
// grid: PyramidKV, whose last layer keeps the window and a few tokens on
// this 2-layer model, gets its one-line explanation from the plans' budgets;
// the full cache and SnapKV, which answer, get none; heatmaps are written.
func TestRunSmallGrid(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the model over 2 prompts and 3 policies")
	}
	root := "../.."
	if _, err := os.Stat(filepath.Join(root, "testdata/retrieval.bin")); err != nil {
		t.Skip("no model:", err)
	}
	out := t.TempDir()
	var stdout, progress bytes.Buffer
	err := run([]string{
		"-model", filepath.Join(root, "testdata/retrieval.bin"),
		"-profile", filepath.Join(root, "testdata/retrieval.profile.json"),
		"-haystack", filepath.Join(root, "testdata/haystack/eval.txt"),
		"-lengths", "256", "-depths", "2", "-needles", "1", "-budgets", "128",
		"-policies", "full,snapkv,pyramidkv", "-out", out,
	}, &stdout, &progress)
	if err != nil {
		t.Fatal(err)
	}
	text := stdout.String()
	var notes []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, "answers none") {
			notes = append(notes, line)
		}
	}
	if len(notes) != 1 || !strings.HasPrefix(notes[0], "pyramidkv answers none at budget 128: its layers keep ") ||
		!strings.Contains(notes[0], "layer 1, left with the 8-token window and ") {
		t.Fatalf("notes %q in:\n%s", notes, text)
	}
	f, err := os.Open(filepath.Join(out, "needle_budget128.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Fatal(err)
	}
}

// TestDiagnose runs -diagnose on two prompts: at a budget beyond the prompt
// every plan keeps everything, so every count is the number of prompts and
// putting the first token back changes no answer; at budget 128 the counts
// stay within the prompts; the attention weights are probabilities.
func TestDiagnose(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the model over 2 prompts")
	}
	root := "../.."
	if _, err := os.Stat(filepath.Join(root, "testdata/retrieval.bin")); err != nil {
		t.Skip("no model:", err)
	}
	var stdout, progress bytes.Buffer
	err := run([]string{
		"-model", filepath.Join(root, "testdata/retrieval.bin"),
		"-profile", filepath.Join(root, "testdata/retrieval.profile.json"),
		"-haystack", filepath.Join(root, "testdata/haystack/eval.txt"),
		"-lengths", "256", "-depths", "2", "-needles", "1", "-budgets", "128,512",
		"-policies", "snapkv", "-diagnose",
	}, &stdout, &progress)
	if err != nil {
		t.Fatal(err)
	}
	rows := 0
	for _, line := range strings.Split(stdout.String(), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2+4*3 && f[0] == "256": // length, prompts, 4 x "w / a"
			for i := 2; i < len(f); i += 3 {
				for _, x := range []string{f[i], f[i+2]} {
					if v, err := strconv.ParseFloat(x, 64); err != nil || v < 0 || v > 1 {
						t.Errorf("attention weight %q in %q", x, line)
					}
				}
			}
			rows++
		case len(f) > 3 && f[0] == "snapkv":
			// policy budget length right +all +at x4 first x4 value x4
			if len(f) != 4+1+4+4+4 || f[3] != strings.Split(f[3], "/")[0]+"/2" {
				t.Fatalf("row %q", line)
			}
			nums := append([]string{strings.Split(f[3], "/")[0]}, f[4:]...)
			for _, x := range nums {
				v, err := strconv.Atoi(x)
				if err != nil || v < 0 || v > 2 {
					t.Errorf("count %q in %q", x, line)
				}
				if f[1] == "512" && v != 2 && x != nums[0] {
					t.Errorf("budget 512 keeps everything of 256 tokens, yet %q in %q", x, line)
				}
			}
			if f[1] == "512" && (nums[0] != "2" || f[4] != "2") {
				t.Errorf("the full cache answers both prompts: %q", line)
			}
			rows++
		}
	}
	if rows != 3 {
		t.Fatalf("%d rows in:\n%s", rows, stdout.String())
	}
}

// TestAnswersStopsEarly checks that stopping at the first wrong digit gives
// the verdict of decoding the whole answer, on the project's model with a
// full cache and with a cache cut to the window (where answers go wrong).
func TestAnswersStopsEarly(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the model")
	}
	root := "../.."
	m, err := llama.Load(filepath.Join(root, "testdata/retrieval.bin"))
	if err != nil {
		t.Skip("no model:", err)
	}
	hay, err := niah.LoadHaystack(filepath.Join(root, "testdata/haystack/eval.txt"))
	if err != nil {
		t.Fatal(err)
	}
	tok := llama.ByteTokenizer()
	stream, err := compresskv.New(compresskv.StreamingLLM, compresskv.Config{Budget: 16})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[bool]int{}
	for i, n := range niah.Needles(niah.EvalWords, 4, 5) {
		p, err := niah.Build(tok, hay, i*997, 256, float64(i)/3, n)
		if err != nil {
			t.Fatal(err)
		}
		cache, _ := m.NewCache(kvcache.Float32)
		s, _ := m.NewSession(cache, nil)
		logits, q, err := s.Prefill(p.Tokens, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, pol := range []*compresskv.Policy{nil, stream} {
			session := func() *llama.Session {
				c := cache.Clone()
				cs, _ := m.NewSession(c, nil)
				if pol != nil {
					if _, err := cs.Compress(context.Background(), pol, q); err != nil {
						t.Fatal(err)
					}
				}
				return cs
			}
			full, err := niah.Greedy(session(), logits, len(n.Value)+1, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := answers(session(), logits, n)
			if err != nil {
				t.Fatal(err)
			}
			if want := niah.Correct(full, n); got != want {
				t.Errorf("needle %d, policy %v: answers says %v, the whole answer %q says %v", i, pol != nil, got, tok.Decode(full), want)
			}
			seen[got]++
		}
	}
	if seen[true] == 0 || seen[false] == 0 {
		t.Errorf("verdicts %v: the test needs right and wrong answers", seen)
	}
}
