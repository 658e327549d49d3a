package cuda

import (
	"fmt"
	"math"
	"sync"
	"unsafe"

	"github.com/compresskv/compresskv/kvcache"
)

// Cache is a kvcache.KVCache whose rows live in device memory: per layer, one
// key and one value buffer [KVHeads][capacity][HeadDim] of float32, float16
// or bfloat16. Positions, lengths and Seen are kept on the host. Appended
// rows are converted on the host with kvcache's round-to-nearest-even
// conversions and uploaded; Compact gathers the kept rows on the device into
// a buffer of the kept size and frees the old one, so device memory falls
// with Bytes. Close releases the device memory.
//
// As for every KVCache, one layer must not be mutated from two goroutines at
// once; distinct layers may be, and every device call goes through the
// Device's thread.
type Cache struct {
	dev    *Device
	shape  kvcache.Shape
	dtype  kvcache.DType
	layers []layer

	mu     sync.Mutex // guards closed
	closed bool
	arena  arena // scratch of Compact, on the device thread only
}

// layer is the device storage of one layer.
type layer struct {
	k, v devptr
	cap  int       // rows per head the buffers hold
	pos  [][]int32 // per head: original positions of the stored rows
	seen int
}

var _ kvcache.KVCache = (*Cache)(nil)

// NewCache returns an empty device cache of the given shape and storage type.
// It allocates nothing until the first Append.
func (d *Device) NewCache(s kvcache.Shape, t kvcache.DType) (*Cache, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if !t.Valid() {
		return nil, fmt.Errorf("cuda: invalid storage type %v", t)
	}
	if s.HeadDim > maxHeadDim {
		return nil, fmt.Errorf("cuda: head dimension %d beyond the kernels' %d", s.HeadDim, maxHeadDim)
	}
	c := &Cache{dev: d, shape: s, dtype: t, layers: make([]layer, s.Layers), arena: arena{d: d}}
	for l := range c.layers {
		c.layers[l].pos = make([][]int32, s.KVHeads)
	}
	return c, nil
}

// Upload returns a device copy of a host cache: the same stored bits,
// positions and Seen.
func (d *Device) Upload(h *kvcache.Host) (*Cache, error) {
	s := h.Shape()
	c, err := d.NewCache(s, h.DType())
	if err != nil {
		return nil, err
	}
	size := h.DType().Size()
	for l := 0; l < s.Layers; l++ {
		L := &c.layers[l]
		n := 0
		pos := make([][]int32, s.KVHeads)
		for g := range pos {
			pos[g] = h.Positions(l, g, nil)
			n = max(n, len(pos[g]))
		}
		L.seen = h.Seen(l)
		err := d.do(func() error {
			// The layer is empty while it grows: nothing to copy over.
			if err := c.grow(l, n); err != nil {
				return err
			}
			copy(L.pos, pos)
			for g := 0; g < s.KVHeads; g++ {
				k, v := h.Rows(l, g)
				off := int64(g) * int64(L.cap) * int64(s.HeadDim) * int64(size)
				nb := k.N * k.D * size
				if k.N == 0 {
					continue
				}
				kp, vp := unsafe.Pointer(unsafe.SliceData(k.F32)), unsafe.Pointer(unsafe.SliceData(v.F32))
				if h.DType() != kvcache.Float32 {
					kp, vp = unsafe.Pointer(unsafe.SliceData(k.U16)), unsafe.Pointer(unsafe.SliceData(v.U16))
				}
				if err := d.upload(L.k+devptr(off), kp, nb); err != nil {
					return err
				}
				if err := d.upload(L.v+devptr(off), vp, nb); err != nil {
					return err
				}
			}
			return d.sync()
		})
		if err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Device returns the device the cache lives on.
func (c *Cache) Device() *Device { return c.dev }

// Shape implements kvcache.KVCache.
func (c *Cache) Shape() kvcache.Shape { return c.shape }

// DType implements kvcache.KVCache.
func (c *Cache) DType() kvcache.DType { return c.dtype }

func (c *Cache) head(l, g int) []int32 {
	if l < 0 || l >= c.shape.Layers || g < 0 || g >= c.shape.KVHeads {
		panic(fmt.Sprintf("cuda: head (%d, %d) out of range for %+v", l, g, c.shape))
	}
	return c.layers[l].pos[g]
}

// Len implements kvcache.KVCache.
func (c *Cache) Len(l, g int) int { return len(c.head(l, g)) }

// Seen implements kvcache.KVCache.
func (c *Cache) Seen(l int) int { return c.layers[l].seen }

// Positions implements kvcache.KVCache.
func (c *Cache) Positions(l, g int, dst []int32) []int32 { return append(dst, c.head(l, g)...) }

// Bytes implements kvcache.KVCache: keys and values of the stored rows plus
// their 4-byte positions, as kvcache.Host counts them.
func (c *Cache) Bytes() int64 {
	var rows int64
	for l := range c.layers {
		for _, p := range c.layers[l].pos {
			rows += int64(len(p))
		}
	}
	return rows * int64(2*c.shape.HeadDim*c.dtype.Size()+4)
}

// Reserved returns the device memory the cache holds (capacity included).
func (c *Cache) Reserved() int64 {
	var n int64
	for l := range c.layers {
		n += 2 * c.bufBytes(c.layers[l].cap)
	}
	return n
}

// bufBytes is the size of one layer buffer of capacity rows per head.
func (c *Cache) bufBytes(capacity int) int64 {
	return int64(c.shape.KVHeads) * int64(capacity) * int64(c.shape.HeadDim) * int64(c.dtype.Size())
}

// swap puts k and v, of capacity rows per head, in place of layer L's key
// and value buffers and frees the old ones (the layer holds the new ones
// even if a free fails).
func (c *Cache) swap(L *layer, k, v devptr, capacity int) error {
	old, ok, ov := c.bufBytes(L.cap), L.k, L.v
	L.k, L.v, L.cap = k, v, capacity
	e1 := c.dev.free(ok, old)
	e2 := c.dev.free(ov, old)
	if e1 != nil {
		return e1
	}
	return e2
}

func (c *Cache) check(op string, l int) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return fmt.Errorf("cuda: %s: cache: %w", op, ErrClosed)
	}
	if l < 0 || l >= c.shape.Layers {
		return fmt.Errorf("cuda: %s: layer %d out of range [0, %d)", op, l, c.shape.Layers)
	}
	return nil
}

