package heads

import (
	"errors"
	"fmt"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/internal/finite"
	"github.com/compresskv/compresskv/kvcache"
)

// Mode is how the SR score counts an emitted token that occurs in the answer
// span more than once.
type Mode uint8

const (
	// Multiplicity adds the span's attention mass once for each occurrence
	// of the emitted token in the span, as the reference code does. It is
	// the default.
	Multiplicity Mode = iota
	// Indicator adds the span's attention mass once if the emitted token
	// occurs in the span at all, as the paper's Eq. 5 does.
	Indicator
)

// String returns "multiplicity" or "indicator".
func (m Mode) String() string {
	switch m {
	case Multiplicity:
		return "multiplicity"
	case Indicator:
		return "indicator"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// Options configures a Recorder. The zero value is the reference behaviour.
type Options struct {
	// Mode is how the SR score counts repeated answer tokens.
	Mode Mode
}

// ErrNoTrial is returned by Step, StepFromCache and EndTrial when no trial is
// in progress.
var ErrNoTrial = errors.New("heads: no trial in progress (call BeginTrial)")

// ErrTrialOpen is returned by BeginTrial while a trial is in progress.
var ErrTrialOpen = errors.New("heads: a trial is already in progress (call EndTrial)")

// maxHeads bounds layers*qHeads, far above any model, so that shapes from
// user data cannot overflow or exhaust memory.
const maxHeads = 1 << 24

func checkDims(layers, qHeads int) error {
	if layers <= 0 || qHeads <= 0 {
		return fmt.Errorf("heads: %d layers x %d query heads: both must be positive: %w", layers, qHeads, kvcache.ErrShape)
	}
	if layers > maxHeads || qHeads > maxHeads || layers*qHeads > maxHeads {
		return fmt.Errorf("heads: %d layers x %d query heads exceeds %d heads: %w", layers, qHeads, maxHeads, kvcache.ErrShape)
	}
	return nil
}

// Recorder accumulates semantic retrieval (SR) and classic retrieval scores
// over needle trials, for a model of a fixed number of layers and query heads
// per layer. Use it as BeginTrial, one Step (or StepFromCache) per decode
// step, EndTrial, repeated for each probe; then read SR or Retrieval.
//
// A call that returns an error leaves the Recorder unchanged. A Recorder is
// not safe for concurrent use. Memory: two float64 per head per counted trial.
type Recorder struct {
	layers, qHeads int
	mode           Mode

	// The trial in progress.
	open      bool
	promptLen int
	start     int
	span      []int       // prompt[start:end]
	count     map[int]int // occurrences of each token in span
	curSR     []float64   // [layer*qHeads+h]
	curRet    []float64

	// Counted trials.
	total         int
	sumSR, sumRet []float64
	trialSR       [][]float64
	trialRet      [][]float64

	// Scratch for StepFromCache.
	dSR, dRet []float64
	rows      [][]float32
	pos       [][]int32
}

// NewRecorder returns a Recorder for layers layers of qHeads query heads.
func NewRecorder(layers, qHeads int, opt Options) (*Recorder, error) {
	if err := checkDims(layers, qHeads); err != nil {
		return nil, err
	}
	if opt.Mode != Multiplicity && opt.Mode != Indicator {
		return nil, fmt.Errorf("heads: unknown %v", opt.Mode)
	}
	n := layers * qHeads
	return &Recorder{
		layers: layers,
		qHeads: qHeads,
		mode:   opt.Mode,
		curSR:  make([]float64, n),
		curRet: make([]float64, n),
		sumSR:  make([]float64, n),
		sumRet: make([]float64, n),
	}, nil
}

// Layers returns the number of layers the Recorder scores.
func (r *Recorder) Layers() int { return r.layers }

// QueryHeads returns the number of query heads per layer the Recorder scores.
func (r *Recorder) QueryHeads() int { return r.qHeads }

// InTrial reports whether a trial is in progress.
func (r *Recorder) InTrial() bool { return r.open }

// BeginTrial starts a trial over prompt (token ids) whose answer occupies the
// positions [start, end) of the prompt. The span's tokens are copied; prompt
// is not retained.
func (r *Recorder) BeginTrial(prompt []int, start, end int) error {
	if r.open {
		return ErrTrialOpen
	}
	if start < 0 || end <= start || end > len(prompt) {
		return fmt.Errorf("heads: answer span [%d, %d) is not a non-empty range inside the prompt of %d tokens: %w",
			start, end, len(prompt), kvcache.ErrShape)
	}
	r.span = append(r.span[:0], prompt[start:end]...)
	r.count = make(map[int]int, len(r.span))
	for _, t := range r.span {
		r.count[t]++
	}
	r.promptLen = len(prompt)
	r.start = start
	clear(r.curSR)
	clear(r.curRet)
	r.open = true
	return nil
}

// srFactor returns the weight of the span's mass for emitted token y: its
// count in the span (Multiplicity) or 1 (Indicator), 0 if absent.
func (r *Recorder) srFactor(y int) float64 {
	n := r.count[y]
	if n > 0 && r.mode == Indicator {
		n = 1
	}
	return float64(n)
}

// Step records one decode step: the emitted token and, for every layer and
// query head, the attention row of the query that produced it:
// attn[layer][head][j] is the weight on position j. A row must cover the
// prompt and may be longer (the generated tokens so far). Rows with a NaN or
// infinite weight, and attn of the wrong shape, are rejected.
// Cost: O(layers * qHeads * row length).
func (r *Recorder) Step(token int, attn [][][]float32) error {
	if !r.open {
		return ErrNoTrial
	}
	if len(attn) != r.layers {
		return fmt.Errorf("heads: step: attention for %d layers, want %d: %w", len(attn), r.layers, kvcache.ErrShape)
	}
	for l, la := range attn {
		if len(la) != r.qHeads {
			return fmt.Errorf("heads: step: layer %d: attention for %d heads, want %d: %w", l, len(la), r.qHeads, kvcache.ErrShape)
		}
		for h, row := range la {
			if len(row) < r.promptLen {
				return fmt.Errorf("heads: step: layer %d head %d: attention row of %d weights does not cover the prompt of %d tokens: %w",
					l, h, len(row), r.promptLen, kvcache.ErrShape)
			}
			if j := finite.First(row); j >= 0 {
				return fmt.Errorf("heads: step: layer %d head %d: weight %d is %v: %w", l, h, j, row[j], kvcache.ErrNonFinite)
			}
		}
	}
	f := r.srFactor(token)
	inv := 1 / float64(len(r.span))
	end := r.start + len(r.span)
	for l, la := range attn {
		for h, row := range la {
			i := l*r.qHeads + h
			if f > 0 {
				var mass float64
				for _, w := range row[r.start:end] {
					mass += float64(w)
				}
				r.curSR[i] += f * mass
			}
			if p := argmax(row); r.hit(p, token) {
				r.curRet[i] += inv
			}
		}
	}
	return nil
}

// hit reports whether position p lies in the answer span and holds token y.
func (r *Recorder) hit(p, y int) bool {
	return p >= r.start && p < r.start+len(r.span) && r.span[p-r.start] == y
}

// argmax returns the index of the largest weight, the lowest on ties, or -1
// for an empty row.
func argmax(row []float32) int {
	best := -1
	var bw float32
	for j, w := range row {
		if best < 0 || w > bw {
			best, bw = j, w
		}
	}
	return best
}

// StepFromCache records one decode step from a cache: it computes each query
// head's attention row with b.AttentionWeights from the step's post-RoPE
// queries (q[layer] holds qHeads rows of HeadDim values, head-major) over the
// rows of c, maps each cache row to its original position with c.Positions,
// and records the step as Step does. Positions the cache no longer holds
// weigh zero; the most-attended position is the stored row of largest weight,
// ties toward the lowest position. c must have the Recorder's layer count.
// Cost: one AttentionWeights call per layer, plus O(qHeads * rows).
func (r *Recorder) StepFromCache(token int, b backend.Backend, c kvcache.KVCache, q [][]float32) error {
	if !r.open {
		return ErrNoTrial
	}
	if b == nil || c == nil {
		return errors.New("heads: step from cache: nil backend or cache")
	}
	s := c.Shape()
	if s.Layers != r.layers {
		return fmt.Errorf("heads: step from cache: cache has %d layers, recorder %d: %w", s.Layers, r.layers, kvcache.ErrShape)
	}
	if len(q) != r.layers {
		return fmt.Errorf("heads: step from cache: queries for %d layers, want %d: %w", len(q), r.layers, kvcache.ErrShape)
	}
	if s.KVHeads <= 0 || r.qHeads%s.KVHeads != 0 {
		return fmt.Errorf("heads: step from cache: %d query heads is not a multiple of %d KV heads: %w", r.qHeads, s.KVHeads, kvcache.ErrShape)
	}
	group := r.qHeads / s.KVHeads
	n := r.layers * r.qHeads
	if len(r.dSR) != n {
		r.dSR, r.dRet = make([]float64, n), make([]float64, n)
	}
	if len(r.pos) != s.KVHeads {
		r.pos = make([][]int32, s.KVHeads)
	}
	f := r.srFactor(token)
	inv := 1 / float64(len(r.span))
	end := r.start + len(r.span)
	for l := 0; l < r.layers; l++ {
		if err := backend.CheckQueries(s, q[l], 1, r.qHeads); err != nil {
			return fmt.Errorf("heads: step from cache: layer %d: %w", l, err)
		}
		rows, err := b.AttentionWeights(c, l, q[l], r.qHeads, r.rows)
		if err != nil {
			return fmt.Errorf("heads: step from cache: layer %d: %w", l, err)
		}
		r.rows = rows
		if len(rows) != r.qHeads {
			return fmt.Errorf("heads: step from cache: layer %d: backend %s returned %d attention rows, want %d: %w",
				l, b.Name(), len(rows), r.qHeads, kvcache.ErrShape)
		}
		for g := range r.pos {
			r.pos[g] = c.Positions(l, g, r.pos[g][:0])
		}
		for h, row := range rows {
			pos := r.pos[h/group]
			if len(row) != len(pos) {
				return fmt.Errorf("heads: step from cache: layer %d head %d: backend %s returned %d weights for %d cached rows: %w",
					l, h, b.Name(), len(row), len(pos), kvcache.ErrShape)
			}
			var mass float64
			best, bp := -1, 0
			var bw float32
			for j, w := range row {
				if !finite.Is(w) {
					return fmt.Errorf("heads: step from cache: layer %d head %d: weight of position %d is %v: %w",
						l, h, pos[j], w, kvcache.ErrNonFinite)
				}
				p := int(pos[j])
				if p >= r.start && p < end {
					mass += float64(w)
				}
				if best < 0 || w > bw || (w == bw && p < bp) {
					best, bp, bw = j, p, w
				}
			}
			i := l*r.qHeads + h
			r.dSR[i], r.dRet[i] = 0, 0
			if f > 0 {
				r.dSR[i] = f * mass
			}
			if best >= 0 && r.hit(bp, token) {
				r.dRet[i] = inv
			}
		}
	}
	for i := range r.curSR {
		r.curSR[i] += r.dSR[i]
		r.curRet[i] += r.dRet[i]
	}
	return nil
}

// EndTrial closes the trial in progress. Its scores count toward SR and
// Retrieval only if success is true (the model answered correctly); every
// closed trial counts toward the total of Trials.
func (r *Recorder) EndTrial(success bool) error {
	if !r.open {
		return ErrNoTrial
	}
	r.open = false
	r.total++
	if !success {
		return nil
	}
	r.trialSR = append(r.trialSR, append([]float64(nil), r.curSR...))
	r.trialRet = append(r.trialRet, append([]float64(nil), r.curRet...))
	for i := range r.sumSR {
		r.sumSR[i] += r.curSR[i]
		r.sumRet[i] += r.curRet[i]
	}
	return nil
}

// Trials returns the number of counted (successful) trials and of all closed
// trials.
func (r *Recorder) Trials() (counted, total int) { return len(r.trialSR), r.total }

// SR returns the semantic retrieval score of every head, [layer][head]: the
// mean of its per-trial scores over the counted trials, zero when none
// counted.
func (r *Recorder) SR() Scores { return r.mean(r.sumSR) }

// Retrieval returns the classic retrieval score (Wu et al. 2024) of every
// head, [layer][head], with the same accounting as SR.
func (r *Recorder) Retrieval() Scores { return r.mean(r.sumRet) }

func (r *Recorder) mean(sum []float64) Scores {
	s := r.shape(sum)
	if n := len(r.trialSR); n > 0 {
		for _, row := range s {
			for h := range row {
				row[h] /= float64(n)
			}
		}
	} else {
		for _, row := range s {
			clear(row)
		}
	}
	return s
}

// shape copies a flat [layer*qHeads+h] slice into a fresh [layer][head] one.
func (r *Recorder) shape(flat []float64) [][]float64 {
	out := make([][]float64, r.layers)
	for l := range out {
		out[l] = append([]float64(nil), flat[l*r.qHeads:(l+1)*r.qHeads]...)
	}
	return out
}

// TrialScores returns copies of the per-trial SR and classic retrieval scores
// of the counted trials, [trial][layer][head], in the order they ended; the
// input of WriteReferenceScores.
func (r *Recorder) TrialScores() (sr, retrieval [][][]float64) {
	sr = make([][][]float64, len(r.trialSR))
	retrieval = make([][][]float64, len(r.trialRet))
	for t := range r.trialSR {
		sr[t] = r.shape(r.trialSR[t])
		retrieval[t] = r.shape(r.trialRet[t])
	}
	return sr, retrieval
}
