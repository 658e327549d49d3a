package randmodel

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/compresskv/compresskv/examples/llama/quant"
)

// The stream and the first weights of one tensor, as gen.py computes them
// (printed by gen.py's draws and float_weights).
func TestStreamMatchesGenPy(t *testing.T) {
	s := seedOf("llama2", "token_embd.weight")
	if s != 0x676d9fbdad1264ab {
		t.Fatalf("seed %#x, gen.py 0x676d9fbdad1264ab", s)
	}
	want := map[int]uint64{0: 0x73d7c2f816cec917, 1: 0xcee3a2c7a475a026, 2: 0xce94f1b96d6488,
		1000000: 0x9f5464d604b34e70, 1000001: 0x4ef899689a6d94bc}
	for j, w := range want {
		if got := draw(s, j); got != w {
			t.Errorf("draw %d = %#x, gen.py %#x", j, got, w)
		}
	}
	f32 := make([]byte, 16)
	floatWeights(f32, s, 256, quant.F32)
	wantF32 := []float64{-0.011872261762619019, 0.07704022526741028, -0.12421196699142456, -0.021052807569503784}
	for i, w := range wantF32 {
		if got := math.Float32frombits(binary.LittleEndian.Uint32(f32[4*i:])); float64(got) != w {
			t.Errorf("f32 weight %d = %v, gen.py %v", i, got, w)
		}
	}
	f16 := make([]byte, 8)
	floatWeights(f16, s, 256, quant.F16)
	for i, w := range []uint16{41504, 11502, 45044, 42344} {
		if got := binary.LittleEndian.Uint16(f16[2*i:]); got != w {
			t.Errorf("f16 weight %d = %d, gen.py %d", i, got, w)
		}
	}
	q := make([]byte, 144)
	quantBlocks(q, s, 256, quant.Q4_K)
	for i, w := range []byte{23, 13, 23, 25, 178, 253, 172, 235, 111, 249, 169, 232, 224, 191, 2, 174, 38, 160, 117, 164} {
		if q[i] != w {
			t.Errorf("Q4_K byte %d = %d, gen.py %d", i, q[i], w)
		}
	}
	// 1000 Q5_0 blocks (no golden model holds Q5_0 but the full-size
	// Qwen2.5-0.5B Q4_K_M mixture).
	q5 := make([]byte, 22*1000)
	quantBlocks(q5, seedOf("t", "x"), 896, quant.Q5_0)
	if sum := sha256.Sum256(q5); hex.EncodeToString(sum[:]) != "66d4d0b5f0a10eef2a8808d7b5e11052276c7fec4abc2d57d82a99d60bbf7907" {
		t.Errorf("Q5_0 blocks sha256 %x, gen.py 66d4d0b5...", sum)
	}
}

// f16Value decodes F16 bits in float64 (independent of the encoder).
func f16Value(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	e := int(h>>10) & 31
	f := float64(h & 0x3FF)
	switch e {
	case 0:
		return sign * math.Ldexp(f, -24)
	case 31:
		return math.NaN()
	}
	return sign * math.Ldexp(1+f/1024, e-15)
}

func TestExactF16(t *testing.T) {
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 1))
	for i := 0; i < 20000; i++ {
		m := r.Int64N(2049) - 1024
		e := -15 - r.IntN(12) // down to m*2^-26: subnormal, still exact for |m| <= 1024 when e >= -24-... check below
		want := math.Ldexp(float64(m), e)
		// Only values that F16 holds exactly are in the generator's range.
		if math.Abs(want) < math.Ldexp(1, -14) && math.Mod(math.Abs(want), math.Ldexp(1, -24)) != 0 {
			continue
		}
		if got := f16Value(exactF16(m, e)); got != want {
			t.Fatalf("seed %d: exactF16(%d, %d) decodes to %v, want %v", seed, m, e, got, want)
		}
	}
}

func TestF16Bits(t *testing.T) {
	for _, e := range []int{-14, -12, -3, 0, 15} {
		for _, mant := range []uint64{0, 1, 511, 1023} {
			want := math.Ldexp(1+float64(mant)/1024, e)
			if got := f16Value(f16bits(e, mant)); got != want {
				t.Errorf("f16bits(%d, %d) = %v, want %v", e, mant, got, want)
			}
		}
	}
	// Below the normal range the pattern is (1024|mant) >> (1-(e+15)).
	if got := f16bits(-16, 1023); got != (1024|1023)>>2 {
		t.Errorf("f16bits(-16, 1023) = %#x", got)
	}
}

// scaleMinK4 reads scale and min j of a Q4_K block's 12 scale bytes, as
// ggml's get_scale_min_k4 does.
func scaleMinK4(j int, q []byte) (sc, m int) {
	if j < 4 {
		return int(q[j] & 63), int(q[j+4] & 63)
	}
	return int(q[j+4]&0xF | (q[j-4]>>6)<<4), int(q[j+4]>>4 | (q[j]>>6)<<4)
}

