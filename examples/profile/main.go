// Command profile converts the published files of the CompressKV reference
// implementation into this library's profile JSON: the head ranking file
// ({"<layer>": [query heads, best first]}, its "_head_idx.json") gives each
// layer's semantic retrieval heads, and the layer score file (one JSON object,
// or JSON Lines, with an "avg_score" entry: its "_layer_score.jsonl") gives
// the layer weights of the error-aware budgets.
//
//	go run ./examples/profile -model llama-3.1-8b-instruct \
//	    -ranking Llama-3.1-8B-Instruct_head_idx.json \
//	    -layer-scores Llama-3.1-8B-Instruct_layer_score.jsonl -o llama-3.1-8b.profile.json
//	go run ./examples/profile -model my-model -layers 24 -query-heads 16 -kv-heads 4 -head-dim 64 \
//	    -ranking head_idx.json -o my-model.profile.json
//
// The model's shape comes from a preset (-model names one) or from the shape
// flags. A ranking that lists every query head of a layer gives a profile
// with 4 SR heads per layer (-k changes it); one that lists only some heads
// gives a profile that uses exactly those (all layers must list the same
// number, or -k picks the first k of each). Without -layer-scores the
// profile has no layer weights and CompressKV allocates budgets uniformly.
//
// The reference's files are published with the reference implementation
// (its scores directory) and are not part of this repository.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/compresskv/compresskv/alloc"
	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/heads"
)

// presets are the shapes of the models the reference published files for,
// by lower-case name without the organisation.
var presets = map[string]compresskv.ModelInfo{
	"llama-3.1-8b-instruct":    {Name: "meta-llama/Llama-3.1-8B-Instruct", Layers: 32, QueryHeads: 32, KVHeads: 8, HeadDim: 128},
	"mistral-7b-instruct-v0.3": {Name: "mistralai/Mistral-7B-Instruct-v0.3", Layers: 32, QueryHeads: 32, KVHeads: 8, HeadDim: 128},
}

// preset returns the preset named name (case-insensitive, with or without
// the organisation, e.g. "meta-llama/Llama-3.1-8B-Instruct").
func preset(name string) (compresskv.ModelInfo, bool) {
	key := strings.ToLower(name)
	if i := strings.LastIndexByte(key, '/'); i >= 0 {
		key = key[i+1:]
	}
	m, ok := presets[key]
	return m, ok
}

func presetNames() string {
	names := make([]string, 0, len(presets))
	for k := range presets {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func main() {
	os.Exit(mainCode(os.Args[1:], os.Stdout, os.Stderr))
}

// mainCode runs the command and returns its exit status: 0 on success and
// for -h, 2 for a bad command line, 1 for any other error.
func mainCode(args []string, stdout, stderr io.Writer) int {
	err := run(args, stdout, stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(parseError)):
		return 2 // the flag package has said what is wrong
	case errors.As(err, new(usageError)):
		fmt.Fprintln(stderr, "profile:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "profile:", err)
		return 1
	}
}

// usageError reports a bad command line (the flag package reports its own).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// parseError is an error of the flag package, which reports it itself.
type parseError struct{ err error }

func (e parseError) Error() string { return e.err.Error() }

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("profile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		rankingPath = fs.String("ranking", "", "the reference's head ranking JSON, {\"<layer>\": [heads, best first]} (required)")
		scoresPath  = fs.String("layer-scores", "", "the reference's layer score file with \"avg_score\" (JSON or JSON Lines); empty: no layer weights")
		model       = fs.String("model", "", "a preset ("+presetNames()+") or, with the shape flags, the model's name")
		layers      = fs.Int("layers", 0, "transformer layers (with a preset: must agree)")
		qHeads      = fs.Int("query-heads", 0, "query heads per layer")
		kvHeads     = fs.Int("kv-heads", 0, "KV heads per layer")
		headDim     = fs.Int("head-dim", 0, "values per head")
		k           = fs.Int("k", 0, "SR heads per layer; 0: as many as a partial ranking lists, 4 for a full one")
		out         = fs.String("o", "-", "output profile JSON ('-': standard output)")
	)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: profile -model NAME [shape flags] -ranking FILE [-layer-scores FILE] [-k N] [-o FILE]\n\n"+
			"Converts the CompressKV reference's published head ranking and layer scores into a profile.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return parseError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q (every input is a flag)", fs.Arg(0))}
	}
	if *rankingPath == "" {
		return usageError{"-ranking is required"}
	}
	m, err := shape(*model, *layers, *qHeads, *kvHeads, *headDim)
	if err != nil {
		return err
	}
	if *k < 0 {
		return usageError{fmt.Sprintf("-k %d must not be negative", *k)}
	}
	ranking, err := openSource(*rankingPath)
	if err != nil {
		return err
	}
	defer ranking.Close()
	var scores *source
	if *scoresPath != "" {
		if scores, err = openSource(*scoresPath); err != nil {
			return err
		}
		defer scores.Close()
	}
	p, err := convert(m, *k, ranking, scores)
	if err != nil {
		return err
	}
	if *out == "-" {
		err = p.WriteJSON(stdout)
	} else {
		err = p.Save(*out)
	}
	if err != nil {
		return err
	}
	full := "full rankings"
	for _, r := range p.HeadRanking {
		if len(r) < m.QueryHeads {
			full = "partial rankings"
		}
	}
	weights := "no layer weights (uniform budgets)"
	if p.LayerWeights != nil {
		weights = "layer weights"
	}
	fmt.Fprintf(stderr, "%s: %s, %d layers, %d SR heads per layer (%s), %s\n", *out, m.Name, m.Layers, p.SRHeadsPerLayer, full, weights)
	return nil
}

