package main

import (
	"bytes"
	"fmt"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/examples/internal/cli"
	"github.com/compresskv/compresskv/examples/internal/tinymodel"
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
	if got := zeroNote("full", 32, 0, grid, nil, []int{256}); !strings.HasPrefix(got, "full answers none: the model does not answer these prompts with its whole cache") {
		t.Errorf("the full cache answering none: %q", got)
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

// table returns the lines of a needle report from its first table's title
// on: the accuracy tables and the notes, without the timed header.
func table(t *testing.T, report string) string {
	t.Helper()
	i := strings.Index(report, "accuracy (share of the full cache kept)")
	if i < 0 {
		t.Fatalf("no table in:\n%s", report)
	}
	return report[i:]
}

// TestNeedleGGUF runs the benchmark on a small random model of each
// architecture: its prompts are in its own tokens near the lengths asked,
// with values of several tokens; a chat model's first prompt is a user turn
// holding the haystack and the question, then the assistant's opening and
// the answer's start; every policy is measured (random weights answer
// none, and the report says the full cache answers none); the pooling
// kernel is the library's; the ablation and -diagnose run too.
func TestNeedleGGUF(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three models over 6 prompts")
	}
	root := "../.."
	for _, spec := range tinymodel.Trio {
		path := tinymodel.WriteTemp(t, spec)
		prof := filepath.Join(t.TempDir(), "p.json")
		if err := tinymodel.WriteProfile(prof, spec, 5); err != nil {
			t.Fatal(err)
		}
		base := []string{"-model", path, "-profile", prof, "-haystack", filepath.Join(root, "testdata/haystack/eval.txt"),
			"-lengths", "128,256", "-depths", "3", "-needles", "1"}
		out := t.TempDir()
		var stdout bytes.Buffer
		if err := run(append(base, "-budgets", "32,64", "-policies", "full,snapkv,compresskv", "-show-prompt", "-out", out), &stdout, io.Discard); err != nil {
			t.Fatal(err)
		}
		text := stdout.String()
		lines := strings.Split(text, "\n")
		if !strings.HasPrefix(lines[0], "model "+path+": "+spec.Arch) || !strings.Contains(text, "pooling kernel 5,") {
			t.Fatalf("%s: header:\n%s", spec.Name(), text)
		}
		var n, lo, hi, slo, shi int
		if _, err := fmt.Sscanf(lines[1], "prompts: %d in the model's tokens, %d to %d tokens for lengths [128 256]; values of 5 digits, %d to %d tokens each", &n, &lo, &hi, &slo, &shi); err != nil {
			t.Fatalf("%s: %q: %v", spec.Name(), lines[1], err)
		}
		if n != 6 || lo < 118 || hi > 256 || slo < 2 || shi > 5 {
			t.Fatalf("%s: %q", spec.Name(), lines[1])
		}
		first := text[strings.Index(text, "first prompt"):strings.Index(text, "accuracy (share")]
		want := map[tinymodel.Tokenizer][2]string{
			tinymodel.SPM:    {"<s>", "?" + " The special magic number for "},
			tinymodel.ChatML: {"<|im_start|>user\n", "?<|im_end|>\n<|im_start|>assistant\nThe special magic number for "},
			tinymodel.Llama3: {"<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n", "?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nThe special magic number for "},
		}[spec.Tokenizer]
		body := first[strings.Index(first, "\n")+1:]
		if !strings.HasPrefix(body, want[0]) || !strings.Contains(body, want[1]) || strings.Count(body, "[[") != 1 ||
			strings.Index(body, "[[") > strings.Index(body, want[1]) {
			t.Fatalf("%s: the first prompt does not begin %q, hold the value in [[ ]] and then end %q...:\n%s", spec.Name(), want[0], want[1], first)
		}
		rows := map[string]string{}
		for _, line := range lines {
			if f := strings.Fields(line); len(f) == 5 && strings.HasPrefix(f[2], "(") {
				rows[f[0]] = strings.Join(f[1:], " ")
			}
		}
		if rows["full"] != "0.0% (100.0%) 0.0% (100.0%)" || !strings.HasPrefix(rows["snapkv"], "0.0% (") || !strings.HasPrefix(rows["compresskv"], "0.0% (") ||
			!strings.Contains(text, "full answers none: the model does not answer these prompts") {
			t.Fatalf("%s: rows %q in:\n%s", spec.Name(), rows, text)
		}
		if strings.Count(text, "answers none at budget") != 4 {
			t.Fatalf("%s: want a note for each compressing policy and budget:\n%s", spec.Name(), text)
		}
		if _, err := os.Stat(filepath.Join(out, "needle_budget64.png")); err != nil {
			t.Fatal(err)
		}
		stdout.Reset()
		if err := run(append(base, "-ablate", "1"), &stdout, io.Discard); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(strings.Fields(stdout.String()), " "), "top 1 SR heads 0.0%") {
			t.Fatalf("%s: ablation:\n%s", spec.Name(), stdout.String())
		}
		stdout.Reset()
		if err := run(append(base, "-budgets", "400", "-policies", "snapkv", "-diagnose"), &stdout, io.Discard); err != nil {
			t.Fatal(err)
		}
		if d := strings.Join(strings.Fields(stdout.String()), " "); !strings.Contains(d, "snapkv 400 128 0/3 0 0 0 0 0 3 3 3 3 3 3 3 3") ||
			!strings.Contains(d, "snapkv 400 256 0/3 0 0 0 0 0 3 3 3 3 3 3 3 3") {
			t.Fatalf("%s: diagnose:\n%s", spec.Name(), stdout.String())
		}
	}
}

// TestConvertedNeedleQuick: the project's model converted to GGUF (as
// examples/convert converts it) gives the README's main command the
// checkpoint's tables, line for line.
func TestConvertedNeedleQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("the main command twice")
	}
	path := filepath.Join(t.TempDir(), "retrieval.gguf")
	if _, _, err := cli.Convert(cli.DefaultModel, "", path, "retrieval"); err != nil {
		t.Fatal(err)
	}
	report := func(model string) string {
		var stdout bytes.Buffer
		if err := run([]string{"-quick", "-model", model, "-out", ""}, &stdout, io.Discard); err != nil {
			t.Fatal(err)
		}
		return stdout.String()
	}
	want, got := report(cli.DefaultModel), report(path)
	if !strings.HasPrefix(got, "model "+path+": llama, 2 layers, 8 query / 2 KV heads, d=16; tokenizer llama, byte-level, 259 tokens;") {
		t.Fatalf("the converted model's report begins:\n%s", got)
	}
	if table(t, got) != table(t, want) {
		t.Fatalf("the converted model's tables:\n%s\nthe checkpoint's:\n%s", table(t, got), table(t, want))
	}
	t.Log("\n" + table(t, got))
}
