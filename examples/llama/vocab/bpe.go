package vocab

import (
	"unicode/utf8"
)

// bpeModel holds byte-level BPE merges over raw bytes. In a byte-level vocabulary every token
// and merge is written with one character per byte (byteRunes); this model works on the bytes
// those characters stand for, so that a word's symbols are simply its bytes. Strings are
// interned: ids below the vocabulary size are the tokens themselves, the rest are strings that
// occur in merges only.
type bpeModel struct {
	n            int32
	intern       map[string]int32 // raw bytes -> interned id
	pairRank     map[uint64]int32 // (left id, right id) -> rank (position in tokenizer.ggml.merges)
	mergeOut     []int32          // rank -> interned id of the merged string
	byteSym      [256]int32       // interned id of each single byte, -1 if no token or merge has it
	singleByte   [256]int32       // the token whose text is exactly this one byte, -1 if none
	ignoreMerges bool
	stages       []stage
}

// byteLevelDecode returns the bytes that a text written in byte-level characters stands for,
// or false when the text holds any other character (such a token can never be produced).
func byteLevelDecode(text string) (string, bool) {
	out := make([]byte, 0, len(text))
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		if r == utf8.RuneError && size <= 1 {
			return "", false
		}
		b, ok := runeBytes[r]
		if !ok {
			return "", false
		}
		out = append(out, b)
		i += size
	}
	return string(out), true
}

func newBPE(v *Vocab, merges []string, pre preTokenizer) *bpeModel {
	m := &bpeModel{
		n:            int32(len(v.texts)),
		intern:       make(map[string]int32, len(v.texts)+len(merges)/2),
		pairRank:     make(map[uint64]int32, len(merges)),
		mergeOut:     make([]int32, len(merges)),
		ignoreMerges: pre.ignoreMerges,
		stages:       pre.stages,
	}
	for i := range m.singleByte {
		m.singleByte[i] = -1
	}
	for id, t := range v.texts {
		if raw, ok := byteLevelDecode(t); ok {
			m.intern[raw] = int32(id)
		}
		if len(t) == 1 {
			m.singleByte[t[0]] = int32(id)
		}
	}
	next := m.n
	internOf := func(s string) int32 {
		if id, ok := m.intern[s]; ok {
			return id
		}
		m.intern[s] = next
		next++
		return next - 1
	}
	for rank, line := range merges {
		m.mergeOut[rank] = -1
		// llama.cpp splits at the first space after the first byte.
		sp := -1
		for i := 1; i < len(line); i++ {
			if line[i] == ' ' {
				sp = i
				break
			}
		}
		if sp < 0 {
			continue
		}
		a, okA := byteLevelDecode(line[:sp])
		b, okB := byteLevelDecode(line[sp+1:])
		if !okA || !okB || a == "" || b == "" {
			continue
		}
		key := uint64(uint32(internOf(a)))<<32 | uint64(uint32(internOf(b)))
		if _, dup := m.pairRank[key]; dup { // the first rank of a pair wins
			continue
		}
		m.pairRank[key] = int32(rank)
		m.mergeOut[rank] = internOf(a + b)
	}
	for b := range m.byteSym {
		m.byteSym[b] = -1
		if id, ok := m.intern[string([]byte{byte(b)})]; ok {
			m.byteSym[b] = id
		}
	}
	return m
}

// bpeSym is a symbol of a word being merged: bytes [start, start+n) of the word.
type bpeSym struct {
	start, n   int32
	prev, next int32
	id         int32 // interned id of the symbol's bytes, -1 if none
}

type bpeBigram struct {
	rank, left, right, size int32
}

// bigramHeap is a min-heap on (rank, left): llama.cpp's merge order.
type bigramHeap []bpeBigram

func (h bigramHeap) less(i, j int) bool {
	return h[i].rank < h[j].rank || (h[i].rank == h[j].rank && h[i].left < h[j].left)
}

func (h *bigramHeap) push(b bpeBigram) {
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

func (h *bigramHeap) pop() bpeBigram {
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

// word appends the tokens of one pre-tokenized word (raw bytes) to out.
func (m *bpeModel) word(st *encodeState, w []byte, out []int) []int {
	if m.ignoreMerges {
		if id, ok := m.intern[string(w)]; ok && id < m.n {
			return append(out, int(id))
		}
	}
	if len(w) == 1 {
		if id := m.byteSym[w[0]]; id >= 0 && id < m.n {
			return append(out, int(id))
		}
	}
	syms := st.syms[:0]
	for i, b := range w {
		syms = append(syms, bpeSym{start: int32(i), n: 1, prev: int32(i - 1), next: int32(i + 1), id: m.byteSym[b]})
	}
	syms[len(syms)-1].next = -1
	h := st.heap[:0]
	try := func(l, r int32) {
		if l < 0 || r < 0 {
			return
		}
		a, b := syms[l].id, syms[r].id
		if a < 0 || b < 0 {
			return
		}
		rank, ok := m.pairRank[uint64(uint32(a))<<32|uint64(uint32(b))]
		if !ok {
			return
		}
		h.push(bpeBigram{rank: rank, left: l, right: r, size: syms[l].n + syms[r].n})
	}
	for i := int32(1); i < int32(len(syms)); i++ {
		try(i-1, i)
	}
	for len(h) > 0 {
		bg := h.pop()
		l, r := &syms[bg.left], &syms[bg.right]
		if l.n == 0 || r.n == 0 || l.n+r.n != bg.size {
			continue // stale: one side has merged since
		}
		l.n += r.n
		r.n = 0
		l.id = m.mergeOut[bg.rank]
		l.next = r.next
		if l.next >= 0 {
			syms[l.next].prev = bg.left
		}
		try(l.prev, bg.left)
		try(bg.left, l.next)
	}
	for _, s := range syms {
		if s.n == 0 {
			continue
		}
		if s.id >= 0 && s.id < m.n {
			out = append(out, int(s.id))
			continue
		}
		// Not a token: llama.cpp looks up each byte of the symbol's byte-level text on its
		// own, and drops those that are no token.
		var enc [4]byte
		for _, b := range w[s.start : s.start+s.n] {
			k := utf8.EncodeRune(enc[:], byteRunes[b])
			for _, e := range enc[:k] {
				if id := m.singleByte[e]; id >= 0 {
					out = append(out, int(id))
				}
			}
		}
	}
	st.syms, st.heap = syms, h
	return out
}
