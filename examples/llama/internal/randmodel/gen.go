package randmodel

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"math/bits"

	"github.com/compresskv/compresskv/examples/llama/quant"
)

// The generator, defined identically in tools/ggufgold/gen.py.
//
// Draw j (j = 0, 1, ...) of a tensor's stream is splitmix64's finaliser
// applied to seed + (j+1)*golden, modulo 2^64; seed is FNV-1a 64 of
// "<family>/<tensor name>".

const golden = 0x9E3779B97F4A7C15

func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// draw returns draw j of the stream with this seed.
func draw(seed uint64, j int) uint64 { return mix(seed + uint64(j+1)*golden) }

// seedOf returns the stream seed of a tensor of a family.
func seedOf(family, tensor string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(family + "/" + tensor))
	return h.Sum64()
}

// signed24 is a draw's top 24 bits as a signed integer in [-2^23, 2^23).
func signed24(d uint64) int64 { return int64(d>>40) - 1<<23 }

// scaleExp returns k with a = 2^-k, about sqrt(3/fanIn).
func scaleExp(fanIn int) int { return (bits.Len(uint(fanIn))-1)/2 - 1 }

// floatWeights fills dst (len n*size) with the n weights of a float tensor
// of type t (F32, F16 or BF16) and first dimension fanIn.
func floatWeights(dst []byte, seed uint64, fanIn int, t quant.Type) {
	k := scaleExp(fanIn)
	switch t {
	case quant.F32:
		for i := 0; i < len(dst)/4; i++ {
			m := signed24(draw(seed, i))
			v := float32(math.Ldexp(float64(m), -23-k))
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case quant.F16:
		for i := 0; i < len(dst)/2; i++ {
			m := signed24(draw(seed, i)) >> 13
			binary.LittleEndian.PutUint16(dst[2*i:], exactF16(m, -10-k))
		}
	case quant.BF16:
		for i := 0; i < len(dst)/2; i++ {
			m := signed24(draw(seed, i)) >> 16
			v := float32(math.Ldexp(float64(m), -7-k))
			binary.LittleEndian.PutUint16(dst[2*i:], uint16(math.Float32bits(v)>>16))
		}
	default:
		panic(fmt.Sprintf("randmodel: floatWeights of %v", t))
	}
}

// exactF16 returns the F16 bits of m * 2^e, a value that F16 holds exactly
// (normal or subnormal); the generator's F16 weights are such values.
func exactF16(m int64, e int) uint16 {
	if m == 0 {
		return 0
	}
	var sign uint16
	if m < 0 {
		sign, m = 0x8000, -m
	}
	u := uint64(m)
	n := bits.Len64(u) // u in [2^(n-1), 2^n): the value is in [2^p, 2^(p+1))
	p := e + n - 1
	if p >= -14 {
		// 1.f * 2^p with 10 fraction bits: u shifted to 11 significant bits.
		if n <= 11 {
			u <<= 11 - n
		} else {
			u >>= n - 11
		}
		return sign | uint16(p+15)<<10 | uint16(u&0x3FF)
	}
	// Subnormal: the value is f * 2^-24.
	if s := e + 24; s >= 0 {
		return sign | uint16(u<<s)
	} else {
		return sign | uint16(u>>-s)
	}
}

func normWeights(dst []byte, seed uint64) {
	for i := 0; i < len(dst)/4; i++ {
		m := signed24(draw(seed, i)) >> 13
		v := float32(1 + math.Ldexp(float64(m), -12))
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
	}
}

func biasWeights(dst []byte, seed uint64) {
	for i := 0; i < len(dst)/4; i++ {
		m := signed24(draw(seed, i))
		v := float32(math.Ldexp(float64(m), -25))
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
	}
}

// f16bits is gen.py's f16bits: the F16 pattern of 2^e (1 + mant/1024) where
// that is normal, else (1024|mant) >> (1-(e+15)).
func f16bits(e int, mant uint64) uint16 {
	b := e + 15
	mant &= 0x3FF
	if b >= 31 {
		panic("randmodel: f16 exponent overflow")
	}
	if b >= 1 {
		return uint16(uint64(b)<<10 | mant)
	}
	return uint16((1024 | mant) >> uint(1-b))
}

// Draws and bytes per block of the quantized types the generator writes.
var (
	qDraws = map[quant.Type]int{quant.Q8_0: 5, quant.Q4_0: 3, quant.Q5_0: 4, quant.Q4_K: 17, quant.Q6_K: 27}
)

// quantBlocks fills dst with random blocks of type t (Q8_0, Q4_0, Q5_0,
// Q4_K or Q6_K); see gen.py's quant_blocks for the definition.
func quantBlocks(dst []byte, seed uint64, fanIn int, t quant.Type) {
	k := scaleExp(fanIn)
	nd := qDraws[t]
	bb := t.BlockBytes()
	var d [27]uint64
	var raw [27 * 8]byte
	for b := 0; b < len(dst)/bb; b++ {
		for j := 0; j < nd; j++ {
			d[j] = draw(seed, b*nd+j)
			binary.LittleEndian.PutUint64(raw[8*j:], d[j])
		}
		o := dst[b*bb : (b+1)*bb]
		mant := d[0] & 1023
		switch t {
		case quant.Q8_0:
			binary.LittleEndian.PutUint16(o, f16bits(-k-8, mant))
			for i := 0; i < 32; i++ {
				q := raw[8+i]
				if q == 0x80 { // -128
					q = 0x81 // -127
				}
				o[2+i] = q
			}
		case quant.Q4_0:
			binary.LittleEndian.PutUint16(o, f16bits(-k-4, mant))
			for i, q := range raw[8:24] {
				lo, hi := q&15, q>>4
				if lo == 0 {
					lo = 8
				}
				if hi == 0 {
					hi = 8
				}
				o[2+i] = lo | hi<<4
			}
		case quant.Q5_0:
			binary.LittleEndian.PutUint16(o, f16bits(-k-5, mant))
			qh := binary.LittleEndian.Uint32(raw[8:12])
			qs := raw[12:28]
			for j := range 16 {
				if qs[j]&15 == 0 && qh>>j&1 == 0 {
					qh |= 1 << j
				}
				if qs[j]>>4 == 0 && qh>>(j+16)&1 == 0 {
					qh |= 1 << (j + 16)
				}
			}
			binary.LittleEndian.PutUint32(o[2:], qh)
			copy(o[6:22], qs)
		case quant.Q4_K:
			binary.LittleEndian.PutUint16(o, f16bits(-k-9, mant))
			binary.LittleEndian.PutUint16(o[2:], f16bits(-k-6, mant))
			var sc, mn [8]uint64
			for j := range 8 {
				sc[j] = 32 + (d[0]>>(10+5*j))&31
				mn[j] = (15*sc[j] + 8) >> 4
			}
			q := o[4:16]
			for j := range 4 {
				q[j] = uint8(sc[j]&63 | (sc[j+4]>>4)<<6)
				q[j+4] = uint8(mn[j]&63 | (mn[j+4]>>4)<<6)
				q[j+8] = uint8(sc[j+4]&15 | (mn[j+4]&15)<<4)
			}
			copy(o[16:144], raw[8:136])
		case quant.Q6_K:
			copy(o[0:128], raw[24:152])
			copy(o[128:192], raw[152:216])
			for j := range 16 {
				r := int(raw[8+j])
				s := 8 + (r&63)%56
				if r >= 128 {
					s = -s
				}
				o[192+j] = uint8(int8(s))
			}
			binary.LittleEndian.PutUint16(o[208:], f16bits(-k-11, mant))
		default:
			panic(fmt.Sprintf("randmodel: quantBlocks of %v", t))
		}
	}
}

// llama3RopeFactors is the converter's llama3 frequency-factor formula, in
// float64, stored as float32.
func llama3RopeFactors(base float64, dim int, r Llama3Rope) []float32 {
	lw := r.OrigCtx / r.Low
	hw := r.OrigCtx / r.High
	var out []float32
	for i := 0; i < dim; i += 2 {
		freq := 1.0 / math.Pow(base, float64(i)/float64(dim))
		wavelen := 2 * math.Pi / freq
		switch {
		case wavelen < hw:
			out = append(out, 1)
		case wavelen > lw:
			out = append(out, float32(r.Factor))
		default:
			smooth := (r.OrigCtx/wavelen - r.Low) / (r.High - r.Low)
			out = append(out, float32(1.0/((1-smooth)/r.Factor+smooth)))
		}
	}
	return out
}

func putF32(b []byte, v float32) { binary.LittleEndian.PutUint32(b, math.Float32bits(v)) }
