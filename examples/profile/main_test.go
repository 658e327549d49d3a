package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/compresskv/compresskv/alloc"
	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/heads"
)

func newRNG(t testing.TB) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, 1))
}

// rankingJSON writes ranks in the reference's format as Python's json.dump
// with indent=2 does, layers in the order given by order.
func rankingJSON(ranks [][]int, order []int) string {
	var b strings.Builder
	b.WriteString("{")
	for i, l := range order {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "\n  %q: [", fmt.Sprint(l))
		for j, h := range ranks[l] {
			if j > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, "\n    %d", h)
		}
		b.WriteString("\n  ]")
	}
	b.WriteString("\n}")
	return b.String()
}

// layerScores returns per-data-set layer errors, normalised, and their
// average as the reference computes it.
func layerScores(t *testing.T, rng *rand.Rand, layers int, names ...string) (map[string][]float64, []float64) {
	sets := map[string][]float64{}
	var per [][]float64
	for _, n := range names {
		x := make([]float64, layers)
		for l := range x {
			x[l] = 0.01 + rng.Float64()
		}
		x, err := alloc.Normalize(x)
		if err != nil {
			t.Fatal(err)
		}
		sets[n] = x
		per = append(per, x)
	}
	avg, err := alloc.Average(per)
	if err != nil {
		t.Fatal(err)
	}
	return sets, avg
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// convertFiles runs the command and loads the profile it wrote.
func convertFiles(t *testing.T, args ...string) (*compresskv.Profile, error) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.profile.json")
	var stdout, stderr bytes.Buffer
	if err := run(append(args, "-o", out), &stdout, &stderr); err != nil {
		if _, serr := os.Stat(out); serr == nil {
			t.Errorf("a failed conversion wrote %s", out)
		}
		return nil, err
	}
	if !strings.HasPrefix(stderr.String(), out+": ") {
		t.Errorf("summary %q does not name the output", stderr.String())
	}
	return compresskv.LoadProfile(out)
}

