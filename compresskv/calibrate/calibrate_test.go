package calibrate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/kvcache"
)

// wordTok is a word-level tokenizer: id 1 is BOS, every other id a word,
// numbered in order of first appearance. Decoding joins words with single
// spaces, so it does not round-trip texts with newlines or double spaces.
type wordTok struct {
	ids   map[string]int
	words []string
}

func newWordTok() *wordTok { return &wordTok{ids: map[string]int{}, words: []string{"<unk>", "<s>"}} }

func (t *wordTok) id(w string) int {
	if id, ok := t.ids[w]; ok {
		return id
	}
	t.ids[w] = len(t.words)
	t.words = append(t.words, w)
	return t.ids[w]
}

func (t *wordTok) Encode(text string) []int {
	ids := []int{1}
	for _, w := range strings.Fields(text) {
		ids = append(ids, t.id(w))
	}
	return ids
}

func (t *wordTok) Decode(ids []int) string {
	var ws []string
	for _, id := range ids {
		if id > 1 && id < len(t.words) {
			ws = append(ws, t.words[id])
		}
	}
	return strings.Join(ws, " ")
}

// byteTok is a byte-level tokenizer: BOS 1, byte b is id 3+b.
type byteTok struct{}

func (byteTok) Encode(text string) []int {
	ids := []int{1}
	for i := 0; i < len(text); i++ {
		ids = append(ids, 3+int(text[i]))
	}
	return ids
}

func (byteTok) Decode(ids []int) string {
	var b []byte
	for _, id := range ids {
		if id >= 3 {
			b = append(b, byte(id-3))
		}
	}
	return string(b)
}

// copyModel is a fake engine with an induction rule: its next token follows
// the earliest earlier occurrence of the last three tokens (an unknown word
// when there is none). Query head copyHead of layer copyLayer puts all its
// attention on the copied position; every other head attends uniformly. Each
// layer's shadow output is off by (layer+1)/10 of the full one's unit norm.
type copyModel struct {
	info                compresskv.ModelInfo
	copyLayer, copyHead int
	unknown             int
	budgetSeen          []int // rows kept per KV head, per shadow eviction
	starts, open        int
	failDecodeAt        int // the n-th Decode of all fails, when positive
	decodes             int
}

func newCopyModel() *copyModel {
	return &copyModel{info: compresskv.ModelInfo{Name: "copy", Layers: 2, QueryHeads: 4, KVHeads: 2, HeadDim: 4}, copyLayer: 1, copyHead: 2, unknown: 0}
}

func (m *copyModel) Info() compresskv.ModelInfo { return m.info }

func (m *copyModel) Start(ctx context.Context, prompt []int) (Run, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.starts++
	m.open++
	return &copyRun{m: m, seq: append([]int(nil), prompt...), prompt: len(prompt)}, nil
}

type copyRun struct {
	m       *copyModel
	seq     []int
	prompt  int
	shadow  bool
	decoded bool
}

// source returns the position the next token is copied from, or -1.
func (r *copyRun) source() int {
	n := len(r.seq)
	if n < 3 {
		return -1
	}
	for j := 2; j+1 < n; j++ {
		if r.seq[j-2] == r.seq[n-3] && r.seq[j-1] == r.seq[n-2] && r.seq[j] == r.seq[n-1] && j < n-1 {
			return j + 1
		}
	}
	return -1
}

func (r *copyRun) Next() int {
	if p := r.source(); p >= 0 {
		return r.seq[p]
	}
	return r.m.unknown
}

func (r *copyRun) Decode(ctx context.Context, token int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.m.decodes++
	if r.m.failDecodeAt > 0 && r.m.decodes == r.m.failDecodeAt {
		return errors.New("device lost")
	}
	r.seq = append(r.seq, token)
	r.decoded = r.shadow
	return nil
}

