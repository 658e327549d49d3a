package gguf_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/examples/llama/gguf"
	"github.com/compresskv/compresskv/examples/llama/quant"
)

// raw builds GGUF bytes by hand, independently of the Writer.
type raw struct{ b []byte }

func (r *raw) u8(x uint8) *raw   { r.b = append(r.b, x); return r }
func (r *raw) u16(x uint16) *raw { r.b = binary.LittleEndian.AppendUint16(r.b, x); return r }
func (r *raw) u32(x uint32) *raw { r.b = binary.LittleEndian.AppendUint32(r.b, x); return r }
func (r *raw) u64(x uint64) *raw { r.b = binary.LittleEndian.AppendUint64(r.b, x); return r }
func (r *raw) str(s string) *raw { r.u64(uint64(len(s))); r.b = append(r.b, s...); return r }
func (r *raw) at() int64         { return int64(len(r.b)) }
func (r *raw) pad(a int) *raw {
	for len(r.b)%a != 0 {
		r.b = append(r.b, 0)
	}
	return r
}

func header(version uint32, tensors, kvs uint64) *raw {
	r := &raw{b: []byte("GGUF")}
	return r.u32(version).u64(tensors).u64(kvs)
}

// TestParseHandBuilt reads a version 2 file written byte by byte: nested
// arrays, a non-default alignment, an F32 and a Q8_0 tensor.
func TestParseHandBuilt(t *testing.T) {
	r := header(2, 2, 4)
	r.str("general.architecture").u32(uint32(gguf.TypeString)).str("llama")
	r.str("x.nested").u32(uint32(gguf.TypeArray)).u32(uint32(gguf.TypeArray)).u64(2)
	r.u32(uint32(gguf.TypeUint8)).u64(2).u8(1).u8(2)
	r.u32(uint32(gguf.TypeString)).u64(1).str("x")
	r.str("general.alignment").u32(uint32(gguf.TypeUint32)).u32(64)
	r.str("x.i16").u32(uint32(gguf.TypeInt16)).u16(0xfffe)
	r.str("w").u32(2).u64(4).u64(2).u32(uint32(quant.F32)).u64(0)
	r.str("v").u32(1).u64(32).u32(uint32(quant.Q8_0)).u64(64)
	r.pad(64)
	dataAt := r.at()
	for i := range 8 {
		r.u32(math.Float32bits(float32(i) + 0.5))
	}
	r.pad(64)
	r.u16(0x3c00) // d = 1.0
	for i := range 32 {
		r.u8(uint8(int8(i - 16)))
	}

	f, err := gguf.Parse(r.b)
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != 2 || f.Alignment != 64 || f.DataOffset != dataAt || f.Size != r.at() {
		t.Fatalf("version %d alignment %d data at %d size %d, want 2 64 %d %d", f.Version, f.Alignment, f.DataOffset, f.Size, dataAt, r.at())
	}
	keys := []string{"general.architecture", "x.nested", "general.alignment", "x.i16"}
	for i, kv := range f.KV {
		if kv.Key != keys[i] {
			t.Fatalf("key %d is %q, want %q", i, kv.Key, keys[i])
		}
	}
	if s, err := f.String("general.architecture"); s != "llama" || err != nil {
		t.Fatalf("architecture %q %v", s, err)
	}
	if i, err := f.Int("x.i16"); i != -2 || err != nil {
		t.Fatalf("x.i16 %d %v, want -2", i, err)
	}
	nested, _ := f.Value("x.nested")
	vs, err := nested.Values()
	if err != nil || len(vs) != 2 {
		t.Fatalf("nested %v %v", vs, err)
	}
	if !reflect.DeepEqual(vs[0].Any(), []uint8{1, 2}) || vs[0].Elem != gguf.TypeUint8 {
		t.Fatalf("nested[0] = %v", vs[0])
	}
	if s, err := vs[1].Strings(); err != nil || !reflect.DeepEqual(s, []string{"x"}) {
		t.Fatalf("nested[1] = %v %v", vs[1], err)
	}
	w, err := f.Tensor("w")
	if err != nil {
		t.Fatal(err)
	}
	if w.Type != quant.F32 || !reflect.DeepEqual(w.Dims, []int{4, 2}) || len(w.Data) != 32 {
		t.Fatalf("w: %v %v %d bytes", w.Type, w.Dims, len(w.Data))
	}
	if got := math.Float32frombits(binary.LittleEndian.Uint32(w.Data[28:])); got != 7.5 {
		t.Fatalf("w[7] = %v, want 7.5", got)
	}
	v, err := f.Tensor("v")
	if err != nil {
		t.Fatal(err)
	}
	if v.Type != quant.Q8_0 || len(v.Data) != 34 || int8(v.Data[2]) != -16 || int8(v.Data[33]) != 15 {
		t.Fatalf("v: %v %d bytes %v", v.Type, len(v.Data), v.Data)
	}
	if f.Tensors[1].Offset != 64 || f.Tensors[1].Size != 34 || f.Tensors[0].Elements() != 8 {
		t.Fatalf("tensor infos %+v", f.Tensors)
	}
	if _, err := f.Tensor("nope"); !errors.Is(err, gguf.ErrNotFound) {
		t.Fatalf("missing tensor: %v", err)
	}
}