// TestConvertPresets: full rankings and layer scores (one indented object,
// or JSON Lines) of the published shape become a profile with the preset's
// shape, the same rankings, the file's avg_score as layer weights and 4 SR
// heads per layer, which CompressKV accepts.
func TestConvertPresets(t *testing.T) {
	rng := newRNG(t)
	dir := t.TempDir()
	for _, name := range []string{"llama-3.1-8b-instruct", "mistralai/Mistral-7B-Instruct-v0.3"} {
		m, ok := preset(name)
		if !ok {
			t.Fatalf("no preset %q", name)
		}
		if m.Layers != 32 || m.QueryHeads != 32 || m.KVHeads != 8 || m.HeadDim != 128 {
			t.Fatalf("preset %q has shape %+v", name, m)
		}
		ranks := make([][]int, m.Layers)
		for l := range ranks {
			ranks[l] = rng.Perm(m.QueryHeads)
		}
		rankPath := write(t, dir, "head_idx.json", rankingJSON(ranks, rng.Perm(m.Layers)))
		sets, avg := layerScores(t, rng, m.Layers, "narrativeqa", "qasper", "hotpotqa")
		obj := map[string][]float64{alloc.AvgKey: avg}
		var lines strings.Builder
		for k, v := range sets {
			obj[k] = v
			b, _ := json.Marshal(map[string][]float64{k: v})
			lines.Write(append(b, '\n'))
		}
		b, _ := json.Marshal(map[string][]float64{alloc.AvgKey: avg})
		lines.Write(append(b, '\n'))
		indented, err := json.MarshalIndent(obj, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		for form, content := range map[string]string{"object": string(indented), "lines": lines.String()} {
			scorePath := write(t, dir, "layer_score.jsonl", content)
			p, err := convertFiles(t, "-model", name, "-ranking", rankPath, "-layer-scores", scorePath)
			if err != nil {
				t.Fatalf("%s, %s: %v", name, form, err)
			}
			if p.Version != compresskv.ProfileVersion || p.Model != m || p.SRHeadsPerLayer != 4 {
				t.Fatalf("%s, %s: version %d, model %+v, %d SR heads", name, form, p.Version, p.Model, p.SRHeadsPerLayer)
			}
			if !reflect.DeepEqual(p.HeadRanking, ranks) || !reflect.DeepEqual(p.LayerWeights, avg) {
				t.Fatalf("%s, %s: rankings or weights differ from the files'", name, form)
			}
			if !strings.Contains(p.Notes["layer_scores"], `its "avg_score" entry`) {
				t.Fatalf("%s, %s: notes %v", name, form, p.Notes)
			}
			for _, k := range []int{0, 4, 32} {
				if _, err := compresskv.New(compresskv.CompressKV, compresskv.Config{Budget: 128, Profile: p, SRHeads: k}); err != nil {
					t.Fatalf("%s, %s: CompressKV with k = %d: %v", name, form, k, err)
				}
			}
		}
	}
}

// TestConvertPartial: a ranking that lists only some heads of each layer
// becomes a profile that uses exactly those; differing counts need -k; -k
// beyond a layer's list is an error.
func TestConvertPartial(t *testing.T) {
	rng := newRNG(t)
	dir := t.TempDir()
	m, _ := preset("mistral-7b-instruct-v0.3")
	for _, n := range []int{1, 3, 8} {
		ranks := make([][]int, m.Layers)
		for l := range ranks {
			ranks[l] = rng.Perm(m.QueryHeads)[:n]
		}
		path := write(t, dir, "head_idx.json", rankingJSON(ranks, rng.Perm(m.Layers)))
		p, err := convertFiles(t, "-model", "Mistral-7B-Instruct-v0.3", "-ranking", path)
		if err != nil {
			t.Fatal(err)
		}
		if p.SRHeadsPerLayer != n || !reflect.DeepEqual(p.HeadRanking, ranks) || p.LayerWeights != nil {
			t.Fatalf("%d heads listed: profile has %d SR heads, rankings equal %v, weights %v", n, p.SRHeadsPerLayer, reflect.DeepEqual(p.HeadRanking, ranks), p.LayerWeights)
		}
		for l := range ranks {
			got, err := p.SRHeads(l, p.SRHeadsPerLayer)
			if err != nil || !reflect.DeepEqual(got, ranks[l]) {
				t.Fatalf("layer %d: SR heads %v (%v), want %v", l, got, err, ranks[l])
			}
		}
		if _, err := compresskv.New(compresskv.CompressKV, compresskv.Config{Budget: 64, Profile: p}); err != nil {
			t.Fatal(err)
		}
		_, err = compresskv.New(compresskv.CompressKV, compresskv.Config{Budget: 64, Profile: p, SRHeads: n + 1})
		if !errors.Is(err, compresskv.ErrConfig) {
			t.Fatalf("%d SR heads from a profile listing %d: error %v", n+1, n, err)
		}
	}
	// Layers listing different counts.
	ranks := make([][]int, m.Layers)
	for l := range ranks {
		ranks[l] = rng.Perm(m.QueryHeads)[:4+l%3]
	}
	path := write(t, dir, "uneven.json", rankingJSON(ranks, rng.Perm(m.Layers)))
	if _, err := convertFiles(t, "-model", "mistral-7b-instruct-v0.3", "-ranking", path); err == nil ||
		!strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "layer 0 lists 4 heads but layer 2 lists 6") || !strings.Contains(err.Error(), "pass -k (at most 4)") {
		t.Fatalf("uneven counts: error %v", err)
	}
	p, err := convertFiles(t, "-model", "mistral-7b-instruct-v0.3", "-ranking", path, "-k", "3")
	if err != nil || p.SRHeadsPerLayer != 3 || !reflect.DeepEqual(p.HeadRanking, ranks) {
		t.Fatalf("-k 3: %v, %+v", err, p)
	}
	if _, err := convertFiles(t, "-model", "mistral-7b-instruct-v0.3", "-ranking", path, "-k", "5"); err == nil ||
		!strings.Contains(err.Error(), "-k 5 SR heads per layer, but layer 0 lists only 4 heads") {
		t.Fatalf("-k 5: error %v", err)
	}
}

