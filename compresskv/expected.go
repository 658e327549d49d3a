package compresskv

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/kvcache"
)

// DefaultFuture is the number of positions after the last token seen over
// which the expected-attention scorer averages the rotation of the queries
// to come (kvpress's n_future_positions).
const DefaultFuture = 512

// ExpectedAttentionScorer scores rows by the attention that queries still
// to come are expected to pay them, from the statistics of the queries seen
// so far ("Expected Attention", as kvpress's ExpectedAttentionPress): the
// queries of each scoring head, with their rotary embedding undone, are
// modelled as a Gaussian of mean mu and covariance S; both are turned by the
// average rotation of the next Future positions (R mu, R S R^T); a stored
// key k gets the logit mu.k/sqrt(d) + k^T S k/(2d) (the log of the expected
// exponential under that Gaussian), the logits of a head's rows go through
// a softmax, and each probability is multiplied by the norm of the row's
// value. The first Sink positions are left out of the statistics and of the
// softmax, and are always kept.
//
// With a Profile it scores with the layer's first K SR heads (each head's
// row pooled, then the mean: one row every KV head shares, as CompressKV);
// without, with every query head (the mean over each KV head's group, then
// pooled: one row per KV head, as SnapKV).
//
// Outside a Stream it reads every prompt query (QueryRows is the prompt
// length), as H2O does; in a Stream it keeps, per layer and scoring head,
// the running mean and covariance of the queries (a Tracker: d + d*d
// float64 per head, d + 1 with MeanOnly), so its cost does not grow with the
// sequence. Scoring costs O(heads * rows * d^2) per layer (O(heads * rows *
// d) with MeanOnly). It needs the stored keys and values in host memory.
type ExpectedAttentionScorer struct {
	Profile *Profile // SR heads of each layer; nil: every query head
	K       int      // SR heads per layer (with a Profile)
	// Rotary is the model's rotary embedding; nil means the model has
	// none (the queries are taken as they are). A RoPE model needs its own:
	// without it, queries rotated at different positions are averaged as if
	// they were not.
	Rotary *Rotary
	// Future is the number of positions the statistics are turned to;
	// 0 means DefaultFuture.
	Future int
	// Sink is the number of first positions left out and always kept
	// (kvpress: 4).
	Sink int
	// MeanOnly drops the covariance term (kvpress's use_covariance=False).
	MeanOnly bool
	// NoValueNorm drops the value norm factor (use_vnorm=False).
	NoValueNorm bool
	// Centre scores keys centred on the mean of every key seen (past the
	// sink): the softmax does not change when every key moves by the same
	// vector, and the Gaussian approximation does not change either once
	// the keys are centred (kvpress's uncentred covariance term does).
	Centre  bool
	Kernel  int             // odd pooling kernel; 1 disables pooling
	Pooling backend.Pooling // average or max pooling
}

var _ Tracker = ExpectedAttentionScorer{}

// Name implements Scorer.
func (s ExpectedAttentionScorer) Name() string {
	n := "expected-attention"
	if s.Centre {
		n += "-centred"
	}
	if s.Profile != nil {
		return "sr-" + n
	}
	return n
}

// QueryRows implements Scorer: every prompt row.
func (ExpectedAttentionScorer) QueryRows(promptLen, _ int) int { return promptLen }

// Validate implements Validator.
func (s ExpectedAttentionScorer) Validate(_, _ int) error {
	if err := checkPooling(s.Name(), s.Kernel, s.Pooling); err != nil {
		return err
	}
	if err := checkHeads(s.Name(), s.Profile, s.K); err != nil {
		return err
	}
	if s.Future < 0 || s.Sink < 0 {
		return fmt.Errorf("%s: future positions %d and sink %d must not be negative: %w", s.Name(), s.Future, s.Sink, ErrConfig)
	}
	return nil
}

// Fit implements Fitter: the rotary embedding must fit the head dimension,
// and a profile the model.
func (s ExpectedAttentionScorer) Fit(sh kvcache.Shape, qHeads int) error {
	if err := s.Rotary.check(sh.HeadDim); err != nil {
		return fmt.Errorf("%s: %w", s.Name(), err)
	}
	if s.Profile != nil {
		return SRScorer{Profile: s.Profile}.Fit(sh, qHeads)
	}
	return nil
}

