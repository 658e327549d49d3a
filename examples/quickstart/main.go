// Command quickstart compresses one synthetic prefilled cache with every
// policy of the library and prints, side by side, what each keeps: tokens
// per layer, cache bytes before and after, how much of a planted "needle"
// survives, and how far decode attention over the compressed cache moves
// from attention over the full cache.
//
// The cache is synthetic: random keys and values, plus a needle of a few
// tokens whose keys the layer's retrieval heads look for, while the other
// heads attend to recent tokens and to a few loud distractors. It shows the
// API and the mechanics; the model-in-the-loop benchmarks measure accuracy.
//
//	go run ./examples/quickstart
//	go run ./examples/quickstart -len 8192 -budget 128 -dtype bf16
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"text/tabwriter"

	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/kvcache"
)

func main() {
	log.SetFlags(0)
	if err := run(os.Args[1:], os.Stdout); err != nil && !errors.Is(err, flag.ErrHelp) {
		log.Fatal(err)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	var (
		layers  = fs.Int("layers", 8, "layers")
		kvHeads = fs.Int("kv-heads", 2, "KV heads per layer")
		qHeads  = fs.Int("q-heads", 8, "query heads per layer")
		d       = fs.Int("d", 32, "head dimension")
		L       = fs.Int("len", 2048, "prompt length in tokens")
		budget  = fs.Int("budget", 64, "average tokens kept per layer (window included)")
		dtype   = fs.String("dtype", "f16", "storage type: f32, f16, bf16")
		seed    = fs.Uint64("seed", 1, "random seed")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	dt, err := kvcache.ParseDType(*dtype)
	if err != nil {
		return err
	}
	w := &world{
		shape: kvcache.Shape{Layers: *layers, KVHeads: *kvHeads, HeadDim: *d},
		H:     *qHeads, L: *L, W: compresskv.DefaultWindow,
		rng: rand.New(rand.NewPCG(*seed, 7)),
	}
	if err := w.shape.Validate(); err != nil {
		return err
	}
	if *qHeads <= 0 || w.H%w.shape.KVHeads != 0 || w.L < 64 {
		return fmt.Errorf("q-heads must be a positive multiple of kv-heads, and len at least 64")
	}
	full, _, decodeQ, err := w.prefill(dt)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "synthetic prompt: %d tokens, needle at positions %d..%d, %d layers x %d KV heads (%d query heads), d=%d, %v storage\n",
		w.L, w.needle, w.needle+needleLen-1, w.shape.Layers, w.shape.KVHeads, w.H, w.shape.HeadDim, dt)
	fmt.Fprintf(stdout, "budget %d tokens per layer on average (window %d)\n\n", *budget, w.W)

	be := cpu.New()
	ref, err := attendAll(be, full, decodeQ, w.H)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\ttokens/layer\tbytes before\tbytes after\tkept\tneedle kept\tattention error\t")
	for _, m := range compresskv.Methods {
		p, err := compresskv.New(m, compresskv.Config{Budget: *budget, Profile: w.profile(), Backend: be})
		if err != nil {
			return err
		}
		c := full.Clone()
		// Each policy reads the last QueryRows(L) prompt queries (the
		// window; every prompt row for H2O).
		q := make([][]float32, len(w.allQueries))
		for l, x := range w.allQueries {
			q[l] = x[len(x)-p.QueryRows(w.L)*w.H*w.shape.HeadDim:]
		}
		res, err := p.Compress(context.Background(), c, q, w.H)
		if err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
		out, err := attendAll(be, c, decodeQ, w.H)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%d\t%d\t%.1f%%\t%.0f%%\t%.3f\t\n", m, w.tokensPerLayer(c), res.BytesBefore, res.BytesAfter,
			100*float64(res.BytesAfter)/float64(res.BytesBefore), 100*w.needleKept(c), w.retrievalErr(out, ref))
	}
	tw.Flush()
	fmt.Fprintln(stdout, "\nneedle kept: share of needle rows still in the cache, over all layers and KV heads.")
	fmt.Fprintln(stdout, "attention error: ||O - O_full|| / ||O_full|| of the retrieval heads' decode attention, all layers.")
	return nil
}

const needleLen = 4

type world struct {
	shape      kvcache.Shape
	H, L, W    int
	rng        *rand.Rand
	needle     int
	sr         [][]int // retrieval query heads per layer
	allQueries [][]float32
}

func (w *world) normal(n int, scale float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(w.rng.NormFloat64() * scale)
	}
	return x
}

