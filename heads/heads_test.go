package heads

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/compresskv/compresskv/backend"
	"github.com/compresskv/compresskv/kvcache"
)

func newRNG(t testing.TB) (*rand.Rand, int64) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(uint64(seed), 0x5eed)), seed
}

func mustRecorder(t testing.TB, layers, qHeads int, m Mode) *Recorder {
	t.Helper()
	r, err := NewRecorder(layers, qHeads, Options{Mode: m})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// state captures everything a failed call must leave unchanged.
type state struct {
	open             bool
	curSR, curRet    []float64
	counted, total   int
	trialSR, trialRt [][][]float64
}

func snapshot(r *Recorder) state {
	c, n := r.Trials()
	sr, rt := r.TrialScores()
	return state{r.open, append([]float64(nil), r.curSR...), append([]float64(nil), r.curRet...), c, n, sr, rt}
}

// ---- float64 reference ------------------------------------------------------

// refTrial scores one trial in float64, written independently of Recorder.
type refStep struct {
	token int
	attn  [][][]float32
}

func refScores(prompt []int, start, end int, steps []refStep, layers, qHeads int, m Mode) (sr, ret [][]float64) {
	sr = make([][]float64, layers)
	ret = make([][]float64, layers)
	for l := range sr {
		sr[l] = make([]float64, qHeads)
		ret[l] = make([]float64, qHeads)
	}
	for _, st := range steps {
		for l := 0; l < layers; l++ {
			for h := 0; h < qHeads; h++ {
				row := st.attn[l][h]
				mass := 0.0
				for j := start; j < end; j++ {
					mass += float64(row[j])
				}
				// SR: once per occurrence (multiplicity) or once (indicator).
				for j := start; j < end; j++ {
					if prompt[j] == st.token {
						sr[l][h] += mass
						if m == Indicator {
							break
						}
					}
				}
				// Classic: maximum value, then its first position.
				mx := math.Inf(-1)
				for _, w := range row {
					mx = math.Max(mx, float64(w))
				}
				p := 0
				for float64(row[p]) != mx {
					p++
				}
				if p >= start && p < end && prompt[p] == st.token {
					ret[l][h] += 1 / float64(end-start)
				}
			}
		}
	}
	return sr, ret
}

func closeScores(a, b [][]float64, tol float64) bool {
	if len(a) != len(b) {
		return false
	}
	for l := range a {
		if len(a[l]) != len(b[l]) {
			return false
		}
		for h := range a[l] {
			if math.Abs(a[l][h]-b[l][h]) > tol*(1+math.Abs(b[l][h])) {
				return false
			}
		}
	}
	return true
}

func TestRecorderMatchesReference(t *testing.T) {
	rng, seed := newRNG(t)
	for iter := 0; iter < 200; iter++ {
		layers, qHeads := 1+rng.IntN(4), 1+rng.IntN(6)
		mode := Mode(rng.IntN(2))
		r := mustRecorder(t, layers, qHeads, mode)
		nTrials := 1 + rng.IntN(5)
		var wantSR, wantRet [][][]float64
		for tr := 0; tr < nTrials; tr++ {
			L := 3 + rng.IntN(30)
			vocab := 2 + rng.IntN(5) // small: repeated tokens are common
			prompt := make([]int, L)
			for i := range prompt {
				prompt[i] = rng.IntN(vocab)
			}
			start := rng.IntN(L)
			end := start + 1 + rng.IntN(L-start)
			if err := r.BeginTrial(prompt, start, end); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			var steps []refStep
			for s := 0; s < 1+rng.IntN(6); s++ {
				tok := rng.IntN(vocab + 1)
				attn := make([][][]float32, layers)
				for l := range attn {
					attn[l] = make([][]float32, qHeads)
					for h := range attn[l] {
						row := make([]float32, L+s)
						for j := range row {
							if rng.IntN(2) == 0 {
								row[j] = float32(rng.IntN(4)) / 4 // ties
							} else {
								row[j] = rng.Float32()
							}
						}
						attn[l][h] = row
					}
				}
				if err := r.Step(tok, attn); err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				steps = append(steps, refStep{tok, attn})
			}
			ok := rng.IntN(3) > 0
			if err := r.EndTrial(ok); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			if ok {
				sr, ret := refScores(prompt, start, end, steps, layers, qHeads, mode)
				wantSR, wantRet = append(wantSR, sr), append(wantRet, ret)
			}
		}
		counted, total := r.Trials()
		if counted != len(wantSR) || total != nTrials {
			t.Fatalf("seed %d: Trials() = %d, %d; want %d, %d", seed, counted, total, len(wantSR), nTrials)
		}
		gotSR, gotRet := r.TrialScores()
		for i := range wantSR {
			if !closeScores(gotSR[i], wantSR[i], 1e-12) || !closeScores(gotRet[i], wantRet[i], 1e-12) {
				t.Fatalf("seed %d iter %d trial %d (%v): got SR %v ret %v, want SR %v ret %v",
					seed, iter, i, mode, gotSR[i], gotRet[i], wantSR[i], wantRet[i])
			}
		}
		meanSR, meanRet := make(Scores, layers), make(Scores, layers)
		for l := range meanSR {
			meanSR[l], meanRet[l] = make([]float64, qHeads), make([]float64, qHeads)
			for h := range meanSR[l] {
				for i := range wantSR {
					meanSR[l][h] += wantSR[i][l][h] / float64(len(wantSR))
					meanRet[l][h] += wantRet[i][l][h] / float64(len(wantSR))
				}
			}
		}
		if !closeScores(r.SR(), meanSR, 1e-12) || !closeScores(r.Retrieval(), meanRet, 1e-12) {
			t.Fatalf("seed %d iter %d: mean SR %v ret %v, want %v %v", seed, iter, r.SR(), r.Retrieval(), meanSR, meanRet)
		}
	}
}

// ---- hand-computed cases ---------------------------------------------------

func step1(t *testing.T, r *Recorder, tok int, rows ...[]float32) {
	t.Helper()
	attn := [][][]float32{rows}
	if err := r.Step(tok, attn); err != nil {
		t.Fatal(err)
	}
}

func TestMultiplicityVersusIndicator(t *testing.T) {
	// Span [1, 4) holds tokens 5, 7, 5: token 5 occurs twice.
	prompt := []int{9, 5, 7, 5, 3}
	// Head 0: mass on the span 0.25+0.375+0.25 = 0.875, argmax at 2 (token 7).
	// Head 1: mass 0.5+0+0.25 = 0.75, argmax at 1 (token 5).
	h0 := []float32{0.125, 0.25, 0.375, 0.25, 0}
	h1 := []float32{0.25, 0.5, 0, 0.25, 0}
	for _, tc := range []struct {
		mode   Mode
		wantSR []float64
	}{
		{Multiplicity, []float64{2 * 0.875, 2 * 0.75}},
		{Indicator, []float64{0.875, 0.75}},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			r := mustRecorder(t, 1, 2, tc.mode)
			if err := r.BeginTrial(prompt, 1, 4); err != nil {
				t.Fatal(err)
			}
			step1(t, r, 5, h0, h1)
			step1(t, r, 4, h0, h1) // not an answer token: nothing
			if err := r.EndTrial(true); err != nil {
				t.Fatal(err)
			}
			if got := r.SR(); !reflect.DeepEqual(got, Scores{tc.wantSR}) {
				t.Errorf("SR = %v, want %v", got, tc.wantSR)
			}
			if got, want := r.Retrieval(), (Scores{{0, 1.0 / 3}}); !reflect.DeepEqual(got, want) {
				t.Errorf("Retrieval = %v, want %v", got, want)
			}
		})
	}
	// Token 7 occurs once: both modes add the mass once.
	for _, m := range []Mode{Multiplicity, Indicator} {
		r := mustRecorder(t, 1, 1, m)
		_ = r.BeginTrial(prompt, 1, 4)
		step1(t, r, 7, h0)
		_ = r.EndTrial(true)
		if got := r.SR()[0][0]; got != 0.875 {
			t.Errorf("%v: SR for a single occurrence = %v, want 0.875", m, got)
		}
		if got := r.Retrieval()[0][0]; got != 1.0/3 {
			t.Errorf("%v: retrieval = %v, want 1/3", m, got)
		}
	}
}

