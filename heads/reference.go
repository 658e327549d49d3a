package heads

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/compresskv/compresskv/internal/jsonpos"
	"github.com/compresskv/compresskv/kvcache"
)

// ErrFormat is wrapped by errors that report a malformed reference file.
var ErrFormat = errors.New("malformed reference file")

// ReadReferenceScores reads a per-trial score file of the reference
// implementation, a JSON object {"<layer>-<head>": [score per trial, ...]},
// and returns each head's mean score as Scores of layers x qHeads. Heads
// absent from the file score 0. Keys that are not two decimal indices joined
// by '-', indices out of range, repeated heads, empty or non-numeric lists,
// and non-finite values (including Python's NaN and Infinity literals) are
// errors wrapping ErrFormat. The whole input is read into memory.
func ReadReferenceScores(rd io.Reader, layers, qHeads int) (Scores, error) {
	if err := checkDims(layers, qHeads); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("heads: reference scores: %w", err)
	}
	s := make(Scores, layers)
	for l := range s {
		s[l] = make([]float64, qHeads)
	}
	seen := make([]bool, layers*qHeads)
	err = readObject(data, func(key string, vals []json.RawMessage) error {
		ls, hs, ok := strings.Cut(key, "-")
		l, okl := parseIndex(ls)
		h, okh := parseIndex(hs)
		if !ok || !okl || !okh {
			return fmt.Errorf("key %q is not \"<layer>-<head>\"", key)
		}
		if l >= layers || h >= qHeads {
			return fmt.Errorf("key %q: head (%d, %d) outside %d layers x %d heads", key, l, h, layers, qHeads)
		}
		if seen[l*qHeads+h] {
			return fmt.Errorf("key %q: head (%d, %d) appears twice", key, l, h)
		}
		seen[l*qHeads+h] = true
		if len(vals) == 0 {
			return fmt.Errorf("key %q: no scores", key)
		}
		var sum float64
		for i, raw := range vals {
			v, err := parseNumber(raw)
			if err != nil {
				return fmt.Errorf("key %q: score %d: %v", key, i, err)
			}
			sum += v
		}
		m := sum / float64(len(vals))
		if math.IsInf(m, 0) || math.IsNaN(m) {
			return fmt.Errorf("key %q: mean score overflows float64", key)
		}
		s[l][h] = m
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("heads: reference scores: %w", err)
	}
	return s, nil
}

// WriteReferenceScores writes per-trial scores, [trial][layer][head] as from
// Recorder.TrialScores, in the reference implementation's format: one line
// {"0-0": [t0, t1, ...], "0-1": [...], ...}, heads in layer then head order.
// Every trial must have the same shape and finite values. With no trials it
// writes {}.
func WriteReferenceScores(w io.Writer, perTrial [][][]float64) error {
	var layers []int // heads per layer, from trial 0
	if len(perTrial) > 0 {
		for _, row := range perTrial[0] {
			layers = append(layers, len(row))
		}
	}
	for t, tr := range perTrial {
		if len(tr) != len(layers) {
			return fmt.Errorf("heads: write reference scores: trial %d has %d layers, trial 0 has %d: %w", t, len(tr), len(layers), kvcache.ErrShape)
		}
		for l, row := range tr {
			if len(row) != layers[l] {
				return fmt.Errorf("heads: write reference scores: trial %d layer %d has %d heads, trial 0 has %d: %w", t, l, len(row), layers[l], kvcache.ErrShape)
			}
			for h, v := range row {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					return fmt.Errorf("heads: write reference scores: trial %d head (%d, %d) is %v: %w", t, l, h, v, kvcache.ErrNonFinite)
				}
			}
		}
	}
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	for l, n := range layers {
		for h := 0; h < n; h++ {
			if !first {
				b.WriteString(", ")
			}
			first = false
			fmt.Fprintf(&b, "\"%d-%d\": [", l, h)
			for t, tr := range perTrial {
				if t > 0 {
					b.WriteString(", ")
				}
				b.Write(strconv.AppendFloat(nil, tr[l][h], 'g', -1, 64))
			}
			b.WriteByte(']')
		}
	}
	b.WriteString("}\n")
	_, err := w.Write(b.Bytes())
	return err
}

