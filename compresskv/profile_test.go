package compresskv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/heads"
	"github.com/compresskv/compresskv/kvcache"
)

func TestProfileRoundTrip(t *testing.T) {
	rng, _ := newRNG(t)
	p := randomProfile(rng, kvcache.Shape{Layers: 3, KVHeads: 2, HeadDim: 8}, 4, true)
	p.HeadScores = [][]float64{{0.5, 0.1, 0, 0.2}, {0, 0, 0, 0}, {1, 2, 3, 4}}
	p.Notes = map[string]string{"probe": "3 needles x 4 lengths x 11 depths"}
	path := filepath.Join(t.TempDir(), "profile.json")
	if err := p.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := LoadProfile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, p) {
		t.Fatalf("round trip changed the profile:\n%+v\n%+v", got, p)
	}
	heads, err := got.SRHeads(1, 2)
	if err != nil || !reflect.DeepEqual(heads, p.HeadRanking[1][:2]) {
		t.Fatalf("SRHeads: %v %v", heads, err)
	}
	if _, err := got.SRHeads(3, 1); err == nil {
		t.Fatal("SRHeads of a missing layer succeeded")
	}
	if _, err := got.SRHeads(0, 5); err == nil {
		t.Fatal("SRHeads beyond the head count succeeded")
	}
}