// grow makes layer l hold at least n rows per head, moving the stored rows
// to new buffers when it must. The old buffers are freed only after the
// stream has finished copying out of them; on an error the new buffers are
// freed and the layer keeps its old ones. On the device thread.
func (c *Cache) grow(l, n int) error {
	L := &c.layers[l]
	if n <= L.cap {
		return nil
	}
	newCap := max(n, L.cap+L.cap/2, 16)
	size := c.bufBytes(newCap)
	k, err := c.dev.alloc(size)
	if err != nil {
		return err
	}
	v, err := c.dev.alloc(size)
	if err != nil {
		c.dev.free(k, size)
		return err
	}
	fail := func(err error) error {
		// Let queued copies into k and v finish before they are freed (the
		// error may be theirs); the first error is the one reported.
		c.dev.sync()
		c.dev.free(k, size)
		c.dev.free(v, size)
		return err
	}
	rowBytes := c.shape.HeadDim * c.dtype.Size()
	copied := false
	for g, p := range L.pos {
		if len(p) == 0 {
			continue
		}
		dst := devptr(int64(g) * int64(newCap) * int64(rowBytes))
		src := devptr(int64(g) * int64(L.cap) * int64(rowBytes))
		if err := c.dev.copyD(k+dst, L.k+src, len(p)*rowBytes); err != nil {
			return fail(err)
		}
		if err := c.dev.copyD(v+dst, L.v+src, len(p)*rowBytes); err != nil {
			return fail(err)
		}
		copied = true
	}
	if copied && !c.dev.pools {
		// The copies run on a non-blocking stream: wait for them before the
		// buffers they read are freed (a pool's free is stream-ordered).
		if err := c.dev.sync(); err != nil {
			return fail(err)
		}
	}
	return c.swap(L, k, v, newCap)
}

