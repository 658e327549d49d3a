package compresskv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/compresskv/compresskv/heads"
	"github.com/compresskv/compresskv/internal/jsonpos"
)

// ProfileVersion is the version of the profile format this package writes.
// Version 1 (no "sr_heads", every layer ranks all its query heads) is still
// read, with the same meaning as before.
const ProfileVersion = 2

// ModelInfo identifies the model a profile was measured on.
type ModelInfo struct {
	Name       string `json:"name"`        // free-form model name
	Layers     int    `json:"layers"`      // transformer layers
	QueryHeads int    `json:"query_heads"` // query heads per layer (H)
	KVHeads    int    `json:"kv_heads"`    // KV heads per layer (G)
	HeadDim    int    `json:"head_dim"`    // values per head (d)
}

// Profile is what the offline half of the method measures once per model:
// the ranking of query heads per layer by semantic retrieval score (the SR
// heads of a layer are the first k), and the per-layer weights of the
// error-aware budget allocation. Its JSON form is described field by field
// in docs/DESIGN.md ("Profiles").
type Profile struct {
	Version int       `json:"version"` // 1 or 2 (ProfileVersion)
	Model   ModelInfo `json:"model"`   // the model it was measured on
	// SRHeadsPerLayer ("sr_heads") is the number k of semantic retrieval
	// heads per layer the profile prescribes: the first k heads of each
	// layer's ranking. CompressKV uses it when Config.SRHeads is zero. Zero
	// (always so in version 1) prescribes nothing: Config.SRHeads, or
	// DefaultSRHeads, decides. Version 2 only.
	SRHeadsPerLayer int `json:"sr_heads,omitempty"`
	// HeadRanking holds, per layer, query head indices ordered by score,
	// descending. A full ranking lists every query head, which lets k
	// change without probing again. A partial ranking lists only some (at
	// least SRHeadsPerLayer, which must then be set), as when a published
	// file names only each layer's SR heads.
	HeadRanking [][]int `json:"head_ranking"`
	// HeadScores holds the SR score per layer and query head (optional).
	HeadScores [][]float64 `json:"head_scores,omitempty"`
	// RetrievalScores holds the classic retrieval score per layer and query
	// head, for comparison and ablation (optional).
	RetrievalScores [][]float64 `json:"retrieval_scores,omitempty"`
	// LayerWeights are the normalised eviction errors per layer (optional;
	// without them CompressKV allocates budgets uniformly).
	LayerWeights []float64 `json:"layer_weights,omitempty"`
	// Notes records how the profile was measured (free form, optional).
	Notes map[string]string `json:"notes,omitempty"`
}

// NewProfile builds a validated profile for model from measured scores:
// sr ranks the heads (package heads' Recorder.SR), retrieval (optional, may
// be nil) is kept for comparison, layerWeights (optional) are the normalised
// eviction errors (package alloc). The profile ranks every head of every
// layer and prescribes no SR head count (set SRHeadsPerLayer for one).
func NewProfile(model ModelInfo, sr, retrieval heads.Scores, layerWeights []float64) (*Profile, error) {
	p := &Profile{
		Version:         ProfileVersion,
		Model:           model,
		HeadRanking:     sr.Ranking(),
		HeadScores:      sr,
		RetrievalScores: retrieval,
		LayerWeights:    layerWeights,
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// ErrProfile is wrapped by every error about a malformed profile.
var ErrProfile = errors.New("invalid profile")

// Validate returns an error wrapping ErrProfile if the profile is
// inconsistent: unknown version, bad model shape, an SR head count out of
// range, rankings with heads out of range or repeated, rankings shorter
// than the model's query heads without an SR head count (or shorter than
// it), score tables of the wrong shape or with non-finite values, layer
// weights that are negative, non-finite or all zero.
func (p *Profile) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("profile: %s: %w", fmt.Sprintf(format, a...), ErrProfile)
	}
	if p.Version != 1 && p.Version != ProfileVersion {
		return bad("version %d, want 1 or %d", p.Version, ProfileVersion)
	}
	m := p.Model
	if m.Layers <= 0 || m.QueryHeads <= 0 || m.KVHeads <= 0 || m.HeadDim <= 0 {
		return bad("model shape %+v: every dimension must be positive", m)
	}
	if m.QueryHeads%m.KVHeads != 0 {
		return bad("%d query heads is not a multiple of %d KV heads", m.QueryHeads, m.KVHeads)
	}
	k := p.SRHeadsPerLayer
	switch {
	case k != 0 && p.Version == 1:
		return bad("sr_heads %d needs version 2 (version 1 has no SR head count)", k)
	case k < 0 || k > m.QueryHeads:
		return bad("sr_heads %d outside [0, %d] (0: not set; at most the model's query heads)", k, m.QueryHeads)
	case k != 0 && p.HeadRanking == nil:
		return bad("sr_heads %d without a head ranking", k)
	}
	if p.HeadRanking != nil {
		if len(p.HeadRanking) != m.Layers {
			return bad("head ranking for %d layers, model has %d", len(p.HeadRanking), m.Layers)
		}
		for l, r := range p.HeadRanking {
			switch {
			case len(r) > m.QueryHeads:
				return bad("layer %d ranks %d heads, the model has %d", l, len(r), m.QueryHeads)
			case len(r) < m.QueryHeads && k == 0:
				return bad("layer %d ranks %d heads, want all %d (a partial ranking needs sr_heads, version 2)", l, len(r), m.QueryHeads)
			case len(r) < k:
				return bad("layer %d ranks %d heads, fewer than its %d SR heads (sr_heads)", l, len(r), k)
			}
			seen := make([]bool, m.QueryHeads)
			for _, h := range r {
				if h < 0 || h >= m.QueryHeads {
					return bad("layer %d: head %d outside the %d query heads", l, h, m.QueryHeads)
				}
				if seen[h] {
					return bad("layer %d: head %d ranked twice (a ranking is a permutation of the query heads, or of some of them)", l, h)
				}
				seen[h] = true
			}
		}
	}
	for _, t := range []struct {
		name string
		s    [][]float64
	}{{"head scores", p.HeadScores}, {"retrieval scores", p.RetrievalScores}} {
		if t.s == nil {
			continue
		}
		if len(t.s) != m.Layers {
			return bad("%s for %d layers, model has %d", t.name, len(t.s), m.Layers)
		}
		for l, row := range t.s {
			if len(row) != m.QueryHeads {
				return bad("%s: layer %d has %d heads, want %d", t.name, l, len(row), m.QueryHeads)
			}
			for h, v := range row {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					return bad("%s: layer %d head %d is %v", t.name, l, h, v)
				}
			}
		}
	}
	if p.LayerWeights != nil {
		if len(p.LayerWeights) != m.Layers {
			return bad("%d layer weights, model has %d layers", len(p.LayerWeights), m.Layers)
		}
		sum := 0.0
		for l, w := range p.LayerWeights {
			if math.IsNaN(w) || math.IsInf(w, 0) || w < 0 {
				return bad("layer weight %d is %v", l, w)
			}
			sum += w
		}
		if sum == 0 {
			return bad("layer weights are all zero")
		}
	}
	return nil
}

