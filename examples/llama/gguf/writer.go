package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/compresskv/compresskv/examples/llama/quant"
)

// ErrWriter is wrapped by the errors of a Writer given something it cannot
// write: a duplicate key or tensor name, a bad alignment, a tensor whose
// data does not match its type and shape.
var ErrWriter = errors.New("gguf: cannot write")

// Writer assembles a GGUF file: metadata and tensors in the order they are
// added, tensor data aligned to the file's alignment (32 unless
// general.alignment is set). It keeps references to the tensor data it is
// given, not copies. The zero Writer writes version 3.
type Writer struct {
	// Version is the format version to write, 2 or 3; 0 means 3. The two
	// have the same little-endian layout.
	Version uint32

	kv      []KV
	keys    map[string]int
	tensors []Tensor
	names   map[string]bool
	align   int
}

// NewWriter returns an empty Writer of version 3.
func NewWriter() *Writer { return &Writer{} }

// Set adds the metadata entry key, or replaces its value in place when the
// key is already set. x is a Value or a Go value ValueOf accepts. The key
// general.alignment must be a uint32 power of two; it sets the alignment of
// the tensor data.
func (w *Writer) Set(key string, x any) error {
	v, err := ValueOf(x)
	if err != nil {
		return fmt.Errorf("%w: key %q: %w", ErrWriter, key, err)
	}
	align := w.alignment()
	if key == KeyAlignment {
		a, ok := v.v.(uint32)
		if !ok || a == 0 || a&(a-1) != 0 || a > 1<<30 {
			return fmt.Errorf("%w: %s must be a uint32 power of two up to 2^30, not %s %v", ErrWriter, key, v.typeName(), v)
		}
		align = int(a)
	}
	if w.keys == nil {
		w.keys = map[string]int{}
	}
	if i, ok := w.keys[key]; ok {
		w.kv[i].Value = v
	} else {
		w.keys[key] = len(w.kv)
		w.kv = append(w.kv, KV{Key: key, Value: v})
	}
	w.align = align
	return nil
}

func (w *Writer) alignment() int {
	if w.align == 0 {
		return DefaultAlignment
	}
	return w.align
}

// AddTensor adds a tensor of type t with dimensions dims (the contiguous
// one first, at most MaxDims) whose bytes are data. The Writer keeps data
// (not a copy) until WriteTo. It fails, wrapping ErrWriter, for a
// duplicate name, a type ggml does not define, a first dimension that is
// not a whole number of blocks, or data of the wrong length.
func (w *Writer) AddTensor(name string, t quant.Type, dims []int, data []byte) error {
	if w.names[name] {
		return fmt.Errorf("%w: duplicate tensor name %q", ErrWriter, name)
	}
	if len(dims) > MaxDims {
		return fmt.Errorf("%w: tensor %q has %d dimensions, more than %d", ErrWriter, name, len(dims), MaxDims)
	}
	n := 1
	for _, d := range dims {
		if d < 0 || (d != 0 && n > math.MaxInt/d) {
			return fmt.Errorf("%w: tensor %q has bad dimensions %v", ErrWriter, name, dims)
		}
		n *= d
	}
	row := 1
	if len(dims) > 0 {
		row = dims[0]
	}
	if _, err := t.RowBytes(row); err != nil {
		return fmt.Errorf("%w: tensor %q: %w", ErrWriter, name, err)
	}
	size, err := t.RowBytes(n)
	if err != nil {
		return fmt.Errorf("%w: tensor %q: %w", ErrWriter, name, err)
	}
	if len(data) != size {
		return fmt.Errorf("%w: tensor %q: %d bytes of data, %v %v needs %d", ErrWriter, name, len(data), t, dims, size)
	}
	if w.names == nil {
		w.names = map[string]bool{}
	}
	w.names[name] = true
	w.tensors = append(w.tensors, Tensor{Name: name, Type: t, Dims: append([]int(nil), dims...), Data: data})
	return nil
}