// TestConvertShape: a model that is not a preset needs every shape flag; a
// shape flag that disagrees with a preset is an error.
func TestConvertShape(t *testing.T) {
	dir := t.TempDir()
	ranking := write(t, dir, "r.json", `{"0": [5, 0, 1, 2, 3, 4], "1": [0, 1, 2, 3, 4, 5], "2": [1, 0, 2, 3, 4, 5]}`)
	scores := write(t, dir, "s.jsonl", "{\"a\": [1, 2, 1]}\n{\"b\": [2, 2, 0]}\n")
	p, err := convertFiles(t, "-model", "tiny", "-layers", "3", "-query-heads", "6", "-kv-heads", "2", "-head-dim", "8",
		"-ranking", ranking, "-layer-scores", scores, "-k", "2")
	if err != nil {
		t.Fatal(err)
	}
	want := compresskv.ModelInfo{Name: "tiny", Layers: 3, QueryHeads: 6, KVHeads: 2, HeadDim: 8}
	if p.Model != want || p.SRHeadsPerLayer != 2 {
		t.Fatalf("model %+v, %d SR heads", p.Model, p.SRHeadsPerLayer)
	}
	// No avg_score: normalise (0.25 0.5 0.25) and (0.5 0.5 0), average.
	if w := []float64{0.375, 0.5, 0.125}; !reflect.DeepEqual(p.LayerWeights, w) || !strings.Contains(p.Notes["layer_scores"], "2 data sets") {
		t.Fatalf("weights %v (want %v), notes %v", p.LayerWeights, w, p.Notes)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-ranking", ranking}, "-model is required"},
		{[]string{"-model", "tiny", "-layers", "3", "-ranking", ranking}, `"tiny" is not a preset`},
		{[]string{"-model", "tiny", "-layers", "3", "-query-heads", "6", "-kv-heads", "4", "-head-dim", "8", "-ranking", ranking}, "not a multiple"},
		{[]string{"-model", "llama-3.1-8b-instruct", "-kv-heads", "4", "-ranking", ranking}, "-kv-heads 4 disagrees with the preset"},
		{[]string{"-model", "llama-3.1-8b-instruct"}, "-ranking is required"},
		{[]string{"-model", "llama-3.1-8b-instruct", "-ranking", ranking, "extra"}, `unexpected argument "extra"`},
		{[]string{"-model", "llama-3.1-8b-instruct", "-ranking", ranking, "-k", "-1"}, "-k -1"},
		{[]string{"-model", "llama-3.1-8b-instruct", "-ranking", filepath.Join(dir, "absent.json")}, "absent.json"},
	} {
		_, err := convertFiles(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

// TestConvertErrors: a malformed or mismatched file gives an error naming
// the file and the problem, and writes no profile.
func TestConvertErrors(t *testing.T) {
	dir := t.TempDir()
	// A 3-layer model with 4 query heads over 2 KV heads.
	shape := []string{"-model", "small", "-layers", "3", "-query-heads", "4", "-kv-heads", "2", "-head-dim", "8"}
	goodRank := `{"0": [3, 1, 0, 2], "1": [0, 1, 2, 3], "2": [2, 3, 1, 0]}`
	goodScores := `{"a": [0.5, 0.25, 0.25], "avg_score": [0.5, 0.25, 0.25]}`
	for _, tc := range []struct {
		name, rank, scores, want string
	}{
		{"layer beyond the model", `{"0": [0], "1": [0], "2": [0], "3": [0]}`, "", "layer 3 outside 3 layers"},
		{"layer missing", `{"0": [3, 1, 0, 2], "2": [2, 3, 1, 0]}`, "", "layer 1 missing"},
		{"layer twice", `{"0": [0], "1": [0], "2": [0], "1": [1]}`, "", "layer 1 appears twice"},
		{"head out of range", `{"0": [3, 1, 0, 4], "1": [0], "2": [0]}`, "", "head 4 outside [0, 4)"},
		{"negative head", `{"0": [3, -1], "1": [0], "2": [0]}`, "", "head -1 outside"},
		{"head twice", `{"0": [3, 1, 3], "1": [0], "2": [0]}`, "", "head 3 ranked twice"},
		{"too many heads", `{"0": [3, 1, 0, 2, 0], "1": [0], "2": [0]}`, "", "5 heads ranked, the layer has 4"},
		{"empty layer", `{"0": [], "1": [0], "2": [0]}`, "", "layer 0: empty ranking"},
		{"not an integer", `{"0": [1.5], "1": [0], "2": [0]}`, "", "not an integer head index"},
		{"NaN head", `{"0": [NaN], "1": [0], "2": [0]}`, "", "non-finite value NaN"},
		{"ranking trailing garbage", goodRank + "\nxyz", "", "data after the JSON object"},
		{"ranking not an object", `[[0, 1, 2, 3]]`, "", "want a JSON object"},
		{"ranking empty", ``, "", "end of input"},
		{"scores for 2 layers", goodRank, `{"avg_score": [0.5, 0.5]}`, "layer scores for 2 layers, the model (small) has 3"},
		{"scores for 4 layers", goodRank, `{"avg_score": [0.25, 0.25, 0.25, 0.25]}`, "layer scores for 4 layers"},
		{"ragged data sets", goodRank, `{"a": [1, 2, 3], "b": [1, 2], "avg_score": [1, 1, 1]}`, "has 2 layers"},
		{"NaN score", goodRank, `{"avg_score": [0.5, NaN, 0.5]}`, "line 1, column 21: non-finite value NaN"},
		{"Infinity score", goodRank, "{\"a\": [1, 1, 1]}\n{\"avg_score\": [Infinity, 1, 1]}", "line 2, column 16: non-finite value Infinity"},
		{"negative score", goodRank, `{"avg_score": [0.5, -0.25, 0.5]}`, "layer 1 is -0.25: must be finite and non-negative"},
		{"zero scores", goodRank, `{"avg_score": [0, 0, 0]}`, "sums to zero"},
		{"scores trailing garbage", goodRank, goodScores + "\n}", "line 2, column 1: data after JSON object 1"},
		{"scores key twice", goodRank, goodScores + "\n" + `{"a": [1, 1, 1]}`, `key "a" appears twice`},
		{"scores not numbers", goodRank, `{"avg_score": ["0.5", 1, 1]}`, "element 0 is a string"},
		{"scores empty", goodRank, "\n", "empty input"},
	} {
		rank := write(t, dir, "rank.json", tc.rank)
		args := append(append([]string{}, shape...), "-ranking", rank, "-k", "1")
		at := rank
		if tc.scores != "" {
			at = write(t, dir, "scores.jsonl", tc.scores)
			args = append(args, "-layer-scores", at)
		}
		_, err := convertFiles(t, args...)
		if err == nil || !strings.HasPrefix(err.Error(), at+": ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one starting with %q and containing %q", tc.name, err, at+": ", tc.want)
		}
	}
}

// TestHelpAndExitCodes: -h prints the usage and exits 0; a bad flag exits
// 2, a bad file 1, with the reason on standard error.
func TestHelpAndExitCodes(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := mainCode([]string{"-h"}, &stdout, &stderr); code != 0 || !strings.Contains(stderr.String(), "llama-3.1-8b-instruct") {
		t.Fatalf("-h: exit %d, output %q", code, stderr.String())
	}
	stderr.Reset()
	if code := mainCode([]string{"-bogus"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "bogus") {
		t.Fatalf("-bogus: exit %d, output %q", code, stderr.String())
	}
	stderr.Reset()
	if code := mainCode([]string{"-model", "llama-3.1-8b-instruct"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "-ranking is required") {
		t.Fatalf("no ranking: exit %d, output %q", code, stderr.String())
	}
	stderr.Reset()
	bad := write(t, t.TempDir(), "bad.json", "{")
	if code := mainCode([]string{"-model", "llama-3.1-8b-instruct", "-ranking", bad}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), bad) {
		t.Fatalf("bad file: exit %d, output %q", code, stderr.String())
	}
	if stdout.Len() != 0 {
		t.Fatalf("failures wrote %q to standard output", stdout.String())
	}
	// Without -o the profile goes to standard output.
	good := write(t, t.TempDir(), "r.json", `{"0": [1, 0]}`)
	if code := mainCode([]string{"-model", "m", "-layers", "1", "-query-heads", "2", "-kv-heads", "1", "-head-dim", "4", "-ranking", good}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	p, err := compresskv.ReadProfile(&stdout)
	if err != nil || p.SRHeadsPerLayer != 2 || !reflect.DeepEqual(p.HeadRanking, [][]int{{1, 0}}) {
		t.Fatalf("profile on standard output: %+v, %v", p, err)
	}
}

// FuzzConvert: arbitrary ranking and score files never panic; what is
// accepted is a valid profile whose SR heads are the first k heads the file
// lists for each layer and whose layer weights are the file's average.
func FuzzConvert(f *testing.F) {
	f.Add([]byte(`{"0": [1, 0, 2], "1": [2]}`), []byte(`{"avg_score": [1, 2]}`), uint8(2), uint8(3), uint8(0))
	f.Add([]byte(`{"0": [1], "1": [2]}`), []byte("{\"a\": [1, 2]}\n{\"b\": [0, 1]}\n"), uint8(2), uint8(3), uint8(1))
	f.Add([]byte(`{"0": [0, 1, 2], "1": [2, 1, 0]}`), []byte(`{"avg_score": [1, NaN]}`), uint8(2), uint8(3), uint8(0))
	f.Add([]byte(`{"0": [0, 0]}`), []byte(`{"avg_score": [1]} x`), uint8(1), uint8(3), uint8(5))
	f.Fuzz(func(t *testing.T, rank, scores []byte, layers, qHeads, k uint8) {
		m := compresskv.ModelInfo{Name: "fuzz", Layers: 1 + int(layers%4), QueryHeads: 1 + int(qHeads%6), KVHeads: 1, HeadDim: 4}
		p, err := convert(m, int(k%8), &source{name: "rank", r: bytes.NewReader(rank)}, &source{name: "scores", r: bytes.NewReader(scores)})
		if err != nil {
			if p != nil {
				t.Fatal("error with a profile")
			}
			if !strings.HasPrefix(err.Error(), "rank: ") && !strings.HasPrefix(err.Error(), "scores: ") {
				t.Fatalf("error %q names no file", err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("accepted an invalid profile: %v", err)
		}
		want, err := heads.ReadReferenceRanking(bytes.NewReader(rank), m.Layers, m.QueryHeads)
		if err != nil {
			t.Fatal(err)
		}
		s, err := alloc.ReadReferenceScores(bytes.NewReader(scores))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(p.HeadRanking, want) || !reflect.DeepEqual(p.LayerWeights, s.Avg) {
			t.Fatal("the profile's rankings or weights differ from the files'")
		}
		for l := range want {
			got, err := p.SRHeads(l, p.SRHeadsPerLayer)
			if err != nil || !reflect.DeepEqual(got, want[l][:p.SRHeadsPerLayer]) {
				t.Fatalf("layer %d: SR heads %v, %v", l, got, err)
			}
		}
		if _, err := compresskv.New(compresskv.CompressKV, compresskv.Config{Budget: 16, Profile: p}); err != nil {
			t.Fatalf("CompressKV rejects the profile: %v", err)
		}
	})
}
