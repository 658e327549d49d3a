package kvcache

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// fuzzBytes hands out the fuzz input one byte at a time, zeros once it runs out.
type fuzzBytes struct {
	b []byte
	i int
}

func (f *fuzzBytes) done() bool { return f.i >= len(f.b) }

func (f *fuzzBytes) next() byte {
	if f.i >= len(f.b) {
		return 0
	}
	f.i++
	return f.b[f.i-1]
}

// fuzzLayer picks a layer, now and then one out of range.
func fuzzLayer(b byte, layers int) int {
	switch b {
	case 0xff:
		return layers
	case 0xfe:
		return -1
	}
	return int(b) % layers
}

// validKeep is the model's own statement of a valid compaction.
func validKeep(keep [][]int, lens []int) bool {
	if len(keep) != len(lens) {
		return false
	}
	for g, rows := range keep {
		for i, r := range rows {
			if r < 0 || r >= lens[g] || (i > 0 && r <= rows[i-1]) {
				return false
			}
		}
	}
	return true
}

// storable reports whether every value of x is finite and stays finite when
// rounded to dt (the float64 reference rounding of dtype_test.go).
func storable(dt DType, x []float32) bool {
	for _, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return false
		}
		if r := refRound(dt, v); math.IsInf(r, 0) {
			return false
		}
	}
	return true
}

// FuzzCache runs a sequence of operations decoded from the input on a small
// cache of every storage type and checks it against refCache after each:
// lengths, positions, decoded rows, Seen, Bytes; and that rejected operations
// change nothing at all.
func FuzzCache(f *testing.F) {
	f.Add([]byte{0, 0, 3, 1, 0})
	f.Add([]byte{0, 1, 4, 7, 0, 3, 1, 0x55, 0xaa, 5, 7, 0, 0, 2, 9, 4})
	f.Add([]byte{0, 0, 4, 1, 0x40, 1, 0, 2, 2, 1, 3, 0, 0xff, 0, 5, 0, 0, 1, 3, 3})
	f.Add([]byte{2, 1, 3, 3, 8, 4, 1, 0x0f, 0xf0, 0, 6, 0, 0, 2, 2, 0, 5, 1, 4, 0, 0xff, 0xff, 3})
	f.Add([]byte{0, 0xff, 2, 0, 0, 0xfe, 2, 0, 0, 0, 4, 9, 17, 0, 0, 4, 9, 18, 0, 0, 4, 9, 19, 3, 1, 0x33, 0x11, 1, 3, 1, 0x33, 0x11, 2})
	r := rand.New(rand.NewPCG(1, 2))
	long := make([]byte, 400)
	for i := range long {
		long[i] = byte(r.Uint32())
	}
	f.Add(long)

	f.Fuzz(func(t *testing.T, data []byte) {
		for _, dt := range allDTypes {
			fuzzCache(t, dt, data)
		}
	})
}

