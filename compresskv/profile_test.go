package compresskv

import (
	"bytes"
	"errors"
	"path/filepath"
	"reflect"
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
	cases := map[string]string{
		"version 2":               strings.Replace(good, `"version":1`, `"version":2`, 1),
		"not a permutation":       strings.Replace(good, `[1,0]`, `[1,1]`, 1),
		"ranks 1 heads":           strings.Replace(good, `[1,0]`, `[1]`, 1),
		"layer weight 1 is -0.7":  strings.Replace(good, `0.7`, `-0.7`, 1),
		"2 layer weights":         strings.Replace(good, `"layers":2`, `"layers":3`, 1),
		"unknown field":           strings.Replace(good, `"version"`, `"vresion":1,"version"`, 1),
		"decoding JSON":           good[:40],
		"trailing data":           good + "{}",
		"not a multiple":          strings.Replace(good, `"kv_heads":1`, `"kv_heads":3`, 1),
		"layer weights are all 0": strings.Replace(good, `[0.3,0.7]`, `[0,0]`, 1),
	}
	for want, in := range cases {
		_, err := ReadProfile(strings.NewReader(in))
		if err == nil || !errors.Is(err, ErrProfile) {
			t.Errorf("%s: error %v, want ErrProfile", want, err)
			continue
		}
		w := strings.Fields(want)[0]
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: error %q does not mention %q", want, err, w)
		}
	}
}

// FuzzReadProfile: arbitrary input never panics; what is accepted is valid
// and survives a write/read round trip.
func FuzzReadProfile(f *testing.F) {
	f.Add(`{"version":1,"model":{"name":"m","layers":2,"query_heads":2,"kv_heads":1,"head_dim":4},"head_ranking":[[1,0],[0,1]],"layer_weights":[0.3,0.7]}`)
	f.Add(`{"version":1,"model":{"layers":1,"query_heads":1,"kv_heads":1,"head_dim":1},"head_ranking":[[0]],"head_scores":[[1e308]]}`)
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