// SRHeads returns the first k query heads of layer's ranking (the layer's
// semantic retrieval heads), or an error if the profile has no ranking for
// it or k is out of range (below 1, or beyond what the layer ranks).
func (p *Profile) SRHeads(layer, k int) ([]int, error) {
	if layer < 0 || layer >= len(p.HeadRanking) {
		return nil, fmt.Errorf("profile: no head ranking for layer %d (%d layers ranked)", layer, len(p.HeadRanking))
	}
	r := p.HeadRanking[layer]
	if k < 1 || k > len(r) {
		return nil, fmt.Errorf("profile: %d SR heads requested, layer %d ranks %d", k, layer, len(r))
	}
	return r[:k], nil
}

// checkSRHeads returns an error if some layer ranks fewer than k heads, so
// that the profile cannot give k SR heads per layer. A version-1 profile
// (or one without sr_heads) ranks every head of every layer.
func (p *Profile) checkSRHeads(k int) error {
	for l, r := range p.HeadRanking {
		if len(r) < k {
			if p.SRHeadsPerLayer > 0 {
				return fmt.Errorf("%d SR heads per layer, but layer %d of the profile ranks only %d heads (its sr_heads is %d; leave Config.SRHeads at 0 to use it)", k, l, len(r), p.SRHeadsPerLayer)
			}
			return fmt.Errorf("%d SR heads per layer, but the profile ranks %d heads in layer %d (the model has %d query heads; set Config.SRHeads, or sr_heads in the profile)", k, len(r), l, p.Model.QueryHeads)
		}
	}
	return nil
}

// ReadProfile decodes and validates a profile from JSON. Unknown fields are
// an error, so that a misspelt key is not silently ignored. Every error
// wraps ErrProfile (or is the reader's own), and one in the JSON text says
// where: line and column, counted from 1.
func ReadProfile(r io.Reader) (*Profile, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p Profile
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("profile: %s: %w", jsonProblem(data, err), ErrProfile)
	}
	at := dec.InputOffset()
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("profile: %s: data after the JSON object: %w", jsonpos.Where(data, jsonpos.SkipSpace(data, at)), ErrProfile)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// jsonProblem says what encoding/json found wrong in data and where, in
// the file's terms.
func jsonProblem(data []byte, err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		if lit, i := jsonpos.NonFiniteLiteral(data); i >= 0 {
			return fmt.Sprintf("%s: %s is not a JSON number (write a finite value)", jsonpos.Where(data, int64(i)), lit)
		}
		return fmt.Sprintf("%s: %s", jsonpos.Where(data, syn.Offset-1), strings.TrimPrefix(syn.Error(), "json: "))
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "the profile"
		}
		return fmt.Sprintf("%s: %s is a JSON %s, want %s", jsonpos.Where(data, typ.Offset-1), field, typ.Value, typ.Type)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Sprintf("%s: the JSON ends before the profile does", jsonpos.Where(data, int64(len(data))))
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if name, ok := strings.CutPrefix(msg, "unknown field "); ok {
		// encoding/json names the field but not where it is.
		if key, uerr := strconv.Unquote(name); uerr == nil {
			if i := bytes.Index(data, []byte(strconv.Quote(key))); i >= 0 {
				return fmt.Sprintf("%s: unknown field %q (the fields are those of docs/DESIGN.md, \"Profiles\")", jsonpos.Where(data, int64(i)), key)
			}
		}
	}
	return msg
}

// LoadProfile reads a profile from a file (see ReadProfile); its errors
// begin with the file's path.
func LoadProfile(path string) (*Profile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := ReadProfile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// WriteJSON validates the profile and writes it as indented JSON.
func (p *Profile) WriteJSON(w io.Writer) error {
	if err := p.Validate(); err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}

// Save writes the profile to a file (see WriteJSON).
func (p *Profile) Save(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := p.WriteJSON(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