func fuzzCache(t *testing.T, dt DType, data []byte) {
	s := Shape{Layers: 2, KVHeads: 2, HeadDim: 3}
	row := s.KVHeads * s.HeadDim
	c := mustHost(t, s, dt)
	m := newRefCache(s, dt)
	in := &fuzzBytes{b: data}
	for step := 0; !in.done() && step < 300; step++ {
		var (
			what  string
			want  bool // the operation should succeed
			err   error
			tried bool // an Append or Compact was called
		)
		before := c.Clone()
		switch op := in.next() % 8; op {
		case 0, 1, 2: // append n tokens
			layer := fuzzLayer(in.next(), s.Layers)
			n := int(in.next() % 5)
			seed, special := in.next(), in.next()
			vr := rand.New(rand.NewPCG(uint64(seed), uint64(step)))
			k, v := make([]float32, n*row), make([]float32, n*row)
			for i := range k {
				k[i] = float32(vr.NormFloat64() * 3)
				v[i] = float32(vr.NormFloat64() * math.Ldexp(1, vr.IntN(40)-20))
			}
			at := int(special>>3) % max(len(k), 1)
			switch special & 7 {
			case 0:
				if len(k) > 0 {
					k[at] = float32(math.NaN())
				}
			case 1:
				if len(v) > 0 {
					v[at] = float32(math.Inf(1 - 2*int(special>>7)))
				}
			case 2: // keys and values differ in length
				v = v[:len(v)/2]
			case 3: // not a whole number of tokens
				if len(k) > 0 {
					k, v = k[:len(k)-1], v[:len(v)-1]
				}
			case 4: // finite, but beyond float16
				if len(k) > 0 {
					k[at] = 70000
					v[at] = -1e30
				}
			case 5: // -0 and a float16 subnormal
				if len(k) > 0 {
					k[at] = float32(math.Copysign(0, -1))
					v[at] = 3e-7
				}
			}
			what = fmt.Sprintf("Append(layer %d, %d keys, %d values, special %d)", layer, len(k), len(v), special&7)
			want = layer >= 0 && layer < s.Layers && len(k) == len(v) && len(k)%row == 0 && storable(dt, k) && storable(dt, v)
			err, tried = c.Append(layer, k, v), true
			if want && err == nil {
				m.append(layer, k, v)
			}
		case 3, 4: // compact
			layer := fuzzLayer(in.next(), s.Layers)
			lens := make([]int, s.KVHeads)
			for g := range lens {
				ml := min(max(layer, 0), s.Layers-1)
				lens[g] = len(m.heads[ml*s.KVHeads+g])
			}
			keep := make([][]int, s.KVHeads)
			for g := range keep {
				mask := in.next()
				keep[g] = []int{}
				for i := 0; i < lens[g]; i++ {
					if mask>>(i%8)&1 == 1 {
						keep[g] = append(keep[g], i)
					}
				}
			}
			mode := in.next()
			g := int(mode>>4) % s.KVHeads
			switch mode & 7 {
			case 0: // unsorted
				if n := len(keep[g]); n >= 2 {
					keep[g][n-2], keep[g][n-1] = keep[g][n-1], keep[g][n-2]
				} else {
					keep[g] = append(keep[g], lens[g])
				}
			case 1: // duplicate
				if n := len(keep[g]); n >= 1 {
					keep[g] = append(keep[g], keep[g][n-1])
				} else {
					keep[g] = append(keep[g], -1)
				}
			case 2: // out of range
				keep[g] = append(keep[g], lens[g]+int(mode>>6))
			case 3: // a head missing
				keep = keep[:s.KVHeads-1]
			case 4: // a head too many
				keep = append(keep, []int{0})
			case 5: // nil for a head: keep none
				keep[g] = nil
			}
			what = fmt.Sprintf("Compact(layer %d, %v) with lengths %v", layer, keep, lens)
			want = layer >= 0 && layer < s.Layers && validKeep(keep, lens)
			err, tried = c.Compact(layer, keep), true
			if want && err == nil {
				m.compact(layer, keep)
			}
		case 5: // clone, mutate one copy, the other must not move
			what = "Clone"
			cl := c.Clone()
			if msg := m.check(cl); msg != "" {
				t.Fatalf("%v: step %d: clone: %s", dt, step, msg)
			}
			if in.next()&1 == 1 {
				c, cl = cl, c // go on with the clone, mutate the original
			}
			kk, vv := make([]float32, row), make([]float32, row)
			for i := range kk {
				kk[i], vv[i] = float32(i)+0.5, -float32(i)
			}
			if err := cl.Append(0, kk, vv); err != nil {
				t.Fatalf("%v: step %d: Append to a copy: %v", dt, step, err)
			}
			if err := cl.Compact(1, make([][]int, s.KVHeads)); err != nil {
				t.Fatalf("%v: step %d: Compact of a copy: %v", dt, step, err)
			}
			if kr, _ := cl.Rows(0, 0); kr.N > 0 {
				if dt == Float32 {
					kr.F32[0] = 77
				} else {
					kr.U16[0] = 0x3c00
				}
			}
		case 6:
			what = "Reset"
			c.Reset()
			m.reset()
		case 7: // zero tokens: a valid no-op
			layer := fuzzLayer(in.next(), s.Layers)
			what = fmt.Sprintf("Append(layer %d, no tokens)", layer)
			want = layer >= 0 && layer < s.Layers
			err, tried = c.Append(layer, nil, []float32{}), true
		}
		if tried {
			switch {
			case want && err != nil:
				t.Fatalf("%v: step %d: %s: unexpected error %v", dt, step, what, err)
			case !want && err == nil:
				t.Fatalf("%v: step %d: %s: succeeded, want an error", dt, step, what)
			case err != nil:
				if msg := sameHost(before, c); msg != "" {
					t.Fatalf("%v: step %d: rejected %s changed the cache: %s", dt, step, what, msg)
				}
			}
		}
		if msg := m.check(c); msg != "" {
			t.Fatalf("%v: step %d: after %s: %s", dt, step, what, msg)
		}
	}
}
