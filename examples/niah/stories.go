package niah

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/compresskv/compresskv/compresskv/calibrate"
)

// Character-name probes for small story models such as stories260K, which
// cannot answer needle questions but do copy a character's name: a story
// names a girl (twice, as such stories do), at its opening or after a lead
// of plain sentences, goes on for a number of sentences that never name
// her, and ends with a cue after which the story's own style names the
// character again. The answer span is the
// name's second mention. Calibration and evaluation use disjoint names and
// disjoint filler sentences.
var (
	StoryCalibNames = strings.Fields(`Lily Tom Ben Sue Max Anna Tim Mia Sam Jack Lucy Bob Zoe Kate`)
	StoryEvalNames  = strings.Fields(`Mark Sara Amy Dan Emma Jane Joe Kim Leo Nick Pam Rose Ted Will`)

	StoryCalibFill = []string{
		"She liked to play with her toys.", "She had a big red ball.", "The sun was warm and bright.",
		"She went to the park with her mom.", "She saw a big tree.", "The birds were singing.",
		"She ran and jumped on the grass.", "She found a shiny stone.", "She was very happy.",
		"Her mom gave her a cookie.", "She ate the cookie.", "It was yummy.",
	}
	StoryEvalFill = []string{
		"She saw a little cat.", "The cat was soft.", "She gave the cat some milk.",
		"Then it started to rain.", "She went back home.", "She took a nap.",
		"She drew a picture of a flower.", "She showed it to her dad.", "Her dad smiled.",
		"She played with her doll.", "The doll had a pink dress.", "She sang a song.",
	}
)

// storyForms are the openings and cues: {N} is the name. A story with a
// lead starts elsewhere and introduces the girl after the lead's sentences.
var (
	storyOpenings = []string{
		"Once upon a time, there was a girl. Her name was {N}. {N} was three years old. ",
		"Once upon a time, there was a little girl named {N}. {N} liked to play outside. ",
	}
	storyLead      = "Once upon a time, there was a big park. "
	storyLateEntry = " One day, a little girl named {N} came to the park. {N} liked to play outside. "
	storyCues      = []string{" One day,", " The dog wanted to play with her.\n"}
)

// StoryProbes returns character-name probes: for every count of lead
// sentences (before the girl is named; 0 opens with her) and every count of
// filler sentences after her name, perCell probes, each with a name and
// sentences drawn from fill, an opening and a cue chosen in turn, all drawn
// with seed. The probes' group is their pair of counts.
func StoryProbes(tok calibrate.Tokenizer, names, fill []string, leads, sentences []int, perCell int, seed uint64) ([]calibrate.Probe, error) {
	if len(names) == 0 || len(fill) == 0 || len(leads) == 0 || len(sentences) == 0 || perCell < 1 {
		return nil, fmt.Errorf("niah: story probes need names, filler, lead and sentence counts, and perCell >= 1")
	}
	rng := rand.New(rand.NewPCG(seed, 0x73746f))
	draw := func(n int) string {
		parts := make([]string, n)
		for j := range parts {
			parts[j] = fill[rng.IntN(len(fill))]
		}
		return strings.Join(parts, " ")
	}
	var out []calibrate.Probe
	i := 0
	for _, lead := range leads {
		for _, n := range sentences {
			for k := 0; k < perCell; k++ {
				name := names[rng.IntN(len(names))]
				var text string
				if lead > 0 {
					text = storyLead + draw(lead) + strings.ReplaceAll(storyLateEntry, "{N}", name)
				} else {
					text = strings.ReplaceAll(storyOpenings[i%len(storyOpenings)], "{N}", name)
				}
				text += draw(n) + storyCues[(i/len(storyOpenings))%len(storyCues)]
				p, err := calibrate.NewProbe(tok, text, name)
				if err != nil {
					return nil, err
				}
				p.Group = fmt.Sprintf("lead %d, %d after", lead, n)
				out = append(out, p)
				i++
			}
		}
	}
	return out, nil
}
