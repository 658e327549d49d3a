// Package kvcache stores the keys and values of one sequence, layer by layer
// and KV head by KV head, in float32, float16 or bfloat16.
//
// Rows of HeadDim values are contiguous per head (head-major), because scoring,
// gathering and attention all walk one head at a time. Each head has its own
// length, so head-wise budgets (Ada-KV) really save memory. Every stored row
// remembers its original position in the sequence, and each layer counts the
// tokens ever appended to it, which is the position of the next token: after a
// compaction, decoding continues from the uncompressed length.
//
// Input rows arrive token-major, [n][KVHeads][HeadDim], as key and value
// projections produce them.
package kvcache

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/compresskv/compresskv/internal/finite"
	"github.com/compresskv/compresskv/internal/par"
)

// Shape is the geometry of a cache: layers, KV heads per layer, values per row.
type Shape struct {
	Layers  int // transformer layers
	KVHeads int // key/value heads per layer (G)
	HeadDim int // values per key or value row (d)
}

// Validate returns an error wrapping ErrShape if any dimension is not
// positive.
func (s Shape) Validate() error {
	if s.Layers <= 0 || s.KVHeads <= 0 || s.HeadDim <= 0 {
		return fmt.Errorf("kvcache: invalid shape %+v: every dimension must be positive: %w", s, ErrShape)
	}
	return nil
}

// KVCache is the storage that policies compress and backends read.
//
// Concurrency: one layer must not be mutated (Append, Compact) from two
// goroutines at once, nor read while it is mutated; distinct layers may be
// appended to or compacted from different goroutines. A cache that detects
// misuse (Host does) returns ErrBusy instead of racing; see Exclusive. Len,
// Seen and Positions panic on a layer or head out of range, a programming
// error; methods that take data (Append, Compact) return errors instead.
type KVCache interface {
	// Shape returns the geometry of the cache.
	Shape() Shape
	// DType returns the storage type of the rows.
	DType() DType
	// Len returns the number of rows stored for KV head head of layer layer.
	Len(layer, head int) int
	// Seen returns the number of tokens ever appended to layer: the position
	// the next appended token gets.
	Seen(layer int) int
	// Positions appends the original positions of the rows of one head to dst
	// and returns it; they are strictly increasing.
	Positions(layer, head int, dst []int32) []int32
	// Append stores n new tokens at the end of every head of layer. k and v are
	// token-major [n][KVHeads][HeadDim]; their positions continue from Seen.
	// Non-finite values, and values that overflow the storage type (beyond
	// 65504 in float16), are rejected with ErrNonFinite and leave the cache
	// unchanged.
	Append(layer int, k, v []float32) error
	// Compact keeps, for every head g of layer, the rows keep[g] (row indices,
	// strictly increasing) and drops the others, moving rows in place.
	// Invalid input is rejected and leaves the cache unchanged.
	Compact(layer int, keep [][]int) error
	// Bytes returns the memory the stored rows and their positions occupy.
	Bytes() int64
}

// ErrShape is wrapped by errors that report input of the wrong size.
var ErrShape = errors.New("wrong shape")

// ErrNonFinite is wrapped by errors that report NaN or infinite input, or
// input that the storage type cannot hold.
var ErrNonFinite = errors.New("non-finite value")

// ErrBusy is wrapped by errors that report a call overlapping another one on
// the same cache from another goroutine (see KVCache's concurrency rule).
var ErrBusy = errors.New("cache busy")

// Exclusive is implemented by caches that detect overlapping use from
// several goroutines. Acquire marks the cache as held by one operation of
// several steps (a policy's Compress: it reads every layer, then compacts
// them) and returns the function that ends it; while it is held, another
// Acquire and every Append fail with ErrBusy. Acquire itself fails with
// ErrBusy while another operation holds the cache or a layer is being
// appended to or compacted. The holder may call Compact.
type Exclusive interface {
	Acquire(op string) (release func(), err error)
}

// Rows is read access to the stored rows of one head: N rows of D values, in
// F32 when DType is Float32, else as 16-bit patterns in U16. The slices alias
// the cache: they are valid until the next Append or Compact of that layer.
type Rows struct {
	DType DType     // storage type
	N, D  int       // rows, values per row
	F32   []float32 // N*D values when DType is Float32
	U16   []uint16  // N*D bit patterns when DType is Float16 or BFloat16
}

// Row decodes row i into dst (grown if short) and returns it.
func (r Rows) Row(i int, dst []float32) []float32 {
	if cap(dst) < r.D {
		dst = make([]float32, r.D)
	}
	dst = dst[:r.D]
	if r.DType == Float32 {
		copy(dst, r.F32[i*r.D:(i+1)*r.D])
	} else {
		Decode(r.DType, dst, r.U16[i*r.D:(i+1)*r.D])
	}
	return dst
}

