package niah

import (
	"bytes"
	"image/png"
	"math"
	"strings"
	"testing"
)

// TestWriteLines draws two panels of three series and checks that the
// picture decodes, that each series' colour is drawn where its points are,
// and that malformed figures are refused before anything is written.
func TestWriteLines(t *testing.T) {
	f := LineFigure{
		Title: "accuracy against peak memory", Subtitle: "two panels", XTitle: "peak cache (KiB)", YTitle: "answered",
		Series: []string{"a", "b", "c"},
		Panels: []LinePanel{
			{Title: "first", Lines: [][]Point{{{10, 0.1}, {20, 0.5}, {40, 0.9}}, {{10, 0}, {40, 1}}, nil},
				HRules: []Rule{{0.8, "target"}}, VRules: []Rule{{30, "bound"}}},
			{Title: "second", Lines: [][]Point{{{1, 1}}, {{1, 0.5}, {2, 0.25}}, {{0.5, 0.75}, {2, 0.75}}}},
		},
	}
	img, err := drawLines(f)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteLines(&buf, f); err != nil {
		t.Fatal(err)
	}
	dec, err := png.Decode(&buf)
	if err != nil || dec.Bounds() != img.Bounds() {
		t.Fatalf("decoded %v (%v), drew %v", dec.Bounds(), err, img.Bounds())
	}
	count := make([]int, len(f.Series))
	for y := img.Rect.Min.Y; y < img.Rect.Max.Y; y++ {
		for x := img.Rect.Min.X; x < img.Rect.Max.X; x++ {
			for k := range f.Series {
				if img.RGBAAt(x, y) == seriesInk[k] {
					count[k]++
				}
			}
		}
	}
	for k, n := range count {
		if n < 100 {
			t.Fatalf("series %q has %d pixels of its colour", f.Series[k], n)
		}
	}
	for _, bad := range []struct {
		what string
		f    LineFigure
		want string
	}{
		{"no panels", LineFigure{Series: []string{"a"}}, "needs panels"},
		{"lines missing", LineFigure{Series: []string{"a", "b"}, Panels: []LinePanel{{Lines: [][]Point{nil}}}}, "one per series"},
		{"Y above 1", LineFigure{Series: []string{"a"}, Panels: []LinePanel{{Lines: [][]Point{{{1, 1.5}}}}}}, "outside"},
		{"NaN X", LineFigure{Series: []string{"a"}, Panels: []LinePanel{{Lines: [][]Point{{{math.NaN(), 0.5}}}}}}, "not finite"},
		{"too many series", LineFigure{Series: strings.Fields("a b c d e f g h i"), Panels: []LinePanel{{}}}, "told apart"},
	} {
		var out bytes.Buffer
		if err := WriteLines(&out, bad.f); err == nil || !strings.Contains(err.Error(), bad.want) || out.Len() != 0 {
			t.Fatalf("%s: error %v and %d bytes written, want an error mentioning %q and nothing written", bad.what, err, out.Len(), bad.want)
		}
	}
}

func TestNiceStep(t *testing.T) {
	for _, tc := range []struct{ x, want float64 }{{0.3, 0.5}, {1, 1}, {1.2, 2}, {37, 50}, {180, 200}, {0, 1}} {
		if got := niceStep(tc.x); math.Abs(got-tc.want) > 1e-12 {
			t.Fatalf("niceStep(%v) = %v, want %v", tc.x, got, tc.want)
		}
	}
}
