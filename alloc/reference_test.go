package alloc

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

const validScores = `{
  "narrativeqa": [0.5, 0.25, 0.25],
  "hotpotqa": [1, 2, 1],
  "avg_score": [0.375, 0.375, 0.25]
}`

func TestReadReferenceScores(t *testing.T) {
	s, err := ReadReferenceScores(strings.NewReader(validScores))
	if err != nil {
		t.Fatal(err)
	}
	want := &ReferenceScores{
		Datasets: map[string][]float64{
			"narrativeqa": {0.5, 0.25, 0.25},
			"hotpotqa":    {1, 2, 1},
		},
		Avg: []float64{0.375, 0.375, 0.25},
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("got %+v, want %+v", s, want)
	}
	var buf bytes.Buffer
	if err := s.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	const wantJSON = `{"avg_score":[0.375,0.375,0.25],"hotpotqa":[1,2,1],"narrativeqa":[0.5,0.25,0.25]}` + "\n"
	if buf.String() != wantJSON {
		t.Fatalf("wrote %q, want %q", buf.String(), wantJSON)
	}
	back, err := ReadReferenceScores(&buf)
	if err != nil || !reflect.DeepEqual(back, s) {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
}

func TestReadReferenceScoresNoAvg(t *testing.T) {
	// Without avg_score the average is computed: A = 1, 3 -> 0.25, 0.75;
	// B = 2, 2 -> 0.5, 0.5; average 0.375, 0.625.
	s, err := ReadReferenceScores(strings.NewReader(`{"a": [1, 3], "b": [2, 2]}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := []float64{0.375, 0.625}; !reflect.DeepEqual(s.Avg, want) {
		t.Fatalf("Avg %v, want %v", s.Avg, want)
	}
	// Only the average: no data sets, an empty (non-nil) map.
	s, err = ReadReferenceScores(strings.NewReader(`{"avg_score": [1e-3, 2E-3]}`))
	if err != nil || len(s.Datasets) != 0 || s.Datasets == nil || !reflect.DeepEqual(s.Avg, []float64{1e-3, 2e-3}) {
		t.Fatalf("got %+v, %v", s, err)
	}
}

// TestReadReferenceScoresLines: the reference's measuring script appends
// one object per data set and run (JSON Lines); the objects are merged, and
// the result is the same as from one object holding every key.
func TestReadReferenceScoresLines(t *testing.T) {
	lines := "{\"narrativeqa\": [0.5, 0.25, 0.25]}\n{\"hotpotqa\": [1, 2, 1]}\n\n{\"avg_score\": [0.375, 0.375, 0.25]}\n"
	got, err := ReadReferenceScores(strings.NewReader(lines))
	if err != nil {
		t.Fatal(err)
	}
	want, err := ReadReferenceScores(strings.NewReader(validScores))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("JSON Lines gave %+v, one object %+v", got, want)
	}
	// Without an average line, the average is computed as for one object.
	got, err = ReadReferenceScores(strings.NewReader("{\"a\": [1, 3]}\n{\"b\": [2, 2]}"))
	if err != nil || !reflect.DeepEqual(got.Avg, []float64{0.375, 0.625}) {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func TestReadReferenceScoresErrors(t *testing.T) {
	tests := []struct{ name, in, contains string }{
		{"empty input", ``, "empty input"},
		{"white space only", " \n\t", "empty input"},
		{"truncated", `{"a": [1, 2]`, "end of input"},
		{"truncated line 2", "{\"a\": [1]}\n{\"b\": [1", "end of input"},
		{"array", `[1, 2]`, "not a JSON object"},
		{"number", `3`, "not a JSON object"},
		{"null", `null`, "not a JSON object"},
		{"syntax", `{"a": [1, 2}`, "reference scores"},
		{"trailing", `{"a": [1]} x`, "line 1, column 12: data after JSON object 1"},
		{"trailing line 3", "{\"a\": [1]}\n{\"b\": [2]}\n]", "line 3, column 1: data after JSON object 2"},
		{"array after object", "{\"a\": [1]}\n[1]", "line 2, column 1, after JSON object 1, is an array"},
		{"duplicate key", `{"a": [1], "a": [2]}`, `key "a" appears twice (line 1, column 2 and line 1, column 12)`},
		{"duplicate across lines", "{\"a\": [1]}\n{\"b\": [2]}\n{\"a\": [3]}", `key "a" appears twice (line 1, column 2 and line 3, column 2)`},
		{"duplicate average", "{\"avg_score\": [1]}\n{\"avg_score\": [1]}", `key "avg_score" appears twice`},
		{"NaN", `{"a": [1, NaN]}`, "line 1, column 11: non-finite value NaN"},
		{"Infinity", "{\"a\": [1, 2]}\n{\"avg_score\": [Infinity, 1]}", "line 2, column 16: non-finite value Infinity"},
		{"-Infinity", `{"a": [-Infinity]}`, "non-finite value -Infinity"},
		{"NaN in a name is fine, in a value not", `{"NaN": [1], "b": [NaN]}`, "column 20: non-finite value NaN"},
		{"value string", `{"a": "1"}`, "not an array"},
		{"value null", `{"a": null}`, "not an array"},
		{"value number", `{"a": 1}`, "not an array"},
		{"element null", `{"a": [1, null]}`, "element 1"},
		{"element string", `{"a": [1, "2"]}`, "element 1"},
		{"nested array", `{"a": [[1]]}`, "element 0"},
		{"huge number", `{"a": [1e400]}`, "finite"},
		{"negative", `{"a": [1, -0.5]}`, "non-negative"},
		{"ragged", `{"a": [1, 2], "b": [1]}`, "layers"},
		{"ragged avg", `{"a": [1, 2], "avg_score": [1]}`, "layers"},
		{"empty array", `{"a": []}`, "no layers"},
		{"empty object", `{}`, "no \"avg_score\" entry and no data sets"},
		{"zero average", `{"avg_score": [0, 0]}`, "zero"},
		{"zero data set, no avg", `{"a": [0, 0]}`, "cannot be averaged"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ReadReferenceScores(strings.NewReader(tc.in))
			if err == nil {
				t.Fatalf("got %+v, want an error", s)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("error %q does not mention %q", err, tc.contains)
			}
		})
	}
}

func TestWriteJSONErrors(t *testing.T) {
	bad := []*ReferenceScores{
		{},
		{Avg: []float64{math.NaN()}},
		{Avg: []float64{1}, Datasets: map[string][]float64{"a": {1, 2}}},
		{Avg: []float64{1}, Datasets: map[string][]float64{AvgKey: {1}}},
		{Avg: []float64{-1, 2}},
	}
	for i, s := range bad {
		var buf bytes.Buffer
		if err := s.WriteJSON(&buf); err == nil {
			t.Errorf("case %d: WriteJSON(%+v) wrote %q, want an error", i, s, buf.String())
		} else if buf.Len() != 0 {
			t.Errorf("case %d: wrote %q along with error %v", i, buf.String(), err)
		}
	}
	// Avg nil with data sets: written without avg_score, read back with
	// the computed average.
	s := &ReferenceScores{Datasets: map[string][]float64{"a": {1, 3}}}
	var buf bytes.Buffer
	if err := s.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	if buf.String() != `{"a":[1,3]}`+"\n" {
		t.Fatalf("wrote %q", buf.String())
	}
	// A failing writer is reported.
	if err := (&ReferenceScores{Avg: []float64{1}}).WriteJSON(failWriter{}); err == nil {
		t.Fatal("failing writer: no error")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func FuzzReadReferenceScores(f *testing.F) {
	for _, s := range []string{
		validScores,
		`{"a": [1, 3], "b": [2, 2]}`,
		`{"avg_score": [0.1, 0.2, 0.7]}`,
		`{"avg_score": [1e-300, 5e-324, 1.7976931348623157e308]}`,
		`{"x\u00e9": [0, 1], "avg_score": [-0, 1]}`,
		`{"a": [1, null]}`,
		`{"a": [1e400]}`,
		`{"a": [1, 2], "b": [1]}`,
		`{"a": [1], "a": [2, 3]}`,
		`[1, 2]`,
		"{\"a\": [1, 3]}\n{\"b\": [2, 2]}\n",
		"{\"a\": [1]}\n{\"a\": [1]}\n",
		"{\"avg_score\": [NaN, 1]}",
		"{\"a\": [1]}\n[",
		`{`,
		`{"a": [1]} trailing`,
		`{"avg_score": [0, 0]}`,
		``,
		"\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ReadReferenceScores(bytes.NewReader(data))
		if err != nil {
			if s != nil {
				t.Fatalf("error %v with a non-nil result", err)
			}
			return
		}
		n := len(s.Avg)
		if n == 0 {
			t.Fatalf("accepted with no average: %+v", s)
		}
		for k, v := range s.Datasets {
			if len(v) != n {
				t.Fatalf("data set %q has %d layers, average %d", k, len(v), n)
			}
		}
		// Accepted averages are usable weights.
		if _, err := Normalize(s.Avg); err != nil {
			t.Fatalf("accepted average %v: %v", s.Avg, err)
		}
		var buf bytes.Buffer
		if err := s.WriteJSON(&buf); err != nil {
			t.Fatalf("WriteJSON of an accepted file: %v", err)
		}
		back, err := ReadReferenceScores(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatalf("reading back %q: %v", buf.String(), err)
		}
		if !reflect.DeepEqual(back, s) {
			t.Fatalf("round trip differs:\n%+v\n%+v", s, back)
		}
	})
}