func (s ExpectedAttentionScorer) future() int {
	if s.Future == 0 {
		return DefaultFuture
	}
	return s.Future
}

// queryStats is the running mean and covariance (Welford) of one head's
// queries, rotation undone.
type queryStats struct {
	n    int
	mean []float64 // d
	m2   []float64 // d*d sums of products of deviations; nil without covariance
}

func newQueryStats(d int, cov bool) queryStats {
	st := queryStats{mean: make([]float64, d)}
	if cov {
		st.m2 = make([]float64, d*d)
	}
	return st
}

// add adds one query x (d values).
func (st *queryStats) add(x, delta []float64) {
	st.n++
	d := len(x)
	for a := range x {
		delta[a] = x[a] - st.mean[a]
		st.mean[a] += delta[a] / float64(st.n)
	}
	if st.m2 == nil {
		return
	}
	for a := 0; a < d; a++ {
		row := st.m2[a*d : (a+1)*d]
		da := delta[a]
		for b := range row {
			row[b] += da * (x[b] - st.mean[b])
		}
	}
}

// observe adds the queries of heads from q ([n][qHeads][d], positions pos0
// on) whose positions are at or after the sink.
func (s ExpectedAttentionScorer) observe(stats []queryStats, heads []int, q []float32, qHeads, d, pos0 int) {
	x, delta := make([]float64, d), make([]float64, d)
	n := len(q) / (qHeads * d)
	for i := 0; i < n; i++ {
		pos := pos0 + i
		if pos < s.Sink {
			continue
		}
		for k, h := range heads {
			row := q[(i*qHeads+h)*d : (i*qHeads+h+1)*d]
			for a, v := range row {
				x[a] = float64(v)
			}
			s.Rotary.turn(x, -float64(pos))
			stats[k].add(x, delta)
		}
	}
}

// Score implements Scorer.
func (s ExpectedAttentionScorer) Score(ctx context.Context, in *ScoreInput) ([][]float32, error) {
	sh := in.Cache.Shape()
	d := sh.HeadDim
	heads, err := scoreHeads(s.Profile, s.K, in.Layer, in.QHeads)
	if err != nil {
		return nil, err
	}
	var stats []queryStats
	var kbar [][]float64 // per KV head, with Centre
	if in.Track != nil {
		tr, ok := in.Track.(*eaTrack)
		if !ok || tr.s.Rotary != s.Rotary {
			return nil, fmt.Errorf("%s: layer %d: a track of another scorer (%T)", s.Name(), in.Layer, in.Track)
		}
		if !slices.Equal(tr.heads[in.Layer], heads) {
			return nil, fmt.Errorf("%s: layer %d: the track follows heads %v, the scorer reads %v", s.Name(), in.Layer, tr.heads[in.Layer], heads)
		}
		if stats = tr.stats[in.Layer]; stats == nil {
			return nil, fmt.Errorf("%s: layer %d: the track was released", s.Name(), in.Layer)
		}
		if s.Centre {
			kbar = tr.keyMeans(in.Layer)
		}
	} else {
		stats = make([]queryStats, len(heads))
		for k := range stats {
			stats[k] = newQueryStats(d, !s.MeanOnly)
		}
		s.observe(stats, heads, in.Queries, in.QHeads, d, in.Cache.Seen(in.Layer)-in.NQ)
	}
	hr, err := hostRows(s.Name(), in.Cache)
	if err != nil {
		return nil, err
	}
	if s.Centre && kbar == nil {
		// One-shot: the mean of the stored keys past the sink.
		kbar = make([][]float64, sh.KVHeads)
		for g := range kbar {
			sum, n := keySums(hr, in.Layer, g, 0, s.Sink, d)
			kbar[g] = mean(sum, n)
		}
	}
	cos, sin := s.Rotary.mean(in.Cache.Seen(in.Layer), s.future())
	group := in.QHeads / sh.KVHeads
	rows := make([][]float32, len(heads))
	var pos []int32
	for k, h := range heads {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%s: layer %d: %w", s.Name(), in.Layer, err)
		}
		g := h / group
		pos = in.Cache.Positions(in.Layer, g, pos[:0])
		var centre []float64
		if kbar != nil {
			centre = kbar[g]
		}
		rows[k] = s.headScores(hr, in.Layer, g, pos, &stats[k], centre, cos, sin, d)[:len(pos)-in.Window]
	}
	out, err := combine(in, rows, heads, s.Profile != nil, s.Kernel, s.Pooling)
	if err != nil {
		return nil, fmt.Errorf("%s: layer %d: %w", s.Name(), in.Layer, err)
	}
	// The sinks: the rows of the first Sink positions score the row's
	// maximum (kvpress), so they are kept.
	for i, r := range out {
		g := i
		if len(out) == 1 {
			g = heads[0] / group
		}
		pos = in.Cache.Positions(in.Layer, g, pos[:0])
		top := float32(math.Inf(-1))
		for j, v := range r {
			if int(pos[j]) >= s.Sink {
				top = max(top, v)
			}
		}
		for j := range r {
			if int(pos[j]) < s.Sink && !math.IsInf(float64(top), -1) {
				r[j] = top
			}
		}
	}
	return out, nil
}

