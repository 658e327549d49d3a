// Command logits prints what a GGUF model computes for a prompt, in a fixed
// format that other tools compare (tools/ggufgold's program prints
// llama.cpp's output in the same one):
//
//	prompt_ids id id ...
//	last_logits v v ...                      every vocabulary entry, %.6g
//	step S id I top5 i:v i:v i:v i:v i:v     S = 0 .. steps-1
//
// The prompt is tokenized by the model's own tokenizer with special tokens
// parsed, BOS added where the metadata says so (-bos=false never adds it),
// and prefilled in chunks of -chunk tokens. Step S's token I is the argmax
// (ties to the lower id) of the logits step S reads: step 0 reads the
// prompt's last logits, step S > 0 the logits after decoding step S-1's
// token; top5 lists those logits' five largest, value descending then id
// ascending. It only parses flags; llama.WriteLogits runs the model.
//
//	go run ./examples/logits -model M.gguf -prompt "Once upon a time" -steps 12
//
// The cache stores float16 by default, as llama.cpp's does, and the model
// computes as llama.cpp does (llama.Session.LikeLlamaCpp) unless -backend
// asks for the CPU backend's faster float32 attention.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"

	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/kvcache"
)

func main() {
	log.SetFlags(0)
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		log.Fatal(err)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("logits", flag.ContinueOnError)
	fs.SetOutput(stderr)
	model := fs.String("model", "", "GGUF model file")
	prompt := fs.String("prompt", "", "prompt text")
	promptFile := fs.String("prompt-file", "", "file holding the prompt text (instead of -prompt)")
	steps := fs.Int("steps", 0, "greedy steps to print")
	bos := fs.Bool("bos", true, "add BOS where the model's metadata says so")
	cacheType := fs.String("cache", "float16", "KV cache storage: float32, float16 or bfloat16")
	chunk := fs.Int("chunk", 512, "prefill chunk in tokens")
	backend := fs.Bool("backend", false, "attend on the CPU backend in float32 (faster) instead of as llama.cpp does")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("logits: unexpected arguments %q", fs.Args())
	case *model == "":
		return errors.New("logits: -model is required")
	case *steps < 0 || *chunk < 1:
		return fmt.Errorf("logits: -steps %d and -chunk %d: steps must not be negative, chunks must be positive", *steps, *chunk)
	case *promptFile != "" && *prompt != "":
		return errors.New("logits: -prompt and -prompt-file both given")
	}
	text := *prompt
	if *promptFile != "" {
		b, err := os.ReadFile(*promptFile)
		if err != nil {
			return err
		}
		text = string(b)
	}
	dt, err := kvcache.ParseDType(*cacheType)
	if err != nil {
		return err
	}
	m, v, err := llama.OpenGGUF(*model)
	if err != nil {
		return err
	}
	defer m.Close()
	return llama.WriteLogits(stdout, m, v, text, llama.LogitsOptions{Steps: *steps, NoBOS: !*bos, Cache: dt, Chunk: *chunk, Backend: *backend})
}