func (r *copyRun) Attention(dst [][][]float32) ([][][]float32, error) {
	n := len(r.seq)
	src := r.source()
	out := make([][][]float32, r.m.info.Layers)
	for l := range out {
		out[l] = make([][]float32, r.m.info.QueryHeads)
		for h := range out[l] {
			row := make([]float32, n)
			if l == r.m.copyLayer && h == r.m.copyHead && src >= 0 {
				row[src] = 1
			} else {
				for j := range row {
					row[j] = 1 / float32(n)
				}
			}
			out[l][h] = row
		}
	}
	return out, nil
}

// Prompt returns a read-only view of a cache of random keys, and random
// window queries.
func (r *copyRun) Prompt(window int) (kvcache.KVCache, [][]float32, error) {
	s := kvcache.Shape{Layers: r.m.info.Layers, KVHeads: r.m.info.KVHeads, HeadDim: r.m.info.HeadDim}
	c, err := kvcache.NewHost(s, kvcache.Float32)
	if err != nil {
		return nil, nil, err
	}
	rng := rand.New(rand.NewPCG(uint64(len(r.seq)), 1))
	q := make([][]float32, s.Layers)
	for l := 0; l < s.Layers; l++ {
		k := make([]float32, r.prompt*s.KVHeads*s.HeadDim)
		v := make([]float32, len(k))
		for i := range k {
			k[i], v[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
		}
		if err := c.Append(l, k, v); err != nil {
			return nil, nil, err
		}
		q[l] = make([]float32, window*r.m.info.QueryHeads*s.HeadDim)
		for i := range q[l] {
			q[l][i] = float32(rng.NormFloat64())
		}
	}
	return readOnly{c}, q, nil
}

// readOnly is a kvcache.HostReader view that refuses changes, as an engine's
// view over its own rows would: planning the shadow eviction must only read.
type readOnly struct{ *kvcache.Host }

func (readOnly) Append(int, []float32, []float32) error {
	return errors.New("read-only view: Append")
}

func (readOnly) Compact(int, [][]int) error { return errors.New("read-only view: Compact") }

func (r *copyRun) Shadow(keep [][][]int) error {
	for _, k := range keep {
		for _, g := range k {
			r.m.budgetSeen = append(r.m.budgetSeen, len(g))
		}
	}
	r.shadow = true
	return nil
}

func (r *copyRun) Outputs() (full, shadow [][]float32, err error) {
	if !r.decoded {
		return nil, nil, errors.New("no decode step since the shadow began")
	}
	for l := 0; l < r.m.info.Layers; l++ {
		f := []float32{1, 0, 0, 0}
		s := []float32{1, float32(l+1) / 10, 0, 0}
		full, shadow = append(full, f), append(shadow, s)
	}
	return full, shadow, nil
}

func (r *copyRun) Close() error {
	r.m.open--
	return nil
}

func haystackWords(n int, seed uint64) string {
	words := strings.Fields("the a river stone moves under old green light while birds sing of distant hills and rain")
	rng := rand.New(rand.NewPCG(seed, 2))
	var sb strings.Builder
	for i := 0; i < n; i++ {
		sb.WriteString(words[rng.IntN(len(words))])
		sb.WriteByte(' ')
	}
	return sb.String()
}

func needleGrid(seed uint64) NeedleGrid {
	return NeedleGrid{Haystack: haystackWords(400, 9), Lengths: []int{60, 90}, Depths: 3, PerCell: 2,
		Keys: strings.Fields("acorn birch cedar daisy ember"), Seed: seed}
}

// TestCalibrateFindsCopyHead: on a fake model whose one head does the
// copying, Profile answers every needle probe, ranks that head first in
// its layer, gives the layers weights in the ratio of their shadow errors,
// keeps the shadow budget while planning it on a read-only view of the
// engine's cache, and returns the same profile for the same seed.
func TestCalibrateFindsCopyHead(t *testing.T) {
	tok := newWordTok()
	probes, err := NeedleProbes(tok, needleGrid(3))
	if err != nil {
		t.Fatal(err)
	}
	m := newCopyModel()
	var seen []Progress
	cal := Config{Probes: probes, Tokenizer: tok, Progress: func(p Progress) { seen = append(seen, p) }}
	prof, rep, err := Profile(context.Background(), m, cal)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Answered != len(probes) || rep.Probes != len(probes) {
		t.Fatalf("answered %d of %d, want all %d", rep.Answered, rep.Probes, len(probes))
	}
	if len(rep.Groups) != 2 || rep.Groups[0].Group != "60 tokens" || rep.Groups[0].Probes != 6 || rep.Groups[1].Answered != 6 {
		t.Fatalf("groups %+v", rep.Groups)
	}
	if got := prof.HeadRanking[m.copyLayer][0]; got != m.copyHead {
		t.Fatalf("layer %d ranks head %d first, want the copying head %d (ranking %v, scores %v)",
			m.copyLayer, got, m.copyHead, prof.HeadRanking[m.copyLayer], prof.HeadScores[m.copyLayer])
	}
	if s := prof.HeadScores[m.copyLayer][m.copyHead]; s < 0.999 || s > 1.001 {
		// One answer token, all its mass on the span: SR score 1 per trial.
		t.Fatalf("copying head SR score %v, want 1", s)
	}
	if r := prof.RetrievalScores[m.copyLayer][m.copyHead]; r < 0.999 || r > 1.001 {
		t.Fatalf("copying head retrieval score %v, want 1", r)
	}
	// Shadow errors 0.1 and 0.2 per step: weights 1/3 and 2/3.
	if w := prof.LayerWeights; math.Abs(w[0]-1.0/3) > 1e-6 || math.Abs(w[1]-2.0/3) > 1e-6 {
		t.Fatalf("layer weights %v, want [1/3 2/3]", w)
	}
	for _, n := range m.budgetSeen {
		if n != 32 {
			t.Fatalf("a shadow KV head keeps %d rows, want the default budget of 32", n)
		}
	}
	if len(m.budgetSeen) != len(probes)*m.info.Layers*m.info.KVHeads {
		t.Fatalf("%d shadow heads, want %d", len(m.budgetSeen), len(probes)*m.info.Layers*m.info.KVHeads)
	}
	if m.open != 0 {
		t.Fatalf("%d runs left open", m.open)
	}
	if len(seen) != 2*len(probes) || seen[len(probes)-1] != (Progress{Phase: "probes", Done: len(probes), Total: len(probes), Answered: len(probes)}) ||
		seen[len(seen)-1].Phase != "layer error" || seen[len(seen)-1].Done != len(probes) {
		t.Fatalf("progress %+v", seen)
	}
	if !strings.Contains(prof.Notes["probes"], fmt.Sprintf("%d answered", len(probes))) {
		t.Fatalf("notes %v", prof.Notes)
	}
	again, _, err := Profile(context.Background(), newCopyModel(), cal)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again.HeadRanking, prof.HeadRanking) || !reflect.DeepEqual(again.HeadScores, prof.HeadScores) ||
		!reflect.DeepEqual(again.LayerWeights, prof.LayerWeights) {
		t.Fatal("two runs over the same probes gave different profiles")
	}
	other, err := NeedleProbes(tok, needleGrid(4))
	if err != nil {
		t.Fatal(err)
	}
	if reflect.DeepEqual(other[0].Prompt, probes[0].Prompt) {
		t.Fatal("another seed gave the same probes")
	}
	same, _ := NeedleProbes(tok, needleGrid(3))
	if !reflect.DeepEqual(same, probes) {
		t.Fatal("the same seed gave other probes")
	}
}

