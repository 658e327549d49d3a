package niah

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
)

// Cell is one cell of a heatmap: OK right answers out of N prompts.
type Cell struct{ OK, N int }

// Panel is one heatmap of a figure: cells by row (shortest prompt on top)
// and column (needle depth 0% on the left), under a title.
type Panel struct {
	Title string
	Cells [][]Cell // [row][column]
}

// Figure is a set of panels sharing their axes, drawn as one picture: a
// title, each panel with its own title, the row and column labels with their
// axis titles, and a colour legend of accuracy.
type Figure struct {
	Title     string // first line, e.g. the model and the budget
	Subtitle  string // second line (optional), e.g. needles per cell
	RowTitle  string // e.g. "prompt length (tokens)"
	ColTitle  string // e.g. "needle depth (%)"
	RowLabels []string
	ColLabels []string
	Panels    []Panel
	Columns   int // panels side by side (0: as many as fit in 1,400 pixels)
}

// WriteHeatmaps draws f as a PNG. Each cell is coloured by its accuracy
// OK/N on the viridis scale (dark purple 0%, yellow 100%, readable in grey
// and by colour-blind readers); when some cell holds several prompts, every
// cell also prints its fraction ("2/3"). A cell without prompts is grey.
// Text uses the package's own 5x7 bitmap font at twice its size. It returns
// an error, and writes nothing, if the panels do not all have one cell per
// row and column label or a cell has OK outside [0, N].
func WriteHeatmaps(w io.Writer, f Figure) error {
	img, _, err := drawFigure(f)
	if err != nil {
		return err
	}
	return png.Encode(w, img)
}

// Layout of a figure, in pixels at text scale 2.
const (
	textScale = 2
	margin    = 20
	cellH     = 32
	panelGap  = 36
	maxWidth  = 1400 // of a figure whose Columns is 0
)

