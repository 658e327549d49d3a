package vocab

import (
	"fmt"
	"strings"
	"sync"
)

// fragment is a piece of the text after special tokens are matched: either a token (tok >= 0)
// or the text [lo, hi).
type fragment struct {
	tok    int32
	lo, hi int
}

// encodeState is the scratch space of one Encode call.
type encodeState struct {
	frags, fragsNext []fragment
	split            splitter
	norm             []byte
	off              []int
	syms             []bpeSym
	heap             bigramHeap
	spmSyms          []spmSym
	spmHeap          spmHeap
	spmStarts        []int32
	useCache         bool
	cache            map[string]span // word -> its tokens in arena, for one Encode call
	arena            []int
	buf              []byte
}

var statePool = sync.Pool{New: func() any { return new(encodeState) }}

// Encode tokenizes text as llama_tokenize(vocab, text, addSpecial, parseSpecial) does.
//
// With addSpecial, BOS is prepended where AddBOS says so and EOS appended where AddEOS says so.
// With parseSpecial, the texts of control tokens (such as "<|im_start|>" or "<s>") in text
// become those tokens; without it they are tokenized as plain text. User-defined tokens are
// matched either way, as in llama.cpp.
//
// The cost is linear in the text with a log factor per merge, plus one substring search of the
// text per special token. The error wraps ErrText when llama.cpp would abort: a byte-level BPE
// text holding a 4-byte sequence above U+10FFFF, a byte no SentencePiece token covers, or a
// BOS/EOS the vocabulary lacks; and for a text of 2 GiB or more.
func (v *Vocab) Encode(text string, addSpecial, parseSpecial bool) ([]int, error) {
	if len(text) > maxText {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrText, len(text), maxText)
	}
	st := statePool.Get().(*encodeState)
	st.useCache = len(text) >= cacheMin
	defer func() {
		clear(st.cache)
		st.arena = st.arena[:0]
		statePool.Put(st)
	}()

	out := make([]int, 0, len(text)/3+2)
	if addSpecial && v.addBOS {
		if v.bos < 0 {
			return nil, fmt.Errorf("%w: the vocabulary asks for BOS but has none", ErrText)
		}
		out = append(out, int(v.bos))
	}
	frags := v.partition(st, text, parseSpecial)
	var err error
	if v.bpe == nil {
		out, err = v.encodeSPM(st, text, frags, out)
	} else {
		for _, f := range frags {
			if f.tok >= 0 {
				out = append(out, int(f.tok))
				continue
			}
			if out, err = v.encodeBPE(st, text[f.lo:f.hi], out); err != nil {
				break
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if addSpecial && v.addEOS {
		if v.eos < 0 {
			return nil, fmt.Errorf("%w: the vocabulary asks for EOS but has none", ErrText)
		}
		out = append(out, int(v.eos))
	}
	return out, nil
}

// maxText bounds a text so that positions fit the int32 fields of the merge state.
const maxText = 1<<31 - 16

// partition matches special tokens in text, longest first, as tokenizer_st_partition does.
// Control and unknown tokens are matched only with parseSpecial.
func (v *Vocab) partition(st *encodeState, text string, parseSpecial bool) []fragment {
	frags := st.frags[:0]
	if text != "" {
		frags = append(frags, fragment{tok: -1, lo: 0, hi: len(text)})
	}
	next := st.fragsNext[:0]
	for _, id := range v.specials {
		a := v.attrs[id]
		if !parseSpecial && a&(AttrControl|AttrUnknown) != 0 {
			continue
		}
		sp := v.texts[id]
		next = next[:0]
		changed := false
		for _, f := range frags {
			if f.tok >= 0 {
				next = append(next, f)
				continue
			}
			lo := f.lo
			for lo < f.hi {
				k := strings.Index(text[lo:f.hi], sp)
				if k < 0 {
					break
				}
				changed = true
				m := lo + k
				left := m
				if a&AttrLStrip != 0 {
					for left > lo && isSpaceC(text[left-1]) {
						left--
					}
				}
				if left > lo {
					next = append(next, fragment{tok: -1, lo: lo, hi: left})
				}
				next = append(next, fragment{tok: id})
				lo = m + len(sp)
				if a&AttrRStrip != 0 {
					for lo < f.hi && isSpaceC(text[lo]) {
						lo++
					}
				}
			}
			if lo < f.hi {
				next = append(next, fragment{tok: -1, lo: lo, hi: f.hi})
			}
		}
		if changed {
			frags, next = next, frags
		}
	}
	st.frags, st.fragsNext = frags, next
	return frags
}

// encodeBPE appends the tokens of one text fragment of a byte-level BPE vocabulary.
func (v *Vocab) encodeBPE(st *encodeState, text string, out []int) ([]int, error) {
	if err := st.pretokenize(v.bpe.stages, text); err != nil {
		return out, err
	}
	lo := 0
	for _, hi := range st.split.ends {
		w := st.norm[st.off[lo]:st.off[hi]]
		lo = hi
		if st.cached(w, &out) {
			continue
		}
		n := len(out)
		out = v.bpe.word(st, w, out)
		st.remember(w, out[n:])
	}
	return out, nil
}

// cacheMin is the text length from which Encode remembers the tokens of each distinct word
// for the rest of the call: long texts repeat their words, and a word's tokens depend on the
// word alone.
var cacheMin = 1024 // a variable so that tests can turn the cache off

type span struct{ start, n int32 }

// cached appends the remembered tokens of word w to *out.
func (st *encodeState) cached(w []byte, out *[]int) bool {
	if !st.useCache {
		return false
	}
	sp, ok := st.cache[string(w)]
	if ok {
		*out = append(*out, st.arena[sp.start:sp.start+sp.n]...)
	}
	return ok
}

func (st *encodeState) remember(w []byte, ids []int) {
	if !st.useCache {
		return
	}
	if st.cache == nil {
		st.cache = make(map[string]span)
	}
	st.cache[string(w)] = span{int32(len(st.arena)), int32(len(ids))}
	st.arena = append(st.arena, ids...)
}

// pretokenize decodes text as llama.cpp does and cuts it into words with the stages: the
// words are st.norm[st.off[a]:st.off[b]] for consecutive ends a, b of st.split.ends (from 0).
// st.norm is the text re-encoded from its code points, which differs from text only where
// text is not valid UTF-8.
func (st *encodeState) pretokenize(stages []stage, text string) error {
	tab := codepoints()
	sp := &st.split
	sp.cp, sp.cls = sp.cp[:0], sp.cls[:0]
	st.norm, st.off = st.norm[:0], st.off[:0]
	for i := 0; i < len(text); {
		c, n := decodeRune(text, i)
		i += n
		st.off = append(st.off, len(st.norm))
		var ok bool
		if st.norm, ok = appendRune(st.norm, c); !ok {
			return fmt.Errorf("%w: byte %d decodes to %#x, past U+10FFFF", ErrText, i-n, c)
		}
		sp.cp = append(sp.cp, c)
		sp.cls = append(sp.cls, tab.class(c))
	}
	st.off = append(st.off, len(st.norm))
	sp.run(stages)
	return nil
}

// SentencePiece.

type spmSym struct {
	start, n   int32
	prev, next int32
}

type spmBigram struct {
	score       float32
	left, right int32
	size        int32
}

// spmHeap is a max-heap on score, ties to the lower left index: llama.cpp's order.
type spmHeap []spmBigram

func (h spmHeap) less(i, j int) bool {
	return h[i].score > h[j].score || (h[i].score == h[j].score && h[i].left < h[j].left)
}

func (h *spmHeap) push(b spmBigram) {
	*h = append(*h, b)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *spmHeap) pop() spmBigram {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for i := 0; ; {
		l := 2*i + 1
		if l >= len(s) {
			break
		}
		m := l
		if r := l + 1; r < len(s) && s.less(r, l) {
			m = r
		}
		if !s.less(m, i) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

const spaceEscape = "\u2581"

// encodeSPM appends the tokens of the fragments of a SentencePiece vocabulary. A text
// fragment gets a leading space when the vocabulary adds one and it starts the text or follows
// a special token; spaces are escaped as U+2581.
func (v *Vocab) encodeSPM(st *encodeState, text string, frags []fragment, out []int) ([]int, error) {
	prevSpecial := true
	for _, f := range frags {
		if f.tok >= 0 {
			out = append(out, int(f.tok))
			prevSpecial = true
			continue
		}
		buf := st.buf[:0]
		if v.addSpacePrefix && prevSpecial {
			buf = append(buf, spaceEscape...)
		}
		for i := f.lo; i < f.hi; i++ {
			if text[i] == ' ' {
				buf = append(buf, spaceEscape...)
			} else {
				buf = append(buf, text[i])
			}
		}
		st.buf = buf
		var err error
		if out, err = v.spmPiece(st, buf, out); err != nil {
			return nil, err
		}
		prevSpecial = false
	}
	return out, nil
}

// spmPiece merges the characters of one escaped fragment by token score.
//
// llama.cpp runs one queue of candidate merges over the whole fragment. Where no token holds
// an escaped space after anything but another escaped space (v.spmWords, true of SentencePiece
// vocabularies in practice), no merge can reach across the start of a word, so each word is
// merged on its own: the same merges in the same relative order, with small queues.
func (v *Vocab) spmPiece(st *encodeState, text []byte, out []int) ([]int, error) {
	if len(text) == 0 {
		return out, nil
	}
	syms := st.spmSyms[:0]
	starts := st.spmStarts[:0]
	for off := 0; off < len(text); {
		n := min(seqLen(text[off]), len(text)-off)
		i := int32(len(syms))
		sym := spmSym{start: int32(off), n: int32(n), prev: i - 1, next: i + 1}
		if i == 0 || (v.spmWords && isEscape(text, off) && !(off >= 3 && isEscape(text, off-3))) {
			starts = append(starts, i)
			sym.prev = -1
			if i > 0 {
				syms[i-1].next = -1
			}
		}
		syms = append(syms, sym)
		off += n
	}
	syms[len(syms)-1].next = -1
	h := st.spmHeap[:0]
	try := func(l, r int32) {
		if l < 0 || r < 0 {
			return
		}
		s := text[syms[l].start : syms[l].start+syms[l].n+syms[r].n]
		id, ok := v.ids[string(s)]
		if !ok {
			return
		}
		h.push(spmBigram{score: v.scores[id], left: l, right: r, size: int32(len(s))})
	}
	for k, a := range starts {
		end := int32(len(syms))
		if k+1 < len(starts) {
			end = starts[k+1]
		}
		word := text[syms[a].start:]
		if end < int32(len(syms)) {
			word = text[syms[a].start:syms[end].start]
		}
		if st.cached(word, &out) {
			continue
		}
		n := len(out)
		h = h[:0]
		for i := a + 1; i < end; i++ {
			try(i-1, i)
		}
		for len(h) > 0 {
			bg := h.pop()
			l, r := &syms[bg.left], &syms[bg.right]
			if l.n == 0 || r.n == 0 || l.n+r.n != bg.size {
				continue
			}
			l.n += r.n
			r.n = 0
			l.next = r.next
			if l.next >= 0 {
				syms[l.next].prev = bg.left
			}
			try(l.prev, bg.left)
			try(bg.left, l.next)
		}
		for i := a; i != -1; i = syms[i].next {
			s := text[syms[i].start : syms[i].start+syms[i].n]
			if id, ok := v.ids[string(s)]; ok {
				out = append(out, int(id))
				continue
			}
			for _, b := range s {
				id, err := v.byteToken(b)
				if err != nil {
					return nil, err
				}
				out = append(out, id)
			}
		}
		if v.spmWords {
			st.remember(word, out[n:])
		}
	}
	st.spmSyms, st.spmHeap, st.spmStarts = syms, h, starts
	return out, nil
}

func isEscape(text []byte, off int) bool {
	return off+3 <= len(text) && string(text[off:off+3]) == spaceEscape
}

// spmWordsIndependent reports whether every escaped space inside a token follows another:
// then no SentencePiece merge crosses the start of a word.
func spmWordsIndependent(texts []string) bool {
	for _, t := range texts {
		for k := 1; k < len(t); k++ {
			if strings.HasPrefix(t[k:], spaceEscape) && !(k >= 3 && t[k-3:k] == spaceEscape) {
				return false
			}
		}
	}
	return true
}

// byteToken is the SentencePiece byte-fallback token of b: <0xXX>, else the one-byte token.
func (v *Vocab) byteToken(b byte) (int, error) {
	const hex = "0123456789ABCDEF"
	if id, ok := v.ids[string([]byte{'<', '0', 'x', hex[b>>4], hex[b&15], '>'})]; ok {
		return int(id), nil
	}
	if id, ok := v.ids[string([]byte{b})]; ok {
		return int(id), nil
	}
	return 0, fmt.Errorf("%w: no token for byte %#02x (neither <0x%02X> nor the byte itself)", ErrText, b, b)
}
