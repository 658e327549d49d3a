// Package gguf reads and writes GGUF files, the model format of ggml and
// llama.cpp: a header, typed metadata (key, value pairs), the shapes, types
// and offsets of the tensors, and the tensor data.
//
// Open maps a file into memory (syscall.Mmap, no cgo) so that the weights
// are not copied: a tensor's Data is a slice of the mapping, read from disk
// by the kernel when first touched and shared with the page cache. Where
// memory mapping is unavailable, Open reads the file. Parse reads a file
// already in memory.
//
// Versions 2 and 3 are read (both little-endian; version 1 and big-endian
// files are refused). Every malformed input gives a *FormatError naming the
// byte offset, wrapping ErrFormat; counts and lengths are checked against
// the bytes that remain before anything is allocated, so a lying count
// costs nothing.
//
// The layout: the magic "GGUF", the version (uint32), the tensor count and
// the metadata count (uint64 each), the metadata (a string key, a uint32
// value type, the value), the tensor infos (a string name, a uint32 number
// of dimensions, that many int64 dimensions with the contiguous one first,
// a uint32 ggml type, a uint64 offset), padding to the alignment (the
// uint32 key general.alignment, 32 by default), then the tensor data, each
// tensor's offset counted from the start of the data. Strings are a uint64
// length and that many bytes; arrays are a uint32 element type, a uint64
// count and the elements. All numbers are little-endian.
package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/compresskv/compresskv/examples/llama/quant"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// DefaultAlignment is the alignment of tensor data when a file has no
// general.alignment key.
const DefaultAlignment = 32

// KeyAlignment is the metadata key that sets the alignment of tensor data
// (a uint32 power of two).
const KeyAlignment = "general.alignment"

// MaxDims is the most dimensions a tensor has (ggml's GGML_MAX_DIMS).
const MaxDims = 4

// maxDepth bounds the nesting of arrays of arrays.
const maxDepth = 16

// prealloc caps the room reserved from a count before the entries are
// read; beyond it slices grow as entries are actually parsed, so memory
// stays proportional to the bytes read whatever a count claims.
const prealloc = 4096

var (
	// ErrFormat is wrapped by every error about a malformed file: a wrong
	// magic, an unsupported version, a truncated value, an unknown type, a
	// count that the file cannot hold, a tensor outside the file.
	ErrFormat = errors.New("gguf: malformed file")
	// ErrNotFound is wrapped by the errors for a metadata key or a tensor
	// name that the file does not have.
	ErrNotFound = errors.New("gguf: not found")
	// ErrClosed is wrapped by the errors of a File used after Close.
	ErrClosed = errors.New("gguf: file closed")
)

// FormatError is a malformed file: Offset is the byte of the file where
// the offending item starts. It wraps ErrFormat.
type FormatError struct {
	Offset int64  // byte offset in the file
	Msg    string // what is wrong there
}

// Error names the offset and what is wrong there.
func (e *FormatError) Error() string {
	return fmt.Sprintf("gguf: malformed file at byte %d: %s", e.Offset, e.Msg)
}

// Unwrap returns ErrFormat.
func (e *FormatError) Unwrap() error { return ErrFormat }

// KV is one metadata entry.
type KV struct {
	Key   string
	Value Value
}

// TensorInfo describes one tensor as the file lists it.
type TensorInfo struct {
	Name string
	// Type is the ggml type of the elements.
	Type quant.Type
	// Dims are the dimensions with the contiguous one first (ggml's ne):
	// a weight with Dims [n_in, n_out] is n_out rows of n_in values.
	Dims []int
	// Offset is the start of the tensor's data, counted from the start of
	// the data section (File.DataOffset).
	Offset int64
	// Size is the tensor's size in bytes.
	Size int64
}

// Elements returns the number of values in the tensor.
func (t TensorInfo) Elements() int64 {
	n := int64(1)
	for _, d := range t.Dims {
		n *= int64(d)
	}
	return n
}

