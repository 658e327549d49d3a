package llama

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/examples/llama/gguf"
	"github.com/compresskv/compresskv/examples/llama/quant"
	"github.com/compresskv/compresskv/internal/reftest"
	"github.com/compresskv/compresskv/kvcache"
)

// TestGGUFMatchesMemory: a model written as GGUF and loaded back has the
// same shape and gives the same logits, bit for bit, as the model it was
// written from, for every architecture feature.
func TestGGUFMatchesMemory(t *testing.T) {
	r, _ := reftest.Rand(t)
	tokens := []int{1, 17, 5, 66, 3, 42, 8}
	for _, tc := range archCases() {
		s := newSynth(r, tc.cfg, tc.f)
		mem, disk := memSynth(t, s), loadSynth(t, s)
		want := tc.cfg
		if want.NormEps == 0 {
			want.NormEps = 1e-5
		}
		if want.RopeBase == 0 {
			want.RopeBase = 10000
		}
		if want.Arch == "" {
			want.Arch = ArchLlama
		}
		if want.RopeScale == 1 {
			want.RopeScale = 0
		}
		want.SharedClassifier = tc.f.tied
		if disk.Config != want {
			t.Fatalf("%s: loaded %+v, want %+v", tc.name, disk.Config, want)
		}
		a, b := runSteps(t, mem, tokens, 3), runSteps(t, disk, tokens, 3)
		for i := 2; i < len(tokens); i++ {
			if !slices.Equal(a[i], b[i]) {
				t.Fatalf("%s: position %d: logits of the loaded model differ from the written one's", tc.name, i)
			}
		}
	}
}