// shape returns the model's shape from a preset or from the flags.
func shape(name string, layers, qHeads, kvHeads, headDim int) (compresskv.ModelInfo, error) {
	flags := compresskv.ModelInfo{Name: name, Layers: layers, QueryHeads: qHeads, KVHeads: kvHeads, HeadDim: headDim}
	if m, ok := preset(name); ok {
		for _, f := range []struct {
			flag      string
			got, want int
		}{{"layers", layers, m.Layers}, {"query-heads", qHeads, m.QueryHeads}, {"kv-heads", kvHeads, m.KVHeads}, {"head-dim", headDim, m.HeadDim}} {
			if f.got != 0 && f.got != f.want {
				return m, usageError{fmt.Sprintf("-%s %d disagrees with the preset %s (%d)", f.flag, f.got, name, f.want)}
			}
		}
		return m, nil
	}
	if name == "" {
		return flags, usageError{"-model is required: a preset (" + presetNames() + ") or a name with -layers, -query-heads, -kv-heads and -head-dim"}
	}
	if layers <= 0 || qHeads <= 0 || kvHeads <= 0 || headDim <= 0 {
		return flags, usageError{fmt.Sprintf("%q is not a preset (%s): give -layers, -query-heads, -kv-heads and -head-dim, all positive", name, presetNames())}
	}
	if qHeads%kvHeads != 0 {
		return flags, usageError{fmt.Sprintf("%d query heads is not a multiple of %d KV heads", qHeads, kvHeads)}
	}
	return flags, nil
}

// source is an input file, named in errors and notes.
type source struct {
	name string
	r    io.Reader
	io.Closer
}

func openSource(path string) (*source, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return &source{name: path, r: f, Closer: f}, nil
}

// read returns the whole input and a note naming it: base name and SHA-256.
func (s *source) read() ([]byte, string, error) {
	data, err := io.ReadAll(s.r)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", s.name, err)
	}
	return data, fmt.Sprintf("%s (sha256 %x)", filepath.Base(s.name), sha256.Sum256(data)), nil
}

// convert builds the profile of model m from a reference ranking and, if
// scores is not nil, a reference layer score file. k is the SR head count
// (0: see the command's documentation). Every error names the file at fault.
func convert(m compresskv.ModelInfo, k int, ranking, scores *source) (*compresskv.Profile, error) {
	data, rankNote, err := ranking.read()
	if err != nil {
		return nil, err
	}
	rank, err := heads.ReadReferenceRanking(bytes.NewReader(data), m.Layers, m.QueryHeads)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (model %s: %d layers x %d query heads)", ranking.name, err, m.Name, m.Layers, m.QueryHeads)
	}
	// The count: one for every layer.
	shortest, longest := 0, 0
	for l, r := range rank {
		if len(r) < len(rank[shortest]) {
			shortest = l
		}
		if len(r) > len(rank[longest]) {
			longest = l
		}
	}
	lo, hi := len(rank[shortest]), len(rank[longest])
	kNote := fmt.Sprintf("%d, set by -k", k)
	switch {
	case k > lo:
		return nil, fmt.Errorf("%s: -k %d SR heads per layer, but layer %d lists only %d heads", ranking.name, k, shortest, lo)
	case k > 0:
	case lo < hi:
		return nil, fmt.Errorf("%s: layer %d lists %d heads but layer %d lists %d: a profile has one SR head count for every layer; pass -k (at most %d) to take the first k heads of each", ranking.name, shortest, lo, longest, hi, lo)
	case lo < m.QueryHeads:
		k, kNote = lo, fmt.Sprintf("%d, the heads each layer of the ranking lists", lo)
	default:
		k = min(compresskv.DefaultSRHeads, m.QueryHeads)
		kNote = fmt.Sprintf("%d, the reference's default (the ranking is full: any k up to %d can be set)", k, m.QueryHeads)
	}
	p := &compresskv.Profile{
		Version:         compresskv.ProfileVersion,
		Model:           m,
		SRHeadsPerLayer: k,
		HeadRanking:     rank,
		Notes: map[string]string{
			"source":   "converted from the CompressKV reference implementation's published files",
			"ranking":  rankNote,
			"sr_heads": kNote,
		},
	}
	if scores != nil {
		data, note, err := scores.read()
		if err != nil {
			return nil, err
		}
		s, err := alloc.ReadReferenceScores(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", scores.name, err)
		}
		if len(s.Avg) != m.Layers {
			return nil, fmt.Errorf("%s: layer scores for %d layers, the model (%s) has %d", scores.name, len(s.Avg), m.Name, m.Layers)
		}
		p.LayerWeights = s.Avg
		if hasKey(data, alloc.AvgKey) {
			note += fmt.Sprintf("; its %q entry", alloc.AvgKey)
		} else {
			note += fmt.Sprintf("; no %q entry: the average of its %d data sets, each normalised", alloc.AvgKey, len(s.Datasets))
		}
		p.Notes["layer_scores"] = note
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", ranking.name, err)
	}
	return p, nil
}

// hasKey reports whether one of the JSON objects in data (already read
// without error) has the key.
func hasKey(data []byte, key string) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var obj map[string]json.RawMessage
		if dec.Decode(&obj) != nil {
			return false
		}
		if _, ok := obj[key]; ok {
			return true
		}
	}
}