// File is a parsed GGUF file. Its fields are read-only; KV and Tensors are
// in file order. Its methods may run from several goroutines at once,
// except Close, which must come after all other use.
type File struct {
	// Version is the format version, 2 or 3.
	Version uint32
	// Alignment is the alignment of tensor data in bytes.
	Alignment int
	// KV is the metadata in file order.
	KV []KV
	// Tensors are the tensor infos in file order.
	Tensors []TensorInfo
	// DataOffset is the byte offset of the data section in the file.
	DataOffset int64
	// Size is the file's size in bytes.
	Size int64

	data   []byte
	mapped bool
	unmap  func() error
	keys   map[string]int
	names  map[string]int
}

// Parse parses the GGUF file held in data. The File refers to data (tensor
// Data are slices of it); data must not be changed while the File is used.
func Parse(data []byte) (*File, error) {
	p := parser{b: data}
	f, err := p.file()
	if err != nil {
		return nil, err
	}
	f.data = data
	return f, nil
}

// Open opens and parses the GGUF file at path. The file is memory-mapped
// read-only where the system allows it (the weights are then not copied:
// pages are read when first touched and are shared with the page cache),
// else read into memory. Close releases it; tensor Data must not be used
// after Close.
func Open(path string) (*File, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size < 0 || uint64(size) > uint64(math.MaxInt) {
		return nil, fmt.Errorf("gguf: %s: %d bytes do not fit in memory", path, size)
	}
	data, unmap, err := mapper(fd, int(size))
	mapped := err == nil && unmap != nil
	if !mapped {
		data, err = readAll(fd, int(size))
		unmap = nil
		if err != nil {
			return nil, fmt.Errorf("gguf: %s: %w", path, err)
		}
	}
	f, err := Parse(data)
	if err != nil {
		if unmap != nil {
			_ = unmap()
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.mapped, f.unmap = mapped, unmap
	return f, nil
}

// mapper maps a file; tests replace it to exercise the reading fallback.
var mapper = mapFile

// readAll reads the size bytes of fd.
func readAll(fd *os.File, size int) ([]byte, error) {
	data := make([]byte, size)
	n, err := fd.ReadAt(data, 0)
	if n == size {
		return data, nil
	}
	if err == nil {
		err = fmt.Errorf("read %d of %d bytes", n, size)
	}
	return nil, err
}

// Mapped reports whether the File's data is a memory mapping of its file
// (from Open where the system allows it) rather than a copy in memory.
func (f *File) Mapped() bool { return f.mapped }

// Close releases the file's memory mapping. Tensor data obtained from the
// File must not be used afterwards; the File's metadata stays readable.
// Close is idempotent.
func (f *File) Close() error {
	f.data = nil
	if f.unmap == nil {
		return nil
	}
	err := f.unmap()
	f.unmap = nil
	return err
}

// Value returns the metadata value of key.
func (f *File) Value(key string) (Value, bool) {
	i, ok := f.keys[key]
	if !ok {
		return Value{}, false
	}
	return f.KV[i].Value, true
}

func (f *File) lookup(key string) (Value, error) {
	v, ok := f.Value(key)
	if !ok {
		return Value{}, fmt.Errorf("%w: key %q", ErrNotFound, key)
	}
	return v, nil
}

// keyed puts key into a TypeError.
func keyed(key string, err error) error {
	var te *TypeError
	if errors.As(err, &te) {
		c := *te
		c.Key = key
		return &c
	}
	return err
}

func get[T any](f *File, key string, conv func(Value) (T, error)) (T, error) {
	v, err := f.lookup(key)
	if err != nil {
		var zero T
		return zero, err
	}
	x, err := conv(v)
	return x, keyed(key, err)
}

// String returns the string value of key. A missing key gives an error
// wrapping ErrNotFound, another type a *TypeError (wrapping ErrType).
func (f *File) String(key string) (string, error) { return get(f, key, Value.Str) }

// Uint returns the value of key, of any integer type, as a uint64; a
// negative value gives a *TypeError.
func (f *File) Uint(key string) (uint64, error) { return get(f, key, Value.Uint) }

// Int returns the value of key, of any integer type, as an int64.
func (f *File) Int(key string) (int64, error) { return get(f, key, Value.Int) }

// Float returns the float32 or float64 value of key as a float64.
func (f *File) Float(key string) (float64, error) { return get(f, key, Value.Float) }

// Bool returns the bool value of key.
func (f *File) Bool(key string) (bool, error) { return get(f, key, Value.Bool) }

// Strings returns the array of strings of key (the File's own slice).
func (f *File) Strings(key string) ([]string, error) { return get(f, key, Value.Strings) }

// Float32s returns the array of float32 of key (the File's own slice).
func (f *File) Float32s(key string) ([]float32, error) { return get(f, key, Value.Float32s) }

// Int32s returns the array of key, of any integer type, as a new []int32.
func (f *File) Int32s(key string) ([]int32, error) { return get(f, key, Value.Int32s) }

// Ints returns the array of key, of any integer type, as a new []int.
func (f *File) Ints(key string) ([]int, error) { return get(f, key, Value.Ints) }

// Tensor is one tensor with its data.
type Tensor struct {
	Name string
	// Type is the ggml type of the elements.
	Type quant.Type
	// Dims are the dimensions with the contiguous one first (ggml's ne).
	Dims []int
	// Data is the tensor's bytes, a slice of the file's memory: read-only
	// (writing to a mapped file faults), valid until the File is closed.
	Data []byte
}

// Tensor returns the tensor called name. A missing name gives an error
// wrapping ErrNotFound; a closed File one wrapping ErrClosed.
func (f *File) Tensor(name string) (Tensor, error) {
	i, ok := f.names[name]
	if !ok {
		return Tensor{}, fmt.Errorf("%w: tensor %q", ErrNotFound, name)
	}
	return f.TensorAt(i)
}

// TensorAt returns tensor i of f.Tensors.
func (f *File) TensorAt(i int) (Tensor, error) {
	if i < 0 || i >= len(f.Tensors) {
		return Tensor{}, fmt.Errorf("%w: tensor index %d of %d", ErrNotFound, i, len(f.Tensors))
	}
	if f.data == nil {
		return Tensor{}, ErrClosed
	}
	ti := f.Tensors[i]
	start := f.DataOffset + ti.Offset
	return Tensor{Name: ti.Name, Type: ti.Type, Dims: ti.Dims, Data: f.data[start : start+ti.Size : start+ti.Size]}, nil
}

// Elements returns the number of values in the tensor.
func (t Tensor) Elements() int64 {
	return TensorInfo{Dims: t.Dims}.Elements()
}

// parser reads a GGUF file from memory; off is the absolute offset of the
// next byte.
type parser struct {
	b   []byte
	off int64
}

func (p *parser) errAt(off int64, format string, args ...any) error {
	return &FormatError{Offset: off, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) remaining() uint64 { return uint64(int64(len(p.b)) - p.off) }

// take returns the next n bytes.
func (p *parser) take(n uint64, what string) ([]byte, error) {
	if rem := p.remaining(); n > rem {
		return nil, p.errAt(p.off, "truncated: %s needs %d bytes, %d remain", what, n, rem)
	}
	s := p.b[p.off : p.off+int64(n) : p.off+int64(n)]
	p.off += int64(n)
	return s, nil
}

func (p *parser) u32(what string) (uint32, error) {
	s, err := p.take(4, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(s), nil
}

func (p *parser) u64(what string) (uint64, error) {
	s, err := p.take(8, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(s), nil
}

func (p *parser) str(what func() string) (string, error) {
	start := p.off
	if p.remaining() < 8 {
		return "", p.errAt(start, "truncated: the length of %s needs 8 bytes, %d remain", what(), p.remaining())
	}
	n, _ := p.u64("")
	if rem := p.remaining(); n > rem {
		return "", p.errAt(start, "truncated: %s of %d bytes, %d remain", what(), n, rem)
	}
	b, _ := p.take(n, "")
	return string(b), nil
}

// text returns a description for str.
func text(format string, args ...any) func() string {
	return func() string { return fmt.Sprintf(format, args...) }
}

// count reads an element count and checks that the rest of the file can
// hold that many elements of at least minSize bytes each.
func (p *parser) count(what string, minSize int) (int, error) {
	start := p.off
	n, err := p.u64(what)
	if err != nil {
		return 0, err
	}
	if rem := p.remaining(); n > rem/uint64(minSize) {
		return 0, p.errAt(start, "%s %d: the %d bytes left hold at most %d", what, n, rem, rem/uint64(minSize))
	}
	return int(n), nil
}

func (p *parser) file() (*File, error) {
	magic, err := p.take(4, "magic")
	if err != nil {
		return nil, err
	}
	if string(magic) != Magic {
		return nil, p.errAt(0, "magic %q is not %q: not a GGUF file", magic, Magic)
	}
	version, err := p.u32("version")
	if err != nil {
		return nil, err
	}
	switch {
	case version == 0:
		return nil, p.errAt(4, "version 0")
	case version&0xffff == 0:
		return nil, p.errAt(4, "version %#x: a big-endian file, which is not supported", version)
	case version == 1:
		return nil, p.errAt(4, "version 1 is not supported (only 2 and 3)")
	case version > 3:
		return nil, p.errAt(4, "version %d is newer than 3, the last one supported", version)
	}
	// A tensor info takes at least 24 bytes (empty name, no dimension),
	// a metadata entry at least 13 (empty key, a one-byte value).
	nTensors, err := p.count("tensor count", 24)
	if err != nil {
		return nil, err
	}
	nKV, err := p.count("metadata count", 13)
	if err != nil {
		return nil, err
	}
	f := &File{
		Version:   version,
		Alignment: DefaultAlignment,
		KV:        make([]KV, 0, min(nKV, prealloc)),
		Tensors:   make([]TensorInfo, 0, min(nTensors, prealloc)),
		keys:      make(map[string]int, min(nKV, prealloc)),
		names:     make(map[string]int, min(nTensors, prealloc)),
		Size:      int64(len(p.b)),
	}
	for i := range nKV {
		start := p.off
		key, err := p.str(text("metadata key %d", i))
		if err != nil {
			return nil, err
		}
		if _, dup := f.keys[key]; dup {
			return nil, p.errAt(start, "duplicate metadata key %q", key)
		}
		typeAt := p.off
		t, err := p.u32(fmt.Sprintf("type of key %q", key))
		if err != nil {
			return nil, err
		}
		v, err := p.value(ValueType(t), typeAt, key, 0)
		if err != nil {
			return nil, err
		}
		if key == KeyAlignment {
			a, ok := v.v.(uint32)
			if !ok {
				return nil, p.errAt(typeAt, "%s is %s, want uint32", key, v.typeName())
			}
			if a == 0 || a&(a-1) != 0 || uint64(a) > 1<<30 {
				return nil, p.errAt(typeAt, "%s %d is not a power of two up to 2^30", key, a)
			}
			f.Alignment = int(a)
		}
		f.keys[key] = len(f.KV)
		f.KV = append(f.KV, KV{Key: key, Value: v})
	}
	offsetAt := make([]int64, 0, min(nTensors, prealloc))
	for i := range nTensors {
		ti, at, err := p.tensorInfo(i, f.Alignment)
		if err != nil {
			return nil, err
		}
		if _, dup := f.names[ti.Name]; dup {
			return nil, p.errAt(at.name, "duplicate tensor name %q", ti.Name)
		}
		f.names[ti.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, ti)
		offsetAt = append(offsetAt, at.offset)
	}
	f.DataOffset = p.off
	if nTensors > 0 {
		// The data section starts at the next multiple of the alignment.
		a := int64(f.Alignment)
		f.DataOffset = (p.off + a - 1) / a * a
		if f.DataOffset > int64(len(p.b)) {
			return nil, p.errAt(p.off, "truncated: tensor data starts at byte %d, the file has %d", f.DataOffset, len(p.b))
		}
	}
	avail := int64(len(p.b)) - f.DataOffset
	for i, ti := range f.Tensors {
		if ti.Offset > avail || ti.Size > avail-ti.Offset {
			return nil, p.errAt(offsetAt[i], "tensor %q: data [%d, %d) after byte %d lies outside the file of %d bytes",
				ti.Name, ti.Offset, uint64(ti.Offset)+uint64(ti.Size), f.DataOffset, len(p.b))
		}
	}
	return f, nil
}

// infoAt holds where the parts of a tensor info start, for errors.
type infoAt struct{ name, offset int64 }

func (p *parser) tensorInfo(i, alignment int) (TensorInfo, infoAt, error) {
	var at infoAt
	at.name = p.off
	name, err := p.str(text("name of tensor %d", i))
	if err != nil {
		return TensorInfo{}, at, err
	}
	dimsAt := p.off
	nd, err := p.u32(fmt.Sprintf("dimension count of tensor %q", name))
	if err != nil {
		return TensorInfo{}, at, err
	}
	if nd > MaxDims {
		return TensorInfo{}, at, p.errAt(dimsAt, "tensor %q has %d dimensions, more than %d", name, nd, MaxDims)
	}
	dims := make([]int, nd)
	n := uint64(1)
	for j := range dims {
		dimAt := p.off
		d, err := p.u64(fmt.Sprintf("dimension %d of tensor %q", j, name))
		if err != nil {
			return TensorInfo{}, at, err
		}
		// ne are int64 in ggml; the total must stay below 2^62 here.
		if d > 1<<62 || (d != 0 && n > (1<<62)/d) {
			return TensorInfo{}, at, p.errAt(dimAt, "tensor %q: dimension %d of %d makes too many elements", name, j, int64(d))
		}
		n *= d
		dims[j] = int(d)
	}
	typeAt := p.off
	t, err := p.u32(fmt.Sprintf("type of tensor %q", name))
	if err != nil {
		return TensorInfo{}, at, err
	}
	qt := quant.Type(t)
	if !qt.Known() {
		return TensorInfo{}, at, p.errAt(typeAt, "tensor %q has unknown ggml type %d", name, t)
	}
	row := 1
	if nd > 0 {
		row = dims[0]
	}
	if row%qt.BlockSize() != 0 {
		return TensorInfo{}, at, p.errAt(dimsAt, "tensor %q of type %v has rows of %d values, not a whole number of %d-value blocks", name, qt, row, qt.BlockSize())
	}
	blocks := n / uint64(qt.BlockSize())
	if blocks > math.MaxInt64/uint64(qt.BlockBytes()) {
		return TensorInfo{}, at, p.errAt(dimsAt, "tensor %q: %d values of %v overflow the size", name, n, qt)
	}
	size := int64(blocks) * int64(qt.BlockBytes())
	at.offset = p.off
	off, err := p.u64(fmt.Sprintf("offset of tensor %q", name))
	if err != nil {
		return TensorInfo{}, at, err
	}
	if off > math.MaxInt64 {
		return TensorInfo{}, at, p.errAt(at.offset, "tensor %q: offset %d is beyond any file", name, off)
	}
	if off%uint64(alignment) != 0 {
		return TensorInfo{}, at, p.errAt(at.offset, "tensor %q: offset %d is not a multiple of the alignment %d", name, off, alignment)
	}
	return TensorInfo{Name: name, Type: qt, Dims: dims, Offset: int64(off), Size: size}, at, nil
}

// value reads a value of type t whose type field starts at typeAt.
func (p *parser) value(t ValueType, typeAt int64, key string, depth int) (Value, error) {
	if t == TypeArray {
		return p.array(typeAt, key, depth)
	}
	if t.size() < 0 {
		return Value{}, p.errAt(typeAt, "key %q has unknown value type %d", key, uint32(t))
	}
	if t == TypeString {
		s, err := p.str(text("string value of key %q", key))
		return Value{Type: t, v: s}, err
	}
	b, err := p.take(uint64(t.size()), fmt.Sprintf("%v value of key %q", t, key))
	if err != nil {
		return Value{}, err
	}
	return Value{Type: t, v: scalar(t, b)}, nil
}

func scalar(t ValueType, b []byte) any {
	le := binary.LittleEndian
	switch t {
	case TypeUint8:
		return b[0]
	case TypeInt8:
		return int8(b[0])
	case TypeBool:
		return b[0] != 0
	case TypeUint16:
		return le.Uint16(b)
	case TypeInt16:
		return int16(le.Uint16(b))
	case TypeUint32:
		return le.Uint32(b)
	case TypeInt32:
		return int32(le.Uint32(b))
	case TypeFloat32:
		return math.Float32frombits(le.Uint32(b))
	case TypeUint64:
		return le.Uint64(b)
	case TypeInt64:
		return int64(le.Uint64(b))
	case TypeFloat64:
		return math.Float64frombits(le.Uint64(b))
	}
	panic("gguf: scalar of non-scalar type") // unreachable: callers check the type
}

func (p *parser) array(typeAt int64, key string, depth int) (Value, error) {
	if depth >= maxDepth {
		return Value{}, p.errAt(typeAt, "key %q: arrays nested deeper than %d", key, maxDepth)
	}
	elemAt := p.off
	e, err := p.u32(fmt.Sprintf("element type of array %q", key))
	if err != nil {
		return Value{}, err
	}
	et := ValueType(e)
	if et.size() < 0 {
		return Value{}, p.errAt(elemAt, "key %q: array of unknown value type %d", key, e)
	}
	n, err := p.count(fmt.Sprintf("length of array %q", key), et.minSize())
	if err != nil {
		return Value{}, err
	}
	switch et {
	case TypeString:
		s := make([]string, 0, min(n, prealloc))
		for i := range n {
			e, err := p.str(func() string { return fmt.Sprintf("element %d of array %q", i, key) })
			if err != nil {
				return Value{}, err
			}
			s = append(s, e)
		}
		return array(et, s), nil
	case TypeArray:
		s := make([]Value, 0, min(n, prealloc))
		for range n {
			e, err := p.array(p.off, key, depth+1)
			if err != nil {
				return Value{}, err
			}
			s = append(s, e)
		}
		return array(et, s), nil
	}
	b, _ := p.take(uint64(n)*uint64(et.size()), "") // count checked the length
	return Value{Type: TypeArray, Elem: et, v: scalars(et, b, n)}, nil
}

// scalars decodes n little-endian scalars of type t from b.
func scalars(t ValueType, b []byte, n int) any {
	le := binary.LittleEndian
	switch t {
	case TypeUint8:
		return append([]uint8(nil), b...)
	case TypeInt8:
		s := make([]int8, n)
		for i := range s {
			s[i] = int8(b[i])
		}
		return s
	case TypeBool:
		s := make([]bool, n)
		for i := range s {
			s[i] = b[i] != 0
		}
		return s
	case TypeUint16:
		s := make([]uint16, n)
		for i := range s {
			s[i] = le.Uint16(b[2*i:])
		}
		return s
	case TypeInt16:
		s := make([]int16, n)
		for i := range s {
			s[i] = int16(le.Uint16(b[2*i:]))
		}
		return s
	case TypeUint32:
		s := make([]uint32, n)
		for i := range s {
			s[i] = le.Uint32(b[4*i:])
		}
		return s
	case TypeInt32:
		s := make([]int32, n)
		for i := range s {
			s[i] = int32(le.Uint32(b[4*i:]))
		}
		return s
	case TypeFloat32:
		s := make([]float32, n)
		for i := range s {
			s[i] = math.Float32frombits(le.Uint32(b[4*i:]))
		}
		return s
	case TypeUint64:
		s := make([]uint64, n)
		for i := range s {
			s[i] = le.Uint64(b[8*i:])
		}
		return s
	case TypeInt64:
		s := make([]int64, n)
		for i := range s {
			s[i] = int64(le.Uint64(b[8*i:]))
		}
		return s
	case TypeFloat64:
		s := make([]float64, n)
		for i := range s {
			s[i] = math.Float64frombits(le.Uint64(b[8*i:]))
		}
		return s
	}
	panic("gguf: scalars of non-scalar type") // unreachable: callers check the type
}
