package vocab

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
)

// readGGUFMetadata reads the key/value section of a GGUF file into a Map, for the tests that
// use ../shared vocabularies.
func readGGUFMetadata(path string) (Map, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	le := binary.LittleEndian
	var hdr [24]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	if string(hdr[:4]) != "GGUF" {
		return nil, fmt.Errorf("%s: not GGUF", path)
	}
	nkv := le.Uint64(hdr[16:])
	u32 := func() uint32 {
		var b [4]byte
		if _, e := io.ReadFull(r, b[:]); e != nil && err == nil {
			err = e
		}
		return le.Uint32(b[:])
	}
	u64 := func() uint64 {
		var b [8]byte
		if _, e := io.ReadFull(r, b[:]); e != nil && err == nil {
			err = e
		}
		return le.Uint64(b[:])
	}
	str := func() string {
		n := u64()
		if err != nil || n > 1<<30 {
			return ""
		}
		b := make([]byte, n)
		if _, e := io.ReadFull(r, b); e != nil && err == nil {
			err = e
		}
		return string(b)
	}
	var scalar func(t uint32) any
	scalar = func(t uint32) any {
		switch t {
		case 0:
			return uint8(u32ish(r, 1))
		case 1:
			return int8(u32ish(r, 1))
		case 2:
			return uint16(u32ish(r, 2))
		case 3:
			return int16(u32ish(r, 2))
		case 4:
			return u32()
		case 5:
			return int32(u32())
		case 6:
			return math.Float32frombits(u32())
		case 7:
			return u32ish(r, 1) != 0
		case 8:
			return str()
		case 10:
			return u64()
		case 11:
			return int64(u64())
		case 12:
			return math.Float64frombits(u64())
		}
		err = fmt.Errorf("unknown GGUF type %d", t)
		return nil
	}
	md := Map{}
	for i := uint64(0); i < nkv && err == nil; i++ {
		key := str()
		t := u32()
		if t != 9 {
			md[key] = scalar(t)
			continue
		}
		et, n := u32(), u64()
		switch et {
		case 8:
			a := make([]string, n)
			for j := range a {
				a[j] = str()
			}
			md[key] = a
		case 6:
			a := make([]float32, n)
			for j := range a {
				a[j] = math.Float32frombits(u32())
			}
			md[key] = a
		case 5:
			a := make([]int32, n)
			for j := range a {
				a[j] = int32(u32())
			}
			md[key] = a
		default:
			a := make([]any, n)
			for j := range a {
				a[j] = scalar(et)
			}
			md[key] = a
		}
	}
	return md, err
}

func u32ish(r io.Reader, n int) uint32 {
	var b [4]byte
	io.ReadFull(r, b[:n])
	return binary.LittleEndian.Uint32(b[:])
}
