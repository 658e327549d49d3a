// Command calibrate makes the CompressKV profile of a model through
// calibrate.Profile: the semantic retrieval heads of every layer, found
// from probes the model answers, and the layer weights of the error-aware
// budget allocation, measured as the shadow eviction error of each layer at
// a small uniform budget. It only parses flags, builds the probes and prints.
//
//	go run ./examples/calibrate                      # the project's model -> out/retrieval.profile.json
//	go run ./examples/calibrate -check testdata/retrieval.profile.json
//	go run ./examples/calibrate -probes stories -model ../shared/models/stories260K/stories260K.bin \
//	    -tokenizer ../shared/models/stories260K/tok512.bin -out out/stories260K.profile.json
//	go run ./examples/calibrate -model qwen2.5-1.5b-instruct-q8_0.gguf -quick
//	                                                 # -> out/qwen2.5-1.5b-instruct-q8_0.profile.json
//
// Needle probes and calibration text come from testdata/haystack/calib.txt
// with the calibration words of package niah; story probes use niah's
// calibration names and filler: both disjoint from the benchmarks'. The
// probes are built in the model's own tokens; a GGUF model with a chat
// template (-chat) is asked each needle as a user turn, the answer's start
// opening the assistant's.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/compresskv/calibrate"
	"github.com/compresskv/compresskv/examples/internal/cli"
	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/examples/niah"
	"github.com/compresskv/compresskv/heads"
)

func main() {
	log.SetFlags(0)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		log.Fatal(err)
	}
}

type options struct {
	model, tokenizer, chat, haystack, text, out, check string
	probes                                             string
	lengths, textLengths, sentences, leads             []int
	depths, needles, perCell                           int
	budget, steps, textSamples, minAnswered            int
	indicator                                          bool
	kernel                                             int
	seed                                               uint64
}

