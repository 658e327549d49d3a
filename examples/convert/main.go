// Command convert writes a llama2.c checkpoint and its tokenizer as a GGUF
// file of the llama architecture (float32 weights, a SentencePiece-style
// vocabulary), which the runner's GGUF path and llama.cpp run to the same
// logits as the checkpoint. It only parses flags; the conversion is
// cli.Convert (llama.Model.WriteGGUF). Like the other examples it runs from
// any directory: relative paths are also looked for under the repository.
//
//	go run ./examples/convert                                   # the project's model -> out/retrieval.gguf
//	go run ./examples/convert -model ../shared/models/stories260K/stories260K.bin \
//	    -tokenizer ../shared/models/stories260K/tok512.bin -out out/stories260K.gguf
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/compresskv/compresskv/examples/internal/cli"
	"github.com/compresskv/compresskv/examples/llama"
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
	fs := flag.NewFlagSet("convert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	model := fs.String("model", llama.DefaultModel, "llama2.c checkpoint")
	tokPath := fs.String("tokenizer", "", "llama2.c tokenizer (empty: the byte-level tokenizer of the project's models)")
	out := fs.String("out", "", "GGUF file to write (empty: out/<model name>.gguf)")
	name := fs.String("name", "", "the file's general.name (empty: the model's file name without extension)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("convert: unexpected arguments %q", fs.Args())
	}
	base := strings.TrimSuffix(filepath.Base(*model), filepath.Ext(*model))
	if *name == "" {
		*name = base
	}
	if *out == "" {
		*out = filepath.Join("out", base+".gguf")
	}
	m, n, err := cli.Convert(*model, *tokPath, *out, *name)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %s model, %d layers, dim %d, vocabulary %d, %d bytes\n", *out, *name, m.Layers, m.Dim, m.Vocab, n)
	return nil
}
