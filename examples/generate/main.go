// Command generate runs a Llama-architecture model over a compressed KV cache:
// it prefills a prompt with full attention, compresses the cache with the
// chosen policy and budget, then decodes greedily or by sampling, and prints
// the text, prefill and decode speed (tokens/s; the prefill's without the
// compression, timed apart), and the cache bytes before and after. A prompt
// of more than four chunks reports its progress on standard error, a line
// per chunk.
//
// With -max-cache the cache is bounded from the first token to the last
// (compresskv.Stream): the prompt is prefilled in chunks of -chunk tokens,
// and a layer is compressed back to -max-cache tokens whenever it holds
// more than -max-cache + -chunk + slack, during the prefill and during
// decoding; the peak bytes the cache reserved are printed.
//
//	go run ./examples/generate -policy snapkv -budget 64
//	go run ./examples/generate -policy snapkv -max-cache 64 -chunk 64
//	go run ./examples/generate -model ../shared/models/stories260K/stories260K.bin \
//	    -tokenizer ../shared/models/stories260K/tok512.bin -prompt "Once upon a time" -policy snapkv -budget 16
//	go run ./examples/generate -model qwen2.5-1.5b-instruct-q8_0.gguf -prompt "Why is the sky blue?" \
//	    -n 200 -policy compresskv -profile out/qwen2.5-1.5b-instruct-q8_0.profile.json -budget 128
//
// A GGUF file's prompt is tokenized as llama.cpp tokenizes one (special
// tokens parsed, BOS where the metadata says) and, where the file has a chat
// template (-chat), written as a user turn and the assistant's opening;
// decoding stops at the model's end-of-generation tokens.
//
// "generate quality needle" and "generate quality decode" measure what the
// bound costs (see quality.go and docs/RESULTS.md). A method that needs a
// profile (compresskv, adacompresskv) reads -profile, which must be the
// model's: the project's own for its model; for another, make one with
// examples/calibrate, or pick a method that needs none.
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
	"time"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/examples/internal/cli"
	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/kvcache"
)

func main() {
	log.SetFlags(0)
	if err := run(os.Args[1:], os.Stdout); err != nil && !errors.Is(err, flag.ErrHelp) { // -h prints the flags and succeeds
		log.Fatal(err)
	}
}

// usage is the -h text: the flags, then the subcommands.
const usage = `usage: generate [flags]
       generate quality needle [flags]   needle accuracy, streaming against one-shot compression
       generate quality decode [flags]   a long decode over a bounded cache against the full cache
("generate quality KIND -h" lists a subcommand's flags.)
`