// TestMalformed checks that each kind of malformed file gets a FormatError
// naming the byte where the fault is.
func TestMalformed(t *testing.T) {
	type tc struct {
		name string
		b    []byte
		at   int64
		msg  string
	}
	var cases []tc
	add := func(name string, r *raw, at int64, msg string) { cases = append(cases, tc{name, r.b, at, msg}) }

	add("empty", &raw{}, 0, "truncated")
	add("magic", (&raw{b: []byte("GGML")}).u32(3).u64(0).u64(0), 0, "magic")
	add("version 1", header(1, 0, 0), 4, "version 1")
	add("version 4", header(4, 0, 0), 4, "newer")
	add("big-endian", header(0x03000000, 0, 0), 4, "big-endian")
	add("short header", &raw{b: []byte("GGUF\x03\x00")}, 4, "truncated")
	add("tensor count", header(3, 1<<40, 0), 8, "tensor count")
	add("metadata count", header(3, 0, 1<<40), 16, "metadata count")
	add("key length", header(3, 0, 1).u64(1<<50).u64(0), 24, "truncated")
	{
		r := header(3, 0, 1).str("k")
		at := r.at()
		add("value type", r.u32(13).u32(0), at, "unknown value type 13")
	}
	{
		r := header(3, 0, 1).str("k").u32(uint32(gguf.TypeArray)).u32(uint32(gguf.TypeUint32))
		at := r.at()
		add("array count", r.u64(1<<40).u32(1), at, "length of array")
	}
	{
		r := header(3, 0, 1).str("k").u32(uint32(gguf.TypeArray)).u32(uint32(gguf.TypeString)).u64(2).str("a")
		at := r.at()
		add("array string", r.u64(1000).u32(0), at, "element 1")
	}
	{
		r := header(3, 0, 1).str("k").u32(uint32(gguf.TypeArray))
		at := r.at()
		add("array element type", r.u32(99).u64(0), at, "unknown value type 99")
	}
	{
		r := header(3, 0, 2).str("k").u32(uint32(gguf.TypeBool)).u8(1)
		at := r.at()
		add("duplicate key", r.str("k").u32(uint32(gguf.TypeBool)).u8(0), at, "duplicate metadata key")
	}
	{
		r := header(3, 0, 1).str("k").u32(uint32(gguf.TypeString))
		at := r.at()
		add("string value", r.u64(100).u32(0), at, "string value")
	}
	{
		r := header(3, 0, 1).str("general.alignment")
		at := r.at()
		add("alignment type", r.u32(uint32(gguf.TypeFloat32)).u32(0), at, "want uint32")
	}
	{
		r := header(3, 0, 1).str("general.alignment")
		at := r.at()
		add("alignment value", r.u32(uint32(gguf.TypeUint32)).u32(48), at, "power of two")
	}
	{
		r := header(3, 0, 1).str("k").u32(uint32(gguf.TypeArray))
		var at int64
		for d := range 17 {
			if d == 16 {
				at = r.at() // the 17th array's element type
			}
			r.u32(uint32(gguf.TypeArray)).u64(1)
		}
		add("nesting", r.u32(0).u64(0), at, "nested deeper")
	}
	tensor := func(nt uint64) *raw { return header(3, nt, 0).str("t") }
	{
		r := tensor(1)
		at := r.at()
		add("dimensions", r.u32(5).u64(1).u64(1).u64(1).u64(1).u64(1).u32(0).u64(0), at, "5 dimensions")
	}
	{
		r := tensor(1).u32(2).u64(1 << 40)
		at := r.at()
		add("elements", r.u64(1<<40).u32(0).u64(0), at, "too many elements")
	}
	{
		r := tensor(1).u32(1).u64(32)
		at := r.at()
		add("tensor type", r.u32(4).u64(0), at, "unknown ggml type 4")
	}
	{
		r := tensor(1)
		at := r.at()
		add("block", r.u32(1).u64(33).u32(uint32(quant.Q8_0)).u64(0), at, "whole number")
	}
	{
		r := tensor(1).u32(1).u64(4).u32(uint32(quant.F32))
		at := r.at()
		add("unaligned offset", r.u64(4).pad(32).u64(0).u64(0), at, "not a multiple")
	}
	{
		r := tensor(1).u32(1).u64(4).u32(uint32(quant.F32))
		at := r.at()
		add("outside", r.u64(0).pad(32).u64(0), at, "outside the file")
	}
	{
		r := tensor(1).u32(1).u64(4).u32(uint32(quant.F32))
		at := r.at()
		add("huge offset", r.u64(1<<63).pad(32).u64(0), at, "beyond any file")
	}
	{
		r := tensor(2).u32(1).u64(4).u32(uint32(quant.F32)).u64(0)
		at := r.at()
		add("duplicate tensor", r.str("t").u32(1).u64(4).u32(uint32(quant.F32)).u64(32).pad(32), at, "duplicate tensor name")
	}
	{
		r := tensor(1).u32(1).u64(0).u32(uint32(quant.F32)).u64(0)
		at := r.at()
		add("no data section", r, at, "tensor data starts")
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := gguf.Parse(c.b)
			if err == nil {
				t.Fatalf("parsed: %+v", f)
			}
			var fe *gguf.FormatError
			if !errors.As(err, &fe) || !errors.Is(err, gguf.ErrFormat) {
				t.Fatalf("error %v (%T) is not a FormatError", err, err)
			}
			if fe.Offset != c.at || !strings.Contains(fe.Msg, c.msg) {
				t.Fatalf("error %q at %d, want one at %d containing %q", fe.Msg, fe.Offset, c.at, c.msg)
			}
		})
	}
}