// dequant is a float64 reading of the generator's block types, written
// from ggml-common.h's layouts (independent of quantBlocks).
func dequant(t quant.Type, b []byte) []float64 {
	switch t {
	case quant.Q8_0:
		d := f16Value(binary.LittleEndian.Uint16(b))
		out := make([]float64, 32)
		for i := range out {
			out[i] = d * float64(int8(b[2+i]))
		}
		return out
	case quant.Q4_0:
		d := f16Value(binary.LittleEndian.Uint16(b))
		out := make([]float64, 32)
		for i := range 16 {
			out[i] = d * float64(int(b[2+i]&15)-8)
			out[i+16] = d * float64(int(b[2+i]>>4)-8)
		}
		return out
	case quant.Q5_0:
		d := f16Value(binary.LittleEndian.Uint16(b))
		qh := binary.LittleEndian.Uint32(b[2:])
		out := make([]float64, 32)
		for j := range 16 {
			x0 := int(b[6+j]&15) | int(qh>>j&1)<<4
			x1 := int(b[6+j]>>4) | int(qh>>(j+16)&1)<<4
			out[j] = d * float64(x0-16)
			out[j+16] = d * float64(x1-16)
		}
		return out
	case quant.Q4_K:
		d := f16Value(binary.LittleEndian.Uint16(b))
		dmin := f16Value(binary.LittleEndian.Uint16(b[2:]))
		sc, qs := b[4:16], b[16:144]
		out := make([]float64, 0, 256)
		for j := 0; j < 256; j += 64 {
			s1, m1 := scaleMinK4(j/32, sc)
			s2, m2 := scaleMinK4(j/32+1, sc)
			q := qs[j/2 : j/2+32]
			for l := range 32 {
				out = append(out, d*float64(s1)*float64(q[l]&15)-dmin*float64(m1))
			}
			for l := range 32 {
				out = append(out, d*float64(s2)*float64(q[l]>>4)-dmin*float64(m2))
			}
		}
		return out
	case quant.Q6_K:
		ql, qh, sc := b[0:128], b[128:192], b[192:208]
		d := f16Value(binary.LittleEndian.Uint16(b[208:]))
		out := make([]float64, 256)
		for n := 0; n < 256; n += 128 {
			for l := range 32 {
				is := l / 16
				q1 := int(ql[n/2+l]&15|((qh[n/4+l]>>0)&3)<<4) - 32
				q2 := int(ql[n/2+l+32]&15|((qh[n/4+l]>>2)&3)<<4) - 32
				q3 := int(ql[n/2+l]>>4|((qh[n/4+l]>>4)&3)<<4) - 32
				q4 := int(ql[n/2+l+32]>>4|((qh[n/4+l]>>6)&3)<<4) - 32
				s := sc[n/16:]
				out[n+l] = d * float64(int8(s[is])) * float64(q1)
				out[n+l+32] = d * float64(int8(s[is+2])) * float64(q2)
				out[n+l+64] = d * float64(int8(s[is+4])) * float64(q3)
				out[n+l+96] = d * float64(int8(s[is+6])) * float64(q4)
			}
		}
		return out
	}
	panic("dequant: " + t.String())
}

// The random blocks are valid and weights of every type have a realistic
// scale: mean near 0 and standard deviation near a/sqrt(3) with a about
// sqrt(3/fan_in), so that logits are spread and greedy steps are not ties.
func TestWeightScale(t *testing.T) {
	for _, fanIn := range []int{256, 768, 4864} {
		a := math.Ldexp(1, -scaleExp(fanIn))
		for _, typ := range []quant.Type{quant.F32, quant.F16, quant.BF16, quant.Q8_0, quant.Q4_0, quant.Q5_0, quant.Q4_K, quant.Q6_K} {
			n := fanIn * 64
			size, err := typ.RowBytes(n)
			if err != nil {
				t.Fatal(err)
			}
			data := make([]byte, size)
			seed := seedOf("test", typ.String())
			var w []float64
			switch typ {
			case quant.F32:
				floatWeights(data, seed, fanIn, typ)
				for i := 0; i < n; i++ {
					w = append(w, float64(math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))))
				}
			case quant.F16:
				floatWeights(data, seed, fanIn, typ)
				for i := 0; i < n; i++ {
					w = append(w, f16Value(binary.LittleEndian.Uint16(data[2*i:])))
				}
			case quant.BF16:
				floatWeights(data, seed, fanIn, typ)
				for i := 0; i < n; i++ {
					w = append(w, float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(data[2*i:]))<<16)))
				}
			default:
				quantBlocks(data, seed, fanIn, typ)
				bb := typ.BlockBytes()
				for i := 0; i < len(data); i += bb {
					w = append(w, dequant(typ, data[i:i+bb])...)
				}
			}
			var m, s float64
			for _, v := range w {
				if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 2*a {
					t.Fatalf("%v fan_in %d: weight %v outside (-2a, 2a), a = %v", typ, fanIn, v, a)
				}
				m += v
			}
			m /= float64(len(w))
			for _, v := range w {
				s += (v - m) * (v - m)
			}
			s = math.Sqrt(s / float64(len(w)))
			if math.Abs(m) > 0.05*s || s < 0.2*a || s > 0.8*a {
				t.Errorf("%v fan_in %d: mean %.3g, std %.3g; want |mean| < 0.05 std and std in [0.2, 0.8] x a = %.3g", typ, fanIn, m, s, a)
			}
		}
	}
}