func parse(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("calibrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	fs.StringVar(&o.model, "model", cli.DefaultModel, cli.ModelUsage)
	fs.StringVar(&o.tokenizer, "tokenizer", "", cli.TokenizerUsage)
	fs.StringVar(&o.chat, "chat", cli.ChatAuto, cli.ChatUsage+" (needle probes: the haystack and the question a user turn, the answer's start the assistant's)")
	fs.StringVar(&o.probes, "probes", "needle", "probe kind: needle (facts with digit values) or stories (a character's name)")
	fs.StringVar(&o.haystack, "haystack", "testdata/haystack/calib.txt", "text the needles are hidden in")
	fs.StringVar(&o.text, "text", "", "plain text for the layer error (empty: the haystack)")
	fs.StringVar(&o.out, "out", "", "profile to write (empty: out/<model>.profile.json)")
	fs.StringVar(&o.check, "check", "", "a profile to compare the result with (rankings, scores, weights)")
	grid := cli.AddNeedleGridFlags(fs)
	textLengths := cli.Ints(fs, "text-lengths", "", "plain-text prompt lengths for the layer error (empty: -lengths, or 128,256 for stories)")
	sentences := cli.Ints(fs, "sentences", "3,6", "story probes: sentences between the name and the cue")
	leads := cli.Counts(fs, "leads", "0,4,8", "story probes: sentences before the girl is named (0: the story opens with her)")
	fs.IntVar(&o.perCell, "per", 16, "story probes per lead and sentence count")
	fs.IntVar(&o.budget, "budget", 32, "uniform budget per layer of the shadow eviction")
	fs.IntVar(&o.steps, "steps", 32, "decode steps per text sample for the layer error")
	fs.IntVar(&o.textSamples, "text-samples", 24, "plain-text samples (and second-set probes) for the layer error")
	fs.IntVar(&o.minAnswered, "min", 0, "fewest probes that must be answered (0: the library's default)")
	fs.BoolVar(&o.indicator, "indicator", false, "count an answer token once (the paper's Eq. 5) instead of once per occurrence")
	fs.Uint64Var(&o.seed, "seed", 7, "probe seed")
	fs.IntVar(&o.kernel, "kernel", 0, fmt.Sprintf("pooling kernel of the shadow eviction (0: for needles the model's, %d for a byte-level model and the library's %d otherwise; %d for stories)", cli.DefaultByteKernel, compresskv.DefaultKernel, compresskv.DefaultKernel))
	quick := fs.Bool("quick", false, "a small grid (lengths 256,512; 5 depths; 1 needle; 6 text samples; 6 stories per cell)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *quick {
		*grid.Lengths, grid.Depths, grid.Needles, o.textSamples, o.perCell = []int{256, 512}, 5, 1, 6, 6
	}
	o.lengths, o.depths, o.needles = *grid.Lengths, grid.Depths, grid.Needles
	o.sentences, o.leads, o.textLengths = *sentences, *leads, *textLengths
	switch o.probes {
	case "needle":
		if len(o.textLengths) == 0 {
			o.textLengths = o.lengths
		}
	case "stories":
		if len(o.textLengths) == 0 {
			o.textLengths = []int{128, 256}
		}
		if o.kernel == 0 {
			o.kernel = compresskv.DefaultKernel
		}
	default:
		return nil, fmt.Errorf("unknown probe kind %q (want needle or stories)", o.probes)
	}
	if o.text == "" {
		o.text = o.haystack
	}
	if o.out == "" {
		o.out = cli.DefaultProfilePath(o.model)
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parse(args, stderr)
	if err != nil {
		return err
	}
	m, err := cli.OpenChat(o.model, o.tokenizer, o.chat)
	if err != nil {
		return err
	}
	defer m.Close()
	if o.kernel == 0 {
		o.kernel = m.Kernel(0)
	}
	if s := m.Summary(); s != "" {
		fmt.Fprintln(stdout, s)
	}
	pt := m.ProbeTokenizer()
	text, err := niah.LoadHaystack(cli.Path(o.text))
	if err != nil {
		return err
	}
	probes, sets, what, err := build(pt, o)
	if terr := pt.Err(); terr != nil {
		return fmt.Errorf("%s: the probes cannot be tokenized: %w", m.Path, terr)
	}
	if err != nil {
		return err
	}
	texts, err := calibrate.TextPrompts(pt, text, o.textLengths, o.textSamples)
	if terr := pt.Err(); terr != nil {
		return fmt.Errorf("%s: the calibration text cannot be tokenized: %w", m.Path, terr)
	}
	if err != nil {
		return err
	}
	if !m.ByteLevel && len(probes) > 0 {
		lo, hi, slo, shi := len(probes[0].Prompt), 0, len(probes[0].Prompt), 0
		for _, p := range probes {
			n, span := len(p.Prompt), p.AnswerEnd-p.AnswerStart
			lo, hi, slo, shi = min(lo, n), max(hi, n), min(slo, span), max(shi, span)
		}
		fmt.Fprintf(stdout, "probe prompts: %d %s probes in the model's tokens, %d to %d tokens; answers of %d to %d tokens\n", len(probes), o.probes, lo, hi, slo, shi)
	}
	sets = append(sets, calibrate.ErrSet{Name: "text", Prompts: texts, Steps: o.steps})
	mode := heads.Multiplicity
	if o.indicator {
		mode = heads.Indicator
	}
	last := ""
	prof, rep, err := calibrate.Profile(ctx, &llama.Calibration{Model: m.Model, Name: o.model}, calibrate.Config{
		Probes: probes, Tokenizer: pt, ErrSets: sets, Mode: mode, MinAnswered: o.minAnswered,
		Shadow: compresskv.Config{Budget: o.budget, Kernel: o.kernel},
		Progress: func(p calibrate.Progress) {
			if p.Phase != last || p.Done == p.Total {
				fmt.Fprintf(stderr, "%s: %d/%d (answered %d)\n", p.Phase, p.Done, p.Total, p.Answered)
				last = p.Phase
			}
		},
	})
	if rep != nil {
		for _, g := range rep.Groups {
			fmt.Fprintf(stdout, "probes %s: %d/%d answered\n", g.Group, g.Answered, g.Probes)
		}
	}
	if errors.Is(err, calibrate.ErrTooFewProbes) {
		return fmt.Errorf("%w; with this command: shorter prompts (-lengths), -probes stories (a character's name) for a model that cannot answer needles, the chat template %s (-chat), or fewer answers required (-min)",
			err, map[bool]string{true: "off", false: "on"}[m.Chat != ""])
	}
	if err != nil {
		return err
	}
	prof.Notes["probe_text"] = what
	prof.Notes["cost"] = fmt.Sprintf("probes %.1f s, layer error %.1f s on %s", rep.ProbeTime.Seconds(), rep.ErrorTime.Seconds(), cpu.New().Name())
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	if err := prof.Save(o.out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: %d of %d probes answered and counted; probes %.1fs, layer error %.1fs\n",
		o.out, rep.Answered, rep.Probes, rep.ProbeTime.Seconds(), rep.ErrorTime.Seconds())
	for l := 0; l < m.Layers; l++ {
		fmt.Fprintf(stdout, "layer %d: weight %.3f, heads by SR score %v\n", l, prof.LayerWeights[l], prof.HeadRanking[l])
	}
	if o.check != "" {
		want, err := compresskv.LoadProfile(cli.Path(o.check))
		if err != nil {
			return err
		}
		diffs := compare(prof, want)
		if len(diffs) == 0 {
			fmt.Fprintf(stdout, "equal to %s: rankings identical, scores and weights within 1e-9\n", o.check)
		} else {
			fmt.Fprintf(stdout, "differs from %s:\n  %s\n", o.check, strings.Join(diffs, "\n  "))
		}
	}
	return nil
}

// build returns the probes and the probe-shaped data set of the layer error
// for the chosen kind, with a note on where they came from.
func build(tok calibrate.Tokenizer, o *options) ([]calibrate.Probe, []calibrate.ErrSet, string, error) {
	switch o.probes {
	case "stories":
		probes, err := niah.StoryProbes(tok, niah.StoryCalibNames, niah.StoryCalibFill, o.leads, o.sentences, o.perCell, o.seed)
		if err != nil {
			return nil, nil, "", err
		}
		more, err := niah.StoryProbes(tok, niah.StoryCalibNames, niah.StoryCalibFill, o.leads, o.sentences, max(1, o.textSamples/(len(o.leads)*len(o.sentences))), o.seed+1)
		if err != nil {
			return nil, nil, "", err
		}
		set := calibrate.ErrSet{Name: "stories"}
		for _, p := range more {
			set.Prompts = append(set.Prompts, p.Prompt)
			set.Steps = max(set.Steps, p.AnswerEnd-p.AnswerStart+1)
		}
		return probes, []calibrate.ErrSet{set}, fmt.Sprintf("character-name stories (niah.StoryCalibNames, niah.StoryCalibFill), leads %v x %v sentences after x %d, seed %d", o.leads, o.sentences, o.perCell, o.seed), nil
	}
	hay, err := niah.LoadHaystack(cli.Path(o.haystack))
	if err != nil {
		return nil, nil, "", err
	}
	probes, err := calibrate.NeedleProbes(tok, calibrate.NeedleGrid{Haystack: hay, Lengths: o.lengths, Depths: o.depths, PerCell: o.needles, Keys: niah.CalibWords, Seed: o.seed})
	if err != nil {
		return nil, nil, "", err
	}
	// The layer error's needle set: other needles, lengths in turn, depths 0..100% in turn.
	needles, err := calibrate.Needles(calibrate.DefaultNeedleTemplates, niah.CalibWords, o.textSamples, 5, o.seed+1)
	if err != nil {
		return nil, nil, "", err
	}
	set := calibrate.ErrSet{Name: "needles", Steps: 6}
	for i, n := range needles {
		p, err := calibrate.BuildNeedle(tok, hay, (i*104729)%len(hay), o.lengths[i%len(o.lengths)], float64(i%11)/10, n)
		if err != nil {
			return nil, nil, "", err
		}
		set.Prompts = append(set.Prompts, p.Prompt)
	}
	return probes, []calibrate.ErrSet{set}, fmt.Sprintf("%s with niah.CalibWords: lengths %v x %d depths x %d needles, seed %d", o.haystack, o.lengths, o.depths, o.needles, o.seed), nil
}

// compare lists the differences between two profiles' rankings, scores and
// layer weights.
func compare(got, want *compresskv.Profile) []string {
	var d []string
	if got.Model.Layers != want.Model.Layers || got.Model.QueryHeads != want.Model.QueryHeads {
		return []string{fmt.Sprintf("shape %+v against %+v", got.Model, want.Model)}
	}
	for l := range got.HeadRanking {
		if fmt.Sprint(got.HeadRanking[l]) != fmt.Sprint(want.HeadRanking[l]) {
			d = append(d, fmt.Sprintf("layer %d ranking %v, want %v", l, got.HeadRanking[l], want.HeadRanking[l]))
		}
	}
	maxDiff := func(name string, a, b [][]float64) {
		if len(b) == 0 {
			return
		}
		worst := 0.0
		for l := range a {
			for h := range a[l] {
				worst = math.Max(worst, math.Abs(a[l][h]-b[l][h]))
			}
		}
		if worst > 1e-9 {
			d = append(d, fmt.Sprintf("%s differ by up to %.3g", name, worst))
		}
	}
	maxDiff("SR scores", got.HeadScores, want.HeadScores)
	maxDiff("retrieval scores", got.RetrievalScores, want.RetrievalScores)
	if len(want.LayerWeights) > 0 {
		maxDiff("layer weights", [][]float64{got.LayerWeights}, [][]float64{want.LayerWeights})
	}
	return d
}
