package main

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// The held-out haystack is prose the project generates: sentences drawn from
// a small grammar in the register of the training text, with invented
// names, so that no sentence of it occurs in the training, calibration or
// evaluation text (testdata/haystack/heldout.txt, written by -write-haystack).

var (
	openers = []string{
		"And it came to pass in the {ord} year of {name}, that",
		"And in those days",
		"Now after these things",
		"And when the {time} was come,",
		"Then",
		"And",
		"And behold,",
		"So",
		"And on the {ord} day",
		"And at the going down of the sun",
	}
	subjects = []string{
		"the elders of {place}", "{name} the son of {name}", "the men of the valley", "the shepherds of {place}",
		"the daughters of {name}", "a certain potter", "the watchmen upon the wall", "the keepers of the gate",
		"all the people of {place}", "the captain of the host", "the weavers", "{name}", "the old man",
		"the young men that were with him", "the woman of {place}", "the fishers of the lake",
	}
	verbs = []string{
		"went up unto", "came down from", "gathered themselves at", "built an altar in", "journeyed toward",
		"dwelt a long season in", "looked out over", "sent messengers into", "returned in haste to",
		"set a watch round about", "made a feast in", "kept the flocks near", "sowed barley by",
		"drew water from the well of", "counted the stones of", "passed over the ford of",
	}
	objects = []string{
		"the bread of the morning", "seven baskets of figs", "the tents of the east", "a vessel of brass",
		"the cords of the camp", "the first fruits of the field", "the oil of the lamp", "a measure of wheat",
		"the hides of the goats", "the keys of the storehouse", "a mantle of wool", "the timber of the hills",
	}
	speeches = []string{
		"Go ye up into the hill country, and see the land, whether it be good or bad",
		"Bring hither the wood and the fire, for the night is far spent",
		"Let us rest here until the waters be gone down",
		"Why are ye come out against me with staves and with slings",
		"Hear me, and I will show you the way that ye shall go",
		"Take now thy brother, and go into the city of {place}",
		"The harvest is great, and the labourers are weary",
		"Fear not, for the road is open unto the sea",
	}
	times   = []string{"evening", "morning", "time of the harvest", "feast", "new moon", "time of the shearing"}
	ords    = []string{"second", "third", "fifth", "seventh", "ninth", "tenth", "twelfth", "twentieth"}
	numbers = []string{"two hundred", "threescore", "a thousand", "forty", "seven", "twelve", "fifty and five", "three thousand"}
	things  = []string{"sheep", "camels", "men of war", "cubits", "shekels of silver", "measures of oil", "loaves", "oxen"}
	onsets  = []string{"b", "d", "g", "h", "k", "l", "m", "n", "r", "s", "t", "z", "sh", "th", "ch", "y"}
	vowels  = []string{"a", "e", "i", "o", "u", "ai", "ea"}
	codas   = []string{"", "", "n", "m", "l", "r", "th", "s", "d"}
)

// haystackGen writes sentences from the grammar above.
type haystackGen struct {
	rng    *rand.Rand
	names  []string
	places []string
}

func newHaystackGen(seed uint64) *haystackGen {
	h := &haystackGen{rng: rand.New(rand.NewPCG(seed, 0x68617973))}
	for i := 0; i < 60; i++ {
		h.names = append(h.names, h.word(2+h.rng.IntN(2)))
		h.places = append(h.places, h.word(2+h.rng.IntN(2)))
	}
	return h
}

// word returns an invented capitalised word of syl syllables.
func (h *haystackGen) word(syl int) string {
	var sb strings.Builder
	for i := 0; i < syl; i++ {
		sb.WriteString(h.pick(onsets) + h.pick(vowels))
		if i == syl-1 {
			sb.WriteString(h.pick(codas))
		}
	}
	w := sb.String()
	return strings.ToUpper(w[:1]) + w[1:]
}

func (h *haystackGen) pick(xs []string) string { return xs[h.rng.IntN(len(xs))] }

// fill replaces the placeholders of s.
func (h *haystackGen) fill(s string) string {
	for _, ph := range []struct {
		key  string
		from *[]string
	}{{"{name}", &h.names}, {"{place}", &h.places}, {"{ord}", &ords}, {"{time}", &times}} {
		for strings.Contains(s, ph.key) {
			s = strings.Replace(s, ph.key, h.pick(*ph.from), 1)
		}
	}
	return s
}

// sentence returns one sentence.
func (h *haystackGen) sentence() string {
	var s string
	switch h.rng.IntN(5) {
	case 0, 1:
		s = fmt.Sprintf("%s %s %s %s", h.pick(openers), h.pick(subjects), h.pick(verbs), h.pick(h.places))
		if h.rng.IntN(2) == 0 {
			s += fmt.Sprintf(", and took with them %s", h.pick(objects))
		}
		s += "."
	case 2:
		s = fmt.Sprintf("And %s said unto %s, %s.", h.pick(subjects), h.pick(subjects), h.pick(speeches))
	case 3:
		s = fmt.Sprintf("And the number of the %s of %s was %s.", h.pick(things), h.pick(h.places), h.pick(numbers))
	default:
		s = fmt.Sprintf("%s %s brought %s unto %s, and laid it before %s.", h.pick(openers), h.pick(subjects), h.pick(objects), h.pick(h.places), h.pick(subjects))
	}
	s = h.fill(s)
	return strings.ToUpper(s[:1]) + s[1:]
}

// text returns about n bytes of prose as paragraphs of 4 to 12 sentences,
// one per line, like the other haystack files.
func (h *haystackGen) text(n int) string {
	var sb strings.Builder
	for sb.Len() < n {
		k := 4 + h.rng.IntN(9)
		for i := 0; i < k; i++ {
			if i > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(h.sentence())
		}
		sb.WriteByte('\n')
	}
	return sb.String()
}
