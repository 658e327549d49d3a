package heads

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestReadReferenceScores(t *testing.T) {
	in := `{"0-0": [0, 0.5, 1], "0-2": [0.25], "1-1": [1e-3, -1e-3], "1-2": [2, 4]}` + "\n"
	got, err := ReadReferenceScores(strings.NewReader(in), 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := Scores{{0.5, 0, 0.25}, {0, 0, 3}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got, err := ReadReferenceScores(strings.NewReader(" {} "), 1, 2); err != nil || !reflect.DeepEqual(got, Scores{{0, 0}}) {
		t.Errorf("empty object: %v, %v", got, err)
	}
}

func TestReadReferenceScoresErrors(t *testing.T) {
	for _, tc := range []struct{ in, msg string }{
		{`{"0-0": [NaN]}`, "NaN"},
		{`{"0-0": [1, Infinity]}`, "Infinity"},
		{`{"0-0": [1, -Infinity]}`, "-Infinity"},
		{`{"0-0": [1e400]}`, "finite"},
		{`{"0-0": [1e308, 1e308]}`, "overflow"},
		{`{"0-0": ["1"]}`, "not a number"},
		{`{"0-0": [true]}`, "not a number"},
		{`{"0-0": [[1]]}`, "not a number"},
		{`{"0-0": []}`, "no scores"},
		{`{"0-0": null}`, "null"},
		{`{"0-0": 1}`, "want an array"},
		{`{"0-0": {"a": 1}}`, "want an array"},
		{`{"0_0": [1]}`, "not \"<layer>-<head>\""},
		{`{"0-0-0": [1]}`, "not \"<layer>-<head>\""},
		{`{"-1-0": [1]}`, "not \"<layer>-<head>\""},
		{`{"a-0": [1]}`, "not \"<layer>-<head>\""},
		{`{"0-": [1]}`, "not \"<layer>-<head>\""},
		{`{"2-0": [1]}`, "outside"},
		{`{"0-3": [1]}`, "outside"},
		{`{"0-1": [1], "0-01": [2]}`, "twice"},
		{`{"0-1": [1]} x`, "after"},
		{`{"0-1": [1]`, "end of input"},
		{`[1]`, "JSON object"},
		{``, "end of input"},
		{`{"0-1": [1],}`, "line 1, column 13"},
		{"{\"0-1\": [1]}\n\n  x", "line 3, column 3: data after the JSON object"},
		{"{\"0-1\": [1],\n \"0-2\": [NaN]}", "line 2, column 10: non-finite value NaN"},
	} {
		_, err := ReadReferenceScores(strings.NewReader(tc.in), 2, 3)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: error %v, want one containing %q", tc.in, err, tc.msg)
			continue
		}
		if !errors.Is(err, ErrFormat) {
			t.Errorf("%q: error %v does not wrap ErrFormat", tc.in, err)
		}
	}
	if _, err := ReadReferenceScores(strings.NewReader(`{}`), 0, 3); err == nil {
		t.Error("0 layers: no error")
	}
}

func TestReferenceScoresRoundTrip(t *testing.T) {
	rng, seed := newRNG(t)
	r := mustRecorder(t, 3, 4, Multiplicity)
	prompt := []int{1, 2, 3, 2, 1, 0}
	for tr := 0; tr < 5; tr++ {
		if err := r.BeginTrial(prompt, 1, 4); err != nil {
			t.Fatal(err)
		}
		for s := 0; s < 3; s++ {
			attn := make([][][]float32, 3)
			for l := range attn {
				attn[l] = make([][]float32, 4)
				for h := range attn[l] {
					attn[l][h] = randVec(rng, len(prompt)+s)
				}
			}
			if err := r.Step(1+rng.IntN(3), attn); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.EndTrial(tr != 2); err != nil {
			t.Fatal(err)
		}
	}
	sr, ret := r.TrialScores()
	for _, tc := range []struct {
		per  [][][]float64
		want Scores
	}{{sr, r.SR()}, {ret, r.Retrieval()}} {
		var b bytes.Buffer
		if err := WriteReferenceScores(&b, tc.per); err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(b.String(), "\n"); n != 1 || !strings.HasPrefix(b.String(), `{"0-0": [`) {
			t.Errorf("seed %d: want one line starting {\"0-0\": [, got %q", seed, b.String())
		}
		got, err := ReadReferenceScores(&b, 3, 4)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if !reflect.DeepEqual(got, tc.want) { // exact: same summation order
			t.Fatalf("seed %d: read back %v, want %v", seed, got, tc.want)
		}
	}
	var b bytes.Buffer
	if err := WriteReferenceScores(&b, nil); err != nil || b.String() != "{}\n" {
		t.Errorf("no trials: %q, %v", b.String(), err)
	}
	if err := WriteReferenceScores(&b, [][][]float64{{{1, 2}}, {{1}}}); err == nil {
		t.Error("ragged trials: no error")
	}
	if err := WriteReferenceScores(&b, [][][]float64{{{1, math.NaN()}}}); err == nil {
		t.Error("NaN: no error")
	}
}

func TestReadReferenceRanking(t *testing.T) {
	in := "{\n  \"1\": [2, 0],\n  \"0\": [\n    1,\n    0,\n    2\n  ]\n}\n"
	got, err := ReadReferenceRanking(strings.NewReader(in), 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]int{{1, 0, 2}, {2, 0}}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, tc := range []struct{ in, msg string }{
		{`{"0": [0]}`, "layer 1 missing"},
		{`{"0": [0], "1": [3]}`, "outside"},
		{`{"0": [0], "1": [-1]}`, "outside"},
		{`{"0": [0, 0], "1": [1]}`, "twice"},
		{`{"0": [0], "00": [1], "1": [1]}`, "twice"},
		{`{"0": [0], "1": []}`, "empty"},
		{`{"0": [0], "1": [1.0]}`, "not an integer"},
		{`{"0": [0], "1": ["1"]}`, "not an integer"},
		{`{"0": [0], "1": [0, 1, 2, 0]}`, "3"},
		{`{"0": [0], "2": [1]}`, "outside"},
		{`{"x": [0]}`, "not a layer index"},
		{`{"0": [NaN]}`, "NaN"},
		{`[]`, "JSON object"},
	} {
		_, err := ReadReferenceRanking(strings.NewReader(tc.in), 2, 3)
		if err == nil || !strings.Contains(err.Error(), tc.msg) || !errors.Is(err, ErrFormat) {
			t.Errorf("%q: error %v, want one containing %q wrapping ErrFormat", tc.in, err, tc.msg)
		}
	}
}

func TestReferenceRankingRoundTrip(t *testing.T) {
	s := Scores{{0.1, 0.9, 0.5}, {0.3, 0.3, 0.2}}
	for _, k := range []int{1, 2, 3} {
		top, err := s.Top(k)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := WriteReferenceRanking(&b, top); err != nil {
			t.Fatal(err)
		}
		got, err := ReadReferenceRanking(&b, 2, 3)
		if err != nil {
			t.Fatalf("k=%d: %v\n%s", k, err, b.String())
		}
		if !reflect.DeepEqual(got, top) {
			t.Errorf("k=%d: read back %v, want %v", k, got, top)
		}
	}
	var b bytes.Buffer
	if err := WriteReferenceRanking(&b, [][]int{{0}, {}}); err == nil {
		t.Error("empty layer: no error")
	}
	if err := WriteReferenceRanking(&b, [][]int{{0, 0}}); err == nil {
		t.Error("repeated head: no error")
	}
	if err := WriteReferenceRanking(&b, [][]int{{-1}}); err == nil {
		t.Error("negative head: no error")
	}
}

func fuzzDims(a, b uint8) (int, int) { return 1 + int(a%6), 1 + int(b%6) }

func FuzzReadReferenceScores(f *testing.F) {
	for _, s := range []string{
		`{"0-0": [0, 0.5, 1], "0-2": [0.25], "1-1": [1e-3, -1e-3]}`,
		`{}`, `{"0-0": [NaN]}`, `{"1-2": [1e308, -1e308, 5e-324]}`, `{"0-0": []}`,
		`{"0-1": [1], "0-01": [2]}`, `[1, 2]`, `{"0-0": [1]} {}`, `{"5-5": [-0]}`,
	} {
		f.Add([]byte(s), uint8(2), uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, a, b uint8) {
		layers, qHeads := fuzzDims(a, b)
		s, err := ReadReferenceScores(bytes.NewReader(data), layers, qHeads)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		if len(s) != layers {
			t.Fatalf("%d layers, want %d", len(s), layers)
		}
		for _, row := range s {
			if len(row) != qHeads {
				t.Fatalf("%d heads, want %d", len(row), qHeads)
			}
			for _, v := range row {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("non-finite score %v accepted", v)
				}
			}
		}
		var buf bytes.Buffer
		if err := WriteReferenceScores(&buf, [][][]float64{s}); err != nil {
			t.Fatal(err)
		}
		back, err := ReadReferenceScores(&buf, layers, qHeads)
		if err != nil {
			t.Fatalf("written file rejected: %v\n%s", err, buf.String())
		}
		if !reflect.DeepEqual(back, s) {
			t.Fatalf("round trip: %v != %v", back, s)
		}
	})
}

func FuzzReadReferenceRanking(f *testing.F) {
	for _, s := range []string{
		"{\n  \"1\": [2, 0],\n  \"0\": [1, 0, 2]\n}\n",
		`{"0": [0]}`, `{"0": [0, 0]}`, `{"0": [1.0]}`, `{"0": [], "1": [1]}`, `{"0": [5]}`,
	} {
		f.Add([]byte(s), uint8(2), uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, a, b uint8) {
		layers, qHeads := fuzzDims(a, b)
		rk, err := ReadReferenceRanking(bytes.NewReader(data), layers, qHeads)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		if len(rk) != layers {
			t.Fatalf("%d layers, want %d", len(rk), layers)
		}
		for l, r := range rk {
			seen := map[int]bool{}
			if len(r) == 0 {
				t.Fatalf("layer %d: empty ranking accepted", l)
			}
			for _, h := range r {
				if h < 0 || h >= qHeads || seen[h] {
					t.Fatalf("layer %d: bad ranking %v accepted", l, r)
				}
				seen[h] = true
			}
		}
		var buf bytes.Buffer
		if err := WriteReferenceRanking(&buf, rk); err != nil {
			t.Fatal(err)
		}
		back, err := ReadReferenceRanking(&buf, layers, qHeads)
		if err != nil {
			t.Fatalf("written file rejected: %v\n%s", err, buf.String())
		}
		if !reflect.DeepEqual(back, rk) {
			t.Fatalf("round trip: %v != %v", back, rk)
		}
	})
}