func TestClassicArgmax(t *testing.T) {
	prompt := []int{5, 5, 7, 5, 3}
	for _, tc := range []struct {
		name  string
		start int
		end   int
		tok   int
		row   []float32
		want  float64
	}{
		// Tie between 0 (outside the span, token 5) and 1 (inside, token 5): lowest wins, no hit.
		{"tie toward lower position, outside", 1, 4, 5, []float32{0.5, 0.5, 0, 0, 0}, 0},
		// Tie between 2 (token 7) and 3 (token 5), y = 5: position 2 wins, no hit.
		{"tie toward lower position, wrong token", 1, 4, 5, []float32{0, 0, 0.4, 0.4, 0.2}, 0},
		// Tie between 1 (token 5) and 3 (token 5): position 1 wins, a hit.
		{"tie inside span", 1, 4, 5, []float32{0, 0.4, 0.2, 0.4, 0}, 1.0 / 3},
		// Argmax at 0 holds the emitted token but lies outside the span [2, 4).
		{"argmax outside span", 2, 4, 5, []float32{0.6, 0.1, 0.1, 0.1, 0.1}, 0},
		// Argmax on a generated position beyond the prompt.
		{"argmax on generated token", 1, 4, 5, []float32{0, 0.2, 0, 0.2, 0, 0.6}, 0},
		{"hit", 2, 4, 5, []float32{0.1, 0.1, 0.1, 0.6, 0.1}, 0.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRecorder(t, 1, 1, Multiplicity)
			if err := r.BeginTrial(prompt, tc.start, tc.end); err != nil {
				t.Fatal(err)
			}
			step1(t, r, tc.tok, tc.row)
			if err := r.EndTrial(true); err != nil {
				t.Fatal(err)
			}
			if got := r.Retrieval()[0][0]; got != tc.want {
				t.Errorf("retrieval = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFailedTrialsExcluded(t *testing.T) {
	r := mustRecorder(t, 1, 2, Multiplicity)
	if got := r.SR(); !reflect.DeepEqual(got, Scores{{0, 0}}) {
		t.Fatalf("SR before any trial = %v, want zeros", got)
	}
	prompt := []int{1, 2, 3, 4}
	run := func(ok bool, w float32) {
		t.Helper()
		if err := r.BeginTrial(prompt, 1, 3); err != nil {
			t.Fatal(err)
		}
		step1(t, r, 2, []float32{0, w, 0, 1 - w}, []float32{1, 0, 0, 0})
		if err := r.EndTrial(ok); err != nil {
			t.Fatal(err)
		}
	}
	run(true, 0.25)
	run(false, 1) // would raise the mean; must not count
	if got := r.SR(); !reflect.DeepEqual(got, Scores{{0.25, 0}}) {
		t.Fatalf("SR = %v", got)
	}
	run(true, 0.75)
	if c, n := r.Trials(); c != 2 || n != 3 {
		t.Errorf("Trials() = %d, %d; want 2, 3", c, n)
	}
	if got := r.SR(); !reflect.DeepEqual(got, Scores{{0.5, 0}}) {
		t.Errorf("SR = %v, want [[0.5 0]]", got)
	}
	// Head 0 hits (argmax 1 holds token 2) only in the trial with w = 0.75.
	if got := r.Retrieval(); !reflect.DeepEqual(got, Scores{{0.25, 0}}) {
		t.Errorf("Retrieval = %v, want [[0.25 0]]", got)
	}
	sr, _ := r.TrialScores()
	if want := [][][]float64{{{0.25, 0}}, {{0.75, 0}}}; !reflect.DeepEqual(sr, want) {
		t.Errorf("TrialScores SR = %v, want %v", sr, want)
	}
	// The results are copies.
	sr[0][0][0] = 99
	r.SR()[0][0] = 99
	if got := r.SR()[0][0]; got != 0.5 {
		t.Errorf("SR aliased: %v", got)
	}
}

func TestRanking(t *testing.T) {
	s := Scores{
		{0.5, 0.7, 0.5, 0.7, 0.1},
		{0, 0, 0},
		{math.NaN(), 1, math.Inf(-1), 2},
	}
	want := [][]int{{1, 3, 0, 2, 4}, {0, 1, 2}, {3, 1, 2, 0}}
	if got := s.Ranking(); !reflect.DeepEqual(got, want) {
		t.Errorf("Ranking = %v, want %v", got, want)
	}
	top, err := s.Top(2)
	if err != nil || !reflect.DeepEqual(top, [][]int{{1, 3}, {0, 1}, {3, 1}}) {
		t.Errorf("Top(2) = %v, %v", top, err)
	}
	top, err = s.Top(10)
	if err != nil || !reflect.DeepEqual(top, want) {
		t.Errorf("Top(10) = %v, %v; want clamped %v", top, err, want)
	}
	for _, k := range []int{0, -1} {
		if _, err := s.Top(k); err == nil {
			t.Errorf("Top(%d): no error", k)
		}
	}
}

func TestRankingRandom(t *testing.T) {
	rng, seed := newRNG(t)
	for iter := 0; iter < 100; iter++ {
		row := make([]float64, 1+rng.IntN(40))
		for i := range row {
			row[i] = float64(rng.IntN(5))
		}
		rk := Scores{row}.Ranking()[0]
		seen := make([]bool, len(row))
		for i, h := range rk {
			if seen[h] {
				t.Fatalf("seed %d: head %d twice in %v", seed, h, rk)
			}
			seen[h] = true
			if i > 0 {
				p := rk[i-1]
				if row[p] < row[h] || (row[p] == row[h] && p > h) {
					t.Fatalf("seed %d: ranking %v of %v out of order at %d", seed, rk, row, i)
				}
			}
		}
	}
}

func TestErrorsLeaveRecorderUnchanged(t *testing.T) {
	if _, err := NewRecorder(0, 4, Options{}); err == nil {
		t.Error("NewRecorder(0, 4): no error")
	}
	if _, err := NewRecorder(4, -1, Options{}); err == nil {
		t.Error("NewRecorder(4, -1): no error")
	}
	if _, err := NewRecorder(1<<40, 1<<40, Options{}); err == nil {
		t.Error("NewRecorder(huge): no error")
	}
	if _, err := NewRecorder(1, 1, Options{Mode: 7}); err == nil {
		t.Error("NewRecorder(mode 7): no error")
	}

	r := mustRecorder(t, 2, 2, Multiplicity)
	row := func(vals ...float32) []float32 { return vals }
	good := [][][]float32{{row(0.5, 0.5, 0), row(0, 1, 0)}, {row(1, 0, 0), row(0, 0, 1)}}
	if err := r.Step(1, good); !errors.Is(err, ErrNoTrial) {
		t.Errorf("Step without trial: %v, want ErrNoTrial", err)
	}
	if err := r.EndTrial(true); !errors.Is(err, ErrNoTrial) {
		t.Errorf("EndTrial without trial: %v, want ErrNoTrial", err)
	}
	prompt := []int{1, 2, 3}
	for _, sp := range [][2]int{{-1, 2}, {1, 1}, {2, 1}, {0, 4}} {
		if err := r.BeginTrial(prompt, sp[0], sp[1]); err == nil {
			t.Errorf("BeginTrial span %v: no error", sp)
		}
	}
	if err := r.BeginTrial(prompt, 0, 2); err != nil {
		t.Fatal(err)
	}
	if err := r.Step(1, good); err != nil {
		t.Fatal(err)
	}
	before := snapshot(r)
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	bad := map[string]struct {
		attn [][][]float32
		want error
	}{
		"layers":    {good[:1], kvcache.ErrShape},
		"heads":     {[][][]float32{good[0][:1], good[1]}, kvcache.ErrShape},
		"short row": {[][][]float32{good[0], {row(1, 0), row(0, 0, 1)}}, kvcache.ErrShape},
		"NaN":       {[][][]float32{good[0], {row(1, 0, 0), row(0, nan, 1)}}, kvcache.ErrNonFinite},
		"Inf":       {[][][]float32{good[0], {row(1, 0, 0), row(0, 0, 1, inf)}}, kvcache.ErrNonFinite},
		"nil":       {nil, kvcache.ErrShape},
	}
	for name, tc := range bad {
		if err := r.Step(2, tc.attn); !errors.Is(err, tc.want) {
			t.Errorf("Step %s: %v, want %v", name, err, tc.want)
		}
		if after := snapshot(r); !reflect.DeepEqual(after, before) {
			t.Fatalf("Step %s changed the recorder: %+v -> %+v", name, before, after)
		}
	}
	if err := r.BeginTrial(prompt, 0, 1); !errors.Is(err, ErrTrialOpen) {
		t.Errorf("BeginTrial during a trial: %v, want ErrTrialOpen", err)
	}
	if after := snapshot(r); !reflect.DeepEqual(after, before) {
		t.Fatalf("BeginTrial changed the recorder")
	}
	if err := r.EndTrial(true); err != nil {
		t.Fatal(err)
	}
}

// ---- StepFromCache ---------------------------------------------------------

// fakeBackend implements only AttentionWeights, as a float64 softmax over the
// rows of a host cache, unless weights overrides it.
type fakeBackend struct {
	weights func(c kvcache.KVCache, layer int, q []float32, qHeads int) [][]float32
}

var errUnsupported = errors.New("fake backend: unsupported")

func (fakeBackend) Name() string { return "fake" }
func (fakeBackend) WindowScores(kvcache.KVCache, int, []float32, int, int, []int, [][]float32) error {
	return errUnsupported
}
func (fakeBackend) Pool(dst, src []float32, kernel int, kind backend.Pooling) error {
	return errUnsupported
}
func (fakeBackend) TopK(dst []int, scores []float32, k int) ([]int, error) {
	return nil, errUnsupported
}
func (fakeBackend) Attend(kvcache.KVCache, int, []float32, int, []float32) error {
	return errUnsupported
}
func (fakeBackend) Compact(kvcache.KVCache, int, [][]int) error { return errUnsupported }

func (f fakeBackend) AttentionWeights(c kvcache.KVCache, layer int, q []float32, qHeads int, out [][]float32) ([][]float32, error) {
	if f.weights != nil {
		return f.weights(c, layer, q, qHeads), nil
	}
	s := c.Shape()
	if err := backend.CheckQueries(s, q, 1, qHeads); err != nil {
		return nil, err
	}
	hr := c.(kvcache.HostReader)
	d := s.HeadDim
	out = out[:0]
	for h := 0; h < qHeads; h++ {
		k, _ := hr.Rows(layer, h/(qHeads/s.KVHeads))
		logits := make([]float64, k.N)
		mx := math.Inf(-1)
		var key []float32
		for i := range logits {
			key = k.Row(i, key)
			var dot float64
			for x := 0; x < d; x++ {
				dot += float64(q[h*d+x]) * float64(key[x])
			}
			logits[i] = dot / math.Sqrt(float64(d))
			mx = math.Max(mx, logits[i])
		}
		var sum float64
		for i := range logits {
			logits[i] = math.Exp(logits[i] - mx)
			sum += logits[i]
		}
		row := make([]float32, k.N)
		for i := range row {
			row[i] = float32(logits[i] / sum)
		}
		out = append(out, row)
	}
	return out, nil
}

func randVec(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// TestStepFromCacheCompacted checks that StepFromCache maps the rows of a
// compacted cache to their original positions: it must record exactly what
// Step records for dense rows built from the known kept positions.
func TestStepFromCacheCompacted(t *testing.T) {
	rng, seed := newRNG(t)
	shape := kvcache.Shape{Layers: 2, KVHeads: 2, HeadDim: 4}
	const qHeads, L = 4, 10
	for _, dt := range []kvcache.DType{kvcache.Float32, kvcache.Float16} {
		c, err := kvcache.NewHost(shape, dt)
		if err != nil {
			t.Fatal(err)
		}
		G, d := shape.KVHeads, shape.HeadDim
		for l := 0; l < shape.Layers; l++ {
			if err := c.Append(l, randVec(rng, L*G*d), randVec(rng, L*G*d)); err != nil {
				t.Fatal(err)
			}
		}
		// Layer 0: each KV head keeps its own rows; layer 1 keeps one set.
		keep := [][][]int{
			{{1, 3, 4, 7, 9}, {0, 2, 4, 5, 8}},
			{{0, 4, 5, 8, 9}, {0, 4, 5, 8, 9}},
		}
		for l := range keep {
			if err := c.Compact(l, keep[l]); err != nil {
				t.Fatal(err)
			}
			// Two generated tokens after compaction: positions 10 and 11.
			if err := c.Append(l, randVec(rng, 2*G*d), randVec(rng, 2*G*d)); err != nil {
				t.Fatal(err)
			}
		}
		positions := func(l, g int) []int { return append(append([]int(nil), keep[l][g]...), L, L+1) }

		prompt := []int{3, 1, 4, 1, 5, 9, 2, 6, 5, 3}
		start, end := 3, 6 // tokens 1, 5, 9
		fb := fakeBackend{}
		for _, mode := range []Mode{Multiplicity, Indicator} {
			got := mustRecorder(t, shape.Layers, qHeads, mode)
			want := mustRecorder(t, shape.Layers, qHeads, mode)
			for _, r := range []*Recorder{got, want} {
				if err := r.BeginTrial(prompt, start, end); err != nil {
					t.Fatal(err)
				}
			}
			for s, tok := range []int{1, 5, 7, 9} {
				q := [][]float32{randVec(rng, qHeads*d), randVec(rng, qHeads*d)}
				if s == 0 {
					for x := range q[0] { // a step with all-equal weights: ties everywhere
						q[0][x] = 0
					}
				}
				if err := got.StepFromCache(tok, fb, c, q); err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				dense := make([][][]float32, shape.Layers)
				for l := range dense {
					rows, _ := fb.AttentionWeights(c, l, q[l], qHeads, nil)
					dense[l] = make([][]float32, qHeads)
					for h := range dense[l] {
						dense[l][h] = make([]float32, L+2)
						for i, p := range positions(l, h/(qHeads/G)) {
							dense[l][h][p] = rows[h][i]
						}
					}
				}
				if err := want.Step(tok, dense); err != nil {
					t.Fatal(err)
				}
			}
			for _, r := range []*Recorder{got, want} {
				if err := r.EndTrial(true); err != nil {
					t.Fatal(err)
				}
			}
			if !reflect.DeepEqual(got.SR(), want.SR()) || !reflect.DeepEqual(got.Retrieval(), want.Retrieval()) {
				t.Fatalf("seed %d %v %v: StepFromCache SR %v ret %v, dense Step SR %v ret %v",
					seed, dt, mode, got.SR(), got.Retrieval(), want.SR(), want.Retrieval())
			}
		}
	}
}

// TestStepFromCacheHand checks the position mapping with fixed weights.
func TestStepFromCacheHand(t *testing.T) {
	shape := kvcache.Shape{Layers: 1, KVHeads: 1, HeadDim: 2}
	c, err := kvcache.NewHost(shape, kvcache.Float32)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Append(0, make([]float32, 8*2), make([]float32, 8*2)); err != nil {
		t.Fatal(err)
	}
	// Keep positions 0, 2, 5, 6: rows 2 and 3 hold span positions 5 and 6.
	if err := c.Compact(0, [][]int{{0, 2, 5, 6}}); err != nil {
		t.Fatal(err)
	}
	prompt := []int{0, 0, 0, 0, 0, 7, 8, 0}
	fixed := func(rows ...[]float32) fakeBackend {
		return fakeBackend{weights: func(kvcache.KVCache, int, []float32, int) [][]float32 { return rows }}
	}
	q := [][]float32{{0, 0, 0, 0}} // 2 query heads of dimension 2
	r := mustRecorder(t, 1, 2, Multiplicity)
	if err := r.BeginTrial(prompt, 5, 7); err != nil {
		t.Fatal(err)
	}
	// Head 0: argmax row 2 = position 5 (token 7). Head 1: tie between rows 1
	// (position 2) and 3 (position 6): position 2 wins, no hit.
	b := fixed([]float32{0.125, 0.125, 0.5, 0.25}, []float32{0.25, 0.375, 0, 0.375})
	if err := r.StepFromCache(7, b, c, q); err != nil {
		t.Fatal(err)
	}
	before := snapshot(r)
	for name, bb := range map[string]fakeBackend{
		"short row": fixed([]float32{1, 0, 0}, []float32{1, 0, 0, 0}),
		"few rows":  fixed([]float32{1, 0, 0, 0}),
		"NaN":       fixed([]float32{1, 0, 0, 0}, []float32{0, float32(math.NaN()), 0, 0}),
	} {
		if err := r.StepFromCache(7, bb, c, q); err == nil {
			t.Errorf("%s: no error", name)
		}
		if !reflect.DeepEqual(snapshot(r), before) {
			t.Fatalf("%s: recorder changed", name)
		}
	}
	if err := r.StepFromCache(7, b, c, [][]float32{{0, 0}}); !errors.Is(err, kvcache.ErrShape) {
		t.Errorf("short query: %v", err)
	}
	if err := r.StepFromCache(7, b, c, nil); !errors.Is(err, kvcache.ErrShape) {
		t.Errorf("no query: %v", err)
	}
	if err := r.StepFromCache(7, nil, c, q); err == nil {
		t.Errorf("nil backend: no error")
	}
	if !reflect.DeepEqual(snapshot(r), before) {
		t.Fatalf("recorder changed")
	}
	if err := r.EndTrial(true); err != nil {
		t.Fatal(err)
	}
	if got, want := r.SR(), (Scores{{0.75, 0.375}}); !reflect.DeepEqual(got, want) {
		t.Errorf("SR = %v, want %v", got, want)
	}
	if got, want := r.Retrieval(), (Scores{{0.5, 0}}); !reflect.DeepEqual(got, want) {
		t.Errorf("Retrieval = %v, want %v", got, want)
	}
	if err := r.StepFromCache(7, b, c, q); !errors.Is(err, ErrNoTrial) {
		t.Errorf("StepFromCache without trial: %v", err)
	}
}
