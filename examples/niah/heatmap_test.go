package niah

import (
	"bytes"
	"image/color"
	"image/png"
	"strings"
	"testing"
)

func testFigure() Figure {
	return Figure{
		Title:     "needle retrieval: budget 64",
		Subtitle:  "3 needles per cell",
		RowTitle:  "prompt length (tokens)",
		ColTitle:  "needle depth (%)",
		RowLabels: []string{"256", "512"},
		ColLabels: []string{"0", "50", "100"},
		Panels: []Panel{
			{Title: "full", Cells: [][]Cell{{{3, 3}, {2, 3}, {0, 3}}, {{3, 3}, {3, 3}, {1, 3}}}},
			{Title: "snapkv", Cells: [][]Cell{{{0, 3}, {3, 3}, {0, 0}}, {{3, 3}, {3, 3}, {3, 3}}}},
			{Title: "compresskv", Cells: [][]Cell{{{3, 3}, {3, 3}, {3, 3}}, {{3, 3}, {3, 3}, {3, 3}}}},
		},
	}
}

func TestHeatmapCells(t *testing.T) {
	f := testFigure()
	var buf bytes.Buffer
	if err := WriteHeatmaps(&buf, f); err != nil {
		t.Fatal(err)
	}
	decoded, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	img, rects, err := drawFigure(f)
	if err != nil {
		t.Fatal(err)
	}
	if decoded.Bounds() != img.Rect {
		t.Fatalf("PNG of %v, drawn %v", decoded.Bounds(), img.Rect)
	}
	b := img.Rect
	// Two panels side by side and a second row: wide and tall enough to
	// hold cells of at least 40 x 32 pixels and 14-pixel text.
	if b.Dx() < 2*(3*40) || b.Dy() < 2*(2*32) {
		t.Fatalf("figure of %v", b)
	}
	for p, pn := range f.Panels {
		for r, row := range pn.Cells {
			for c, cl := range row {
				want := color.RGBA{200, 200, 200, 255}
				if cl.N > 0 {
					want = Viridis(float64(cl.OK) / float64(cl.N))
				}
				rc := rects[p][r][c]
				if rc.Dx() < 40-2 || rc.Dy() < cellH-2 || !rc.In(b) {
					t.Fatalf("panel %d cell (%d, %d) at %v in %v", p, r, c, rc, b)
				}
				// Every pixel is the cell's colour or the text colour on it.
				bg, ink := 0, 0
				for y := rc.Min.Y; y < rc.Max.Y; y++ {
					for x := rc.Min.X; x < rc.Max.X; x++ {
						switch px := decoded.At(x, y); {
						case color.RGBAModel.Convert(px) == want:
							bg++
						case color.RGBAModel.Convert(px) == textOn(want):
							ink++
						default:
							t.Fatalf("panel %d cell (%d, %d): pixel (%d, %d) is %v, want %v or text", p, r, c, x, y, px, want)
						}
					}
				}
				if cl.N > 0 && ink == 0 || cl.N == 0 && ink != 0 || bg < ink {
					t.Errorf("panel %d cell (%d, %d) %d/%d: %d text pixels on %d", p, r, c, cl.OK, cl.N, ink, bg)
				}
			}
		}
	}
}

func TestHeatmapOneNeedleNoText(t *testing.T) {
	// With one prompt per cell, the cells are flat colour: right or wrong
	// reads from the colour alone.
	f := testFigure()
	for _, p := range f.Panels {
		for _, row := range p.Cells {
			for c := range row {
				row[c] = Cell{OK: min(1, row[c].OK), N: 1}
			}
		}
	}
	img, rects, err := drawFigure(f)
	if err != nil {
		t.Fatal(err)
	}
	for p, pn := range f.Panels {
		for r, row := range pn.Cells {
			for c, cl := range row {
				want := Viridis(float64(cl.OK))
				rc := rects[p][r][c]
				for y := rc.Min.Y; y < rc.Max.Y; y++ {
					for x := rc.Min.X; x < rc.Max.X; x++ {
						if got := img.RGBAAt(x, y); got != want {
							t.Fatalf("panel %d cell (%d, %d): pixel (%d, %d) is %v, want %v", p, r, c, x, y, got, want)
						}
					}
				}
			}
		}
	}
}

func TestHeatmapRejects(t *testing.T) {
	for name, mutate := range map[string]func(*Figure){
		"no panels":       func(f *Figure) { f.Panels = nil },
		"ragged row":      func(f *Figure) { f.Panels[1].Cells[0] = f.Panels[1].Cells[0][:2] },
		"missing row":     func(f *Figure) { f.Panels[0].Cells = f.Panels[0].Cells[:1] },
		"more right than": func(f *Figure) { f.Panels[2].Cells[1][2] = Cell{OK: 4, N: 3} },
		"negative":        func(f *Figure) { f.Panels[2].Cells[1][2] = Cell{OK: -1, N: 3} },
		"no labels":       func(f *Figure) { f.ColLabels = nil },
	} {
		f := testFigure()
		mutate(&f)
		var buf bytes.Buffer
		if err := WriteHeatmaps(&buf, f); err == nil {
			t.Errorf("%s: accepted", name)
		} else if buf.Len() != 0 {
			t.Errorf("%s: wrote %d bytes with the error %v", name, buf.Len(), err)
		}
	}
}

func TestViridis(t *testing.T) {
	ends := map[float64]color.RGBA{0: {0x44, 0x01, 0x54, 255}, 1: {0xfd, 0xe7, 0x25, 255}, 0.5: {0x21, 0x91, 0x8c, 255}}
	for a, want := range ends {
		if got := Viridis(a); got != want {
			t.Errorf("Viridis(%v) = %v, want %v", a, got, want)
		}
	}
	// Lightness rises monotonically: the scale reads in grey too.
	prev := -1.0
	for i := 0; i <= 100; i++ {
		c := Viridis(float64(i) / 100)
		l := 0.299*float64(c.R) + 0.587*float64(c.G) + 0.114*float64(c.B)
		if l < prev {
			t.Fatalf("luma falls at %d%%: %.1f after %.1f", i, l, prev)
		}
		prev = l
	}
	if Viridis(-1) != Viridis(0) || Viridis(2) != Viridis(1) {
		t.Error("Viridis does not clamp")
	}
}

func TestFont(t *testing.T) {
	for r := rune(32); r < 127; r++ {
		g, ok := glyphs[r]
		if !ok {
			t.Errorf("no glyph for %q", r)
			continue
		}
		if len(g) > glyphRows {
			t.Errorf("%q: %d rows, at most %d", r, len(g), glyphRows)
		}
		inked := false
		for i, row := range g {
			if len(row) != glyphCols || strings.Trim(row, ".#") != "" {
				t.Errorf("%q row %d is %q: want %d of '.' and '#'", r, i, row, glyphCols)
			}
			inked = inked || strings.Contains(row, "#")
		}
		if inked == (r == ' ') {
			t.Errorf("%q: inked %v", r, inked)
		}
	}
	// No two characters share a glyph, so every label reads one way.
	seen := map[string]rune{}
	for r, g := range glyphs {
		k := strings.Join(g, "|")
		if o, dup := seen[k]; dup {
			t.Errorf("%q and %q share a glyph", r, o)
		}
		seen[k] = r
	}
	if w := textWidth("100%", 2); w != (4*advance-1)*2 {
		t.Errorf("textWidth = %d", w)
	}
}
