package alloc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"

	"github.com/compresskv/compresskv/internal/jsonpos"
)

// AvgKey is the key of the averaged weights in the reference score file.
const AvgKey = "avg_score"

// ReferenceScores is the reference implementation's per-layer score file
// (its "_layer_score.jsonl"): JSON objects mapping each data-set name to its
// per-layer weights (an array of numbers), with the key "avg_score" holding
// the average over data sets, which is what [ErrorAware] takes.
//
// All arrays have the same length, one value per layer; values are finite and
// non-negative. Avg is kept as read, not renormalised.
type ReferenceScores struct {
	Datasets map[string][]float64 // per data set, one weight per layer
	Avg      []float64            // the "avg_score" entry
}

// ReadReferenceScores reads a reference score file from r: either one JSON
// object (as published, often indented over many lines) or a sequence of
// JSON objects (JSON Lines, as the reference's measuring script appends one
// {"<data set>": [...]} per run), whose members are merged. It costs one
// pass over the input and memory proportional to it.
//
// If the file has no "avg_score" entry, Avg is computed from the data sets
// with [Average] (normalise each, average, normalise again). It returns an
// error, saying where (line and column), if the input is not JSON objects, if a
// key appears twice (in one object or across lines), if a value is not an
// array of numbers, if the arrays are empty or differ in length, if a value
// is negative or not finite (including Python's NaN and Infinity literals
// and numbers beyond the float64 range), if the average sums to zero, or if
// there is neither an "avg_score" entry nor any data set.
func ReadReferenceScores(r io.Reader) (*ReferenceScores, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("alloc: reference scores: %w", err)
	}
	s := &ReferenceScores{Datasets: map[string][]float64{}}
	var avg []float64
	hasAvg := false
	seen := map[string]int64{} // key -> offset of its first appearance
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for objects := 0; ; objects++ {
		at := dec.InputOffset()
		tok, err := dec.Token()
		if err == io.EOF {
			if objects == 0 {
				return nil, errors.New("alloc: reference scores: empty input, want a JSON object")
			}
			break
		}
		if err != nil {
			if objects > 0 && !errors.Is(err, io.ErrUnexpectedEOF) {
				if _, i := jsonpos.NonFiniteLiteral(data); i < 0 {
					return nil, fmt.Errorf("alloc: reference scores: %s: data after JSON object %d that is not another JSON object (one per line)", jsonpos.Where(data, jsonpos.SkipSpace(data, at)), objects)
				}
			}
			return nil, fmt.Errorf("alloc: reference scores: %s", syntaxErr(data, at, err))
		}
		if d, ok := tok.(json.Delim); !ok || d != '{' {
			what := "top level"
			if objects > 0 {
				what = fmt.Sprintf("%s, after JSON object %d,", jsonpos.Where(data, jsonpos.SkipSpace(data, at)), objects)
			}
			return nil, fmt.Errorf("alloc: reference scores: %s is %s, not a JSON object", what, tokenKind(tok))
		}
		for dec.More() {
			at := dec.InputOffset()
			tok, err := dec.Token()
			if err != nil {
				return nil, fmt.Errorf("alloc: reference scores: %s", syntaxErr(data, at, err))
			}
			k, ok := tok.(string)
			if !ok {
				return nil, fmt.Errorf("alloc: reference scores: %s: want a key, found %s", jsonpos.Where(data, at), tokenKind(tok))
			}
			if first, dup := seen[k]; dup {
				return nil, fmt.Errorf("alloc: reference scores: key %q appears twice (%s and %s)", k, jsonpos.Where(data, first), jsonpos.Where(data, jsonpos.SkipSpace(data, at)))
			}
			seen[k] = jsonpos.SkipSpace(data, at)
			at = dec.InputOffset()
			var v any
			if err := dec.Decode(&v); err != nil {
				return nil, fmt.Errorf("alloc: reference scores: key %q: %s", k, syntaxErr(data, at, err))
			}
			xs, err := numberArray(v)
			if err != nil {
				return nil, fmt.Errorf("alloc: reference scores: key %q (%s): %w", k, jsonpos.Where(data, at), err)
			}
			if k == AvgKey {
				avg, hasAvg = xs, true
			} else {
				s.Datasets[k] = xs
			}
		}
		at = dec.InputOffset()
		if _, err := dec.Token(); err != nil { // the closing brace
			return nil, fmt.Errorf("alloc: reference scores: %s", syntaxErr(data, at, err))
		}
	}
	if !hasAvg && len(s.Datasets) == 0 {
		return nil, fmt.Errorf("alloc: reference scores: no %q entry and no data sets", AvgKey)
	}
	s.Avg = avg
	if err := s.validate(); err != nil {
		return nil, err
	}
	if !hasAvg {
		keys := sortedKeys(s.Datasets)
		per := make([][]float64, len(keys))
		for i, k := range keys {
			per[i] = s.Datasets[k]
		}
		a, err := Average(per)
		if err != nil {
			return nil, fmt.Errorf("alloc: reference scores: no %q entry, and the data sets cannot be averaged: %w", AvgKey, err)
		}
		s.Avg = a
	}
	return s, nil
}