// headScores returns the expected attention of one scoring head over every
// row of its KV head g (sink rows score 0 here), keys centred on centre
// when it is not nil.
func (s ExpectedAttentionScorer) headScores(hr kvcache.HostReader, layer, g int, pos []int32, st *queryStats, centre, cos, sin []float64, d int) []float32 {
	mu := slices.Clone(st.mean)
	s.Rotary.apply(mu, cos, sin)
	var cov []float64
	if st.m2 != nil && st.n > 0 {
		// S = R C R^T with C = m2/n: R applied to every column, then to
		// every row.
		cov = make([]float64, d*d)
		for i, v := range st.m2 {
			cov[i] = v / float64(st.n)
		}
		col := make([]float64, d)
		for c := 0; c < d; c++ {
			for a := 0; a < d; a++ {
				col[a] = cov[a*d+c]
			}
			s.Rotary.apply(col, cos, sin)
			for a := 0; a < d; a++ {
				cov[a*d+c] = col[a]
			}
		}
		for a := 0; a < d; a++ {
			s.Rotary.apply(cov[a*d:(a+1)*d], cos, sin)
		}
	}
	kr, vr := hr.Rows(layer, g)
	n := kr.N
	z := make([]float64, n)
	scale := 1 / math.Sqrt(float64(d))
	var buf []float32
	k := make([]float64, d)
	top := math.Inf(-1)
	for j := 0; j < n; j++ {
		if int(pos[j]) < s.Sink {
			continue
		}
		buf = kr.Row(j, buf)
		var dot float64
		for a, v := range buf {
			k[a] = float64(v)
			if centre != nil {
				k[a] -= centre[a]
			}
			dot += mu[a] * k[a]
		}
		z[j] = dot * scale
		if cov != nil {
			var quad float64
			for a := 0; a < d; a++ {
				var r float64
				for b, cv := range cov[a*d : (a+1)*d] {
					r += cv * k[b]
				}
				quad += k[a] * r
			}
			z[j] += quad / float64(2*d)
		}
		top = max(top, z[j])
	}
	var sum float64
	for j := range z {
		if int(pos[j]) < s.Sink {
			z[j] = 0
			continue
		}
		z[j] = math.Exp(z[j] - top)
		sum += z[j]
	}
	out := make([]float32, n)
	for j := range z {
		if int(pos[j]) < s.Sink {
			continue
		}
		p := z[j] / sum
		if !s.NoValueNorm {
			buf = vr.Row(j, buf)
			var ss float64
			for _, v := range buf {
				ss += float64(v) * float64(v)
			}
			p *= math.Sqrt(ss)
		}
		out[j] = float32(p)
	}
	return out
}

