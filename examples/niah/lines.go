package niah

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
)

// Point is one point of a line: X in the caller's unit, Y a share in [0, 1].
type Point struct{ X, Y float64 }

// Rule is a reference line across a panel at a value of one axis, with a
// short label drawn beside it.
type Rule struct {
	At    float64
	Label string
}

// LinePanel is one line chart of a LineFigure.
type LinePanel struct {
	Title string
	// Lines holds one line per series of the figure (LineFigure.Series), in
	// the same order; a nil or empty line is not drawn.
	Lines [][]Point
	// HRules are dashed horizontal lines (at Y values), VRules dashed
	// vertical ones (at X values).
	HRules, VRules []Rule
}

// LineFigure is a set of line charts that share their series and axes'
// titles: accuracy (Y, 0 to 100%) against a quantity (X, from 0 to the
// largest X of the panel), one coloured line with its own marker per series,
// and a legend below.
type LineFigure struct {
	Title    string
	Subtitle string
	XTitle   string // e.g. "peak cache (KiB)"
	YTitle   string // e.g. "needles answered"
	Series   []string
	Panels   []LinePanel
	Columns  int // panels side by side (0: 2)
}

// Colours of the series (Okabe and Ito's palette, told apart by colour-blind
// readers), each with its own marker so that a grey print reads too.
var seriesInk = []color.RGBA{
	{0, 0, 0, 255}, {230, 159, 0, 255}, {86, 180, 233, 255}, {0, 158, 115, 255},
	{213, 94, 0, 255}, {0, 114, 178, 255}, {204, 121, 167, 255}, {160, 140, 30, 255},
}

// Chart layout, in pixels.
const (
	chartW, chartH = 420, 260
	axisLeft       = 64 // room for the Y tick labels and title
	axisBottom     = 56 // room for the X tick labels and title
)

// WriteLines draws f as a PNG. It returns an error, and writes nothing, if
// the figure has no panels or series, more series than it has colours, a
// panel with a line per series missing, or a point that is not finite or
// whose Y lies outside [0, 1].
func WriteLines(w io.Writer, f LineFigure) error {
	img, err := drawLines(f)
	if err != nil {
		return err
	}
	return png.Encode(w, img)
}

