package calibrate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/compresskv/compresskv/alloc"
	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/heads"
	"github.com/compresskv/compresskv/kvcache"
)

// Model is what Profile needs from a caller's inference engine:
// a way to run one prompt at a time with a full cache. Implement it once
// over your own forward pass; Profile drives it.
//
// An engine whose cache is not a kvcache.KVCache implements it without
// copying its cache at every step: Attention computes softmax rows from
// its own keys; Prompt is the only place a kvcache.KVCache is needed, once
// per error prompt, and compresskv.Policy.Plan only reads it, so it may be a
// kvcache.HostReader view over the engine's own rows (the CPU backend reads
// nothing else; Append and Compact are never called), a backend/cuda device
// cache, or a one-time copy of the prompt's keys; Shadow receives the kept
// positions, so the shadow eviction can be a mask over the engine's own
// cache (attention restricted to the kept positions and to every position
// run after the call) instead of a second cache.
type Model interface {
	// Info returns the model's shape; the profile is made for it.
	Info() compresskv.ModelInfo
	// Start runs prompt with full attention into a fresh cache and returns
	// the run, positioned after the prompt's last token.
	Start(ctx context.Context, prompt []int) (Run, error)
}

// Run is one prompt being run by a Model. Profile
// calls Close on every run it starts.
type Run interface {
	// Next returns the greedy next token: the argmax of the logits after
	// the last token run.
	Next() int
	// Decode runs token at the next position (one decode step) over the
	// full cache.
	Decode(ctx context.Context, token int) error
	// Attention returns, for every layer and query head, the attention
	// weights of the query of the last token run over the positions run so
	// far, [layer][head][position], reusing dst when it has the shape.
	Attention(dst [][][]float32) ([][][]float32, error)
	// Prompt returns, right after Start, the cache holding the prompt's
	// keys and values (read, never changed) and the post-RoPE queries of the
	// prompt's last window tokens, [layer][window][QueryHeads][HeadDim]:
	// what compresskv.Policy.Plan scores the shadow eviction with.
	Prompt(window int) (kvcache.KVCache, [][]float32, error)
	// Shadow starts a shadow eviction: keep[layer][kvHead] lists the prompt
	// positions that the shadow cache of that layer and KV head keeps (nil
	// for a layer: all of them); tokens run afterwards are kept too. The
	// full cache is unchanged and decoding continues on it.
	Shadow(keep [][][]int) error
	// Outputs returns, for the last token run by Decode after Shadow, each
	// layer's attention block output (after the output projection, before
	// the residual add) over the full cache and over the shadow cache,
	// [layer][hidden].
	Outputs() (full, shadow [][]float32, err error)
	// Close releases the run.
	Close() error
}

// ErrSet is a data set of prompts for the layer error: each prompt is run,
// then decoded greedily for Steps tokens while every layer's output over
// its shadow cache is compared with the output over the full cache.
type ErrSet struct {
	Name    string  // a label for the report
	Prompts [][]int // token ids
	Steps   int     // decode steps per prompt
}

// Config configures Profile. Probes and Tokenizer are required.
type Config struct {
	// Probes are the retrieval probes (NeedleProbes, NewProbe, ...).
	Probes []Probe
	// Tokenizer decodes the model's answers to judge them.
	Tokenizer Tokenizer
	// ErrSets are the data sets of the layer error; their weights are
	// normalised per set and averaged. Nil: one set of the probes' prompts,
	// each decoded for its span's length plus one token.
	ErrSets []ErrSet
	// Mode is how the SR score counts repeated answer tokens.
	Mode heads.Mode
	// Shadow configures the CompressKV policy of the shadow eviction; its
	// Profile is the one being measured. Zero Budget means 32 (the
	// reference's); the other zero fields take compresskv.Config's defaults.
	Shadow compresskv.Config
	// MinAnswered is the least number of probes that must be answered with
	// the full cache; zero means min(4, len(Probes)).
	MinAnswered int
	// Name is the model name written into the profile (Info().Name when
	// empty).
	Name string
	// Progress, if not nil, is called after every probe and every layer
	// error prompt.
	Progress func(Progress)
}