func run(args []string, stdout io.Writer) error {
	if len(args) >= 1 && args[0] == "quality" {
		if len(args) < 2 {
			return fmt.Errorf("generate quality: want needle or decode")
		}
		return quality(args[1], args[2:], stdout)
	}
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	mf := cli.AddModelFlags(fs)
	var (
		prompt   = fs.String("prompt", "In the beginning God created the heaven and the earth. The special magic number for amber is 40713. And the earth was without form, and void; and darkness was upon the face of the deep.\nWhat is the special magic number for amber? The special magic number for amber is ", "prompt text (the project's model was trained with the question on a new line)")
		steps    = fs.Int("n", 16, "tokens to generate")
		method   = fs.String("policy", "compresskv", "one of "+cli.MethodsUsage())
		budget   = fs.Int("budget", 32, "average tokens kept per layer (window included)")
		window   = fs.Int("window", compresskv.DefaultWindow, "observation window")
		dtype    = fs.String("dtype", "f32", "cache storage: f32, f16, bf16")
		temp     = fs.Float64("temp", 0, "sampling temperature (0: greedy)")
		seed     = fs.Uint64("seed", 1, "sampling seed")
		chunk    = fs.Int("chunk", 256, "prefill chunk in tokens")
		maxCache = fs.Int("max-cache", 0, "bound the cache while it runs: tokens kept per layer after each compression, during the prefill and the decode (0: compress once after the prefill, to -budget)")
		slack    = fs.Int("slack", 0, "with -max-cache: tokens a layer gathers beyond -max-cache and one chunk before it is compressed again (0: the window; negative: none)")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (subcommands come first: generate quality needle|decode)", fs.Args())
	}
	m, err := mf.Open()
	if err != nil {
		return err
	}
	defer m.Close()
	meth, err := compresskv.ParseMethod(*method)
	if err != nil {
		return err
	}
	if *chunk < 1 {
		return fmt.Errorf("-chunk %d: want at least 1", *chunk)
	}
	if *maxCache < 0 {
		return fmt.Errorf("-max-cache %d: want 0 (off) or a budget", *maxCache)
	}
	streaming := *maxCache > 0
	if streaming {
		*budget = *maxCache
	}
	cfg := compresskv.Config{Budget: *budget, Window: *window, Kernel: m.Kernel(mf.Kernel), Rotary: m.Rotary()}
	if cfg.Profile, err = mf.ProfileFor(m, meth); err != nil {
		return err
	}
	policy, err := compresskv.New(meth, cfg)
	if err != nil {
		return err
	}
	dt, err := kvcache.ParseDType(*dtype)
	if err != nil {
		return err
	}
	ids, err := m.EncodePrompt(*prompt)
	if err != nil {
		return err
	}
	var (
		s      *llama.Session
		stream *compresskv.Stream
		res    *compresskv.Result
		cache  *kvcache.Host
		logits []float32
		peak   int64 // one-shot: the cache's reserved bytes after the prefill
	)
	t0 := time.Now()
	var prefillTime, compressTime time.Duration
	if streaming {
		if s, stream, err = newStreamSession(context.Background(), m.Model, policy, dt, *chunk, *slack); err != nil {
			return err
		}
		showProgress(s, len(ids), *chunk, t0, os.Stderr)
		if logits, err = prefill(s, ids, *chunk); err != nil {
			return err
		}
		prefillTime = time.Since(t0)
	} else {
		if cache, err = m.NewCache(dt); err != nil {
			return err
		}
		if s, err = m.NewSession(cache, nil); err != nil {
			return err
		}
		showProgress(s, len(ids), *chunk, t0, os.Stderr)
		var q [][]float32
		if logits, q, err = s.Prefill(ids, *chunk); err != nil {
			return err
		}
		prefillTime = time.Since(t0)
		peak = cache.Reserved()
		t1 := time.Now()
		if res, err = s.Compress(context.Background(), policy, q); err != nil {
			return err
		}
		compressTime = time.Since(t1)
	}
	rng := rand.New(rand.NewPCG(*seed, 1))
	var out []int
	eog := -1 // the end-of-generation token that stopped decoding
	t1 := time.Now()
	for len(out) < *steps {
		next := pick(logits, *temp, rng)
		if m.IsEOG(next) {
			eog = next
			break
		}
		out = append(out, next)
		if logits, err = s.Forward([]int{next}); err != nil {
			return err
		}
	}
	decode := time.Since(t1)
	fmt.Fprintf(stdout, "%s%s\n\n", *prompt, m.Tok.Decode(out))
	if sum := m.Summary(); sum != "" {
		fmt.Fprintln(stdout, sum)
	} else {
		fmt.Fprintf(stdout, "model %s: %d layers, %d query / %d KV heads, d=%d\n", m.Path, m.Layers, m.Heads, m.KVHeads, m.HeadDim())
	}
	fmt.Fprintf(stdout, "prefill: %d tokens, %.1f tokens/s", len(ids), float64(len(ids))/prefillTime.Seconds())
	if !streaming {
		fmt.Fprintf(stdout, " (then compression, %.2f ms)", float64(compressTime.Microseconds())/1e3)
	}
	fmt.Fprintf(stdout, "\ndecode:  %d tokens, %.1f tokens/s\n", len(out), float64(len(out))/decode.Seconds())
	if eog >= 0 {
		fmt.Fprintf(stdout, "stopped at %s (token %d), an end-of-generation token\n", m.TokenText(eog), eog)
	}
	if streaming {
		st := stream.Stats()
		fmt.Fprintf(stdout, "cache (%s, streaming: max-cache %d, chunk %d, slack %d, %v): %d bytes at the end, peak %d bytes reserved (bound %d rows per KV head per layer), %d layer compressions\n",
			policy.Name(), *maxCache, *chunk, stream.Config().Slack, dt, s.Cache().Bytes(), st.PeakReserved, stream.Bound(0), st.Compressions)
	} else {
		fmt.Fprintf(stdout, "cache (%s, budget %d, %v): %d bytes after prefill, %d after compression (%.1f%%), peak %d bytes reserved\n",
			policy.Name(), *budget, dt, res.BytesBefore, res.BytesAfter, 100*float64(res.BytesAfter)/float64(res.BytesBefore), max(peak, cache.Reserved()))
		if res.Note != "" {
			fmt.Fprintf(stdout, "note: %s\n", res.Note)
		}
	}
	return nil
}

// showProgress reports a long prefill's progress on w, a line per chunk,
// when the prompt is more than four chunks: a prompt of thousands of tokens
// takes minutes on a CPU. It chains the session's Query hook, which runs
// once per layer per chunk (layer 0 marks the start of a chunk, pos0 the
// tokens done).
func showProgress(s *llama.Session, total, chunk int, t0 time.Time, w io.Writer) {
	if total <= 4*chunk {
		return
	}
	prev := s.Hooks.Query
	s.Hooks.Query = func(layer, pos0 int, q []float32) {
		if prev != nil {
			prev(layer, pos0, q)
		}
		if layer == 0 && pos0 > 0 && pos0 < total {
			fmt.Fprintf(w, "prefill: %d of %d tokens, %.1f tokens/s\n", pos0, total, float64(pos0)/time.Since(t0).Seconds())
		}
	}
}

// pick returns the argmax at temperature 0, else a sample from the
// softmax of logits/temp.
func pick(logits []float32, temp float64, rng *rand.Rand) int {
	if temp <= 0 {
		return llama.Argmax(logits)
	}
	mx := logits[llama.Argmax(logits)]
	p := make([]float64, len(logits))
	z := 0.0
	for i, v := range logits {
		p[i] = math.Exp(float64(v-mx) / temp)
		z += p[i]
	}
	r := rng.Float64() * z
	for i, v := range p {
		if r -= v; r <= 0 {
			return i
		}
	}
	return len(p) - 1
}
