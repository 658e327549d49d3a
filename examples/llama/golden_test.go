package llama

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/examples/llama/internal/randmodel"
	"github.com/compresskv/compresskv/kvcache"
)

// TestGoldens holds the runner against llama.cpp: for every golden of
// testdata/gguf it regenerates the random-weight model (randmodel, from
// ../shared/vocab; skipped without it), runs the golden's prompt and steps
// through WriteLogits as examples/logits does (float16 cache, computing as
// llama.cpp does) and compares with randmodel's rules: prompt ids equal,
// last logits within the weight type's tolerance in standard deviations,
// greedy tokens equal until llama.cpp's top two are nearly tied. Float32
// models must agree to 1e-4 standard deviations, fifty times closer than
// the project's requirement (2e-3). Each line it logs is a row of
// docs/RESULTS.md's table; with -v and not -short it also measures the
// backend's float32 attention (-backend), for the same table.
func TestGoldens(t *testing.T) {
	vocabDir, ok := randmodel.VocabDir()
	if !ok {
		t.Skipf("no vocabularies at %s (../shared beside the repository): the goldens' models cannot be rebuilt", vocabDir)
	}
	if testing.Short() {
		t.Skip("a few seconds per golden")
	}
	dir, _ := randmodel.GoldenDir()
	files, err := randmodel.GoldenFiles(dir)
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files in %s: %v", dir, err)
	}
	tmp := t.TempDir()
	for _, file := range files {
		g, err := randmodel.LoadGolden(file)
		if err != nil {
			t.Fatal(err)
		}
		spec, err := randmodel.Lookup(g.Model)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(g.Model, func(t *testing.T) {
			path, err := randmodel.WriteFile(g.Model, vocabDir, tmp)
			if err != nil {
				t.Fatal(err)
			}
			m, v, err := OpenGGUF(path)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			run := func(backend bool) (randmodel.Report, error) {
				var buf bytes.Buffer
				if err := WriteLogits(&buf, m, v, g.Prompt, LogitsOptions{Steps: len(g.Steps), Cache: kvcache.Float16, Backend: backend}); err != nil {
					t.Fatal(err)
				}
				out, err := randmodel.ParseOutput(&buf)
				if err != nil {
					t.Fatal(err)
				}
				return randmodel.Compare(g, out, randmodel.DefaultTolerance(spec.Type))
			}
			rep, err := run(false)
			if err != nil {
				t.Fatal(err)
			}
			if spec.Type == "f32" && rep.MaxDiffStd > 1e-4 {
				t.Fatalf("%s: %.3g standard deviations from llama.cpp, beyond 1e-4", g.Model, rep.MaxDiffStd)
			}
			row := fmt.Sprintf("| %s | %s | %s | %.2g | %s |", m.Arch, spec.Family.Name, spec.Type, rep.MaxDiffStd, agreement(rep))
			if testing.Verbose() {
				brep, err := run(true)
				note := ""
				if err != nil {
					note = " (" + strings.TrimPrefix(err.Error(), randmodel.ErrMismatch.Error()+": ") + ")"
				}
				row += fmt.Sprintf(" %.2g | %s%s |", brep.MaxDiffStd, agreement(brep), note)
			}
			t.Log(row)
		})
	}
}

// agreement says how many of the golden's greedy tokens the runner chose.
func agreement(r randmodel.Report) string {
	s := fmt.Sprintf("%d/%d", r.Agreed, r.Steps)
	if r.TieStep >= 0 {
		s += fmt.Sprintf(", then a near tie (gap %.2g sd)", r.TieGap/r.Std)
	}
	return s
}