// HostReader is implemented by caches whose rows live in host memory; the CPU
// backend reads them in place through it.
type HostReader interface {
	KVCache
	// Rows returns the keys and values of one head, aliasing the cache.
	Rows(layer, head int) (k, v Rows)
}

// head is the storage of one KV head of one layer.
type head struct {
	k32, v32 []float32
	k16, v16 []uint16
	pos      []int32
}

// Host is a KVCache in host memory. The zero value is not usable; call NewHost.
//
// Host detects overlapping calls instead of racing: an Append or Compact of a
// layer while another goroutine appends to or compacts the same layer, or
// an Append while a policy holds the cache (Exclusive), fails with ErrBusy
// and changes nothing. Reads (Rows, Len, Positions) are not guarded: do not
// read a layer while another goroutine mutates it.
type Host struct {
	shape Shape
	dtype DType
	heads []head         // [layer*KVHeads + g]
	seen  []int          // per layer
	busy  []atomic.Int32 // per layer: 1 while an Append or Compact runs
	held  atomic.Pointer[string]
}

var (
	_ HostReader = (*Host)(nil)
	_ Exclusive  = (*Host)(nil)
)

// NewHost returns an empty cache of the given shape and storage type.
func NewHost(s Shape, t DType) (*Host, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if !t.Valid() {
		return nil, fmt.Errorf("kvcache: invalid storage type %v (want Float32, Float16 or BFloat16): %w", t, ErrShape)
	}
	return &Host{
		shape: s,
		dtype: t,
		heads: make([]head, s.Layers*s.KVHeads),
		seen:  make([]int, s.Layers),
		busy:  make([]atomic.Int32, s.Layers),
	}, nil
}

// Shape implements KVCache.
func (c *Host) Shape() Shape { return c.shape }

// DType implements KVCache.
func (c *Host) DType() DType { return c.dtype }

// Len implements KVCache.
func (c *Host) Len(layer, g int) int { return len(c.head(layer, g).pos) }

// Seen implements KVCache.
func (c *Host) Seen(layer int) int {
	if layer < 0 || layer >= c.shape.Layers {
		panic(fmt.Sprintf("kvcache: layer %d out of range for %+v", layer, c.shape))
	}
	return c.seen[layer]
}

// Acquire implements Exclusive.
func (c *Host) Acquire(op string) (release func(), err error) {
	if !c.held.CompareAndSwap(nil, &op) {
		if h := c.held.Load(); h != nil {
			return nil, fmt.Errorf("kvcache: %s: the cache is held by %s on another goroutine: %w", op, *h, ErrBusy)
		}
		return nil, fmt.Errorf("kvcache: %s: the cache is held on another goroutine: %w", op, ErrBusy)
	}
	for l := range c.busy {
		if c.busy[l].Load() != 0 {
			c.held.Store(nil)
			return nil, fmt.Errorf("kvcache: %s: layer %d is being appended to or compacted on another goroutine: %w", op, l, ErrBusy)
		}
	}
	var once sync.Once
	return func() { once.Do(func() { c.held.Store(nil) }) }, nil
}

// enter marks layer as being mutated by op, or fails with ErrBusy; held
// tells whether the caller holds the cache (Compact under a policy).
func (c *Host) enter(op string, layer int, holderMay bool) error {
	if !c.busy[layer].CompareAndSwap(0, 1) {
		return fmt.Errorf("kvcache: %s of layer %d overlaps another Append or Compact of it on another goroutine: %w", op, layer, ErrBusy)
	}
	if !holderMay {
		if h := c.held.Load(); h != nil {
			c.busy[layer].Store(0)
			return fmt.Errorf("kvcache: %s of layer %d while %s holds the cache: %w", op, layer, *h, ErrBusy)
		}
	}
	return nil
}

func (c *Host) leave(layer int) { c.busy[layer].Store(0) }

// Positions implements KVCache.
func (c *Host) Positions(layer, g int, dst []int32) []int32 {
	return append(dst, c.head(layer, g).pos...)
}

func (c *Host) head(layer, g int) *head {
	if layer < 0 || layer >= c.shape.Layers || g < 0 || g >= c.shape.KVHeads {
		panic(fmt.Sprintf("kvcache: head (%d, %d) out of range for %+v", layer, g, c.shape))
	}
	return &c.heads[layer*c.shape.KVHeads+g]
}

// Rows implements HostReader.
func (c *Host) Rows(layer, g int) (k, v Rows) {
	h := c.head(layer, g)
	n, d := len(h.pos), c.shape.HeadDim
	k = Rows{DType: c.dtype, N: n, D: d}
	v = k
	if c.dtype == Float32 {
		k.F32, v.F32 = h.k32[:n*d], h.v32[:n*d]
	} else {
		k.U16, v.U16 = h.k16[:n*d], h.v16[:n*d]
	}
	return k, v
}