func TestQ4KScalesRoundTrip(t *testing.T) {
	q := make([]byte, 144*50)
	quantBlocks(q, seedOf("test", "q4k"), 256, quant.Q4_K)
	for b := 0; b < 50; b++ {
		blk := q[b*144:]
		d0 := draw(seedOf("test", "q4k"), b*17)
		for j := range 8 {
			sc, m := scaleMinK4(j, blk[4:16])
			wantSc := 32 + int(d0>>(10+5*j))&31
			if sc != wantSc || m != (15*wantSc+8)>>4 {
				t.Fatalf("block %d sub-block %d: scale %d min %d, want %d %d", b, j, sc, m, wantSc, (15*wantSc+8)>>4)
			}
		}
	}
}

func TestQ4KMMixture(t *testing.T) {
	// llama.cpp's use_more_bits for 3 and 24 layers.
	f := Families[0] // llama2: 3 layers, untied
	count := map[quant.Type]int{}
	for _, ts := range tensorSpecs(f, 32000) {
		typ := tensorType(f, ts, "q4_k_m")
		count[typ]++
		switch {
		case ts.role == roleOutput && typ != quant.Q6_K,
			ts.role == roleEmbd && typ != quant.Q4_K,
			ts.role == roleNorm && typ != quant.F32,
			(ts.role == roleAttnV || ts.role == roleFFNDown) && (typ == quant.Q6_K) != (ts.layer == 2):
			t.Errorf("%s: %v", ts.name, typ)
		}
	}
	var more []int
	for i := range 24 {
		if useMoreBits(i, 24) {
			more = append(more, i)
		}
	}
	if want := []int{0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23}; !slices.Equal(more, want) {
		t.Errorf("use_more_bits layers of 24: %v, want %v", more, want)
	}
	// Qwen2.5-0.5B's 896-wide rows fall back from the K-quants.
	q := Families[4]
	for _, ts := range tensorSpecs(q, 151936) {
		typ := tensorType(q, ts, "q4_k_m")
		if ts.dims[0]%256 != 0 && (typ == quant.Q4_K || typ == quant.Q6_K) {
			t.Errorf("%s (ne[0] %d): %v", ts.name, ts.dims[0], typ)
		}
	}
}

// The tensors the Go twin generates are those gen.py wrote for every golden
// (their sha256 are in the golden files); no vocabulary file is needed.
func TestTensorsMatchGoldens(t *testing.T) {
	gs := goldens(t)
	if testing.Short() {
		gs = gs[:2]
	}
	for _, g := range gs {
		s, err := Lookup(g.Model)
		if err != nil {
			t.Fatal(err)
		}
		if len(g.Tensors) == 0 || g.Tensors[0].Name != "token_embd.weight" {
			t.Fatalf("%s: no token_embd digest", g.Model)
		}
		nVocab := g.Tensors[0].Dims[1]
		if nVocab != len(g.LastLogits) {
			t.Errorf("%s: %d logits for a %d-token vocabulary", g.Model, len(g.LastLogits), nVocab)
		}
		ts, err := s.Tensors(nVocab)
		if err != nil {
			t.Fatal(err)
		}
		if len(ts) != len(g.Tensors) {
			t.Fatalf("%s: %d tensors, gen.py wrote %d", g.Model, len(ts), len(g.Tensors))
		}
		for i, tt := range ts {
			want := g.Tensors[i]
			sum := sha256.Sum256(tt.Data)
			if tt.Name != want.Name || tt.Type.String() != want.Type || !slices.Equal(tt.Dims, want.Dims) ||
				hex.EncodeToString(sum[:]) != want.SHA256 {
				t.Errorf("%s: tensor %d: %s %v %v %x, gen.py %s %s %v %s", g.Model, i, tt.Name, tt.Type, tt.Dims, sum[:6],
					want.Name, want.Type, want.Dims, want.SHA256[:12])
			}
		}
		if s.Family.Prompt != g.Prompt {
			t.Errorf("%s: prompt %q, golden %q", g.Model, s.Family.Prompt, g.Prompt)
		}
	}
}
