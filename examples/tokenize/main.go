// Command tokenize prints the token ids a GGUF model's own tokenizer gives a text, as
// llama.cpp's llama_tokenize does (package examples/llama/vocab).
//
//	go run ./examples/tokenize -model V.gguf -tests V.gguf.inp
//	go run ./examples/tokenize -model V.gguf -text "Hello world"
//	go run ./examples/tokenize -model V.gguf -decode "9906 1917"
//
// Output is one line per text in the format of llama.cpp's tokenizer test files (.out):
// each id preceded by a space, an empty line for no ids. With -tests, the file holds texts
// separated by lines "__ggml_vocab_test__" (llama.cpp's tests/test-tokenizer-0 format) and
// the lines can be compared with its .out file by diff.
//
// Special handling follows the mode. -tests is test-tokenizer-0's: no BOS, special tokens
// not parsed. -text is that of the logits command: BOS where the model's metadata says
// (tokenizer.ggml.add_bos_token, or llama.cpp's default for the tokenizer), special tokens
// such as "<|im_start|>" parsed. -bos and -special override either. -decode prints the text
// of the given ids (llama_detokenize, control tokens rendered with -special).
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"strconv"
	"strings"

	"github.com/compresskv/compresskv/examples/llama/gguf"
	"github.com/compresskv/compresskv/examples/llama/vocab"
)

func main() {
	log.SetFlags(0)
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) { // -h prints the flags and succeeds
			return
		}
		log.Fatal(err)
	}
}

// testSep separates the texts of a test-tokenizer-0 .inp file.
const testSep = "\n__ggml_vocab_test__\n"

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tokenize", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		model   = fs.String("model", "", "GGUF file (a model, or a vocabulary-only file)")
		tests   = fs.String("tests", "", "file of texts separated by lines __ggml_vocab_test__; prints one line of ids per text (default: no BOS, specials not parsed)")
		text    = fs.String("text", "", "one text; prints its ids (default: BOS where the metadata says, specials parsed)")
		decode  = fs.String("decode", "", "space-separated ids; prints their text")
		bos     = fs.Bool("bos", false, "add BOS (and EOS) where the metadata says (default: on for -text, off for -tests)")
		special = fs.Bool("special", false, "parse special tokens in the text, render them with -decode (default: on for -text and -decode, off for -tests)")
	)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: tokenize -model V.gguf (-tests FILE | -text TEXT | -decode IDS) [-bos=BOOL] [-special=BOOL]\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	modes := 0
	for _, m := range []string{"tests", "text", "decode"} {
		if set[m] {
			modes++
		}
	}
	if *model == "" || modes != 1 || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("tokenize: want -model and exactly one of -tests, -text, -decode")
	}
	// The defaults by mode, unless given.
	addBOS, parse := !set["tests"], !set["tests"]
	if set["bos"] {
		addBOS = *bos
	}
	if set["special"] {
		parse = *special
	}

	f, err := gguf.Open(*model)
	if err != nil {
		return err
	}
	v, err := vocab.FromGGUF(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", *model, err)
	}

	w := bufio.NewWriter(stdout)
	switch {
	case set["decode"]:
		var ids []int
		for _, s := range strings.Fields(*decode) {
			id, err := strconv.Atoi(s)
			if err != nil {
				return fmt.Errorf("tokenize: -decode: %w", err)
			}
			ids = append(ids, id)
		}
		s, err := v.Detokenize(ids, false, parse)
		if err != nil {
			return err
		}
		fmt.Fprintln(w, s)
	case set["text"]:
		if err := printIDs(w, v, *text, addBOS, parse); err != nil {
			return err
		}
	default:
		raw, err := os.ReadFile(*tests)
		if err != nil {
			return err
		}
		for _, t := range splitTests(string(raw)) {
			if err := printIDs(w, v, t, addBOS, parse); err != nil {
				return err
			}
		}
	}
	return w.Flush()
}

func printIDs(w *bufio.Writer, v *vocab.Vocab, text string, addBOS, parse bool) error {
	ids, err := v.Encode(text, addBOS, parse)
	if err != nil {
		return err
	}
	for _, id := range ids {
		w.WriteByte(' ')
		w.WriteString(strconv.Itoa(id))
	}
	return w.WriteByte('\n')
}

// splitTests splits a test-tokenizer-0 .inp file as llama.cpp reads it: every separator ends
// a text, and what follows the last separator is a text when it is not empty.
func splitTests(raw string) []string {
	var tests []string
	for pos := 0; pos < len(raw); {
		k := strings.Index(raw[pos:], testSep)
		if k < 0 {
			tests = append(tests, raw[pos:])
			break
		}
		tests = append(tests, raw[pos:pos+k])
		pos += k + len(testSep)
	}
	return tests
}