// TestCalibrateTooFewProbes: when the model answers too few probes the
// error says how many of how many, wraps ErrTooFewProbes and names a remedy;
// unanswered probes do not count.
func TestCalibrateTooFewProbes(t *testing.T) {
	tok := newWordTok()
	probes, err := NeedleProbes(tok, needleGrid(5))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(probes); i++ {
		probes[i].Answer = "99999" // the model copies the needle's value, not this
	}
	m := newCopyModel()
	_, rep, err := Profile(context.Background(), m, Config{Probes: probes, Tokenizer: tok})
	if !errors.Is(err, ErrTooFewProbes) {
		t.Fatalf("error %v, want ErrTooFewProbes", err)
	}
	want := fmt.Sprintf("1 of %d probes answered", len(probes))
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "try probes") {
		t.Fatalf("error %q does not say %q and what to try", err, want)
	}
	if rep == nil || rep.Answered != 1 {
		t.Fatalf("report %+v", rep)
	}
	// With a lower bar the one answered probe is enough.
	prof, rep, err := Profile(context.Background(), newCopyModel(), Config{Probes: probes, Tokenizer: tok, MinAnswered: 1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Answered != 1 || !strings.Contains(prof.Notes["probes"], "1 answered") {
		t.Fatalf("report %+v, notes %v", rep, prof.Notes)
	}
}

// TestCalibrateCancel: cancelling stops between probes with the context's
// error, and every run started is closed.
func TestCalibrateCancel(t *testing.T) {
	tok := newWordTok()
	probes, err := NeedleProbes(tok, needleGrid(6))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := newCopyModel()
	_, _, err = Profile(ctx, m, Config{Probes: probes, Tokenizer: tok, Progress: func(p Progress) {
		if p.Done == 2 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if m.starts != 2 || m.open != 0 {
		t.Fatalf("%d runs started, %d open; want 2 and 0", m.starts, m.open)
	}
}

// TestCalibrateEngineError: an engine's error stops calibration, wrapped
// with the probe's index, and the run is closed.
func TestCalibrateEngineError(t *testing.T) {
	tok := newWordTok()
	probes, err := NeedleProbes(tok, needleGrid(7))
	if err != nil {
		t.Fatal(err)
	}
	m := newCopyModel()
	m.failDecodeAt = len(probes) + 3 // during the layer error
	_, _, err = Profile(context.Background(), m, Config{Probes: probes, Tokenizer: tok})
	if err == nil || !strings.Contains(err.Error(), "device lost") || !strings.Contains(err.Error(), "error set") {
		t.Fatalf("error %v", err)
	}
	if m.open != 0 {
		t.Fatalf("%d runs left open", m.open)
	}
}

// TestCalibrateBadInput: bad input is rejected before any prompt runs.
func TestCalibrateBadInput(t *testing.T) {
	tok := newWordTok()
	good, err := NeedleProbes(tok, needleGrid(8))
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]Probe(nil), good...)
	bad[2].AnswerEnd = len(bad[2].Prompt) + 1
	noAnswer := append([]Probe(nil), good...)
	noAnswer[1].Answer = " "
	cases := []struct {
		name string
		cal  Config
		want string
	}{
		{"no tokenizer", Config{Probes: good}, "tokenizer"},
		{"no probes", Config{Tokenizer: tok}, "no probes"},
		{"span outside", Config{Probes: bad, Tokenizer: tok}, "probe 2: answer span"},
		{"empty answer", Config{Probes: noAnswer, Tokenizer: tok}, "probe 1: empty answer"},
		{"budget below window", Config{Probes: good, Tokenizer: tok, Shadow: compresskv.Config{Budget: 4}}, "shadow policy"},
		{"empty error set", Config{Probes: good, Tokenizer: tok, ErrSets: []ErrSet{{Name: "x", Steps: 2}}}, `error set 0 ("x")`},
	}
	for _, c := range cases {
		m := newCopyModel()
		_, _, err := Profile(context.Background(), m, c.cal)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
		if m.starts != 0 {
			t.Errorf("%s: %d runs started before the input was checked", c.name, m.starts)
		}
	}
	if _, _, err := Profile(context.Background(), nil, Config{Probes: good, Tokenizer: tok}); err == nil {
		t.Error("nil model accepted")
	}
}