func TestProfileErrors(t *testing.T) {
	good := `{"version":1,"model":{"name":"m","layers":2,"query_heads":2,"kv_heads":1,"head_dim":4},"head_ranking":[[1,0],[0,1]],"layer_weights":[0.3,0.7]}`
	if _, err := ReadProfile(strings.NewReader(good)); err != nil {
		t.Fatalf("valid profile rejected: %v", err)
	}
	v2 := strings.Replace(good, `"version":1`, `"version":2`, 1)
	if _, err := ReadProfile(strings.NewReader(v2)); err != nil {
		t.Fatalf("valid version-2 profile rejected: %v", err)
	}
	partial := strings.Replace(v2, `"head_ranking":[[1,0],[0,1]]`, `"sr_heads":1,"head_ranking":[[1],[0,1]]`, 1)
	if _, err := ReadProfile(strings.NewReader(partial)); err != nil {
		t.Fatalf("valid partial profile rejected: %v", err)
	}
	cases := map[string]string{
		"version 3":           strings.Replace(good, `"version":1`, `"version":3`, 1),
		"head 1 ranked twice": strings.Replace(good, `[1,0]`, `[1,1]`, 1),
		"head 2 outside":      strings.Replace(good, `[1,0]`, `[1,2]`, 1),
		"head -1 outside":     strings.Replace(good, `[1,0]`, `[1,-1]`, 1),
		"ranks 1 heads":       strings.Replace(good, `[1,0]`, `[1]`, 1),
		"layer 0 ranks 1 heads, want all 2 (a partial ranking needs sr_heads": strings.Replace(v2, `[1,0]`, `[1]`, 1),
		"layer 0 ranks 3 heads":                                    strings.Replace(good, `[1,0]`, `[1,0,1]`, 1),
		"sr_heads 1 needs version 2":                               strings.Replace(partial, `"version":2`, `"version":1`, 1),
		"sr_heads 3 outside":                                       strings.Replace(v2, `"head_ranking"`, `"sr_heads":3,"head_ranking"`, 1),
		"sr_heads -1 outside":                                      strings.Replace(v2, `"head_ranking"`, `"sr_heads":-1,"head_ranking"`, 1),
		"sr_heads 2 without":                                       strings.Replace(v2, `"head_ranking":[[1,0],[0,1]]`, `"sr_heads":2`, 1),
		"layer 0 ranks 1 heads, fewer than its 2 SR heads":         strings.Replace(partial, `"sr_heads":1`, `"sr_heads":2`, 1),
		"layer weight 1 is -0.7":                                   strings.Replace(good, `0.7`, `-0.7`, 1),
		"head ranking for 2 layers, model has 3":                   strings.Replace(good, `"layers":2`, `"layers":3`, 1),
		"2 layer weights, model has 3 layers":                      `{"version":1,"model":{"name":"m","layers":3,"query_heads":2,"kv_heads":1,"head_dim":4},"layer_weights":[0.3,0.7]}`,
		"unknown field":                                            strings.Replace(good, `"version"`, `"vresion":1,"version"`, 1),
		"line 1, column 41: the JSON ends before the profile does": good[:40],
		"data after the JSON object":                               good + "{}",
		"not a multiple":                                           strings.Replace(good, `"kv_heads":1`, `"kv_heads":3`, 1),
		"layer weights are all zero":                               strings.Replace(good, `[0.3,0.7]`, `[0,0]`, 1),
	}
	for want, in := range cases {
		_, err := ReadProfile(strings.NewReader(in))
		if err == nil || !errors.Is(err, ErrProfile) {
			t.Errorf("%s: error %v, want ErrProfile", want, err)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// FuzzReadProfile: arbitrary input never panics; what is accepted is valid
// and survives a write/read round trip.
func FuzzReadProfile(f *testing.F) {
	f.Add(`{"version":1,"model":{"name":"m","layers":2,"query_heads":2,"kv_heads":1,"head_dim":4},"head_ranking":[[1,0],[0,1]],"layer_weights":[0.3,0.7]}`)
	f.Add(`{"version":1,"model":{"layers":1,"query_heads":1,"kv_heads":1,"head_dim":1},"head_ranking":[[0]],"head_scores":[[1e308]]}`)
	f.Add(`{"version":2,"model":{"name":"m","layers":2,"query_heads":4,"kv_heads":2,"head_dim":4},"sr_heads":2,"head_ranking":[[3,1],[0,2,1]]}`)
	f.Add(`{"version":1,"model":{"layers":1,"query_heads":2,"kv_heads":1,"head_dim":1},"sr_heads":1,"head_ranking":[[0]]}`)
	f.Add(`{"version":1,"model":{"layers":-1}}`)
	f.Add(`[]`)
	f.Add(`{"version":1,"model":{"layers":1,"query_heads":2,"kv_heads":2,"head_dim":1},"head_ranking":[[0,7]]}`)
	f.Fuzz(func(t *testing.T, in string) {
		p, err := ReadProfile(strings.NewReader(in))
		if err != nil {
			if !errors.Is(err, ErrProfile) {
				t.Fatalf("error does not wrap ErrProfile: %v", err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("accepted an invalid profile: %v", err)
		}
		var buf bytes.Buffer
		if err := p.WriteJSON(&buf); err != nil {
			t.Fatal(err)
		}
		q, err := ReadProfile(&buf)
		if err != nil {
			t.Fatalf("round trip failed: %v", err)
		}
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("round trip changed the profile")
		}
	})
}

func TestNewProfileFromRecorder(t *testing.T) {
	rec, err := heads.NewRecorder(2, 2, heads.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Prompt tokens 10..15; the answer is tokens 12 13 at positions 2..3.
	prompt := []int{10, 11, 12, 13, 14, 15}
	if err := rec.BeginTrial(prompt, 2, 4); err != nil {
		t.Fatal(err)
	}
	// Head 1 of layer 0 and head 0 of layer 1 look at the answer.
	attn := [][][]float32{
		{{1, 0, 0, 0, 0, 0}, {0, 0, 0.5, 0.5, 0, 0}},
		{{0, 0, 0.9, 0, 0, 0.1}, {0, 1, 0, 0, 0, 0}},
	}
	if err := rec.Step(12, attn); err != nil {
		t.Fatal(err)
	}
	if err := rec.EndTrial(true); err != nil {
		t.Fatal(err)
	}
	m := ModelInfo{Name: "tiny", Layers: 2, QueryHeads: 2, KVHeads: 1, HeadDim: 4}
	p, err := NewProfile(m, rec.SR(), rec.Retrieval(), []float64{1, 3})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.HeadRanking, [][]int{{1, 0}, {0, 1}}) {
		t.Fatalf("ranking %v", p.HeadRanking)
	}
	if _, err := NewProfile(m, rec.SR(), nil, []float64{1}); err == nil {
		t.Fatal("a profile with one layer weight for two layers was accepted")
	}
}

// targetCache returns a float32 cache of L = 40 positions in which query
// head h of every layer finds its own key at position target(h) and nothing
// else, and the window queries (W = 8) that look for it: with pooling off,
// the SR heads of a layer put their scores on their targets alone.
func targetCache(t *testing.T, layers, H, G int) (*kvcache.Host, [][]float32, func(h int) int) {
	const L, W, d = 40, 8, 16
	if H > d || 3+3*(H-1) >= L-W {
		t.Fatalf("targetCache: %d query heads do not fit", H)
	}
	target := func(h int) int { return 3 + 3*h }
	c, err := kvcache.NewHost(kvcache.Shape{Layers: layers, KVHeads: G, HeadDim: d}, kvcache.Float32)
	if err != nil {
		t.Fatal(err)
	}
	q := make([][]float32, layers)
	for l := range q {
		k := make([]float32, L*G*d)
		v := make([]float32, L*G*d)
		for h := 0; h < H; h++ {
			g := h / (H / G)
			k[(target(h)*G+g)*d+h] = 1
		}
		for i := range v {
			v[i] = float32(i % 7)
		}
		if err := c.Append(l, k, v); err != nil {
			t.Fatal(err)
		}
		q[l] = make([]float32, W*H*d)
		for i := 0; i < W; i++ {
			for h := 0; h < H; h++ {
				q[l][(i*H+h)*d+h] = 20
			}
		}
	}
	return c, q, target
}

// keptWith compresses a fresh target cache with CompressKV under cfg
// (pooling off, window 8, budget 8 + want) and returns the kept prompt
// positions before the window, per layer.
func keptWith(t *testing.T, p *Profile, cfg Config, want int) ([][]int, error) {
	m := p.Model
	c, q, _ := targetCache(t, m.Layers, m.QueryHeads, m.KVHeads)
	cfg.Profile, cfg.Kernel, cfg.Window, cfg.Budget = p, 1, 8, 8+want
	pol, err := New(CompressKV, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := pol.Compress(context.Background(), c, q, m.QueryHeads); err != nil {
		t.Fatal(err)
	}
	out := make([][]int, m.Layers)
	for l := range out {
		pos := c.Positions(l, 0, nil)
		for _, j := range pos[:len(pos)-8] {
			out[l] = append(out[l], int(j))
		}
	}
	return out, nil
}

// targetsOf returns the sorted targets of the first k heads of each layer.
func targetsOf(ranking [][]int, k int, target func(int) int) [][]int {
	out := make([][]int, len(ranking))
	for l, r := range ranking {
		for _, h := range r[:k] {
			out[l] = append(out[l], target(h))
		}
		slices.Sort(out[l])
	}
	return out
}

// TestCommittedProfileVersion1: the committed version-1 profile still loads,
// has no SR head count, and CompressKV with Config.SRHeads left at zero
// scores with the first DefaultSRHeads heads of its rankings, as before
// profiles could carry a count; saving it keeps version 1.
func TestCommittedProfileVersion1(t *testing.T) {
	p, err := LoadProfile(filepath.Join("..", "testdata", "retrieval.profile.json"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != 1 || p.SRHeadsPerLayer != 0 {
		t.Fatalf("version %d, sr_heads %d; want a version-1 profile without a count", p.Version, p.SRHeadsPerLayer)
	}
	_, _, target := targetCache(t, 1, p.Model.QueryHeads, p.Model.KVHeads)
	got, err := keptWith(t, p, Config{}, DefaultSRHeads)
	if err != nil {
		t.Fatal(err)
	}
	if want := targetsOf(p.HeadRanking, DefaultSRHeads, target); !reflect.DeepEqual(got, want) {
		t.Fatalf("kept %v, want the targets of the first %d ranked heads %v", got, DefaultSRHeads, want)
	}
	// An explicit k still chooses among the whole ranking.
	got, err = keptWith(t, p, Config{SRHeads: 6}, 6)
	if err != nil {
		t.Fatal(err)
	}
	if want := targetsOf(p.HeadRanking, 6, target); !reflect.DeepEqual(got, want) {
		t.Fatalf("k = 6: kept %v, want %v", got, want)
	}
	var buf bytes.Buffer
	if err := p.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"version": 1`) || strings.Contains(buf.String(), "sr_heads") {
		t.Fatalf("rewriting changed the version or added a count:\n%s", buf.String())
	}
}

// TestProfileOwnSRHeads: a version-2 profile with partial rankings and its
// own count makes CompressKV use exactly the listed heads; a Config.SRHeads
// beyond what a layer lists is an error, not a silent default, and a
// smaller one takes the first heads of each list.
func TestProfileOwnSRHeads(t *testing.T) {
	rng, seed := newRNG(t)
	const layers, H, G = 3, 8, 2
	for _, k := range []int{1, 2, 3, 5} {
		p := &Profile{Version: ProfileVersion, SRHeadsPerLayer: k,
			Model: ModelInfo{Name: "partial", Layers: layers, QueryHeads: H, KVHeads: G, HeadDim: 16}}
		for l := 0; l < layers; l++ {
			p.HeadRanking = append(p.HeadRanking, rng.Perm(H)[:k+rng.IntN(2)*(H-k)/2])
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		_, _, target := targetCache(t, 1, H, G)
		got, err := keptWith(t, p, Config{}, k)
		if err != nil {
			t.Fatalf("seed %d, k %d: %v", seed, k, err)
		}
		if want := targetsOf(p.HeadRanking, k, target); !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d, k %d, ranking %v: kept %v, want %v", seed, k, p.HeadRanking, got, want)
		}
		if k > 1 {
			got, err := keptWith(t, p, Config{SRHeads: k - 1}, k-1)
			if err != nil {
				t.Fatalf("seed %d: k %d below the profile's %d: %v", seed, k-1, k, err)
			}
			if want := targetsOf(p.HeadRanking, k-1, target); !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d, k %d: kept %v, want %v", seed, k-1, got, want)
			}
		}
		short := H
		for _, r := range p.HeadRanking {
			short = min(short, len(r))
		}
		if short < H {
			_, err := keptWith(t, p, Config{SRHeads: short + 1}, short+1)
			if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), fmt.Sprintf("%d SR heads per layer, but layer", short+1)) {
				t.Fatalf("seed %d: k %d beyond the ranked %d: error %v", seed, short+1, short, err)
			}
		}
	}
}

// TestDefaultSRHeadsTooMany: with neither Config.SRHeads nor the profile's
// count set, a model with fewer query heads than DefaultSRHeads gets an
// error saying what to set.
func TestDefaultSRHeadsTooMany(t *testing.T) {
	p := &Profile{Version: ProfileVersion, Model: ModelInfo{Layers: 1, QueryHeads: 2, KVHeads: 1, HeadDim: 4}, HeadRanking: [][]int{{1, 0}}}
	_, err := New(CompressKV, Config{Budget: 16, Profile: p})
	if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "set Config.SRHeads, or sr_heads") {
		t.Fatalf("error %v", err)
	}
	p.SRHeadsPerLayer = 2
	if _, err := New(CompressKV, Config{Budget: 16, Profile: p}); err != nil {
		t.Fatalf("with the profile's own count: %v", err)
	}
}
