package kvcache

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// TestSetCapacity: each head gets room for exactly the rows asked, its rows
// and positions survive the move, Appends within the room allocate nothing,
// and bad input changes nothing.
func TestSetCapacity(t *testing.T) {
	for _, dt := range []DType{Float32, Float16, BFloat16} {
		s := Shape{Layers: 2, KVHeads: 3, HeadDim: 5}
		c, err := NewHost(s, dt)
		if err != nil {
			t.Fatal(err)
		}
		x := make([]float32, 7*s.KVHeads*s.HeadDim)
		for i := range x {
			x[i] = float32(i%97) / 8
		}
		for l := 0; l < s.Layers; l++ {
			if err := c.Append(l, x, x); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Compact(1, [][]int{{0, 3}, {1, 2, 6}, {6}}); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprint(dump(c))
		room := []int{9, 4, 12}
		if err := c.SetCapacity(1, room); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(dump(c)); got != want {
			t.Fatalf("%v: SetCapacity changed the rows:\n%s\nwant\n%s", dt, got, want)
		}
		for g, n := range room {
			if c.Capacity(1, g) != n {
				t.Fatalf("%v: head %d has room for %d rows, want %d", dt, g, c.Capacity(1, g), n)
			}
		}
		reserved := c.Reserved()
		one := make([]float32, s.KVHeads*s.HeadDim)
		if err := c.Append(1, one, one); err != nil {
			t.Fatal(err)
		}
		if c.Reserved() != reserved {
			t.Fatalf("%v: an Append within the room grew the storage from %d to %d bytes", dt, reserved, c.Reserved())
		}
		if p := c.Positions(1, 2, nil); !slices.Equal(p, []int32{6, 7}) {
			t.Fatalf("%v: positions %v, want [6 7]", dt, p)
		}
		before := fmt.Sprint(dump(c))
		for _, bad := range [][]int{{9, 4}, {9, 4, 0}, {1, 9, 9}} {
			if err := c.SetCapacity(1, bad); !errors.Is(err, ErrShape) {
				t.Fatalf("%v: SetCapacity(%v): error %v, want ErrShape", dt, bad, err)
			}
		}
		if err := c.SetCapacity(5, room); err == nil {
			t.Fatalf("%v: SetCapacity of layer 5 succeeded", dt)
		}
		if fmt.Sprint(dump(c)) != before || c.Reserved() != reserved {
			t.Fatalf("%v: a rejected SetCapacity changed the cache", dt)
		}
	}
}

// dump returns every head's positions and decoded rows.
func dump(c *Host) []any {
	var out []any
	for l := 0; l < c.Shape().Layers; l++ {
		for g := 0; g < c.Shape().KVHeads; g++ {
			k, v := c.Rows(l, g)
			var rows [][]float32
			for i := 0; i < k.N; i++ {
				rows = append(rows, k.Row(i, nil), v.Row(i, nil))
			}
			out = append(out, c.Positions(l, g, nil), rows, c.Seen(l))
		}
	}
	return out
}
