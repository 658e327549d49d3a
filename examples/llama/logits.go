package llama

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/compresskv/compresskv/examples/llama/vocab"
	"github.com/compresskv/compresskv/kvcache"
)

// LogitsOptions say what WriteLogits runs.
type LogitsOptions struct {
	// Steps is the number of greedy steps to print.
	Steps int
	// NoBOS never adds BOS; otherwise BOS is added where the vocabulary
	// says so (its AddBOS).
	NoBOS bool
	// Cache is the storage type of the KV cache (llama.cpp's default is
	// kvcache.Float16).
	Cache kvcache.DType
	// Chunk is the prefill chunk in tokens; 0 means 512 (llama.cpp's
	// default batch).
	Chunk int
	// Backend attends on the CPU backend in float32 (faster); otherwise
	// the session computes as llama.cpp does (Session.LikeLlamaCpp).
	Backend bool
}

// WriteLogits runs text through the model and writes, in the fixed format
// that tools compare (tools/ggufgold's program prints llama.cpp's output in
// the same one):
//
//	prompt_ids id id ...
//	last_logits v v ...                      every vocabulary entry, %.6g
//	step S id I top5 i:v i:v i:v i:v i:v     S = 0 .. Steps-1
//
// The text is tokenized by v with special tokens parsed and BOS added where
// v says so (unless NoBOS). Step S's token I is the argmax, ties to the
// lower id, of the logits step S reads: step 0 reads the prompt's last
// logits, step S > 0 the logits after decoding step S-1's token; top5
// lists those logits' five largest, value descending then id ascending.
func WriteLogits(w io.Writer, m *Model, v *vocab.Vocab, text string, opt LogitsOptions) error {
	if opt.Steps < 0 || opt.Chunk < 0 {
		return fmt.Errorf("llama: %d steps in chunks of %d", opt.Steps, opt.Chunk)
	}
	if opt.Chunk == 0 {
		opt.Chunk = 512
	}
	if v.Size() != m.Vocab {
		return fmt.Errorf("llama: a tokenizer of %d tokens for a model of %d: %w", v.Size(), m.Vocab, ErrFormat)
	}
	ids, err := v.Encode(text, !opt.NoBOS, true)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return errors.New("llama: the prompt has no tokens")
	}
	cache, err := m.NewCache(opt.Cache)
	if err != nil {
		return err
	}
	s, err := m.NewSession(cache, nil)
	if err != nil {
		return err
	}
	s.LikeLlamaCpp = !opt.Backend
	bw := bufio.NewWriter(w)
	fmt.Fprint(bw, "prompt_ids")
	for _, id := range ids {
		fmt.Fprintf(bw, " %d", id)
	}
	fmt.Fprintln(bw)
	logits, _, err := s.Prefill(ids, opt.Chunk)
	if err != nil {
		return err
	}
	fmt.Fprint(bw, "last_logits")
	for _, x := range logits {
		fmt.Fprintf(bw, " %.6g", float64(x))
	}
	fmt.Fprintln(bw)
	for step := 0; step < opt.Steps; step++ {
		next := Argmax(logits)
		fmt.Fprintf(bw, "step %d id %d top5", step, next)
		for _, i := range Top(logits, 5) {
			fmt.Fprintf(bw, " %d:%.6g", i, float64(logits[i]))
		}
		fmt.Fprintln(bw)
		if step+1 < opt.Steps {
			if logits, err = s.Forward([]int{next}); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

// Top returns the indices of the k largest logits (all of them when there
// are fewer), value descending, then index ascending.
func Top(logits []float32, k int) []int {
	idx := make([]int, len(logits))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case logits[a] > logits[b]:
			return -1
		case logits[a] < logits[b]:
			return 1
		}
		return a - b
	})
	return idx[:min(k, len(idx))]
}