func drawLines(f LineFigure) (*image.RGBA, error) {
	if len(f.Panels) == 0 || len(f.Series) == 0 {
		return nil, errors.New("niah: a line figure needs panels and series")
	}
	if len(f.Series) > len(seriesInk) {
		return nil, fmt.Errorf("niah: %d series, at most %d can be told apart", len(f.Series), len(seriesInk))
	}
	for _, p := range f.Panels {
		if len(p.Lines) != len(f.Series) {
			return nil, fmt.Errorf("niah: panel %q has %d lines, want one per series (%d)", p.Title, len(p.Lines), len(f.Series))
		}
		for i, l := range p.Lines {
			for _, pt := range l {
				if math.IsNaN(pt.X) || math.IsInf(pt.X, 0) || !(pt.Y >= 0 && pt.Y <= 1) {
					return nil, fmt.Errorf("niah: panel %q series %q: point (%v, %v) is not finite or Y is outside [0, 1]", p.Title, f.Series[i], pt.X, pt.Y)
				}
			}
		}
	}
	s := textScale
	lineH := glyphRows*s + 2*s
	per := f.Columns
	if per <= 0 {
		per = 2
	}
	per = min(per, len(f.Panels))
	ruleW := 0 // room right of the chart for the horizontal rules' labels
	for _, p := range f.Panels {
		for _, r := range p.HRules {
			ruleW = max(ruleW, textWidth(r.Label, s)+8)
		}
	}
	panelW, panelH := axisLeft+chartW+ruleW+16, 2*lineH+8+chartH+axisBottom
	prows := (len(f.Panels) + per - 1) / per
	headH := lineH + 4
	if f.Subtitle != "" {
		headH += lineH
	}
	W := 2*margin + per*panelW + (per-1)*panelGap
	W = max(W, 2*margin+textWidth(f.Title, s)+2, 2*margin+textWidth(f.Subtitle, s))
	// Legend columns as wide as the longest name (and its line) allows.
	colW := 0
	for _, name := range f.Series {
		colW = max(colW, 46+textWidth(name, s)+24)
	}
	legendCols := max(1, min(len(f.Series), (W-2*margin)/colW))
	legendRows := (len(f.Series) + legendCols - 1) / legendCols
	legendH := lineH + legendRows*(lineH+6)
	H := margin + headH + 12 + prows*panelH + (prows-1)*panelGap + 16 + legendH + margin
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	fillRect(img, img.Rect, color.RGBA{255, 255, 255, 255})
	ink := color.RGBA{20, 20, 20, 255}
	grey := color.RGBA{90, 90, 90, 255}
	light := color.RGBA{225, 225, 225, 255}

	drawText(img, margin, margin, f.Title, s, ink)
	drawText(img, margin+1, margin, f.Title, s, ink)
	if f.Subtitle != "" {
		drawText(img, margin, margin+lineH+4, f.Subtitle, s, grey)
	}
	y0 := margin + headH + 12
	for i, p := range f.Panels {
		px := margin + (i%per)*(panelW+panelGap)
		py := y0 + (i/per)*(panelH+panelGap)
		drawText(img, px+axisLeft, py, p.Title, s, ink)
		drawText(img, px+axisLeft+1, py, p.Title, s, ink)
		plot := image.Rect(px+axisLeft, py+2*lineH+8, px+axisLeft+chartW, py+2*lineH+8+chartH)
		xmax := 0.0
		for _, l := range p.Lines {
			for _, pt := range l {
				xmax = math.Max(xmax, pt.X)
			}
		}
		for _, r := range p.VRules {
			xmax = math.Max(xmax, r.At)
		}
		step := niceStep(xmax / 5)
		if xmax <= 0 {
			xmax, step = 1, 0.2
		}
		xmax = math.Ceil(xmax/step) * step
		toX := func(x float64) int { return plot.Min.X + int(math.Round(x/xmax*float64(plot.Dx()-1))) }
		toY := func(y float64) int { return plot.Max.Y - 1 - int(math.Round(y*float64(plot.Dy()-1))) }
		// Grid and ticks.
		for t := 0; t <= 4; t++ {
			y := toY(float64(t) / 4)
			fillRect(img, image.Rect(plot.Min.X, y, plot.Max.X, y+1), light)
			l := fmt.Sprintf("%d%%", 25*t)
			drawText(img, plot.Min.X-8-textWidth(l, s), y-capRows*s/2, l, s, ink)
		}
		for x := 0.0; x <= xmax+step/2; x += step {
			gx := toX(x)
			fillRect(img, image.Rect(gx, plot.Min.Y, gx+1, plot.Max.Y), light)
			fillRect(img, image.Rect(gx, plot.Max.Y, gx+1, plot.Max.Y+5), ink)
			l := trimFloat(x)
			drawText(img, gx-textWidth(l, s)/2, plot.Max.Y+8, l, s, ink)
		}
		fillRect(img, image.Rect(plot.Min.X, plot.Min.Y, plot.Min.X+1, plot.Max.Y), ink)
		fillRect(img, image.Rect(plot.Min.X, plot.Max.Y-1, plot.Max.X, plot.Max.Y), ink)
		if f.XTitle != "" {
			drawText(img, plot.Min.X+(plot.Dx()-textWidth(f.XTitle, s))/2, plot.Max.Y+8+lineH+4, f.XTitle, s, grey)
		}
		if f.YTitle != "" {
			drawTextUp(img, px, plot.Min.Y+plot.Dy()/2+textWidth(f.YTitle, s)/2, f.YTitle, s, grey)
		}
		// Rules: their labels outside the chart, right of it (horizontal
		// rules, moved apart when close) and above it (vertical ones).
		lastY := -1 << 30
		for _, r := range p.HRules {
			y := toY(r.At)
			dashed(img, plot.Min.X, y, plot.Max.X+4, y, grey)
			ly := max(y-capRows*s/2, lastY+capRows*s+3)
			drawText(img, plot.Max.X+8, ly, r.Label, s, grey)
			lastY = ly
		}
		for _, r := range p.VRules {
			x := toX(r.At)
			dashed(img, x, plot.Min.Y-6, x, plot.Max.Y, grey)
			drawText(img, x-textWidth(r.Label, s)/2, plot.Min.Y-6-capRows*s-2, r.Label, s, grey)
		}
		for k, l := range p.Lines {
			c := seriesInk[k]
			for j := 1; j < len(l); j++ {
				thickLine(img, toX(l[j-1].X), toY(l[j-1].Y), toX(l[j].X), toY(l[j].Y), c)
			}
			for _, pt := range l {
				marker(img, toX(pt.X), toY(pt.Y), k, c)
			}
		}
	}
	// Legend.
	ly := H - margin - legendH
	drawText(img, margin, ly, "scorer while the prompt runs", s, ink)
	for k, name := range f.Series {
		x := margin + (k%legendCols)*colW
		y := ly + lineH + (k/legendCols)*(lineH+6)
		thickLine(img, x, y+capRows, x+36, y+capRows, seriesInk[k])
		marker(img, x+18, y+capRows, k, seriesInk[k])
		drawText(img, x+46, y, name, s, ink)
	}
	return img, nil
}

