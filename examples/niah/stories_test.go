package niah

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/examples/llama"
)

func TestStoryProbes(t *testing.T) {
	tok := llama.ProbeTokenizer{Tokenizer: llama.ByteTokenizer()}
	probes, err := StoryProbes(tok, StoryCalibNames, StoryCalibFill, []int{0, 4}, []int{3, 6}, 5, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(probes) != 20 || probes[0].Group != "lead 0, 3 after" || probes[19].Group != "lead 4, 6 after" {
		t.Fatalf("%d probes, groups %q .. %q", len(probes), probes[0].Group, probes[19].Group)
	}
	for _, p := range probes {
		text := tok.Decode(p.Prompt)
		name := tok.Decode(p.Prompt[p.AnswerStart:p.AnswerEnd])
		if name != p.Answer || !slices.Contains(StoryCalibNames, name) {
			t.Fatalf("span holds %q, answer %q", name, p.Answer)
		}
		// The span is the name's second and last mention; the rest never names her.
		if strings.Count(text, name) != 2 || strings.LastIndex(text, name) != p.AnswerStart-1 {
			t.Fatalf("name %q at byte %d of %q", name, p.AnswerStart-1, text)
		}
		if strings.HasPrefix(p.Group, "lead 4") != strings.HasPrefix(text, storyLead) {
			t.Fatalf("group %q, prompt %q", p.Group, text)
		}
	}
	again, _ := StoryProbes(tok, StoryCalibNames, StoryCalibFill, []int{0, 4}, []int{3, 6}, 5, 1)
	if !reflect.DeepEqual(again, probes) {
		t.Fatal("same seed, other probes")
	}
	if _, err := StoryProbes(tok, nil, StoryCalibFill, []int{0}, []int{3}, 1, 1); err == nil {
		t.Fatal("no names accepted")
	}
	for _, n := range StoryEvalNames {
		if slices.Contains(StoryCalibNames, n) {
			t.Fatalf("name %q is in both sets", n)
		}
	}
	for _, f := range StoryEvalFill {
		if slices.Contains(StoryCalibFill, f) {
			t.Fatalf("sentence %q is in both sets", f)
		}
	}
}