// prefill fills a cache and returns the window queries of every layer and
// one decode query per layer.
func (w *world) prefill(dt kvcache.DType) (*kvcache.Host, [][]float32, [][]float32, error) {
	s, H, L, d := w.shape, w.H, w.L, w.shape.HeadDim
	c, err := kvcache.NewHost(s, dt)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := c.Reserve(L); err != nil {
		return nil, nil, nil, err
	}
	w.needle = L/4 + w.rng.IntN(L/2)
	per := H / s.KVHeads
	window := make([][]float32, s.Layers)
	decode := make([][]float32, s.Layers)
	w.allQueries = make([][]float32, s.Layers)
	for l := 0; l < s.Layers; l++ {
		// One retrieval query head per KV head, chosen at random.
		var sr []int
		for g := 0; g < s.KVHeads; g++ {
			sr = append(sr, g*per+w.rng.IntN(per))
		}
		w.sr = append(w.sr, sr)
		dir := w.normal(s.KVHeads*d, 1) // needle direction per KV head
		noisy := w.normal(s.KVHeads*d, 1)
		k := w.normal(L*s.KVHeads*d, 0.6)
		v := w.normal(L*s.KVHeads*d, 1)
		distractors := []int{w.rng.IntN(L), w.rng.IntN(L), w.rng.IntN(L)}
		for g := 0; g < s.KVHeads; g++ {
			for j := w.needle; j < w.needle+needleLen; j++ {
				row := k[(j*s.KVHeads+g)*d : (j*s.KVHeads+g+1)*d]
				for x := range row {
					row[x] += 1.5 * dir[g*d+x]
				}
			}
			for _, j := range distractors {
				row := k[(j*s.KVHeads+g)*d : (j*s.KVHeads+g+1)*d]
				for x := range row {
					row[x] += 1.2 * noisy[g*d+x]
				}
			}
		}
		if err := c.Append(l, k, v); err != nil {
			return nil, nil, nil, err
		}
		// Queries: retrieval heads look for the needle, the others for the
		// distractors, everything with noise.
		q := w.normal(L*H*d, 0.3)
		for i := 0; i < L; i++ {
			for h := 0; h < H; h++ {
				g := h / per
				src := noisy
				if contains(sr, h) {
					src = dir
				}
				row := q[(i*H+h)*d : (i*H+h+1)*d]
				for x := range row {
					row[x] += 1.2 * src[g*d+x]
				}
			}
		}
		w.allQueries[l] = q
		window[l] = q[(L-w.W)*H*d:]
		decode[l] = q[(L-1)*H*d:]
	}
	return c, window, decode, nil
}

func contains(s []int, x int) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// profile ranks the planted retrieval heads first, the rest after.
func (w *world) profile() *compresskv.Profile {
	p := &compresskv.Profile{Version: compresskv.ProfileVersion, Model: compresskv.ModelInfo{
		Name: "synthetic", Layers: w.shape.Layers, QueryHeads: w.H, KVHeads: w.shape.KVHeads, HeadDim: w.shape.HeadDim}}
	for l := 0; l < w.shape.Layers; l++ {
		r := append([]int(nil), w.sr[l]...)
		for h := 0; h < w.H; h++ {
			if !contains(r, h) {
				r = append(r, h)
			}
		}
		p.HeadRanking = append(p.HeadRanking, r)
	}
	return p
}

func (w *world) tokensPerLayer(c *kvcache.Host) float64 {
	n := 0
	for l := 0; l < w.shape.Layers; l++ {
		for g := 0; g < w.shape.KVHeads; g++ {
			n += c.Len(l, g)
		}
	}
	return float64(n) / float64(w.shape.Layers*w.shape.KVHeads)
}

func (w *world) needleKept(c *kvcache.Host) float64 {
	kept, all := 0, 0
	for l := 0; l < w.shape.Layers; l++ {
		for g := 0; g < w.shape.KVHeads; g++ {
			for _, p := range c.Positions(l, g, nil) {
				if int(p) >= w.needle && int(p) < w.needle+needleLen {
					kept++
				}
			}
			all += needleLen
		}
	}
	return float64(kept) / float64(all)
}

func attendAll(be *cpu.Backend, c *kvcache.Host, q [][]float32, H int) ([]float32, error) {
	var out []float32
	for l := range q {
		o := make([]float32, len(q[l]))
		if err := be.Attend(c, l, q[l], H, o); err != nil {
			return nil, err
		}
		out = append(out, o...)
	}
	return out, nil
}

// retrievalErr is the relative L2 distance between the retrieval heads'
// outputs in a and in b ([layers][H][d], flattened).
func (w *world) retrievalErr(a, b []float32) float64 {
	d := w.shape.HeadDim
	var num, den float64
	for l, heads := range w.sr {
		for _, h := range heads {
			off := (l*w.H + h) * d
			for i := off; i < off+d; i++ {
				e := float64(a[i] - b[i])
				num += e * e
				den += float64(b[i]) * float64(b[i])
			}
		}
	}
	return math.Sqrt(num) / math.Sqrt(den)
}