// drawFigure draws f and returns the picture with the rectangle of every
// cell, [panel][row][column].
func drawFigure(f Figure) (*image.RGBA, [][][]image.Rectangle, error) {
	rows, cols := len(f.RowLabels), len(f.ColLabels)
	if len(f.Panels) == 0 || rows == 0 || cols == 0 {
		return nil, nil, errors.New("niah: a figure needs panels and row and column labels")
	}
	several := false
	for _, p := range f.Panels {
		if len(p.Cells) != rows {
			return nil, nil, fmt.Errorf("niah: panel %q has %d rows, want %d (one per row label)", p.Title, len(p.Cells), rows)
		}
		for r, row := range p.Cells {
			if len(row) != cols {
				return nil, nil, fmt.Errorf("niah: panel %q row %d has %d cells, want %d (one per column label)", p.Title, r, len(row), cols)
			}
			for c, cl := range row {
				if cl.N < 0 || cl.OK < 0 || cl.OK > cl.N {
					return nil, nil, fmt.Errorf("niah: panel %q cell (%d, %d): %d right of %d", p.Title, r, c, cl.OK, cl.N)
				}
				several = several || cl.N > 1
			}
		}
	}
	s := textScale
	lineH := glyphRows*s + 2*s

	// Cell width: the widest column label or cell fraction, with room.
	cellW := 40
	for _, l := range f.ColLabels {
		cellW = max(cellW, textWidth(l, s)+8)
	}
	if several {
		for _, p := range f.Panels {
			for _, row := range p.Cells {
				for _, cl := range row {
					cellW = max(cellW, textWidth(fraction(cl), s)+16)
				}
			}
		}
	}
	labelW := 0
	for _, l := range f.RowLabels {
		labelW = max(labelW, textWidth(l, s))
	}
	rowTitleW := 0
	if f.RowTitle != "" {
		rowTitleW = lineH + 4
	}
	gridW, gridH := cols*cellW, rows*cellH
	panelW := rowTitleW + labelW + 8 + gridW
	for _, p := range f.Panels {
		panelW = max(panelW, rowTitleW+labelW+8+textWidth(p.Title, s)+8)
	}
	per := f.Columns
	if per <= 0 {
		per = max(1, (maxWidth-2*margin+panelGap)/(panelW+panelGap))
	}
	per = min(per, len(f.Panels))
	panelH := lineH + 4 + gridH + 6 + lineH
	if f.ColTitle != "" {
		panelH += lineH
	}
	panelH = max(panelH, textWidth(f.RowTitle, s)) // the vertical axis title fits
	prows := (len(f.Panels) + per - 1) / per

	top := margin
	headH := lineH + 4
	if f.Subtitle != "" {
		headH += lineH
	}
	legendH := 14 + 6 + lineH + lineH
	W := 2*margin + per*panelW + (per-1)*panelGap
	W = max(W, 2*margin+textWidth(f.Title, s)+2, 2*margin+textWidth(f.Subtitle, s))
	H := top + headH + 12 + prows*panelH + (prows-1)*panelGap + 24 + legendH + margin

	img := image.NewRGBA(image.Rect(0, 0, W, H))
	fillRect(img, img.Rect, color.RGBA{255, 255, 255, 255})
	ink := color.RGBA{20, 20, 20, 255}
	grey := color.RGBA{90, 90, 90, 255}

	drawText(img, margin, top, f.Title, s, ink)
	drawText(img, margin+1, top, f.Title, s, ink) // bold
	if f.Subtitle != "" {
		drawText(img, margin, top+lineH+4, f.Subtitle, s, grey)
	}
	y0 := top + headH + 12
	rects := make([][][]image.Rectangle, len(f.Panels))
	for i, p := range f.Panels {
		px := margin + (i%per)*(panelW+panelGap)
		py := y0 + (i/per)*(panelH+panelGap)
		gx := px + rowTitleW + labelW + 8
		gy := py + lineH + 4
		drawText(img, gx, py, p.Title, s, ink)
		drawText(img, gx+1, py, p.Title, s, ink)
		rects[i] = make([][]image.Rectangle, rows)
		for r, row := range p.Cells {
			rects[i][r] = make([]image.Rectangle, cols)
			for c, cl := range row {
				rect := image.Rect(gx+c*cellW, gy+r*cellH, gx+(c+1)*cellW-2, gy+(r+1)*cellH-2)
				rects[i][r][c] = rect
				bg := color.RGBA{200, 200, 200, 255}
				if cl.N > 0 {
					bg = Viridis(float64(cl.OK) / float64(cl.N))
				}
				fillRect(img, rect, bg)
				if several && cl.N > 0 {
					t := fraction(cl)
					tx := rect.Min.X + (rect.Dx()-textWidth(t, s))/2
					ty := rect.Min.Y + (rect.Dy()-capRows*s)/2
					drawText(img, tx, ty, t, s, textOn(bg))
				}
			}
		}
		for r, l := range f.RowLabels {
			drawText(img, gx-8-textWidth(l, s), gy+r*cellH+(cellH-2-capRows*s)/2, l, s, ink)
		}
		ly := gy + gridH + 6
		for c, l := range f.ColLabels {
			drawText(img, gx+c*cellW+(cellW-2-textWidth(l, s))/2, ly, l, s, ink)
		}
		if f.ColTitle != "" {
			drawText(img, gx+(gridW-textWidth(f.ColTitle, s))/2, ly+lineH, f.ColTitle, s, grey)
		}
		if f.RowTitle != "" {
			// Reads bottom to top, centred on the grid as far as the
			// panel allows.
			bottom := min(gy+gridH/2+textWidth(f.RowTitle, s)/2, py+panelH)
			drawTextUp(img, px, bottom, f.RowTitle, s, grey)
		}
	}

	// Legend: the colour scale with its ticks.
	lx, ly := margin, H-margin-legendH
	drawText(img, lx, ly, "accuracy (right answers / needles)", s, ink)
	barW, barY := 320, ly+lineH+2
	for x := 0; x < barW; x++ {
		fillRect(img, image.Rect(lx+x, barY, lx+x+1, barY+14), Viridis(float64(x)/float64(barW-1)))
	}
	for _, t := range []struct {
		at    float64
		label string
	}{{0, "0%"}, {0.5, "50%"}, {1, "100%"}} {
		x := lx + int(t.at*float64(barW-1))
		fillRect(img, image.Rect(x, barY+14, x+1, barY+20), ink)
		tx := min(max(x-textWidth(t.label, s)/2, lx), lx+barW-textWidth(t.label, s))
		drawText(img, tx, barY+22, t.label, s, ink)
	}
	return img, rects, nil
}

func fraction(c Cell) string { return fmt.Sprintf("%d/%d", c.OK, c.N) }

