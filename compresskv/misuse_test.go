package compresskv_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/compresskv/calibrate"
	"github.com/compresskv/compresskv/kvcache"
)

// The misuse table: what a user's program can get wrong, each call made as
// a user makes it, through the exported API only. Every case must fail with
// an error that errors.Is matches to the named sentinel, say its cause once
// (no doubled prefix, no repeated segment), and leave the cache byte for
// byte as it was; the cases that succeed (a budget beyond the prompt) must
// report what they kept. The file runs under -race in CI.

// misuseModel is the model of the table: 2 layers, 8 query heads over 2 KV
// heads, d = 16, a 256-token prompt and a window of 8 queries.
const (
	muLayers, muQHeads, muKVHeads, muD, muL, muW = 2, 8, 2, 16, 256, 8
)

type misuseEnv struct {
	cache   *kvcache.Host
	q       [][]float32 // the window's queries per layer
	qAll    [][]float32 // every prompt query per layer (H2O)
	profile *compresskv.Profile
}

func newMisuseEnv(t *testing.T, seed uint64) *misuseEnv {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 19))
	c, err := kvcache.NewHost(kvcache.Shape{Layers: muLayers, KVHeads: muKVHeads, HeadDim: muD}, kvcache.Float16)
	if err != nil {
		t.Fatal(err)
	}
	e := &misuseEnv{cache: c}
	for l := 0; l < muLayers; l++ {
		k, v := make([]float32, muL*muKVHeads*muD), make([]float32, muL*muKVHeads*muD)
		for i := range k {
			k[i], v[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
		}
		if err := c.Append(l, k, v); err != nil {
			t.Fatal(err)
		}
		qa := make([]float32, muL*muQHeads*muD)
		for i := range qa {
			qa[i] = float32(rng.NormFloat64())
		}
		e.qAll = append(e.qAll, qa)
		e.q = append(e.q, qa[(muL-muW)*muQHeads*muD:])
	}
	rank := make([][]int, muLayers)
	for l := range rank {
		rank[l] = rng.Perm(muQHeads)
	}
	e.profile = &compresskv.Profile{Version: compresskv.ProfileVersion,
		Model:       compresskv.ModelInfo{Name: "misuse", Layers: muLayers, QueryHeads: muQHeads, KVHeads: muKVHeads, HeadDim: muD},
		HeadRanking: rank, LayerWeights: []float64{0.3, 0.7}}
	return e
}

// rawState is everything a cache holds, as bytes: shape, type, per layer
// the tokens seen, per head its positions and its stored key and value
// bits.
func rawState(c *kvcache.Host) []byte {
	var b bytes.Buffer
	w := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	s := c.Shape()
	w([]int64{int64(s.Layers), int64(s.KVHeads), int64(s.HeadDim), int64(c.DType()), c.Bytes()})
	for l := 0; l < s.Layers; l++ {
		w(int64(c.Seen(l)))
		for g := 0; g < s.KVHeads; g++ {
			w(c.Positions(l, g, nil))
			k, v := c.Rows(l, g)
			w(k.F32)
			w(v.F32)
			w(k.U16)
			w(v.U16)
		}
	}
	return b.Bytes()
}

// saidOnce reports a message that repeats its package prefix or one of its
// segments back to back ("compresskv: compresskv:", "layer 1: layer 1:").
func saidOnce(msg string) string {
	for _, p := range []string{"compresskv:", "kvcache:", "backend:", "calibrate:", "cpu:"} {
		if strings.Count(msg, p) > 1 {
			return "prefix " + p + " said more than once"
		}
	}
	seg := strings.Split(msg, ": ")
	for i := 1; i < len(seg); i++ {
		if seg[i] == seg[i-1] {
			return "segment " + seg[i] + " repeated"
		}
	}
	return ""
}