// allValues sets one key of every value type, arrays of every element
// type, and nested arrays.
func allValues(t testing.TB, w *gguf.Writer) map[string]any {
	nested, err := gguf.ValueOf([]gguf.Value{mustValue(t, []int32{-1, 2}), mustValue(t, []string{"a", ""}),
		mustValue(t, []gguf.Value{mustValue(t, []float64{0.25})})})
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]any{
		"u8": uint8(200), "i8": int8(-100), "u16": uint16(60000), "i16": int16(-30000),
		"u32": uint32(4000000000), "i32": int32(-2000000000), "f32": float32(1.5), "bool": true,
		"str": "héllo\x00", "u64": uint64(1 << 63), "i64": int64(-1 << 62), "f64": math.Pi,
		"a.u8": []uint8{1, 2, 255}, "a.i8": []int8{-128, 127}, "a.u16": []uint16{65535}, "a.i16": []int16{-1, 1},
		"a.u32": []uint32{7, 1 << 31}, "a.i32": []int32{-5, 5}, "a.f32": []float32{float32(math.Inf(-1)), float32(math.Copysign(0, -1)), 3},
		"a.bool": []bool{true, false, true}, "a.str": []string{"", "x", "ÿ"}, "a.u64": []uint64{math.MaxUint64},
		"a.i64": []int64{math.MinInt64}, "a.f64": []float64{1e300}, "a.empty": []string{}, "a.nested": nested,
	}
	// Sorted insertion keeps the file order deterministic.
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sortStrings(keys)
	for _, k := range keys {
		if err := w.Set(k, vals[k]); err != nil {
			t.Fatal(err)
		}
	}
	return vals
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func mustValue(t testing.TB, x any) gguf.Value {
	v, err := gguf.ValueOf(x)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// sample returns a file with every value type and three tensors.
func sample(t testing.TB) ([]byte, map[string]any) {
	w := gguf.NewWriter()
	vals := allValues(t, w)
	f32 := make([]byte, 4*6)
	for i := range 6 {
		binary.LittleEndian.PutUint32(f32[4*i:], math.Float32bits(float32(i)))
	}
	must(t, w.AddTensor("a", quant.F32, []int{3, 2}, f32))
	must(t, w.AddTensor("b", quant.Q8_0, []int{32}, bytes.Repeat([]byte{7}, 34)))
	must(t, w.AddTensor("c", quant.Q4_K, []int{256, 1, 1, 1}, bytes.Repeat([]byte{9}, 144)))
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), vals
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestTruncated parses every prefix of a file: each one that lacks part of
// the header, the metadata, the tensor infos or a tensor's data gets a
// FormatError, never a panic; a prefix parses only when it keeps all the
// tensor data (the final padding may go).
func TestTruncated(t *testing.T) {
	b, _ := sample(t)
	full, err := gguf.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	last := full.Tensors[len(full.Tensors)-1]
	end := full.DataOffset + last.Offset + last.Size
	for n := range len(b) {
		_, err := gguf.Parse(b[:n])
		if int64(n) >= end {
			if err != nil {
				t.Fatalf("prefix %d of %d (data ends at %d): %v", n, len(b), end, err)
			}
			continue
		}
		var fe *gguf.FormatError
		if !errors.As(err, &fe) || fe.Offset < 0 || fe.Offset > int64(n) {
			t.Fatalf("prefix %d: %v", n, err)
		}
	}
}

// TestGetters checks the typed getters' conversions and their errors.
func TestGetters(t *testing.T) {
	b, _ := sample(t)
	f, err := gguf.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if u, err := f.Uint("u8"); u != 200 || err != nil {
		t.Fatalf("Uint(u8) = %d %v", u, err)
	}
	if u, err := f.Uint("u64"); u != 1<<63 || err != nil {
		t.Fatalf("Uint(u64) = %d %v", u, err)
	}
	if _, err := f.Int("u64"); !errors.Is(err, gguf.ErrType) {
		t.Fatalf("Int(u64 2^63): %v", err)
	}
	if i, err := f.Int("i32"); i != -2000000000 || err != nil {
		t.Fatalf("Int(i32) = %d %v", i, err)
	}
	var te *gguf.TypeError
	if _, err := f.Uint("i8"); !errors.As(err, &te) || te.Key != "i8" {
		t.Fatalf("Uint(negative i8): %v", err)
	}
	if x, err := f.Float("f32"); x != 1.5 || err != nil {
		t.Fatalf("Float(f32) = %v %v", x, err)
	}
	if _, err := f.Float("u32"); !errors.As(err, &te) || te.Key != "u32" || te.Got != "uint32" || !errors.Is(err, gguf.ErrType) {
		t.Fatalf("Float(u32): %v", err)
	} else if msg := err.Error(); !strings.Contains(msg, `"u32"`) || !strings.Contains(msg, "float32 or float64") {
		t.Fatalf("message %q", msg)
	}
	if _, err := f.String("missing"); !errors.Is(err, gguf.ErrNotFound) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing key: %v", err)
	}
	if b, err := f.Bool("bool"); !b || err != nil {
		t.Fatalf("Bool = %v %v", b, err)
	}
	if s, err := f.Strings("a.str"); !reflect.DeepEqual(s, []string{"", "x", "ÿ"}) || err != nil {
		t.Fatalf("Strings = %q %v", s, err)
	}
	if _, err := f.Strings("a.u8"); !errors.As(err, &te) || te.Got != "array of uint8" {
		t.Fatalf("Strings(a.u8): %v", err)
	}
	if s, err := f.Int32s("a.u32"); err == nil {
		t.Fatalf("Int32s(2^31) = %v", s)
	}
	if s, err := f.Int32s("a.i8"); !reflect.DeepEqual(s, []int32{-128, 127}) || err != nil {
		t.Fatalf("Int32s(a.i8) = %v %v", s, err)
	}
	if s, err := f.Ints("a.u16"); !reflect.DeepEqual(s, []int{65535}) || err != nil {
		t.Fatalf("Ints(a.u16) = %v %v", s, err)
	}
	if _, err := f.Ints("a.u64"); !errors.Is(err, gguf.ErrType) {
		t.Fatalf("Ints(max uint64): %v", err)
	}
	if s, err := f.Float32s("a.f32"); err != nil || len(s) != 3 || !math.IsInf(float64(s[0]), -1) || !math.Signbit(float64(s[1])) {
		t.Fatalf("Float32s = %v %v", s, err)
	}
	if _, err := f.Float32s("a.f64"); !errors.Is(err, gguf.ErrType) {
		t.Fatalf("Float32s(a.f64): %v", err)
	}
}