// NewTrack implements Tracker: the running statistics of each layer's
// scoring heads.
func (s ExpectedAttentionScorer) NewTrack(sh kvcache.Shape, qHeads int) (Track, error) {
	if err := s.Fit(sh, qHeads); err != nil {
		return nil, err
	}
	tr := &eaTrack{s: s, d: sh.HeadDim, qHeads: qHeads, heads: make([][]int, sh.Layers), stats: make([][]queryStats, sh.Layers),
		keySum: make([][][]float64, sh.Layers), keyN: make([][]int, sh.Layers)}
	for l := range tr.heads {
		if s.Centre {
			tr.keySum[l], tr.keyN[l] = make([][]float64, sh.KVHeads), make([]int, sh.KVHeads)
			for g := range tr.keySum[l] {
				tr.keySum[l][g] = make([]float64, sh.HeadDim)
			}
		}
		heads, err := scoreHeads(s.Profile, s.K, l, qHeads)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.Name(), err)
		}
		tr.heads[l] = heads
		tr.stats[l] = make([]queryStats, len(heads))
		for k := range tr.stats[l] {
			tr.stats[l][k] = newQueryStats(sh.HeadDim, !s.MeanOnly)
		}
	}
	return tr, nil
}

// eaTrack is the expected-attention scorer's state: per layer and scoring
// head, the running statistics of the queries.
type eaTrack struct {
	s         ExpectedAttentionScorer
	d, qHeads int
	heads     [][]int
	stats     [][]queryStats
	keySum    [][][]float64 // with Centre: per layer and KV head, the sum of the keys seen past the sink
	keyN      [][]int
}

// keyMeans returns the mean key of every KV head of layer seen so far.
func (t *eaTrack) keyMeans(layer int) [][]float64 {
	out := make([][]float64, len(t.keySum[layer]))
	for g, sum := range t.keySum[layer] {
		out[g] = mean(sum, t.keyN[layer][g])
	}
	return out
}

// keySums returns the sum of the keys of rows [from, Len) of KV head g whose
// positions are at or after sink, and their count.
func keySums(hr kvcache.HostReader, layer, g, from, sink, d int) ([]float64, int) {
	k, _ := hr.Rows(layer, g)
	pos := hr.Positions(layer, g, nil)
	sum := make([]float64, d)
	n := 0
	var buf []float32
	for j := from; j < k.N; j++ {
		if int(pos[j]) < sink {
			continue
		}
		buf = k.Row(j, buf)
		for a, v := range buf {
			sum[a] += float64(v)
		}
		n++
	}
	return sum, n
}

func mean(sum []float64, n int) []float64 {
	out := make([]float64, len(sum))
	if n > 0 {
		for a, v := range sum {
			out[a] = v / float64(n)
		}
	}
	return out
}

// Observe implements Track.
func (t *eaTrack) Observe(_ backend.Backend, c kvcache.KVCache, layer, pos0 int, q []float32) error {
	if t.stats[layer] == nil {
		return fmt.Errorf("%s: layer %d: the track was released", t.s.Name(), layer)
	}
	if t.s.Centre {
		hr, err := hostRows(t.s.Name(), c)
		if err != nil {
			return err
		}
		n := len(q) / (t.qHeads * t.d)
		for g := range t.keySum[layer] {
			sum, m := keySums(hr, layer, g, c.Len(layer, g)-n, t.s.Sink, t.d)
			for a, v := range sum {
				t.keySum[layer][g][a] += v
			}
			t.keyN[layer][g] += m
		}
	}
	t.s.observe(t.stats[layer], t.heads[layer], q, t.qHeads, t.d, pos0)
	return nil
}

// Compact implements Track: the statistics do not depend on the rows kept.
func (t *eaTrack) Compact(int, [][]int) {}

// Release implements Track.
func (t *eaTrack) Release(layer int) { t.stats[layer], t.keySum[layer] = nil, nil }

// Bytes implements Track.
func (t *eaTrack) Bytes() int64 {
	var n int64
	for _, l := range t.stats {
		for _, st := range l {
			n += int64(len(st.mean)+len(st.m2))*8 + 8
		}
	}
	for _, l := range t.keySum {
		for _, sum := range l {
			n += int64(len(sum))*8 + 8
		}
	}
	return n
}