func (c *Host) checkLayer(layer int) error {
	if layer < 0 || layer >= c.shape.Layers {
		return fmt.Errorf("kvcache: layer %d out of range [0, %d): %w", layer, c.shape.Layers, ErrShape)
	}
	return nil
}

// Append implements KVCache.
func (c *Host) Append(layer int, k, v []float32) error {
	if err := c.checkLayer(layer); err != nil {
		return err
	}
	G, d := c.shape.KVHeads, c.shape.HeadDim
	if len(k) != len(v) || len(k)%(G*d) != 0 {
		return fmt.Errorf("kvcache: layer %d: append of %d keys and %d values, want equal multiples of %d (KVHeads*HeadDim): %w",
			layer, len(k), len(v), G*d, ErrShape)
	}
	n := len(k) / (G * d)
	limit, what := finite.Float32Limit, "is not finite"
	switch c.dtype {
	case Float16:
		limit, what = finite.Float16Limit, "is not finite or overflows float16 (largest 65504)"
	case BFloat16:
		limit, what = finite.BFloat16Limit, "is not finite or overflows bfloat16"
	}
	if i := finite.FirstAtLimit(k, limit); i >= 0 {
		return fmt.Errorf("kvcache: layer %d: key value %d (%v) %s: %w", layer, i, k[i], what, ErrNonFinite)
	}
	if i := finite.FirstAtLimit(v, limit); i >= 0 {
		return fmt.Errorf("kvcache: layer %d: value %d (%v) %s: %w", layer, i, v[i], what, ErrNonFinite)
	}
	if err := c.enter("Append", layer, false); err != nil {
		return err
	}
	defer c.leave(layer)
	if c.seen[layer]+n > math.MaxInt32 {
		return fmt.Errorf("kvcache: layer %d: position %d beyond int32: %w", layer, c.seen[layer]+n, ErrShape)
	}
	start := c.seen[layer]
	for g := 0; g < G; g++ {
		h := c.head(layer, g)
		// Grow once per call, not once per row.
		h.pos = slices.Grow(h.pos, n)
		m := len(h.pos) * d
		if c.dtype == Float32 {
			h.k32 = slices.Grow(h.k32, n*d)[:m+n*d]
			h.v32 = slices.Grow(h.v32, n*d)[:m+n*d]
		} else {
			h.k16 = slices.Grow(h.k16, n*d)[:m+n*d]
			h.v16 = slices.Grow(h.v16, n*d)[:m+n*d]
		}
		for t := 0; t < n; t++ {
			off, dst := (t*G+g)*d, m+t*d
			kr, vr := k[off:off+d], v[off:off+d]
			if c.dtype == Float32 {
				copy(h.k32[dst:dst+d], kr)
				copy(h.v32[dst:dst+d], vr)
			} else {
				encode(c.dtype, h.k16[dst:dst+d], kr)
				encode(c.dtype, h.v16[dst:dst+d], vr)
			}
			h.pos = append(h.pos, int32(start+t))
		}
	}
	c.seen[layer] += n
	return nil
}

// CheckKeep returns an error wrapping ErrShape unless keep holds, for each
// of the heads heads, strictly increasing row indices below that head's
// length lens[g]. Its message has no package prefix: the caller says which
// call and layer it checked.
func CheckKeep(keep [][]int, lens []int) error {
	if len(keep) != len(lens) {
		return fmt.Errorf("compaction for %d heads, want %d: %w", len(keep), len(lens), ErrShape)
	}
	for g, rows := range keep {
		prev := -1
		for _, r := range rows {
			if r <= prev || r >= lens[g] {
				return fmt.Errorf("head %d: kept rows must be strictly increasing in [0, %d); got %d after %d: %w", g, lens[g], r, prev, ErrShape)
			}
			prev = r
		}
	}
	return nil
}

// Compact implements KVCache. When the kept rows use less than half of the
// memory a head holds, the head's storage is reallocated to fit, so that
// Bytes and the process's memory both fall.
func (c *Host) Compact(layer int, keep [][]int) error {
	if err := c.checkLayer(layer); err != nil {
		return err
	}
	if err := c.enter("Compact", layer, true); err != nil {
		return err
	}
	defer c.leave(layer)
	G, d := c.shape.KVHeads, c.shape.HeadDim
	lens := make([]int, G)
	for g := range lens {
		lens[g] = c.Len(layer, g)
	}
	if err := CheckKeep(keep, lens); err != nil {
		return fmt.Errorf("kvcache: layer %d: %w", layer, err)
	}
	// Heads are independent: compact them on several cores when the rows
	// moved are many (each core copies whole heads).
	work := func(g int) {
		h := c.head(layer, g)
		if c.dtype == Float32 {
			h.k32, h.v32 = gather(h.k32, keep[g], d), gather(h.v32, keep[g], d)
		} else {
			h.k16, h.v16 = gather(h.k16, keep[g], d), gather(h.v16, keep[g], d)
		}
		h.pos = gather(h.pos, keep[g], 1)
	}
	moved := 0
	for _, rows := range keep {
		moved += len(rows)
	}
	workers := min(G, runtime.GOMAXPROCS(0))
	if workers <= 1 || moved*d < 1<<18 {
		for g := range keep {
			work(g)
		}
		return nil
	}
	par.Workers(G, workers, work)
	return nil
}

