// Command fidelity measures how far each policy moves a model's next-token
// distributions: on held-out text, a prompt of -length tokens is prefilled,
// the cache compressed, and the following -steps tokens of the text are fed
// one by one; the mean KL divergence KL(full || compressed) of the
// next-token distributions is reported per policy and budget. With
// -probes stories it also runs a retrieval comparison: character-name
// probes (evaluation names and filler, disjoint from calibration's)
// answered under each policy and budget.
//
//	go run ./examples/fidelity                       # the project's model on testdata/haystack/eval.txt
//	go run ./examples/fidelity -model ../shared/models/stories260K/stories260K.bin \
//	    -tokenizer ../shared/models/stories260K/tok512.bin -length 384 -kernel 5 -budgets 16,32,64 \
//	    -profile out/stories260K.profile.json -probes stories
//	go run ./examples/fidelity -model qwen2.5-1.5b-instruct-q8_0.gguf -profile out/qwen2.5-1.5b-instruct-q8_0.profile.json
//
// A GGUF file's text is its own tokenizer's, BOS first where its metadata
// says; story probes are plain text (no chat template).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/examples/internal/cli"
	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/examples/niah"
	"github.com/compresskv/compresskv/kvcache"
)

func main() {
	log.SetFlags(0)
	err := run(os.Args[1:], os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		log.Fatal(err)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("fidelity", flag.ContinueOnError)
	mf := cli.AddModelFlags(fs)
	textPath := fs.String("text", "testdata/haystack/eval.txt", "held-out text")
	length := fs.Int("length", 1024, "prompt tokens")
	steps := fs.Int("steps", 32, "teacher-forced tokens after the prompt")
	samples := fs.Int("samples", 8, "prompts")
	budgets := cli.Ints(fs, "budgets", "16,32,64,128", "average budgets per layer")
	methods := cli.Methods(fs, "policies", "streamingllm,h2o,snapkv,pyramidkv,adakv,compresskv", "policies")
	probeKind := fs.String("probes", "", "also a retrieval comparison on probes of this kind: stories (character names)")
	sentences := cli.Ints(fs, "sentences", "3,6", "story probes: sentences between the name and the cue")
	leads := cli.Counts(fs, "leads", "0,4,8", "story probes: sentences before the girl is named")
	per := fs.Int("per", 64, "story probes per lead and sentence count")
	seed := fs.Uint64("seed", 101, "story probe seed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *probeKind != "" && *probeKind != "stories" {
		return fmt.Errorf("unknown probe kind %q (want stories)", *probeKind)
	}
	m, err := mf.Open()
	if err != nil {
		return err
	}
	defer m.Close()
	if s := m.Summary(); s != "" {
		fmt.Fprintln(stdout, s)
	}
	tok := m.Tok
	text, err := niah.LoadHaystack(cli.Path(*textPath))
	if err != nil {
		return err
	}
	// Encode one slice of text per sample (BPE merging is quadratic in the
	// length of what it encodes), at evenly spaced offsets.
	need := *length + *steps - 1
	seqs := make([][]int, *samples)
	for i := range seqs {
		off := i * len(text) / *samples
		for span := 2 * need; ; span *= 2 {
			ids, err := tok.Encode(text[off:min(len(text), off+span)], false, false)
			if err != nil {
				return err
			}
			if len(ids) >= need {
				seqs[i] = append(m.BOS(), ids[:need]...)
				break
			}
			if off+span >= len(text) {
				return fmt.Errorf("%s is too short for %d samples of %d tokens", *textPath, *samples, need+1)
			}
		}
	}
	g, err := mf.Grid(m, *methods, *budgets)
	if err != nil {
		return err
	}
	kl := map[compresskv.Method][]float64{}
	start := time.Now()
	for i := 0; i < *samples; i++ {
		prompt, next := seqs[i][:*length], seqs[i][*length:]
		pre, err := cli.Prefill(m.Model, kvcache.Float32, prompt)
		if err != nil {
			return err
		}
		full, err := forced(pre.Full(), next)
		if err != nil {
			return err
		}
		err = g.Each(func(meth compresskv.Method, bi int, p *compresskv.Policy) error {
			if kl[meth] == nil {
				kl[meth] = make([]float64, len(g.Budgets))
			}
			cs, _, err := pre.Compress(context.Background(), p)
			if err != nil {
				return err
			}
			comp, err := forced(cs, next)
			if err != nil {
				return err
			}
			for t := range full {
				kl[meth][bi] += llama.KL(full[t], comp[t]) / float64(len(full)**samples)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "mean KL(full || compressed) of next-token distributions: %s, %d samples of %d prompt tokens + %d teacher-forced, %.0fs\n",
		m.Path, *samples, *length, *steps, time.Since(start).Seconds())
	err = g.Table(stdout, nil, func(meth compresskv.Method, bi int) string { return fmt.Sprintf("%.4f", kl[meth][bi]) })
	if err != nil || *probeKind == "" {
		return err
	}
	fmt.Fprintln(stdout)
	return retrieval(stdout, m, g, *leads, *sentences, *per, *seed)
}

// forced feeds tokens one by one and returns the logits after each.
func forced(s *llama.Session, tokens []int) ([][]float32, error) {
	out := make([][]float32, len(tokens))
	for i, t := range tokens {
		lg, err := s.Forward([]int{t})
		if err != nil {
			return nil, err
		}
		out[i] = lg
	}
	return out, nil
}