// textOn returns black or white, whichever reads better on bg.
func textOn(bg color.RGBA) color.RGBA {
	if 0.299*float64(bg.R)+0.587*float64(bg.G)+0.114*float64(bg.B) > 140 {
		return color.RGBA{0, 0, 0, 255}
	}
	return color.RGBA{255, 255, 255, 255}
}

func fillRect(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	r = r.Intersect(img.Rect)
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

// viridis holds the viridis colour scale at 0, 0.1, ..., 1.
var viridis = [11][3]uint8{
	{0x44, 0x01, 0x54}, {0x48, 0x24, 0x75}, {0x41, 0x44, 0x87}, {0x35, 0x5f, 0x8d},
	{0x2a, 0x78, 0x8e}, {0x21, 0x91, 0x8c}, {0x22, 0xa8, 0x84}, {0x44, 0xbf, 0x70},
	{0x7a, 0xd1, 0x51}, {0xbd, 0xdf, 0x26}, {0xfd, 0xe7, 0x25},
}

// Viridis maps a in [0, 1] (clamped; NaN is 0) to the viridis colour scale,
// interpolating linearly between its stops at tenths.
func Viridis(a float64) color.RGBA {
	if !(a > 0) {
		a = 0
	}
	a = min(1, a) * 10
	i := min(int(a), 9)
	t := a - float64(i)
	var c [3]uint8
	for k := range c {
		lo, hi := float64(viridis[i][k]), float64(viridis[i+1][k])
		c[k] = uint8(lo + (hi-lo)*t + 0.5)
	}
	return color.RGBA{c[0], c[1], c[2], 255}
}

// The font: 5 columns by 7 rows above the baseline and 2 below it (for
// g, j, p, q, y and the comma); each character advances 6 columns.
const (
	glyphCols = 5
	capRows   = 7
	glyphRows = 9
	advance   = glyphCols + 1
)

// glyphs holds every printable ASCII character, row by row from the top,
// '#' for ink; rows not given are blank. Anything else is drawn as '?'.
var glyphs = map[rune][]string{
	' ':  {},
	'!':  {"..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#.."},
	'"':  {".#.#.", ".#.#.", ".#.#."},
	'#':  {".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."},
	'$':  {"..#..", ".####", "#.#..", ".###.", "..#.#", "####.", "..#.."},
	'%':  {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"},
	'&':  {".##..", "#..#.", "#.#..", ".#...", "#.#.#", "#..#.", ".##.#"},
	'\'': {"..#..", "..#..", ".#..."},
	'(':  {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."},
	')':  {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."},
	'*':  {".....", "..#..", "#.#.#", ".###.", "#.#.#", "..#..", "....."},
	'+':  {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."},
	',':  {".....", ".....", ".....", ".....", ".....", ".##..", ".##..", "..#..", ".#..."},
	'-':  {".....", ".....", ".....", "#####", ".....", ".....", "....."},
	'.':  {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."},
	'/':  {".....", "....#", "...#.", "..#..", ".#...", "#....", "....."},
	'0':  {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."},
	'1':  {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."},
	'2':  {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"},
	'3':  {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."},
	'4':  {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."},
	'5':  {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."},
	'6':  {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."},
	'7':  {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."},
	'8':  {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."},
	'9':  {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."},
	':':  {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."},
	';':  {".....", ".##..", ".##..", ".....", ".##..", ".##..", "..#..", ".#..."},
	'<':  {"...#.", "..#..", ".#...", "#....", ".#...", "..#..", "...#."},
	'=':  {".....", ".....", "#####", ".....", "#####", ".....", "....."},
	'>':  {".#...", "..#..", "...#.", "....#", "...#.", "..#..", ".#..."},
	'?':  {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."},
	'@':  {".###.", "#...#", "....#", ".##.#", "#.#.#", "#.#.#", ".###."},
	'A':  {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"},
	'B':  {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."},
	'C':  {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."},
	'D':  {"###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."},
	'E':  {"#####", "#....", "#....", "####.", "#....", "#....", "#####"},
	'F':  {"#####", "#....", "#....", "####.", "#....", "#....", "#...."},
	'G':  {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"},
	'H':  {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"},
	'I':  {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."},
	'J':  {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."},
	'K':  {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"},
	'L':  {"#....", "#....", "#....", "#....", "#....", "#....", "#####"},
	'M':  {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"},
	'N':  {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"},
	'O':  {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."},
	'P':  {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."},
	'Q':  {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"},
	'R':  {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"},
	'S':  {".####", "#....", "#....", ".###.", "....#", "....#", "####."},
	'T':  {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."},
	'U':  {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."},
	'V':  {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."},
	'W':  {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."},
	'X':  {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"},
	'Y':  {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."},
	'Z':  {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"},
	'[':  {".###.", ".#...", ".#...", ".#...", ".#...", ".#...", ".###."},
	'\\': {".....", "#....", ".#...", "..#..", "...#.", "....#", "....."},
	']':  {".###.", "...#.", "...#.", "...#.", "...#.", "...#.", ".###."},
	'^':  {"..#..", ".#.#.", "#...#"},
	'_':  {".....", ".....", ".....", ".....", ".....", ".....", ".....", "#####"},
	'`':  {".#...", "..#..", "...#."},
	'a':  {".....", ".....", ".###.", "....#", ".####", "#...#", ".####"},
	'b':  {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "####."},
	'c':  {".....", ".....", ".###.", "#....", "#....", "#...#", ".###."},
	'd':  {"....#", "....#", ".##.#", "#..##", "#...#", "#...#", ".####"},
	'e':  {".....", ".....", ".###.", "#...#", "#####", "#....", ".###."},
	'f':  {"..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..."},
	'g':  {".....", ".....", ".####", "#...#", "#...#", "#...#", ".####", "....#", ".###."},
	'h':  {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#"},
	'i':  {"..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."},
	'j':  {"...#.", ".....", "..##.", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."},
	'k':  {"#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."},
	'l':  {".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."},
	'm':  {".....", ".....", "##.#.", "#.#.#", "#.#.#", "#.#.#", "#.#.#"},
	'n':  {".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"},
	'o':  {".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."},
	'p':  {".....", ".....", "####.", "#...#", "#...#", "#...#", "####.", "#....", "#...."},
	'q':  {".....", ".....", ".####", "#...#", "#...#", "#...#", ".####", "....#", "....#"},
	'r':  {".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."},
	's':  {".....", ".....", ".####", "#....", ".###.", "....#", "####."},
	't':  {".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."},
	'u':  {".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#"},
	'v':  {".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."},
	'w':  {".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#."},
	'x':  {".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"},
	'y':  {".....", ".....", "#...#", "#...#", "#...#", "#...#", ".####", "....#", ".###."},
	'z':  {".....", ".....", "#####", "...#.", "..#..", ".#...", "#####"},
	'{':  {"...#.", "..#..", "..#..", ".#...", "..#..", "..#..", "...#."},
	'|':  {"..#..", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."},
	'}':  {".#...", "..#..", "..#..", "...#.", "..#..", "..#..", ".#..."},
	'~':  {".....", ".....", ".#...", "#.#.#", "...#.", ".....", "....."},
}

// textWidth returns the width in pixels of s drawn at scale.
func textWidth(s string, scale int) int {
	n := len([]rune(s))
	if n == 0 {
		return 0
	}
	return (n*advance - 1) * scale
}

// drawText draws s with its top left corner at (x, y), each font pixel a
// scale x scale square.
func drawText(img *image.RGBA, x, y int, s string, scale int, ink color.RGBA) {
	for i, r := range []rune(s) {
		forGlyph(r, func(col, row int) {
			fillRect(img, image.Rect(x+(i*advance+col)*scale, y+row*scale, x+(i*advance+col+1)*scale, y+(row+1)*scale), ink)
		})
	}
}

// drawTextUp draws s turned a quarter to the left, reading upwards from
// (x, y): the bottom left corner of the first character's cell.
func drawTextUp(img *image.RGBA, x, y int, s string, scale int, ink color.RGBA) {
	for i, r := range []rune(s) {
		forGlyph(r, func(col, row int) {
			px, py := x+row*scale, y-(i*advance+col+1)*scale
			fillRect(img, image.Rect(px, py, px+scale, py+scale), ink)
		})
	}
}

// forGlyph calls ink for each inked (column, row) of r's glyph.
func forGlyph(r rune, ink func(col, row int)) {
	g, ok := glyphs[r]
	if !ok {
		g = glyphs['?']
	}
	for row, line := range g {
		for col := 0; col < len(line) && col < glyphCols; col++ {
			if line[col] == '#' {
				ink(col, row)
			}
		}
	}
}