// WriteTo writes the file to out and returns the number of bytes written.
func (w *Writer) WriteTo(out io.Writer) (int64, error) {
	version := w.Version
	if version == 0 {
		version = 3
	}
	if version != 2 && version != 3 {
		return 0, fmt.Errorf("%w: version %d (only 2 and 3)", ErrWriter, version)
	}
	e := encoder{w: bufio.NewWriterSize(out, 1<<16)}
	e.bytes([]byte(Magic))
	e.u32(version)
	e.u64(uint64(len(w.tensors)))
	e.u64(uint64(len(w.kv)))
	for _, kv := range w.kv {
		e.str(kv.Key)
		e.u32(uint32(kv.Value.Type))
		e.value(kv.Value)
	}
	align := int64(w.alignment())
	pad := func(n int64) int64 { return (n + align - 1) / align * align }
	var off int64
	for _, t := range w.tensors {
		e.str(t.Name)
		e.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			e.u64(uint64(d))
		}
		e.u32(uint32(t.Type))
		e.u64(uint64(off))
		off += pad(int64(len(t.Data)))
	}
	if len(w.tensors) > 0 {
		e.zeros(pad(e.n) - e.n)
	}
	for _, t := range w.tensors {
		e.bytes(t.Data)
		e.zeros(pad(int64(len(t.Data))) - int64(len(t.Data)))
	}
	if e.err == nil {
		e.err = e.w.Flush()
	}
	return e.n, e.err
}

// WriteFile writes the file to path (created or truncated).
func (w *Writer) WriteFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := w.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// encoder writes little-endian values, keeping the first error and the
// count of bytes written.
type encoder struct {
	w   *bufio.Writer
	n   int64
	err error
	buf [8]byte
}

func (e *encoder) bytes(b []byte) {
	if e.err != nil {
		return
	}
	n, err := e.w.Write(b)
	e.n += int64(n)
	e.err = err
}

func (e *encoder) zeros(n int64) {
	var z [64]byte
	for n > 0 {
		k := min(n, int64(len(z)))
		e.bytes(z[:k])
		n -= k
	}
}

func (e *encoder) u8(x uint8) { e.buf[0] = x; e.bytes(e.buf[:1]) }

func (e *encoder) u16(x uint16) {
	binary.LittleEndian.PutUint16(e.buf[:], x)
	e.bytes(e.buf[:2])
}

func (e *encoder) u32(x uint32) {
	binary.LittleEndian.PutUint32(e.buf[:], x)
	e.bytes(e.buf[:4])
}

func (e *encoder) u64(x uint64) {
	binary.LittleEndian.PutUint64(e.buf[:], x)
	e.bytes(e.buf[:8])
}

func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	if e.err == nil {
		n, err := e.w.WriteString(s)
		e.n += int64(n)
		e.err = err
	}
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// value writes v's payload (its type is written by the caller).
func (e *encoder) value(v Value) {
	switch x := v.v.(type) {
	case uint8:
		e.u8(x)
	case int8:
		e.u8(uint8(x))
	case bool:
		e.u8(b2u(x))
	case uint16:
		e.u16(x)
	case int16:
		e.u16(uint16(x))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	case string:
		e.str(x)
	default:
		e.u32(uint32(v.Elem))
		e.u64(uint64(v.Len()))
		e.elements(v)
	}
}

func (e *encoder) elements(v Value) {
	switch s := v.v.(type) {
	case []uint8:
		e.bytes(s)
	case []int8:
		for _, x := range s {
			e.u8(uint8(x))
		}
	case []bool:
		for _, x := range s {
			e.u8(b2u(x))
		}
	case []uint16:
		for _, x := range s {
			e.u16(x)
		}
	case []int16:
		for _, x := range s {
			e.u16(uint16(x))
		}
	case []uint32:
		for _, x := range s {
			e.u32(x)
		}
	case []int32:
		for _, x := range s {
			e.u32(uint32(x))
		}
	case []float32:
		for _, x := range s {
			e.u32(math.Float32bits(x))
		}
	case []uint64:
		for _, x := range s {
			e.u64(x)
		}
	case []int64:
		for _, x := range s {
			e.u64(uint64(x))
		}
	case []float64:
		for _, x := range s {
			e.u64(math.Float64bits(x))
		}
	case []string:
		for _, x := range s {
			e.str(x)
		}
	case []Value:
		for _, x := range s {
			e.value(x)
		}
	}
}