// parts returns the metadata and tensors of s's GGUF file.
func parts(t *testing.T, s *synth) ([]ggufKV, []ggufTensor) {
	t.Helper()
	kv, ts, err := memSynth(t, s).ggufParts(GGUFOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return kv, ts
}

// fromParts assembles a GGUF file and reads a model from it.
func fromParts(t *testing.T, kv []ggufKV, ts []ggufTensor) (*Model, error) {
	t.Helper()
	w := gguf.NewWriter()
	for _, e := range kv {
		if err := w.Set(e.key, e.value); err != nil {
			t.Fatal(err)
		}
	}
	for _, x := range ts {
		if err := w.AddTensor(x.name, x.typ, x.dims, x.data); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return FromGGUF(f)
}

// TestGGUFErrors: each way a file can be wrong for the runner gives an
// error that wraps the right sentinel and names the key or tensor.
func TestGGUFErrors(t *testing.T) {
	r, _ := reftest.Rand(t)
	qwen3 := archCases()[len(archCases())-1]
	if qwen3.cfg.Arch != ArchQwen3 {
		t.Fatal("the last architecture case is not qwen3")
	}
	s := newSynth(r, qwen3.cfg, qwen3.f)
	setKV := func(key string, v any) func([]ggufKV, []ggufTensor) ([]ggufKV, []ggufTensor) {
		return func(kv []ggufKV, ts []ggufTensor) ([]ggufKV, []ggufTensor) {
			for i := range kv {
				if kv[i].key == key {
					kv[i].value = v
					return kv, ts
				}
			}
			return append(kv, ggufKV{key, v}), ts
		}
	}
	dropKV := func(key string) func([]ggufKV, []ggufTensor) ([]ggufKV, []ggufTensor) {
		return func(kv []ggufKV, ts []ggufTensor) ([]ggufKV, []ggufTensor) {
			return slices.DeleteFunc(kv, func(e ggufKV) bool { return e.key == key }), ts
		}
	}
	dropTensor := func(name string) func([]ggufKV, []ggufTensor) ([]ggufKV, []ggufTensor) {
		return func(kv []ggufKV, ts []ggufTensor) ([]ggufKV, []ggufTensor) {
			return kv, slices.DeleteFunc(ts, func(x ggufTensor) bool { return x.name == name })
		}
	}
	editTensor := func(name string, edit func(x *ggufTensor)) func([]ggufKV, []ggufTensor) ([]ggufKV, []ggufTensor) {
		return func(kv []ggufKV, ts []ggufTensor) ([]ggufKV, []ggufTensor) {
			for i := range ts {
				if ts[i].name == name {
					edit(&ts[i])
				}
			}
			return kv, ts
		}
	}
	addTensor := func(name string, typ quant.Type, dims []int, data []byte) func([]ggufKV, []ggufTensor) ([]ggufKV, []ggufTensor) {
		return func(kv []ggufKV, ts []ggufTensor) ([]ggufKV, []ggufTensor) {
			return kv, append(ts, ggufTensor{name, typ, dims, data})
		}
	}
	nan := f32Bytes([]float32{1, float32(math.NaN()), 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	cases := []struct {
		name   string
		edit   func([]ggufKV, []ggufTensor) ([]ggufKV, []ggufTensor)
		is     error
		tensor string // the TensorError's name, if one
		msg    string
	}{
		{"other architecture", setKV("general.architecture", "gpt2"), ErrUnsupported, "", `"gpt2"`},
		{"no architecture", dropKV("general.architecture"), ErrFormat, "", "general.architecture"},
		{"no block count", dropKV("qwen3.block_count"), ErrFormat, "", "qwen3.block_count"},
		{"no epsilon", dropKV("qwen3.attention.layer_norm_rms_epsilon"), ErrFormat, "", "layer_norm_rms_epsilon"},
		{"zero heads", setKV("qwen3.attention.head_count", uint32(0)), ErrFormat, "", "head_count"},
		{"heads by layer", setKV("qwen3.attention.head_count", []int32{4, 2}), ErrUnsupported, "", "varies by layer"},
		{"heads by layer, equal", setKV("qwen3.attention.head_count", []int32{4, 4}), nil, "", ""},
		{"KV heads not dividing", setKV("qwen3.attention.head_count_kv", uint32(3)), ErrFormat, "", "multiple of 3 KV heads"},
		{"NaN epsilon", setKV("qwen3.attention.layer_norm_rms_epsilon", float32(math.NaN())), ErrFormat, "", "finite"},
		{"yarn", setKV("qwen3.rope.scaling.type", "yarn"), ErrUnsupported, "", `"yarn"`},
		{"experts", setKV("qwen3.expert_count", uint32(8)), ErrUnsupported, "", "experts"},
		{"odd rotary dimensions", setKV("qwen3.rope.dimension_count", uint32(5)), ErrFormat, "", "rotary"},
		{"value heads", setKV("qwen3.attention.value_length", uint32(8)), ErrUnsupported, "", "value heads"},
		{"missing weight", dropTensor("blk.1.ffn_down.weight"), ErrFormat, "blk.1.ffn_down.weight", "not found"},
		{"missing q norm", dropTensor("blk.0.attn_q_norm.weight"), ErrFormat, "blk.0.attn_q_norm.weight", "not found"},
		{"no embedding", dropTensor("token_embd.weight"), ErrFormat, "token_embd.weight", "missing"},
		{"wrong shape", editTensor("blk.0.attn_k.weight", func(x *ggufTensor) { x.dims = []int{x.dims[1], x.dims[0]} }),
			ErrFormat, "blk.0.attn_k.weight", "dimensions [32 40], want [40 32]"},
		{"wrong rank", editTensor("output_norm.weight", func(x *ggufTensor) { x.dims = []int{x.dims[0], 1} }),
			ErrFormat, "output_norm.weight", "dimensions"},
		{"NaN norm", editTensor("blk.1.attn_k_norm.weight", func(x *ggufTensor) { x.data = nan }), ErrFormat, "blk.1.attn_k_norm.weight", "NaN"},
		{"unsupported type", editTensor("blk.0.attn_v.weight", func(x *ggufTensor) {
			x.typ = quant.F64
			x.data = make([]byte, 8*x.dims[1]*x.dims[0])
		}), ErrUnsupported, "blk.0.attn_v.weight", "F64"},
		{"fused qkv", addTensor("blk.0.attn_qkv.weight", quant.F32, []int{40, 4}, make([]byte, 640)), ErrUnsupported, "blk.0.attn_qkv.weight", "fused"},
	}
	for _, tc := range cases {
		kv, ts := parts(t, s)
		kv, ts = tc.edit(kv, ts)
		m, err := fromParts(t, kv, ts)
		if tc.is == nil {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			} else if _, err := runOne(m); err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: error %v, want %v mentioning %q", tc.name, err, tc.is, tc.msg)
			continue
		}
		var te *TensorError
		if got := errors.As(err, &te); got != (tc.tensor != "") || (got && te.Name != tc.tensor) {
			t.Errorf("%s: error %v names tensor %v, want %q", tc.name, err, te, tc.tensor)
		}
	}
}

// runOne runs BOS through a fresh session of m.
func runOne(m *Model) ([]float32, error) {
	c, err := m.NewCache(kvcache.Float32)
	if err != nil {
		return nil, err
	}
	s, err := m.NewSession(c, nil)
	if err != nil {
		return nil, err
	}
	return s.Forward([]int{1})
}

// FuzzFromGGUF: no GGUF file makes the loader panic; every error wraps
// ErrFormat or ErrUnsupported; a model it accepts runs a token (or reports
// non-finite logits as an error).
func FuzzFromGGUF(f *testing.F) {
	r, _ := reftest.Rand(f)
	for _, tc := range archCases()[:3] {
		cfg := tc.cfg
		cfg.Dim, cfg.Hidden, cfg.Heads, cfg.KVHeads, cfg.Vocab, cfg.HeadSize = 8, 8, 2, 1, 4, 0
		var buf bytes.Buffer
		m := memSynth(f, newSynth(r, cfg, tc.f))
		if _, err := m.WriteGGUF(&buf, GGUFOptions{}); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		gf, err := gguf.Parse(data)
		if err != nil {
			return
		}
		m, err := FromGGUF(gf)
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error wraps neither ErrFormat nor ErrUnsupported: %v", err)
			}
			return
		}
		if m.Dim*m.Vocab > 1<<20 || m.Layers*m.Dim*m.Hidden > 1<<22 {
			return // too big to run here; loading it is the point
		}
		if _, err := runOne(m); err != nil && !errors.Is(err, ErrNonFinite) && !errors.Is(err, kvcache.ErrNonFinite) {
			t.Fatalf("an accepted model fails to run: %v", err)
		}
	})
}