// Progress reports how far Profile is.
type Progress struct {
	Phase    string // "probes" or "layer error"
	Done     int    // prompts finished in this phase
	Total    int    // prompts in this phase
	Answered int    // probes answered so far (phase "probes")
}

// GroupCount is the count of answered probes of one group.
type GroupCount struct {
	Group            string
	Answered, Probes int
}

// Report says what Profile measured and what it cost.
type Report struct {
	Answered, Probes int          // probes answered with the full cache, and run
	Groups           []GroupCount // per Probe.Group, in order of first appearance
	ErrSets          []string     // one line per data set of the layer error
	ProbeTime        time.Duration
	ErrorTime        time.Duration
}

// ErrTooFewProbes is wrapped by the error Profile returns when fewer
// probes than Config.MinAnswered were answered.
var ErrTooFewProbes = errors.New("too few probes answered")

// Profile runs the offline half of CompressKV on a model: every probe is
// decoded greedily with the full cache while a heads.Recorder scores each
// query head's attention on the answer span (only probes answered right
// count); the heads are ranked per layer; then, for each data set, every
// prompt is decoded while each layer also attends over a cache compressed
// by CompressKV at a small uniform budget with that ranking, and the
// relative output errors (alloc.ErrorAccumulator) become the layer
// weights. It returns the profile and a report of what was counted.
//
// The result depends only on the model and the inputs: probes built with
// the same seed give the same profile. ctx cancels between steps. When too
// few probes are answered the error wraps ErrTooFewProbes and says how
// many, of how many, and what to try. Cost: one full-cache run per probe
// and per error prompt, plus one CompressKV plan per error prompt.
func Profile(ctx context.Context, m Model, c Config) (*compresskv.Profile, *Report, error) {
	if m == nil {
		return nil, nil, fmt.Errorf("calibrate: nil model: %w", compresskv.ErrConfig)
	}
	if c.Tokenizer == nil {
		return nil, nil, fmt.Errorf("calibrate: a tokenizer is needed to judge the answers: %w", compresskv.ErrConfig)
	}
	if len(c.Probes) == 0 {
		return nil, nil, fmt.Errorf("calibrate: no probes: %w", compresskv.ErrConfig)
	}
	for i := range c.Probes {
		if err := c.Probes[i].validate(); err != nil {
			return nil, nil, fmt.Errorf("calibrate: probe %d: %w", i, err)
		}
	}
	info := m.Info()
	if c.Name != "" {
		info.Name = c.Name
	}
	if info.Layers <= 0 || info.QueryHeads <= 0 || info.KVHeads <= 0 || info.HeadDim <= 0 || info.QueryHeads%info.KVHeads != 0 {
		return nil, nil, fmt.Errorf("calibrate: model shape %+v is not a GQA model: %w", info, compresskv.ErrConfig)
	}
	need := c.MinAnswered
	if need <= 0 {
		need = min(4, len(c.Probes))
	}
	shadowCfg := c.Shadow
	if shadowCfg.Budget == 0 {
		shadowCfg.Budget = 32
	}
	// Check the shadow configuration before any probe runs.
	if _, err := compresskv.New(compresskv.CompressKV, withProfile(shadowCfg, identityProfile(info))); err != nil {
		return nil, nil, fmt.Errorf("calibrate: shadow policy: %w", err)
	}
	sets := c.ErrSets
	if sets == nil {
		set := ErrSet{Name: "probes"}
		for _, p := range c.Probes {
			set.Prompts = append(set.Prompts, p.Prompt)
			set.Steps = max(set.Steps, p.AnswerEnd-p.AnswerStart+1)
		}
		sets = []ErrSet{set}
	}
	for i, s := range sets {
		if len(s.Prompts) == 0 || s.Steps < 1 {
			return nil, nil, fmt.Errorf("calibrate: error set %d (%q): %d prompts x %d steps: %w", i, s.Name, len(s.Prompts), s.Steps, compresskv.ErrConfig)
		}
	}

	rep := &Report{Probes: len(c.Probes)}
	t0 := time.Now()
	rec, err := heads.NewRecorder(info.Layers, info.QueryHeads, heads.Options{Mode: c.Mode})
	if err != nil {
		return nil, nil, fmt.Errorf("calibrate: %w", err)
	}
	group := map[string]int{}
	var attn [][][]float32
	for i := range c.Probes {
		p := &c.Probes[i]
		right, err := runProbe(ctx, m, rec, c.Tokenizer, p, &attn)
		if err != nil {
			return nil, nil, fmt.Errorf("calibrate: probe %d: %w", i, err)
		}
		g, ok := group[p.Group]
		if !ok {
			g = len(rep.Groups)
			group[p.Group] = g
			rep.Groups = append(rep.Groups, GroupCount{Group: p.Group})
		}
		rep.Groups[g].Probes++
		if right {
			rep.Answered++
			rep.Groups[g].Answered++
		}
		if c.Progress != nil {
			c.Progress(Progress{Phase: "probes", Done: i + 1, Total: len(c.Probes), Answered: rep.Answered})
		}
	}
	rep.ProbeTime = time.Since(t0)
	if rep.Answered < need {
		return nil, rep, fmt.Errorf("calibrate: %d of %d probes answered with the full cache, %d needed: %w; "+
			"the heads that retrieve are found only from probes the model gets right, so try probes it can answer "+
			"(shorter prompts, a wording from its training data, facts it copies: NewProbe), check that the tokenizer "+
			"matches the model, or lower MinAnswered", rep.Answered, rep.Probes, need, ErrTooFewProbes)
	}
	prof, err := compresskv.NewProfile(info, rec.SR(), rec.Retrieval(), nil)
	if err != nil {
		return nil, rep, fmt.Errorf("calibrate: %w", err)
	}

	t1 := time.Now()
	policy, err := compresskv.New(compresskv.CompressKV, withProfile(shadowCfg, prof))
	if err != nil {
		return nil, rep, fmt.Errorf("calibrate: shadow policy: %w", err)
	}
	total := 0
	for _, s := range sets {
		total += len(s.Prompts)
	}
	sums := make([][]float64, len(sets))
	done := 0
	for si, s := range sets {
		acc, err := alloc.NewErrorAccumulator(info.Layers)
		if err != nil {
			return nil, rep, err
		}
		for pi, prompt := range s.Prompts {
			if err := shadowRun(ctx, m, policy, info, prompt, s.Steps, acc); err != nil {
				return nil, rep, fmt.Errorf("calibrate: error set %q prompt %d: %w", s.Name, pi, err)
			}
			done++
			if c.Progress != nil {
				c.Progress(Progress{Phase: "layer error", Done: done, Total: total, Answered: rep.Answered})
			}
		}
		sums[si] = acc.Sums()
		rep.ErrSets = append(rep.ErrSets, fmt.Sprintf("%s (%d prompts x %d steps)", s.Name, len(s.Prompts), s.Steps))
	}
	w, err := alloc.Average(sums)
	if err != nil {
		return nil, rep, fmt.Errorf("calibrate: layer weights: %w", err)
	}
	prof.LayerWeights = w
	rep.ErrorTime = time.Since(t1)

	var groups []string
	for _, g := range rep.Groups {
		if g.Group != "" {
			groups = append(groups, fmt.Sprintf("%s: %d/%d", g.Group, g.Answered, g.Probes))
		}
	}
	prof.Notes = map[string]string{
		"probes":      fmt.Sprintf("%d probes, %d answered with the full cache and counted (%s)", rep.Probes, rep.Answered, c.Mode),
		"layer_error": fmt.Sprintf("shadow eviction at a uniform budget of %d, CompressKV token selection; data sets: %s", policy.Config().Budget, strings.Join(rep.ErrSets, "; ")),
	}
	if len(groups) > 0 {
		prof.Notes["probe_summary"] = strings.Join(groups, ", ")
	}
	if err := prof.Validate(); err != nil {
		return nil, rep, fmt.Errorf("calibrate: %w", err)
	}
	return prof, rep, nil
}

