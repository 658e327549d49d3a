package niah

import (
	"image"
	"image/color"
	"image/png"
	"io"
	"strings"
)

// Panel is one heatmap: accuracy by context length (rows, shortest on top)
// and needle depth (columns, 0% on the left), under a title.
type Panel struct {
	Title string
	Acc   [][]float64 // [length][depth] in [0, 1]; NaN-free
}

// WriteHeatmaps draws panels side by side as a PNG, each cell from red
// (0%) through yellow to green (100%), titled with a small built-in font so
// that the picture needs no caption to be read. rowLabels and colLabels
// (short, digits and capitals) are drawn on the first panel's left and below
// every panel.
func WriteHeatmaps(w io.Writer, panels []Panel, rowLabels, colLabels []string) error {
	const cell, gap, scale = 14, 24, 2
	if len(panels) == 0 || len(panels[0].Acc) == 0 {
		return png.Encode(w, image.NewRGBA(image.Rect(0, 0, 1, 1)))
	}
	rows, cols := len(panels[0].Acc), len(panels[0].Acc[0])
	left := 0
	for _, l := range rowLabels {
		left = max(left, textWidth(l, scale)+6)
	}
	top := 7*scale + 8
	pw := cols * cell
	W := left + len(panels)*(pw+gap)
	H := top + rows*cell + 7*scale + 10
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	for p, pan := range panels {
		x0 := left + p*(pw+gap)
		drawText(img, x0, 4, strings.ToUpper(pan.Title), scale)
		for r := 0; r < rows; r++ {
			for c := 0; c < cols; c++ {
				col := ramp(pan.Acc[r][c])
				for y := top + r*cell; y < top+(r+1)*cell-1; y++ {
					for x := x0 + c*cell; x < x0+(c+1)*cell-1; x++ {
						img.Set(x, y, col)
					}
				}
			}
		}
		for c, l := range colLabels {
			if c%5 == 0 || c == cols-1 {
				drawText(img, x0+c*cell, top+rows*cell+4, l, 1)
			}
		}
	}
	for r, l := range rowLabels {
		drawText(img, 2, top+r*cell+(cell-5)/2, l, 1)
	}
	return png.Encode(w, img)
}

// ramp maps 0..1 to red, yellow, green.
func ramp(a float64) color.RGBA {
	a = min(1, max(0, a))
	if a < 0.5 {
		return color.RGBA{220, uint8(40 + 360*a), 40, 255}
	}
	return color.RGBA{uint8(220 - 360*(a-0.5)), 200, 60, 255}
}

// glyphs is a 3x5 pixel font: each rune is five rows of three bits.
var glyphs = map[rune][5]uint8{
	'0': {7, 5, 5, 5, 7}, '1': {2, 6, 2, 2, 7}, '2': {7, 1, 7, 4, 7}, '3': {7, 1, 7, 1, 7}, '4': {5, 5, 7, 1, 1},
	'5': {7, 4, 7, 1, 7}, '6': {7, 4, 7, 5, 7}, '7': {7, 1, 1, 2, 2}, '8': {7, 5, 7, 5, 7}, '9': {7, 5, 7, 1, 7},
	'A': {2, 5, 7, 5, 5}, 'B': {6, 5, 6, 5, 6}, 'C': {7, 4, 4, 4, 7}, 'D': {6, 5, 5, 5, 6}, 'E': {7, 4, 6, 4, 7},
	'F': {7, 4, 6, 4, 4}, 'G': {7, 4, 5, 5, 7}, 'H': {5, 5, 7, 5, 5}, 'I': {7, 2, 2, 2, 7}, 'J': {1, 1, 1, 5, 7},
	'K': {5, 5, 6, 5, 5}, 'L': {4, 4, 4, 4, 7}, 'M': {5, 7, 7, 5, 5}, 'N': {6, 5, 5, 5, 5}, 'O': {7, 5, 5, 5, 7},
	'P': {7, 5, 7, 4, 4}, 'Q': {7, 5, 5, 7, 1}, 'R': {7, 5, 6, 5, 5}, 'S': {7, 4, 7, 1, 7}, 'T': {7, 2, 2, 2, 2},
	'U': {5, 5, 5, 5, 7}, 'V': {5, 5, 5, 5, 2}, 'W': {5, 5, 7, 7, 5}, 'X': {5, 5, 2, 5, 5}, 'Y': {5, 5, 2, 2, 2},
	'Z': {7, 1, 2, 4, 7}, '%': {5, 1, 2, 4, 5}, '=': {0, 7, 0, 7, 0}, '-': {0, 0, 7, 0, 0}, ' ': {},
	'.': {0, 0, 0, 0, 2}, '/': {1, 1, 2, 4, 4},
}

func textWidth(s string, scale int) int { return len(s) * 4 * scale }

func drawText(img *image.RGBA, x, y int, s string, scale int) {
	ink := color.RGBA{30, 30, 30, 255}
	for i, r := range s {
		g := glyphs[r]
		for row := 0; row < 5; row++ {
			for col := 0; col < 3; col++ {
				if g[row]&(4>>col) == 0 {
					continue
				}
				for dy := 0; dy < scale; dy++ {
					for dx := 0; dx < scale; dx++ {
						img.Set(x+(i*4+col)*scale+dx, y+row*scale+dy, ink)
					}
				}
			}
		}
	}
}
