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
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/compresskv/compresskv/compresskv"
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
	modelPath := fs.String("model", llama.DefaultModel, "llama2.c checkpoint")
	tokPath := fs.String("tokenizer", "", "llama2.c tokenizer (empty: byte-level)")
	profPath := fs.String("profile", llama.DefaultProfile, "CompressKV profile (needed only for compresskv)")
	textPath := fs.String("text", "testdata/haystack/eval.txt", "held-out text")
	length := fs.Int("length", 1024, "prompt tokens")
	steps := fs.Int("steps", 32, "teacher-forced tokens after the prompt")
	samples := fs.Int("samples", 8, "prompts")
	budgetList := fs.String("budgets", "16,32,64,128", "average budgets per layer")
	kernel := fs.Int("kernel", llama.DefaultKernel, "pooling kernel of SnapKV, PyramidKV, Ada-KV and CompressKV")
	policyList := fs.String("policies", "streamingllm,h2o,snapkv,pyramidkv,adakv,compresskv", "policies")
	probeKind := fs.String("probes", "", "also a retrieval comparison on probes of this kind: stories (character names)")
	sentenceList := fs.String("sentences", "3,6", "story probes: sentences between the name and the cue")
	leadList := fs.String("leads", "0,4,8", "story probes: sentences before the girl is named")
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
	m, tok, err := llama.Open(*modelPath, *tokPath)
	if err != nil {
		return err
	}
	text, err := niah.LoadHaystack(*textPath)
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
			ids := tok.Encode(text[off:min(len(text), off+span)], false, false)
			if len(ids) >= need {
				seqs[i] = append([]int{llama.BOS}, ids[:need]...)
				break
			}
			if off+span >= len(text) {
				return fmt.Errorf("%s is too short for %d samples of %d tokens", *textPath, *samples, need+1)
			}
		}
	}
	budgets, err := niah.ParseInts(*budgetList)
	if err != nil {
		return fmt.Errorf("budgets: %w", err)
	}
	var methods []compresskv.Method
	for _, f := range strings.Split(*policyList, ",") {
		meth, err := compresskv.ParseMethod(strings.TrimSpace(f))
		if err != nil {
			return err
		}
		methods = append(methods, meth)
	}
	var prof *compresskv.Profile
	for _, meth := range methods {
		if meth == compresskv.CompressKV {
			if prof, err = compresskv.LoadProfile(*profPath); err != nil {
				return fmt.Errorf("compresskv needs a profile: %w", err)
			}
		}
	}
	kl := map[compresskv.Method][]float64{}
	start := time.Now()
	for i := 0; i < *samples; i++ {
		prompt, next := seqs[i][:*length], seqs[i][*length:]
		cache, _ := m.NewCache(kvcache.Float32)
		s, _ := m.NewSession(cache, nil)
		_, q, err := s.Prefill(prompt, 256)
		if err != nil {
			return err
		}
		prefilled := cache.Clone()
		full, err := forced(s, next)
		if err != nil {
			return err
		}
		for _, meth := range methods {
			if kl[meth] == nil {
				kl[meth] = make([]float64, len(budgets))
			}
			for bi, b := range budgets {
				p, err := compresskv.New(meth, compresskv.Config{Budget: b, Kernel: *kernel, Profile: prof})
				if err != nil {
					return err
				}
				cs, _ := m.NewSession(prefilled.Clone(), nil)
				if _, err := cs.Compress(context.Background(), p, q); err != nil {
					return err
				}
				comp, err := forced(cs, next)
				if err != nil {
					return err
				}
				for t := range full {
					kl[meth][bi] += llama.KL(full[t], comp[t]) / float64(len(full)**samples)
				}
			}
		}
	}
	fmt.Fprintf(stdout, "mean KL(full || compressed) of next-token distributions: %s, %d samples of %d prompt tokens + %d teacher-forced, %.0fs\n",
		*modelPath, *samples, *length, *steps, time.Since(start).Seconds())
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "policy\t")
	for _, b := range budgets {
		fmt.Fprintf(tw, "%d\t", b)
	}
	fmt.Fprintln(tw)
	for _, meth := range methods {
		fmt.Fprintf(tw, "%s\t", meth)
		for bi := range budgets {
			fmt.Fprintf(tw, "%.4f\t", kl[meth][bi])
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil || *probeKind == "" {
		return err
	}
	sentences, err := niah.ParseInts(*sentenceList)
	if err != nil {
		return fmt.Errorf("sentences: %w", err)
	}
	fmt.Fprintln(stdout)
	leads, err := niah.ParseCounts(*leadList)
	if err != nil {
		return fmt.Errorf("leads: %w", err)
	}
	return retrieval(stdout, m, tok, methods, budgets, *kernel, prof, leads, sentences, *per, *seed)
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
