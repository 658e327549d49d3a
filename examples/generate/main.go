// Command generate runs a Llama-architecture model over a compressed KV cache:
// it prefills a prompt with full attention, compresses the cache with the
// chosen policy and budget, then decodes greedily or by sampling, and prints
// the text, prefill and decode speed, and the cache bytes before and after.
//
//	go run ./examples/generate -policy snapkv -budget 64
//	go run ./examples/generate -model ../shared/models/stories260K/stories260K.bin \
//	    -tokenizer ../shared/models/stories260K/tok512.bin -prompt "Once upon a time" -policy snapkv -budget 16
package main

import (
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
	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/kvcache"
)

func main() {
	log.SetFlags(0)
	if err := run(os.Args[1:], os.Stdout); err != nil && !errors.Is(err, flag.ErrHelp) { // -h prints the flags and succeeds
		log.Fatal(err)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	var (
		modelPath = fs.String("model", llama.DefaultModel, "llama2.c checkpoint")
		tokPath   = fs.String("tokenizer", "", "llama2.c tokenizer (empty: the byte-level tokenizer of the project's model)")
		profPath  = fs.String("profile", llama.DefaultProfile, "profile JSON for CompressKV (SR heads, layer weights)")
		prompt    = fs.String("prompt", "In the beginning God created the heaven and the earth. The special magic number for amber is 40713. And the earth was without form, and void; and darkness was upon the face of the deep.\nWhat is the special magic number for amber? The special magic number for amber is ", "prompt text (the project's model was trained with the question on a new line)")
		steps     = fs.Int("n", 16, "tokens to generate")
		method    = fs.String("policy", "compresskv", "full, streamingllm, h2o, snapkv, pyramidkv, adakv or compresskv")
		budget    = fs.Int("budget", 32, "average tokens kept per layer (window included)")
		window    = fs.Int("window", compresskv.DefaultWindow, "observation window")
		kernel    = fs.Int("kernel", llama.DefaultKernel, "pooling kernel (the project's byte-level model; 5 suits subword tokenizers)")
		dtype     = fs.String("dtype", "f32", "cache storage: f32, f16, bf16")
		temp      = fs.Float64("temp", 0, "sampling temperature (0: greedy)")
		seed      = fs.Uint64("seed", 1, "sampling seed")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	m, tok, err := llama.Open(*modelPath, *tokPath)
	if err != nil {
		return err
	}
	meth, err := compresskv.ParseMethod(*method)
	if err != nil {
		return err
	}
	cfg := compresskv.Config{Budget: *budget, Window: *window, Kernel: *kernel}
	if meth == compresskv.CompressKV {
		if cfg.Profile, err = compresskv.LoadProfile(*profPath); err != nil {
			return fmt.Errorf("CompressKV needs a profile: %w", err)
		}
	}
	policy, err := compresskv.New(meth, cfg)
	if err != nil {
		return err
	}
	dt, err := kvcache.ParseDType(*dtype)
	if err != nil {
		return err
	}
	cache, err := m.NewCache(dt)
	if err != nil {
		return err
	}
	s, err := m.NewSession(cache, nil)
	if err != nil {
		return err
	}
	ids := tok.Encode(*prompt, true, false)
	t0 := time.Now()
	logits, q, err := s.Prefill(ids, 256)
	if err != nil {
		return err
	}
	prefill := time.Since(t0)
	res, err := s.Compress(policy, q)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(*seed, 1))
	var out []int
	t1 := time.Now()
	for len(out) < *steps {
		next := pick(logits, *temp, rng)
		if next == llama.EOS {
			break
		}
		out = append(out, next)
		if logits, err = s.Forward([]int{next}); err != nil {
			return err
		}
	}
	decode := time.Since(t1)
	fmt.Fprintf(stdout, "%s%s\n\n", *prompt, tok.Decode(out))
	fmt.Fprintf(stdout, "model %s: %d layers, %d query / %d KV heads, d=%d\n", *modelPath, m.Layers, m.Heads, m.KVHeads, m.HeadDim())
	fmt.Fprintf(stdout, "prefill: %d tokens, %.0f tokens/s\n", len(ids), float64(len(ids))/prefill.Seconds())
	fmt.Fprintf(stdout, "decode:  %d tokens, %.0f tokens/s\n", len(out), float64(len(out))/decode.Seconds())
	fmt.Fprintf(stdout, "cache (%s, budget %d, %v): %d bytes after prefill, %d after compression (%.1f%%)\n",
		policy.Name(), *budget, dt, res.BytesBefore, res.BytesAfter, 100*float64(res.BytesAfter)/float64(res.BytesBefore))
	if res.Note != "" {
		fmt.Fprintf(stdout, "note: %s\n", res.Note)
	}
	return nil
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