// withProfile returns cfg with p as its profile.
func withProfile(cfg compresskv.Config, p *compresskv.Profile) compresskv.Config {
	cfg.Profile = p
	return cfg
}

// identityProfile is a placeholder ranking used only to validate the shadow
// configuration before any head is scored.
func identityProfile(info compresskv.ModelInfo) *compresskv.Profile {
	r := make([][]int, info.Layers)
	for l := range r {
		r[l] = make([]int, info.QueryHeads)
		for h := range r[l] {
			r[l][h] = h
		}
	}
	return &compresskv.Profile{Version: compresskv.ProfileVersion, Model: info, HeadRanking: r}
}

// runProbe decodes one probe greedily with the full cache, recording every
// step, and reports whether the answer was right.
func runProbe(ctx context.Context, m Model, rec *heads.Recorder, tok Tokenizer, p *Probe, attn *[][][]float32) (right bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	run, err := m.Start(ctx, p.Prompt)
	if err != nil {
		return false, err
	}
	defer func() {
		if cerr := run.Close(); err == nil {
			err = cerr
		}
	}()
	if err := rec.BeginTrial(p.Prompt, p.AnswerStart, p.AnswerEnd); err != nil {
		return false, err
	}
	defer func() {
		if rec.InTrial() {
			if eerr := rec.EndTrial(right && err == nil); err == nil {
				err = eerr
			}
		}
	}()
	var out []int
	prevText := ""
	for limit := p.maxTokens(); ; {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		y := run.Next()
		if *attn, err = run.Attention(*attn); err != nil {
			return false, err
		}
		if err := rec.Step(y, *attn); err != nil {
			return false, err
		}
		out = append(out, y)
		text := tok.Decode(out)
		ended := text == prevText || len(out) >= limit // a token without text ends the answer
		prevText = text
		ok, decided := judge(text, p.Answer, ended)
		if decided {
			return ok, nil
		}
		if err := run.Decode(ctx, y); err != nil {
			return false, err
		}
	}
}