// Append implements kvcache.KVCache: k and v are token-major
// [n][KVHeads][HeadDim]; the rows are converted on the host and uploaded.
func (c *Cache) Append(l int, k, v []float32) error {
	if err := c.check("Append", l); err != nil {
		return err
	}
	G, d := c.shape.KVHeads, c.shape.HeadDim
	if len(k) != len(v) || len(k)%(G*d) != 0 {
		return fmt.Errorf("cuda: Append: layer %d: %d keys and %d values, want equal multiples of %d (KVHeads*HeadDim): %w",
			l, len(k), len(v), G*d, kvcache.ErrShape)
	}
	n := len(k) / (G * d)
	L := &c.layers[l]
	if L.seen+n > math.MaxInt32 {
		return fmt.Errorf("cuda: Append: layer %d: position %d beyond int32", l, L.seen+n)
	}
	for i, x := range k {
		if x-x != 0 {
			return fmt.Errorf("cuda: Append: layer %d: key value %d is %v: %w", l, i, x, kvcache.ErrNonFinite)
		}
	}
	for i, x := range v {
		if x-x != 0 {
			return fmt.Errorf("cuda: Append: layer %d: value %d is %v: %w", l, i, x, kvcache.ErrNonFinite)
		}
	}
	if n == 0 {
		return nil
	}
	// Head-major staging of the new rows, converted to the storage type.
	size := c.dtype.Size()
	var stK, stV []byte
	stK, stV = make([]byte, n*G*d*size), make([]byte, n*G*d*size)
	for g := 0; g < G; g++ {
		for t := 0; t < n; t++ {
			src := (t*G + g) * d
			dst := (g*n + t) * d
			encodeRow(c.dtype, stK[dst*size:], k[src:src+d])
			encodeRow(c.dtype, stV[dst*size:], v[src:src+d])
		}
	}
	maxLen := 0
	for _, p := range L.pos {
		maxLen = max(maxLen, len(p))
	}
	err := c.dev.do(func() error {
		if err := c.grow(l, maxLen+n); err != nil {
			return err
		}
		rowBytes := d * size
		for g, p := range L.pos {
			off := devptr((int64(g)*int64(L.cap) + int64(len(p))) * int64(rowBytes))
			if err := c.dev.upload(L.k+off, unsafe.Pointer(&stK[g*n*rowBytes]), n*rowBytes); err != nil {
				return err
			}
			if err := c.dev.upload(L.v+off, unsafe.Pointer(&stV[g*n*rowBytes]), n*rowBytes); err != nil {
				return err
			}
		}
		return c.dev.sync()
	})
	if err != nil {
		return fmt.Errorf("cuda: Append: layer %d: %w", l, err)
	}
	for g := range L.pos {
		for t := 0; t < n; t++ {
			L.pos[g] = append(L.pos[g], int32(L.seen+t))
		}
	}
	L.seen += n
	return nil
}