// ReadReferenceRanking reads a ranking file of the reference implementation,
// a JSON object {"<layer>": [head indices, best first]}, and returns the
// ranking of each of the layers layers. A layer's list may rank a subset of
// its heads but not none. Missing layers, layers or heads out of range,
// repeated layers or heads, and non-integer entries are errors wrapping
// ErrFormat.
func ReadReferenceRanking(rd io.Reader, layers, qHeads int) ([][]int, error) {
	if err := checkDims(layers, qHeads); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("heads: reference ranking: %w", err)
	}
	out := make([][]int, layers)
	err = readObject(data, func(key string, vals []json.RawMessage) error {
		l, ok := parseIndex(key)
		if !ok {
			return fmt.Errorf("key %q is not a layer index", key)
		}
		if l >= layers {
			return fmt.Errorf("layer %d outside %d layers", l, layers)
		}
		if out[l] != nil {
			return fmt.Errorf("layer %d appears twice", l)
		}
		if len(vals) == 0 {
			return fmt.Errorf("layer %d: empty ranking", l)
		}
		if len(vals) > qHeads {
			return fmt.Errorf("layer %d: %d heads ranked, the layer has %d", l, len(vals), qHeads)
		}
		rank := make([]int, len(vals))
		seen := make([]bool, qHeads)
		for i, raw := range vals {
			h, err := strconv.Atoi(string(raw))
			if err != nil {
				return fmt.Errorf("layer %d: entry %d (%s) is not an integer head index", l, i, raw)
			}
			if h < 0 || h >= qHeads {
				return fmt.Errorf("layer %d: head %d outside [0, %d)", l, h, qHeads)
			}
			if seen[h] {
				return fmt.Errorf("layer %d: head %d ranked twice", l, h)
			}
			seen[h] = true
			rank[i] = h
		}
		out[l] = rank
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("heads: reference ranking: %w", err)
	}
	for l, r := range out {
		if r == nil {
			return nil, fmt.Errorf("heads: reference ranking: layer %d missing (want layers 0..%d): %w", l, layers-1, ErrFormat)
		}
	}
	return out, nil
}

// WriteReferenceRanking writes a ranking, [layer][heads best first] as from
// Scores.Ranking or Scores.Top, in the reference implementation's format
// {"<layer>": [heads...]}, one layer per line. Each layer must rank at least
// one head, with distinct non-negative indices.
func WriteReferenceRanking(w io.Writer, ranking [][]int) error {
	var b bytes.Buffer
	b.WriteString("{")
	for l, r := range ranking {
		if len(r) == 0 {
			return fmt.Errorf("heads: write reference ranking: layer %d: empty ranking", l)
		}
		seen := make(map[int]bool, len(r))
		for _, h := range r {
			if h < 0 || seen[h] {
				return fmt.Errorf("heads: write reference ranking: layer %d: head %d negative or repeated", l, h)
			}
			seen[h] = true
		}
		if l > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "\n  \"%d\": [", l)
		for i, h := range r {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(strconv.Itoa(h))
		}
		b.WriteByte(']')
	}
	if len(ranking) > 0 {
		b.WriteByte('\n')
	}
	b.WriteString("}\n")
	_, err := w.Write(b.Bytes())
	return err
}

// readObject decodes data as one JSON object whose values are arrays, and
// calls fn for each member in file order. Errors wrap ErrFormat.
func readObject(data []byte, fn func(key string, vals []json.RawMessage) error) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return formatErr(data, 0, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("want a JSON object, found %v: %w", tok, ErrFormat)
	}
	for dec.More() {
		at := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return formatErr(data, at, err)
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("at or after %s: want an object key, found %v: %w", where(data, at), tok, ErrFormat)
		}
		at = dec.InputOffset()
		var vals []json.RawMessage
		if err := dec.Decode(&vals); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				return fmt.Errorf("key %q: value is a JSON %s, want an array: %w", key, te.Value, ErrFormat)
			}
			return fmt.Errorf("key %q: %w", key, formatErr(data, at, err))
		}
		if vals == nil {
			return fmt.Errorf("key %q: value is null, want an array: %w", key, ErrFormat)
		}
		if err := fn(key, vals); err != nil {
			return fmt.Errorf("%w: %w", err, ErrFormat)
		}
	}
	at := dec.InputOffset()
	if _, err := dec.Token(); err != nil { // the closing brace
		return formatErr(data, at, err)
	}
	at = dec.InputOffset()
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%s: data after the JSON object: %w", where(data, at), ErrFormat)
	}
	return nil
}

// formatErr wraps a decoding error in ErrFormat. at is the input offset at
// which the failing read began. A syntax error caused by one of Python's
// non-finite literals (NaN, Infinity, -Infinity) says so.
func formatErr(data []byte, at int64, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		if lit, i := jsonpos.NonFiniteLiteral(data); i >= 0 {
			return fmt.Errorf("%s: non-finite value %s is not supported: %w", where(data, int64(i)), lit, ErrFormat)
		}
		return fmt.Errorf("at or after %s: %v: %w", where(data, at), err, ErrFormat)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("unexpected end of input: %w", ErrFormat)
	}
	return fmt.Errorf("at or after %s: %v: %w", where(data, at), err, ErrFormat)
}

// where names the first byte at or after offset off of data that is not
// JSON white space or a separator, as line and column (in bytes), both
// counted from 1.
func where(data []byte, off int64) string { return jsonpos.Where(data, jsonpos.SkipSpace(data, off)) }

// parseIndex parses a non-negative decimal index (digits only).
func parseIndex(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// parseNumber parses a JSON number into a finite float64.
func parseNumber(raw json.RawMessage) (float64, error) {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return 0, fmt.Errorf("%s is not a number", raw)
	}
	v, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%s is not a finite float64", raw)
	}
	return v, nil
}