// vocabDir holds llama.cpp's tokenizer test vocabularies beside the
// repository; tests that read them skip where it is absent.
var vocabDir = filepath.Join("..", "..", "..", "..", "shared", "vocab")

// TestVocabFiles reads the three vocabulary files. Each parse must consume
// the file exactly (no tensors: the data section starts at the end), and
// the values checked were read independently with llama.cpp's gguf-py.
func TestVocabFiles(t *testing.T) {
	type want struct {
		model, pre    string
		tokens        int
		merges        int
		bos, eos      uint64
		token, token2 [2]any // index and string
	}
	files := map[string]want{
		"llama-spm": {model: "llama", pre: "default", tokens: 32000, bos: 1, eos: 2, token: [2]any{1000, "ied"}, token2: [2]any{31999, "给"}},
		"gpt-2":     {model: "gpt2", pre: "gpt-2", tokens: 50257, merges: 50000, bos: 50256, eos: 50256, token: [2]any{0, "!"}, token2: [2]any{50256, "<|endoftext|>"}},
		"starcoder": {model: "gpt2", pre: "starcoder", tokens: 49152, merges: 48872, bos: 0, eos: 0, token: [2]any{0, "<|endoftext|>"}, token2: [2]any{49151, "sdb"}},
	}
	for name, w := range files {
		path := filepath.Join(vocabDir, "ggml-vocab-"+name+".gguf")
		t.Run(name, func(t *testing.T) {
			f, err := gguf.Open(path)
			if errors.Is(err, errNotExist) || (err != nil && strings.Contains(err.Error(), "no such file")) {
				t.Skipf("%s absent", path)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Version != 3 || len(f.Tensors) != 0 || f.DataOffset != f.Size {
				t.Fatalf("version %d, %d tensors, data at %d of %d", f.Version, len(f.Tensors), f.DataOffset, f.Size)
			}
			if s, _ := f.String("tokenizer.ggml.model"); s != w.model {
				t.Errorf("model %q, want %q", s, w.model)
			}
			if s, _ := f.String("tokenizer.ggml.pre"); s != w.pre {
				t.Errorf("pre %q, want %q", s, w.pre)
			}
			tokens, err := f.Strings("tokenizer.ggml.tokens")
			if err != nil || len(tokens) != w.tokens {
				t.Fatalf("%d tokens (%v), want %d", len(tokens), err, w.tokens)
			}
			for _, tk := range [][2]any{w.token, w.token2} {
				if got := tokens[tk[0].(int)]; got != tk[1].(string) {
					t.Errorf("token %d = %q, want %q", tk[0], got, tk[1])
				}
			}
			types, err := f.Int32s("tokenizer.ggml.token_type")
			if err != nil || len(types) != w.tokens {
				t.Fatalf("%d token types (%v)", len(types), err)
			}
			if w.merges > 0 {
				merges, err := f.Strings("tokenizer.ggml.merges")
				if err != nil || len(merges) != w.merges {
					t.Fatalf("%d merges (%v), want %d", len(merges), err, w.merges)
				}
			}
			if name == "llama-spm" {
				scores, err := f.Float32s("tokenizer.ggml.scores")
				if err != nil || len(scores) != w.tokens || scores[1000] != -741 || scores[31999] != -31740 || types[1000] != 1 {
					t.Fatalf("scores %d (%v)", len(scores), err)
				}
				if add, err := f.Bool("tokenizer.ggml.add_bos_token"); !add || err != nil {
					t.Errorf("add_bos_token %v %v", add, err)
				}
			}
			if name == "gpt-2" {
				merges, _ := f.Strings("tokenizer.ggml.merges")
				if merges[49999] != "Ġg azed" {
					t.Errorf("last merge %q", merges[49999])
				}
			}
			if name == "starcoder" {
				if x, err := f.Float("starcoder2.rope.freq_base"); float32(x) != 999999.44 || err != nil {
					t.Errorf("rope.freq_base %v %v", x, err)
				}
			}
			if b, err := f.Uint("tokenizer.ggml.bos_token_id"); b != w.bos || err != nil {
				t.Errorf("bos %d %v, want %d", b, err, w.bos)
			}
			if e, err := f.Uint("tokenizer.ggml.eos_token_id"); e != w.eos || err != nil {
				t.Errorf("eos %d %v, want %d", e, err, w.eos)
			}
		})
	}
}

// TestRoundTrip writes every value type and reads it back.
func TestRoundTrip(t *testing.T) {
	for _, version := range []uint32{2, 3} {
		w := gguf.NewWriter()
		w.Version = version
		vals := allValues(t, w)
		var buf bytes.Buffer
		if _, err := w.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		f, err := gguf.Parse(buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if f.Version != version || len(f.KV) != len(vals) || f.DataOffset != f.Size {
			t.Fatalf("version %d, %d keys, data at %d of %d", f.Version, len(f.KV), f.DataOffset, f.Size)
		}
		for i, kv := range f.KV {
			if i > 0 && kv.Key < f.KV[i-1].Key {
				t.Fatalf("key order: %q after %q", kv.Key, f.KV[i-1].Key)
			}
			want := mustValue(t, vals[kv.Key])
			if !reflect.DeepEqual(kv.Value, want) {
				t.Errorf("%s: read %v (%v), wrote %v (%v)", kv.Key, kv.Value, kv.Value.Type, want, want.Type)
			}
		}
	}
}

// TestWriterErrors checks that the Writer refuses what it cannot write and
// stays usable.
func TestWriterErrors(t *testing.T) {
	w := gguf.NewWriter()
	for _, a := range []any{uint32(0), uint32(48), int32(64), "64"} {
		if err := w.Set("general.alignment", a); !errors.Is(err, gguf.ErrWriter) {
			t.Errorf("alignment %v: %v", a, err)
		}
	}
	if err := w.Set("k", struct{}{}); !errors.Is(err, gguf.ErrWriter) || !errors.Is(err, gguf.ErrType) {
		t.Errorf("struct value: %v", err)
	}
	if _, err := gguf.ValueOf([]gguf.Value{mustValue(t, uint8(1))}); !errors.Is(err, gguf.ErrType) {
		t.Errorf("array of arrays holding a scalar: %v", err)
	}
	deep := mustValue(t, []uint8{1})
	for range 16 {
		var err error
		if deep, err = gguf.ValueOf([]gguf.Value{deep}); err != nil {
			break
		}
	}
	if _, err := gguf.ValueOf([]gguf.Value{deep}); !errors.Is(err, gguf.ErrType) {
		t.Errorf("17 nested arrays: %v", err)
	}
	must(t, w.AddTensor("t", quant.F32, []int{2}, make([]byte, 8)))
	for _, c := range []struct {
		name string
		typ  quant.Type
		dims []int
		n    int
	}{
		{"t", quant.F32, []int{2}, 8},                        // duplicate
		{"u", quant.F32, []int{2}, 7},                        // short data
		{"u", quant.Q8_0, []int{16}, 17},                     // half a block
		{"u", quant.Type(4), []int{1}, 1},                    // retired type id
		{"u", quant.F32, []int{1, 1, 1, 1, 1}, 4},            // five dimensions
		{"u", quant.F32, []int{-1}, 0},                       // negative
		{"u", quant.Q8_0, []int{32, math.MaxInt / 2, 4}, 34}, // overflow
	} {
		if err := w.AddTensor(c.name, c.typ, c.dims, make([]byte, c.n)); !errors.Is(err, gguf.ErrWriter) {
			t.Errorf("AddTensor(%q, %v, %v, %d bytes): %v", c.name, c.typ, c.dims, c.n, err)
		}
	}
	must(t, w.Set("k", uint8(1)))
	must(t, w.Set("k", "replaced"))
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Parse(buf.Bytes())
	if err != nil || len(f.KV) != 1 || len(f.Tensors) != 1 {
		t.Fatalf("%v: %+v", err, f)
	}
	if s, _ := f.String("k"); s != "replaced" {
		t.Fatalf("k = %q", s)
	}
	w.Version = 1
	if _, err := w.WriteTo(&buf); !errors.Is(err, gguf.ErrWriter) {
		t.Fatalf("version 1: %v", err)
	}
}

// TestTensorMatrix reads weights back as quant matrices and float32s.
func TestTensorMatrix(t *testing.T) {
	w := gguf.NewWriter()
	vals := []float32{1, -2, 0.5, 4, 0, 3}
	raw := make([]byte, 24)
	for i, v := range vals {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	must(t, w.AddTensor("m", quant.F32, []int{3, 2}, raw))
	must(t, w.AddTensor("v", quant.F32, []int{3}, raw[:12]))
	must(t, w.AddTensor("cube", quant.F32, []int{1, 3, 2}, raw))
	must(t, w.AddTensor("iq", quant.IQ4_XS, []int{256}, make([]byte, 136)))
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	m, _ := f.Tensor("m")
	mat, err := m.Matrix()
	if err != nil || mat.Rows != 2 || mat.Cols != 3 {
		t.Fatalf("matrix %+v %v", mat, err)
	}
	out := make([]float32, 2)
	mat.MulMat(out, []float32{1, 1, 1}, 1)
	if out[0] != -0.5 || out[1] != 7 {
		t.Fatalf("W.(1,1,1) = %v, want [-0.5 7]", out)
	}
	if got, err := m.Float32s(); err != nil || !reflect.DeepEqual(got, vals) {
		t.Fatalf("Float32s %v %v", got, err)
	}
	v, _ := f.Tensor("v")
	if vm, err := v.Matrix(); err != nil || vm.Rows != 1 || vm.Cols != 3 {
		t.Fatalf("vector as matrix %+v %v", vm, err)
	}
	c, _ := f.Tensor("cube")
	if _, err := c.Matrix(); err == nil {
		t.Fatal("a 1x3x2 tensor made a matrix")
	}
	iq, _ := f.Tensor("iq")
	if _, err := iq.Float32s(); !errors.Is(err, quant.ErrUnsupported) {
		t.Fatalf("IQ4_XS Float32s: %v", err)
	}
	if _, err := iq.Matrix(); !errors.Is(err, quant.ErrUnsupported) {
		t.Fatalf("IQ4_XS Matrix: %v", err)
	}
}

// TestRoundTripTensors writes a tensor of every type ggml defines, with
// one to four dimensions, and reads the same bytes back at aligned offsets.
func TestRoundTripTensors(t *testing.T) {
	for _, align := range []uint32{0, 1, 64} {
		w := gguf.NewWriter()
		if align != 0 {
			must(t, w.Set("general.alignment", align))
		}
		type want struct {
			typ  quant.Type
			dims []int
			data []byte
		}
		var wants []want
		for id := range 64 {
			typ := quant.Type(id)
			if !typ.Known() {
				continue
			}
			dims := []int{2 * typ.BlockSize(), 3, 1, 2}[:1+id%4]
			n := 1
			for _, d := range dims {
				n *= d
			}
			size, err := typ.RowBytes(n)
			if err != nil {
				t.Fatal(err)
			}
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(i*7 + id)
			}
			must(t, w.AddTensor(typ.String(), typ, dims, data))
			wants = append(wants, want{typ, dims, data})
		}
		var buf bytes.Buffer
		if _, err := w.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		f, err := gguf.Parse(buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		a := int64(gguf.DefaultAlignment)
		if align != 0 {
			a = int64(align)
		}
		if f.Alignment != int(a) || f.DataOffset%a != 0 || len(f.Tensors) != len(wants) {
			t.Fatalf("alignment %d, data at %d, %d tensors", f.Alignment, f.DataOffset, len(f.Tensors))
		}
		for i, wt := range wants {
			got, err := f.TensorAt(i)
			if err != nil {
				t.Fatal(err)
			}
			if got.Type != wt.typ || !reflect.DeepEqual(got.Dims, wt.dims) || !bytes.Equal(got.Data, wt.data) || f.Tensors[i].Offset%a != 0 {
				t.Errorf("alignment %d, %v: read %v %v offset %d", a, wt.typ, got.Type, got.Dims, f.Tensors[i].Offset)
			}
		}
	}
}