// validate checks lengths and values; Avg may be nil if there are data sets.
func (s *ReferenceScores) validate() error {
	if _, ok := s.Datasets[AvgKey]; ok {
		return fmt.Errorf("alloc: reference scores: data set named %q clashes with the average", AvgKey)
	}
	if s.Avg == nil && len(s.Datasets) == 0 {
		return errors.New("alloc: reference scores: no average and no data sets")
	}
	n, first := -1, ""
	check := func(name string, xs []float64) error {
		if len(xs) == 0 {
			return fmt.Errorf("alloc: reference scores: key %q: no layers", name)
		}
		if n < 0 {
			n, first = len(xs), name
		} else if len(xs) != n {
			return fmt.Errorf("alloc: reference scores: key %q has %d layers, key %q has %d", name, len(xs), first, n)
		}
		for i, x := range xs {
			if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
				return fmt.Errorf("alloc: reference scores: key %q: layer %d is %v: must be finite and non-negative", name, i, x)
			}
		}
		return nil
	}
	if s.Avg != nil {
		if err := check(AvgKey, s.Avg); err != nil {
			return err
		}
		sum := 0.0
		for _, x := range s.Avg {
			sum += x
		}
		if sum == 0 {
			return fmt.Errorf("alloc: reference scores: key %q sums to zero", AvgKey)
		}
	}
	for _, k := range sortedKeys(s.Datasets) {
		if err := check(k, s.Datasets[k]); err != nil {
			return err
		}
	}
	return nil
}

// WriteJSON writes s as a reference score file: one JSON object, keys sorted,
// each data set and "avg_score" (omitted if Avg is nil) as an array of
// numbers, followed by a newline. Numbers are written in the shortest form
// that reads back to the same float64. It returns an error, writing nothing,
// if s breaks the rules [ReadReferenceScores] enforces.
func (s *ReferenceScores) WriteJSON(w io.Writer) error {
	if err := s.validate(); err != nil {
		return err
	}
	obj := make(map[string][]float64, len(s.Datasets)+1)
	for k, v := range s.Datasets {
		obj[k] = v
	}
	if s.Avg != nil {
		obj[AvgKey] = s.Avg
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return fmt.Errorf("alloc: reference scores: %w", err)
	}
	b = append(b, '\n')
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("alloc: reference scores: %w", err)
	}
	return nil
}

// numberArray converts a decoded JSON value to a slice of float64, which must
// be an array of numbers (not null).
func numberArray(v any) ([]float64, error) {
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("value is %s, not an array of numbers", jsonKind(v))
	}
	out := make([]float64, len(arr))
	for i, e := range arr {
		num, ok := e.(json.Number)
		if !ok {
			return nil, fmt.Errorf("element %d is %s, not a number", i, jsonKind(e))
		}
		x, err := strconv.ParseFloat(string(num), 64)
		if err != nil {
			return nil, fmt.Errorf("element %d (%s) is not a finite float64", i, num)
		}
		out[i] = x
	}
	return out, nil
}

// syntaxErr describes a decoding error that began at offset at. A syntax
// error caused by one of Python's non-finite literals (NaN, Infinity,
// -Infinity) says so.
func syntaxErr(data []byte, at int64, err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		if lit, i := jsonpos.NonFiniteLiteral(data); i >= 0 {
			return fmt.Sprintf("%s: non-finite value %s is not supported (layer scores must be finite and non-negative)", jsonpos.Where(data, int64(i)), lit)
		}
		return fmt.Sprintf("at or after %s: %v", jsonpos.Where(data, jsonpos.SkipSpace(data, at)), err)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of input (EOF)"
	}
	return fmt.Sprintf("at or after %s: %v", jsonpos.Where(data, jsonpos.SkipSpace(data, at)), err)
}

// tokenKind names a JSON token as returned by json.Decoder.Token.
func tokenKind(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			return "an array"
		}
		return fmt.Sprintf("%q", string(t))
	}
	return jsonKind(tok)
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