// gather keeps rows (ascending row indices) of s, rows of d values each,
// copying each run of consecutive kept rows as one block. When the kept rows
// use at least half of s's capacity they move down in place (no allocation:
// repeated compactions reuse the same storage); otherwise they are gathered
// into new storage of their size, which releases the rest.
func gather[T any](s []T, rows []int, d int) []T {
	out, fresh := s, 2*len(rows)*d < cap(s)
	if fresh {
		if len(rows) == 0 {
			return nil
		}
		out = make([]T, len(rows)*d)
	}
	n := 0 // rows placed so far
	for i := 0; i < len(rows); {
		r0, k := rows[i], i+1
		for k < len(rows) && rows[k] == rows[k-1]+1 {
			k++
		}
		if run := k - i; fresh || n != r0 {
			copy(out[n*d:(n+run)*d], s[r0*d:(r0+run)*d])
		}
		n += k - i
		i = k
	}
	return out[:n*d]
}

// Bytes implements KVCache: keys and values of every stored row plus their
// 4-byte positions.
func (c *Host) Bytes() int64 {
	var rows int64
	for i := range c.heads {
		rows += int64(len(c.heads[i].pos))
	}
	return rows * int64(2*c.shape.HeadDim*c.dtype.Size()+4)
}

// Reserved returns the memory the cache holds, capacity included: at least
// Bytes, more while appended rows are amortised over grown slices.
func (c *Host) Reserved() int64 {
	var n int64
	for i := range c.heads {
		h := &c.heads[i]
		n += int64(cap(h.k32)+cap(h.v32))*4 + int64(cap(h.k16)+cap(h.v16))*2 + int64(cap(h.pos))*4
	}
	return n
}

// Clone returns a deep copy of the cache, for compressing one prefill with
// several policies.
func (c *Host) Clone() *Host {
	out := &Host{shape: c.shape, dtype: c.dtype, heads: make([]head, len(c.heads)), seen: append([]int(nil), c.seen...),
		busy: make([]atomic.Int32, len(c.seen))}
	for i, h := range c.heads {
		out.heads[i] = head{
			k32: clone(h.k32), v32: clone(h.v32),
			k16: clone(h.k16), v16: clone(h.v16),
			pos: clone(h.pos),
		}
	}
	return out
}

func clone[T any](s []T) []T {
	if s == nil {
		return nil
	}
	return append(make([]T, 0, len(s)), s...)
}

// Reserve makes room for n more tokens in every head of every layer, so that
// appending them allocates nothing: a prefill of known length calls it once.
func (c *Host) Reserve(n int) error {
	if n < 0 {
		return fmt.Errorf("kvcache: reserve of %d tokens: %w", n, ErrShape)
	}
	if err := c.enterAll("Reserve"); err != nil {
		return err
	}
	defer c.leaveAll()
	d := c.shape.HeadDim
	for i := range c.heads {
		h := &c.heads[i]
		h.pos = slices.Grow(h.pos, n)
		if c.dtype == Float32 {
			h.k32, h.v32 = slices.Grow(h.k32, n*d), slices.Grow(h.v32, n*d)
		} else {
			h.k16, h.v16 = slices.Grow(h.k16, n*d), slices.Grow(h.v16, n*d)
		}
	}
	return nil
}

// Reset empties the cache, keeping its shape and type. It fails with ErrBusy
// (and changes nothing) while another goroutine uses the cache.
func (c *Host) Reset() error {
	if err := c.enterAll("Reset"); err != nil {
		return err
	}
	defer c.leaveAll()
	for i := range c.heads {
		c.heads[i] = head{}
	}
	for i := range c.seen {
		c.seen[i] = 0
	}
	return nil
}

// enterAll marks every layer as being mutated by op, or fails with ErrBusy
// and marks none.
func (c *Host) enterAll(op string) error {
	for l := range c.busy {
		if err := c.enter(op, l, false); err != nil {
			for m := 0; m < l; m++ {
				c.leave(m)
			}
			return err
		}
	}
	return nil
}

func (c *Host) leaveAll() {
	for l := range c.busy {
		c.leave(l)
	}
}