// niceStep returns 1, 2 or 5 times a power of ten, at least x.
func niceStep(x float64) float64 {
	if !(x > 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

// trimFloat prints a tick value without trailing zeros.
func trimFloat(x float64) string {
	if x == math.Trunc(x) {
		return fmt.Sprintf("%.0f", x)
	}
	return fmt.Sprintf("%g", math.Round(x*1000)/1000)
}

// thickLine draws a line three pixels wide from (x0, y0) to (x1, y1).
func thickLine(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	n := max(abs(x1-x0), abs(y1-y0), 1)
	for i := 0; i <= n; i++ {
		x := x0 + (x1-x0)*i/n
		y := y0 + (y1-y0)*i/n
		fillRect(img, image.Rect(x-1, y-1, x+2, y+2), c)
	}
}

// dashed draws a dashed line one pixel wide.
func dashed(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	n := max(abs(x1-x0), abs(y1-y0), 1)
	for i := 0; i <= n; i++ {
		if (i/6)%2 == 0 {
			fillRect(img, image.Rect(x0+(x1-x0)*i/n, y0+(y1-y0)*i/n, x0+(x1-x0)*i/n+1, y0+(y1-y0)*i/n+1), c)
		}
	}
}

// marker draws series k's marker centred on (x, y): a square, a disc, a
// triangle, a diamond, a cross, a plus, a ring or a bar.
func marker(img *image.RGBA, x, y, k int, c color.RGBA) {
	const r = 5
	for dy := -r; dy <= r; dy++ {
		for dx := -r; dx <= r; dx++ {
			in := false
			switch k % 8 {
			case 0:
				in = abs(dx) <= r-1 && abs(dy) <= r-1
			case 1:
				in = dx*dx+dy*dy <= r*r
			case 2:
				in = dy >= -r && dy <= r-1 && 2*abs(dx) <= dy+r
			case 3:
				in = abs(dx)+abs(dy) <= r
			case 4:
				in = abs(abs(dx)-abs(dy)) <= 1
			case 5:
				in = abs(dx) <= 1 || abs(dy) <= 1
			case 6:
				d := dx*dx + dy*dy
				in = d <= r*r && d >= (r-2)*(r-2)
			case 7:
				in = abs(dy) <= 2
			}
			if in {
				img.SetRGBA(x+dx, y+dy, c)
			}
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
