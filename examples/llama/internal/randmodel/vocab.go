package randmodel

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compresskv/compresskv/examples/llama/gguf"
)

// Vocabulary files, in the folder VocabDir finds.
const (
	spmFile  = "ggml-vocab-llama-spm.gguf"
	gpt2File = "ggml-vocab-gpt-2.gguf"
)

// Token types as GGUF's tokenizer.ggml.token_type numbers them.
const (
	tokenControl = 3
	tokenUnused  = 5
)

var (
	qwenSpecials   = []string{"<|im_start|>", "<|im_end|>"}
	llama3Specials = []string{"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}
)

// TokenizerKV returns the tokenizer metadata of a vocabulary kind, read from
// the files in vocabDir:
//   - llama-spm: every tokenizer.* entry of ggml-vocab-llama-spm.gguf, as it
//     is;
//   - gpt2-qwen: ggml-vocab-gpt-2.gguf's tokens and merges with pre =
//     qwen2, <|endoftext|> a control token, <|im_start|> and <|im_end|>
//     appended (control), bos <|endoftext|>, eos <|im_end|>, add_bos_token
//     false;
//   - gpt2-llama3: the same with pre = llama-bpe, the five Llama 3 chat
//     specials appended (control), bos <|begin_of_text|>, eos <|eot_id|>,
//     add_bos_token true.
//
// With size > 0 the token list is padded to size with [PAD<i>] tokens of
// type unused (as llama.cpp's converter pads). Missing files or entries give
// errors wrapping ErrVocab.
func TokenizerKV(vocabDir, kind string, size int) ([]gguf.KV, error) {
	switch kind {
	case "llama-spm":
		if size != 0 {
			return nil, fmt.Errorf("%w: llama-spm is not padded", ErrVocab)
		}
		f, err := openVocab(vocabDir, spmFile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		var out []gguf.KV
		for _, kv := range f.KV {
			if strings.HasPrefix(kv.Key, "tokenizer.") {
				out = append(out, kv)
			}
		}
		// The Values refer to the file's memory only for arrays of numbers;
		// copy the whole list so that it outlives f.
		return cloneKV(out)
	case "gpt2-qwen", "gpt2-llama3":
	default:
		return nil, fmt.Errorf("%w: unknown kind %q", ErrVocab, kind)
	}
	f, err := openVocab(vocabDir, gpt2File)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tokens, err := f.Strings("tokenizer.ggml.tokens")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrVocab, err)
	}
	ttype, err := f.Int32s("tokenizer.ggml.token_type")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrVocab, err)
	}
	merges, err := f.Strings("tokenizer.ggml.merges")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrVocab, err)
	}
	tokens, ttype, merges = slices.Clone(tokens), slices.Clone(ttype), slices.Clone(merges)
	eot := slices.Index(tokens, "<|endoftext|>")
	if eot < 0 || len(ttype) != len(tokens) {
		return nil, fmt.Errorf("%w: %s has no <|endoftext|> or mismatched token types", ErrVocab, gpt2File)
	}
	ttype[eot] = tokenControl
	specials, pre := qwenSpecials, "qwen2"
	if kind == "gpt2-llama3" {
		specials, pre = llama3Specials, "llama-bpe"
	}
	for _, s := range specials {
		tokens = append(tokens, s)
		ttype = append(ttype, tokenControl)
	}
	bos, eos, addBOS := uint32(eot), uint32(slices.Index(tokens, "<|im_end|>")), false
	if kind == "gpt2-llama3" {
		bos, eos, addBOS = uint32(slices.Index(tokens, "<|begin_of_text|>")), uint32(slices.Index(tokens, "<|eot_id|>")), true
	}
	for i := len(tokens); i < size; i++ {
		tokens = append(tokens, fmt.Sprintf("[PAD%d]", i))
		ttype = append(ttype, tokenUnused)
	}
	var out []gguf.KV
	add := func(k string, x any) {
		v, err := gguf.ValueOf(x)
		if err != nil {
			panic(err) // fixed Go types
		}
		out = append(out, gguf.KV{Key: k, Value: v})
	}
	add("tokenizer.ggml.model", "gpt2")
	add("tokenizer.ggml.pre", pre)
	add("tokenizer.ggml.tokens", tokens)
	add("tokenizer.ggml.token_type", ttype)
	add("tokenizer.ggml.merges", merges)
	add("tokenizer.ggml.bos_token_id", bos)
	add("tokenizer.ggml.eos_token_id", eos)
	add("tokenizer.ggml.add_bos_token", addBOS)
	return out, nil
}

// cloneKV returns kv with every value rebuilt from copied Go values, so that
// none refers to a file's memory.
func cloneKV(kv []gguf.KV) ([]gguf.KV, error) {
	out := make([]gguf.KV, len(kv))
	for i, e := range kv {
		x := e.Value.Any()
		switch s := x.(type) {
		case []float32:
			x = slices.Clone(s)
		case []int32:
			x = slices.Clone(s)
		case []string:
			x = slices.Clone(s)
		}
		v, err := gguf.ValueOf(x)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrVocab, e.Key, err)
		}
		out[i] = gguf.KV{Key: e.Key, Value: v}
	}
	return out, nil
}

func openVocab(dir, name string) (*gguf.File, error) {
	f, err := gguf.Open(filepath.Join(dir, name))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrVocab, err)
	}
	return f, nil
}

// VocabDir returns the folder of the vocabulary files, ../shared/vocab from
// the repository root (found by walking up from the working directory to
// go.mod), and whether it holds the files the models need. Tests skip when
// it does not.
func VocabDir() (string, bool) {
	root, ok := RepoRoot()
	if !ok {
		return "", false
	}
	dir := filepath.Join(root, "..", "shared", "vocab")
	for _, f := range []string{spmFile, gpt2File} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return dir, false
		}
	}
	return dir, true
}

// RepoRoot returns the repository root: the nearest folder at or above the
// working directory that holds go.mod.
func RepoRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, true
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", false
		}
		dir = up
	}
}
