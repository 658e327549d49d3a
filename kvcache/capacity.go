package kvcache

import "fmt"

// Capacity returns how many rows KV head g of layer can hold before an
// Append has to grow its storage.
func (c *Host) Capacity(layer, g int) int {
	h := c.head(layer, g)
	d := c.shape.HeadDim
	if c.dtype == Float32 {
		return min(cap(h.k32)/d, cap(h.v32)/d, cap(h.pos))
	}
	return min(cap(h.k16)/d, cap(h.v16)/d, cap(h.pos))
}

// SetCapacity gives every KV head g of layer storage for exactly rows[g]
// rows (at least its length), moving its rows into new storage when the
// capacity differs: a cache that must stay within a fixed number of bytes
// sets each head's room once, and Appends within it allocate nothing. It
// fails with ErrBusy while the layer is appended to or compacted on another
// goroutine, and leaves the layer unchanged on any error.
func (c *Host) SetCapacity(layer int, rows []int) error {
	if err := c.checkLayer(layer); err != nil {
		return err
	}
	G, d := c.shape.KVHeads, c.shape.HeadDim
	if len(rows) != G {
		return fmt.Errorf("kvcache: layer %d: capacity for %d heads, want %d: %w", layer, len(rows), G, ErrShape)
	}
	for g, n := range rows {
		if l := c.Len(layer, g); n < l {
			return fmt.Errorf("kvcache: layer %d head %d: capacity %d below the %d rows it holds: %w", layer, g, n, l, ErrShape)
		}
	}
	if err := c.enter("SetCapacity", layer, true); err != nil {
		return err
	}
	defer c.leave(layer)
	for g, n := range rows {
		if c.Capacity(layer, g) == n && c.exact(layer, g) {
			continue
		}
		h := c.head(layer, g)
		if c.dtype == Float32 {
			h.k32, h.v32 = resize(h.k32, n*d), resize(h.v32, n*d)
		} else {
			h.k16, h.v16 = resize(h.k16, n*d), resize(h.v16, n*d)
		}
		h.pos = resize(h.pos, n)
	}
	return nil
}

// exact reports whether the slices of head g of layer all hold exactly the
// capacity Capacity reports (none holds more).
func (c *Host) exact(layer, g int) bool {
	h := c.head(layer, g)
	n, d := c.Capacity(layer, g), c.shape.HeadDim
	if cap(h.pos) != n {
		return false
	}
	if c.dtype == Float32 {
		return cap(h.k32) == n*d && cap(h.v32) == n*d
	}
	return cap(h.k16) == n*d && cap(h.v16) == n*d
}

// resize returns s's elements in a slice of capacity exactly n (n >= len(s)).
func resize[T any](s []T, n int) []T {
	if cap(s) == n {
		return s
	}
	out := make([]T, len(s), n)
	copy(out, s)
	return out
}