// shadowRun runs prompt, plans the shadow eviction with policy, and decodes
// steps tokens greedily, adding each layer's relative output error to acc.
func shadowRun(ctx context.Context, m Model, policy *compresskv.Policy, info compresskv.ModelInfo, prompt []int, steps int, acc *alloc.ErrorAccumulator) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	run, err := m.Start(ctx, prompt)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := run.Close(); err == nil {
			err = cerr
		}
	}()
	cache, q, err := run.Prompt(policy.Config().Window)
	if err != nil {
		return err
	}
	plan, err := policy.Plan(ctx, cache, q, info.QueryHeads)
	if err != nil {
		return err
	}
	if err := run.Shadow(plan.Keep); err != nil {
		return err
	}
	for i := 0; i < steps; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := run.Decode(ctx, run.Next()); err != nil {
			return err
		}
		full, shadow, err := run.Outputs()
		if err != nil {
			return err
		}
		if len(full) != info.Layers || len(shadow) != info.Layers {
			return fmt.Errorf("outputs for %d and %d layers, model has %d: %w", len(full), len(shadow), info.Layers, kvcache.ErrShape)
		}
		for l := range full {
			if err := acc.Add(l, shadow[l], full[l]); err != nil {
				return err
			}
		}
	}
	return nil
}