func mustNew(t *testing.T, m compresskv.Method, cfg compresskv.Config) *compresskv.Policy {
	t.Helper()
	p, err := compresskv.New(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMisuse(t *testing.T) {
	const seed = 19
	bg := context.Background()
	type misuse struct {
		name string
		want error                    // the sentinel; nil: the call succeeds
		run  func(e *misuseEnv) error // the user's call
		// also, when set, checks more (what a successful call reports, or
		// what a message must say).
		also func(t *testing.T, e *misuseEnv, err error)
	}
	profileFile := func(t *testing.T, text string) string {
		path := filepath.Join(t.TempDir(), "p.json")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	mention := func(words ...string) func(t *testing.T, e *misuseEnv, err error) {
		return func(t *testing.T, _ *misuseEnv, err error) {
			for _, w := range words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the message does not say %q: %v", w, err)
				}
			}
		}
	}
	cases := []misuse{
		// kvcache
		{"NewHost with a zero shape", kvcache.ErrShape, func(*misuseEnv) error {
			_, err := kvcache.NewHost(kvcache.Shape{Layers: 2, HeadDim: 16}, kvcache.Float16)
			return err
		}, nil},
		{"NewHost with a negative shape", kvcache.ErrShape, func(*misuseEnv) error {
			_, err := kvcache.NewHost(kvcache.Shape{Layers: 2, KVHeads: -2, HeadDim: 16}, kvcache.Float16)
			return err
		}, nil},
		{"NewHost with an unknown storage type", kvcache.ErrShape, func(*misuseEnv) error {
			_, err := kvcache.NewHost(kvcache.Shape{Layers: 2, KVHeads: 2, HeadDim: 16}, kvcache.DType(9))
			return err
		}, nil},
		{"Append to layer 99", kvcache.ErrShape, func(e *misuseEnv) error {
			return e.cache.Append(99, make([]float32, muKVHeads*muD), make([]float32, muKVHeads*muD))
		}, mention("layer 99", "[0, 2)")},
		{"Append to layer -1", kvcache.ErrShape, func(e *misuseEnv) error {
			return e.cache.Append(-1, make([]float32, muKVHeads*muD), make([]float32, muKVHeads*muD))
		}, nil},
		{"Append of a partial row", kvcache.ErrShape, func(e *misuseEnv) error {
			return e.cache.Append(0, make([]float32, muD), make([]float32, muD))
		}, nil},
		{"Append of NaN", kvcache.ErrNonFinite, func(e *misuseEnv) error {
			k := make([]float32, muKVHeads*muD)
			k[3] = float32(math.NaN())
			return e.cache.Append(0, k, make([]float32, len(k)))
		}, nil},
		{"Append beyond float16", kvcache.ErrNonFinite, func(e *misuseEnv) error {
			v := make([]float32, muKVHeads*muD)
			v[0] = 1e6
			return e.cache.Append(1, make([]float32, len(v)), v)
		}, nil},
		{"Compact with rows out of order", kvcache.ErrShape, func(e *misuseEnv) error {
			return e.cache.Compact(0, [][]int{{3, 2}, {0}})
		}, nil},
		// methods and configuration
		{"ParseMethod of an unknown name", compresskv.ErrConfig, func(*misuseEnv) error {
			_, err := compresskv.ParseMethod("bogus")
			return err
		}, mention("bogus", "compresskv")},
		{"New with an unknown method", compresskv.ErrConfig, func(*misuseEnv) error {
			_, err := compresskv.New("bogus", compresskv.Config{Budget: 64})
			return err
		}, nil},
		{"New CompressKV without a profile", compresskv.ErrConfig, func(*misuseEnv) error {
			_, err := compresskv.New(compresskv.CompressKV, compresskv.Config{Budget: 64})
			return err
		}, mention("profile")},
		{"New with a budget below the window", compresskv.ErrConfig, func(*misuseEnv) error {
			_, err := compresskv.New(compresskv.SnapKV, compresskv.Config{Budget: 4})
			return err
		}, nil},
		{"New with an even pooling kernel", compresskv.ErrConfig, func(*misuseEnv) error {
			_, err := compresskv.New(compresskv.SnapKV, compresskv.Config{Budget: 64, Kernel: 4})
			return err
		}, nil},
		{"New with a floor ratio above 1", compresskv.ErrConfig, func(*misuseEnv) error {
			_, err := compresskv.New(compresskv.AdaKV, compresskv.Config{Budget: 64, FloorRatio: 1.5})
			return err
		}, nil},
		// Compress
		{"Compress of a nil cache", compresskv.ErrConfig, func(e *misuseEnv) error {
			_, err := mustNew(t, compresskv.SnapKV, compresskv.Config{Budget: 64}).Compress(bg, nil, e.q, muQHeads)
			return err
		}, mention("nil cache")},
		{"Plan of a nil cache", compresskv.ErrConfig, func(e *misuseEnv) error {
			_, err := mustNew(t, compresskv.Full, compresskv.Config{}).Plan(bg, nil, nil, muQHeads)
			return err
		}, nil},
		{"Compress with a nil policy", compresskv.ErrConfig, func(e *misuseEnv) error {
			var p *compresskv.Policy
			_, err := p.Compress(bg, e.cache, e.q, muQHeads)
			return err
		}, nil},
		{"Compress with queries for 1 layer of 2", kvcache.ErrShape, func(e *misuseEnv) error {
			_, err := mustNew(t, compresskv.SnapKV, compresskv.Config{Budget: 64}).Compress(bg, e.cache, e.q[:1], muQHeads)
			return err
		}, nil},
		{"Compress with 7 query heads over 2 KV heads", kvcache.ErrShape, func(e *misuseEnv) error {
			_, err := mustNew(t, compresskv.CompressKV, compresskv.Config{Budget: 64, Profile: e.profile}).Compress(bg, e.cache, e.q, 7)
			return err
		}, mention("7 query heads", "2 KV heads")},
		{"Compress with 4 query heads, the profile's model has 8", compresskv.ErrConfig, func(e *misuseEnv) error {
			_, err := mustNew(t, compresskv.CompressKV, compresskv.Config{Budget: 64, Profile: e.profile}).Compress(bg, e.cache, e.q, 4)
			return err
		}, mention("8 query heads", "4 query heads")},
		{"Compress with 7 query rows, the window is 8", kvcache.ErrShape, func(e *misuseEnv) error {
			q := [][]float32{e.q[0][muQHeads*muD:], e.q[1][muQHeads*muD:]}
			_, err := mustNew(t, compresskv.SnapKV, compresskv.Config{Budget: 64}).Compress(bg, e.cache, q, muQHeads)
			return err
		}, nil},
		{"Compress with NaN queries", kvcache.ErrNonFinite, func(e *misuseEnv) error {
			q := [][]float32{append([]float32(nil), e.q[0]...), e.q[1]}
			q[0][5] = float32(math.Inf(1))
			_, err := mustNew(t, compresskv.SnapKV, compresskv.Config{Budget: 64}).Compress(bg, e.cache, q, muQHeads)
			return err
		}, nil},
		{"H2O with the window's queries only", kvcache.ErrShape, func(e *misuseEnv) error {
			_, err := mustNew(t, compresskv.H2O, compresskv.Config{Budget: 64}).Compress(bg, e.cache, e.q, muQHeads)
			return err
		}, mention("every one of the 256 prompt positions")},
		{"Compress with a profile of another model", compresskv.ErrConfig, func(e *misuseEnv) error {
			other := *e.profile
			other.Model.HeadDim = 32
			_, err := mustNew(t, compresskv.CompressKV, compresskv.Config{Budget: 64, Profile: &other}).Compress(bg, e.cache, e.q, muQHeads)
			return err
		}, mention("head dimension 32", "head dimension 16")},
		{"Compress of a cache whose prefill stopped part-way", compresskv.ErrUneven, func(e *misuseEnv) error {
			c := e.cache.Clone()
			if err := c.Append(0, make([]float32, muKVHeads*muD), make([]float32, muKVHeads*muD)); err != nil {
				return err
			}
			_, err := mustNew(t, compresskv.SnapKV, compresskv.Config{Budget: 64}).Compress(bg, c, e.q, muQHeads)
			return err
		}, mention("prefilled")},
		{"Compress with a CUDA backend asked for a host cache", compresskv.ErrConfig, func(e *misuseEnv) error {
			_, _, err := compresskv.ChooseBackend(e.cache, "cuda")
			return err
		}, nil},
		{"Compress with a cancelled context", context.Canceled, func(e *misuseEnv) error {
			ctx, cancel := context.WithCancel(bg)
			cancel()
			_, err := mustNew(t, compresskv.SnapKV, compresskv.Config{Budget: 64}).Compress(ctx, e.cache, e.q, muQHeads)
			return err
		}, nil},
		{"a budget beyond the prompt keeps everything and says so", nil, func(e *misuseEnv) error {
			for _, m := range compresskv.Methods {
				p := mustNew(t, m, compresskv.Config{Budget: 1000, Profile: e.profile})
				q := e.q
				if p.QueryRows(muL) == muL {
					q = e.qAll
				}
				res, err := p.Compress(bg, e.cache, q, muQHeads)
				if err != nil {
					return err
				}
				for l, b := range res.Budgets {
					if b != muL {
						t.Errorf("%s: layer %d reports %d tokens kept, the cache keeps its %d", m, l, b, muL)
					}
				}
				if res.BytesAfter != res.BytesBefore {
					t.Errorf("%s: %d -> %d bytes for a budget beyond the prompt", m, res.BytesBefore, res.BytesAfter)
				}
			}
			return nil
		}, nil},
		// Apply and CompressLayer
		{"Apply of a plan for 1 layer of 2", kvcache.ErrShape, func(e *misuseEnv) error {
			return mustNew(t, compresskv.SnapKV, compresskv.Config{Budget: 64}).Apply(e.cache, &compresskv.Plan{Keep: [][][]int{nil}})
		}, nil},
		{"Apply of a plan with a row beyond the cache", kvcache.ErrShape, func(e *misuseEnv) error {
			keep := [][][]int{{{0, 1}, {0, 300}}, nil}
			return mustNew(t, compresskv.SnapKV, compresskv.Config{Budget: 64}).Apply(e.cache, &compresskv.Plan{Keep: keep})
		}, nil},
		{"Apply of a nil plan", compresskv.ErrConfig, func(e *misuseEnv) error {
			return mustNew(t, compresskv.SnapKV, compresskv.Config{Budget: 64}).Apply(e.cache, nil)
		}, nil},
		{"CompressLayer of layer 2 of 2", kvcache.ErrShape, func(e *misuseEnv) error {
			return mustNew(t, compresskv.SnapKV, compresskv.Config{Budget: 64}).CompressLayer(bg, e.cache, 2, e.q[0], muQHeads)
		}, nil},
		// Stream
		{"NewStream of a nil cache", compresskv.ErrConfig, func(*misuseEnv) error {
			_, err := compresskv.NewStream(mustNew(t, compresskv.SnapKV, compresskv.Config{Budget: 64}), nil, compresskv.StreamConfig{QHeads: muQHeads, Chunk: 1})
			return err
		}, nil},
		{"NewStream over a prefilled cache", compresskv.ErrConfig, func(e *misuseEnv) error {
			_, err := compresskv.NewStream(mustNew(t, compresskv.SnapKV, compresskv.Config{Budget: 64}), e.cache, compresskv.StreamConfig{QHeads: muQHeads, Chunk: 1})
			return err
		}, nil},
		// profiles and calibration
		{"LoadProfile of malformed JSON", compresskv.ErrProfile, func(*misuseEnv) error {
			_, err := compresskv.LoadProfile(profileFile(t, "{\n  \"version\": 2,\n  \"model\": {\"layers\": 2,}\n}\n"))
			return err
		}, mention("line 3, column")},
		{"LoadProfile with a misspelt field", compresskv.ErrProfile, func(*misuseEnv) error {
			_, err := compresskv.LoadProfile(profileFile(t, "{\n  \"version\": 2,\n  \"modle\": {}\n}\n"))
			return err
		}, mention("modle", "line 3")},
		{"LoadProfile with a field of the wrong type", compresskv.ErrProfile, func(*misuseEnv) error {
			_, err := compresskv.LoadProfile(profileFile(t, "{\"version\": \"2\"}"))
			return err
		}, mention("line 1, column")},
		{"LoadProfile of a missing file", os.ErrNotExist, func(*misuseEnv) error {
			_, err := compresskv.LoadProfile(filepath.Join(t.TempDir(), "none.json"))
			return err
		}, nil},
		{"calibrate.Profile with no probes", compresskv.ErrConfig, func(*misuseEnv) error {
			_, _, err := calibrate.Profile(bg, nilModel{}, calibrate.Config{Tokenizer: byteTok{}})
			return err
		}, mention("no probes")},
		{"calibrate.Profile with no model", compresskv.ErrConfig, func(*misuseEnv) error {
			_, _, err := calibrate.Profile(bg, nil, calibrate.Config{Tokenizer: byteTok{}})
			return err
		}, nil},
		{"calibrate.NewProbe without the answer in the prompt", compresskv.ErrConfig, func(*misuseEnv) error {
			_, err := calibrate.NewProbe(byteTok{}, "a girl named Lily", "Tom")
			return err
		}, nil},
		{"backend.CheckQueries with an invalid shape", kvcache.ErrShape, func(*misuseEnv) error {
			return backend.CheckQueries(kvcache.Shape{Layers: 1}, nil, 1, 1)
		}, nil},
		{"Attend over a layer out of range", kvcache.ErrShape, func(e *misuseEnv) error {
			return cpu.New().Attend(e.cache, 5, make([]float32, muQHeads*muD), muQHeads, make([]float32, muQHeads*muD))
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newMisuseEnv(t, seed)
			before := rawState(e.cache)
			err := tc.run(e)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("failed: %v", err)
			case tc.want != nil && err == nil:
				t.Fatalf("accepted; want an error wrapping %v", tc.want)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("error %q does not wrap %v", err, tc.want)
			}
			if err != nil {
				if why := saidOnce(err.Error()); why != "" {
					t.Errorf("%s: %v", why, err)
				}
				t.Logf("%v", err)
			}
			if tc.also != nil {
				tc.also(t, e, err)
			}
			if !bytes.Equal(before, rawState(e.cache)) {
				t.Fatal("the cache changed")
			}
		})
	}
	t.Logf("%d misuse cases", len(cases))
}