// encodeRow writes src in storage type t to dst (little-endian bytes).
func encodeRow(t kvcache.DType, dst []byte, src []float32) {
	switch t {
	case kvcache.Float32:
		for i, x := range src {
			u := math.Float32bits(x)
			dst[4*i], dst[4*i+1], dst[4*i+2], dst[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
		}
	case kvcache.Float16:
		for i, x := range src {
			u := kvcache.F32ToF16(x)
			dst[2*i], dst[2*i+1] = byte(u), byte(u>>8)
		}
	default:
		for i, x := range src {
			u := kvcache.F32ToBF16(x)
			dst[2*i], dst[2*i+1] = byte(u), byte(u>>8)
		}
	}
}

// gatherThreads is the block size of gather_rows for rows of rowBytes: a
// thread per word of the block's rows, at most 256.
func gatherThreads(rowBytes int) uint32 {
	unit := 2
	switch {
	case rowBytes%16 == 0:
		unit = 16
	case rowBytes%4 == 0:
		unit = 4
	}
	return uint32(min(256, max(32, ceilDiv(gatherRows*rowBytes/unit, 32)*32)))
}

// Compact implements kvcache.KVCache: the kept rows of every head are
// gathered on the device into new buffers of the largest kept count, and
// the old buffers are freed (with memory pools, in stream order: nothing
// waits). Invalid input changes nothing.
func (c *Cache) Compact(l int, keep [][]int) error {
	if err := c.check("Compact", l); err != nil {
		return err
	}
	G, d := c.shape.KVHeads, c.shape.HeadDim
	L := &c.layers[l]
	lens := make([]int, G)
	for g := range lens {
		lens[g] = len(L.pos[g])
	}
	if err := kvcache.CheckKeep(keep, lens); err != nil {
		return fmt.Errorf("cuda: Compact: layer %d: %w", l, err)
	}
	kept := 0
	for _, rows := range keep {
		kept = max(kept, len(rows))
	}
	// idx: G rows of kept indices, then the G counts
	meta := make([]int32, G*max(kept, 1)+G)
	for g, rows := range keep {
		meta[G*max(kept, 1)+g] = int32(len(rows))
		for i, r := range rows {
			meta[g*kept+i] = int32(r)
		}
	}
	rowBytes := d * c.dtype.Size()
	err := c.dev.do(func() error {
		var nk, nv devptr
		if kept > 0 {
			size := c.bufBytes(kept)
			metad, err := c.arena.get("compact", int64(4*len(meta)))
			if err != nil {
				return err
			}
			if nk, err = c.dev.alloc(size); err != nil {
				return err
			}
			if nv, err = c.dev.alloc(size); err != nil {
				c.dev.free(nk, size)
				return err
			}
			// On an error the layer keeps its rows: wait for the queued
			// work, then free the new buffers.
			fail := func(err error) error {
				c.dev.sync()
				c.dev.free(nk, size)
				c.dev.free(nv, size)
				return err
			}
			if err := c.dev.uploadI32(metad, meta); err != nil {
				return fail(err)
			}
			grid := dim3{uint32(ceilDiv(kept, gatherRows)), uint32(G), 2}
			if err := c.dev.launch(kGatherRows, grid, dim3{gatherThreads(rowBytes), 1, 1}, L.k, L.v, nk, nv,
				uint64(L.cap)*uint64(rowBytes), uint64(kept)*uint64(rowBytes), int32(rowBytes),
				metad, int32(kept), metad+devptr(4*G*max(kept, 1)), int32(0), int32(math.MaxInt32), int32(0)); err != nil {
				return fail(err)
			}
		}
		if !c.dev.pools {
			// cuMemFree of the old buffers must not race the gather.
			if err := c.dev.sync(); err != nil {
				c.dev.free(nk, c.bufBytes(kept))
				c.dev.free(nv, c.bufBytes(kept))
				return err
			}
		}
		return c.swap(L, nk, nv, kept)
	})
	if err != nil {
		return fmt.Errorf("cuda: Compact: layer %d: %w", l, err)
	}
	c.keepPositions(l, keep)
	return nil
}

// keepPositions updates the host positions of layer l to the kept rows.
func (c *Cache) keepPositions(l int, keep [][]int) {
	L := &c.layers[l]
	for g, rows := range keep {
		p := L.pos[g]
		for i, r := range rows {
			p[i] = p[r]
		}
		L.pos[g] = append([]int32(nil), p[:len(rows)]...)
	}
}

// ReadRows downloads the stored rows of head g of layer l, as
// kvcache.Rows (float32 in F32, 16-bit patterns in U16).
func (c *Cache) ReadRows(l, g int) (k, v kvcache.Rows, err error) {
	if err := c.check("ReadRows", l); err != nil {
		return k, v, err
	}
	n, d := c.Len(l, g), c.shape.HeadDim
	k = kvcache.Rows{DType: c.dtype, N: n, D: d}
	v = k
	L := &c.layers[l]
	size := c.dtype.Size()
	var kp, vp unsafe.Pointer
	if c.dtype == kvcache.Float32 {
		k.F32, v.F32 = make([]float32, n*d), make([]float32, n*d)
		if n > 0 {
			kp, vp = unsafe.Pointer(&k.F32[0]), unsafe.Pointer(&v.F32[0])
		}
	} else {
		k.U16, v.U16 = make([]uint16, n*d), make([]uint16, n*d)
		if n > 0 {
			kp, vp = unsafe.Pointer(&k.U16[0]), unsafe.Pointer(&v.U16[0])
		}
	}
	if n == 0 {
		return k, v, nil
	}
	off := devptr(int64(g) * int64(L.cap) * int64(d) * int64(size))
	err = c.dev.do(func() error {
		if err := c.dev.download(kp, L.k+off, n*d*size); err != nil {
			return err
		}
		return c.dev.download(vp, L.v+off, n*d*size)
	})
	return k, v, err
}

// Close frees the cache's device memory; the cache is unusable afterwards.
// Closing twice is a no-op.
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	return c.dev.do(func() error {
		first := c.arena.release()
		for l := range c.layers {
			L := &c.layers[l]
			size := c.bufBytes(L.cap)
			for _, p := range []devptr{L.k, L.v} {
				if err := c.dev.free(p, size); err != nil && first == nil {
					first = err
				}
			}
			L.k, L.v, L.cap = 0, 0, 0
			for g := range L.pos {
				L.pos[g] = nil
			}
		}
		return first
	})
}

// Clone returns a device copy of the cache (same rows, positions and Seen),
// for compressing one prefill several ways. Cost: one device-to-device copy
// of the stored buffers.
func (c *Cache) Clone() (*Cache, error) {
	if err := c.check("Clone", 0); err != nil {
		return nil, err
	}
	out, err := c.dev.NewCache(c.shape, c.dtype)
	if err != nil {
		return nil, err
	}
	for l := range c.layers {
		src, dst := &c.layers[l], &out.layers[l]
		if src.cap > 0 {
			size := c.bufBytes(src.cap)
			err := c.dev.do(func() error {
				var err error
				if dst.k, err = c.dev.alloc(size); err != nil {
					return err
				}
				dst.cap = src.cap
				if dst.v, err = c.dev.alloc(size); err != nil {
					c.dev.free(dst.k, size)
					dst.k, dst.cap = 0, 0
					return err
				}
				if err := c.dev.copyD(dst.k, src.k, int(size)); err != nil {
					return err
				}
				if err := c.dev.copyD(dst.v, src.v, int(size)); err != nil {
					return err
				}
				return c.dev.sync()
			})
			if err != nil {
				out.Close()
				return nil, err
			}
		}
		for g := range src.pos {
			dst.pos[g] = append([]int32(nil), src.pos[g]...)
		}
		dst.seen = src.seen
	}
	return out, nil
}