// TestSecondCompress: a second Compress of the same cache fails the same
// way for every method (Full included), with ErrCompressed and the real
// cause, and leaves the cache as the first one left it; Plan and
// CompressLayer say the same. A cache the first call kept whole (a budget
// beyond the prompt) has lost nothing and compresses again.
func TestSecondCompress(t *testing.T) {
	bg := context.Background()
	for _, m := range compresskv.Methods {
		e := newMisuseEnv(t, 7)
		p := mustNew(t, m, compresskv.Config{Budget: 64, Profile: e.profile})
		q := e.q
		switch p.QueryRows(muL) {
		case muL:
			q = e.qAll
		case 0:
			q = make([][]float32, len(e.q)) // key norms read no query
		}
		if _, err := p.Compress(bg, e.cache, q, muQHeads); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		after := rawState(e.cache)
		_, err := p.Compress(bg, e.cache, q, muQHeads)
		if m == compresskv.Full {
			if err != nil {
				t.Errorf("full: a cache kept whole compresses again: %v", err)
			}
			continue
		}
		if !errors.Is(err, compresskv.ErrCompressed) || !strings.Contains(err.Error(), "already compressed") || !strings.Contains(err.Error(), "Stream") {
			t.Errorf("%s: second Compress: %v, want ErrCompressed naming the cause and the Stream", m, err)
		}
		if why := saidOnce(err.Error()); why != "" {
			t.Errorf("%s: %s: %v", m, why, err)
		}
		if _, err := p.Plan(bg, e.cache, q, muQHeads); !errors.Is(err, compresskv.ErrCompressed) {
			t.Errorf("%s: Plan after Compress: %v", m, err)
		}
		if err := p.CompressLayer(bg, e.cache, 1, q[1], muQHeads); !errors.Is(err, compresskv.ErrCompressed) {
			t.Errorf("%s: CompressLayer after Compress: %v", m, err)
		}
		// Full over a compressed cache: the same rule.
		if _, err := mustNew(t, compresskv.Full, compresskv.Config{}).Compress(bg, e.cache, nil, muQHeads); !errors.Is(err, compresskv.ErrCompressed) {
			t.Errorf("%s then full: %v", m, err)
		}
		if !bytes.Equal(after, rawState(e.cache)) {
			t.Errorf("%s: a refused second Compress changed the cache", m)
		}
		t.Logf("%s: %v", m, err)
	}
}

// nilModel is a calibrate.Model that is never started (the table's
// calibration cases fail before).
type nilModel struct{}

func (nilModel) Info() compresskv.ModelInfo {
	return compresskv.ModelInfo{Layers: 1, QueryHeads: 1, KVHeads: 1, HeadDim: 1}
}

func (nilModel) Start(context.Context, []int) (calibrate.Run, error) {
	return nil, errors.New("not run")
}

// byteTok is a byte-level tokenizer.
type byteTok struct{}

func (byteTok) Encode(s string) []int {
	out := make([]int, len(s))
	for i := range s {
		out[i] = int(s[i])
	}
	return out
}

func (byteTok) Decode(ids []int) string {
	b := make([]byte, len(ids))
	for i, id := range ids {
		b[i] = byte(id)
	}
	return string(b)
}
