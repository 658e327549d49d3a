package vocab

// Pre-tokenization: before byte-level BPE merges, llama.cpp cuts text into words with a list
// of regular expressions applied in turn (unicode_regex_split). Each expression cuts every
// piece the previous one left into its matches and the text between them. The expressions
// are written here by hand, one small scanner per expression, following the matching rules
// of the engine llama.cpp uses for each: its own hand-written scanners for the GPT-2, Llama 3
// and Qwen2 expressions, and C++ std::regex (ECMAScript, leftmost match, first alternative
// wins) for the rest, which llama.cpp runs either on code points (where \s is ASCII white space
// and other white space has been replaced by U+000B) or on a one-byte-per-code-point
// "collapsed" text in which \p{L}, \p{N}, \p{P} stand for whole Unicode categories.

// splitter holds one text fragment as code points and their classes, and the pieces cut so far
// as exclusive end positions.
type splitter struct {
	cp   []rune
	cls  []uint16
	ends []int
	next []int
}

// class is the class of position p, or 0 past the end of the current piece (hi).
func (s *splitter) class(p, hi int) uint16 {
	if p < hi {
		return s.cls[p]
	}
	return 0
}

// emit ends the current piece at end; empty pieces are dropped.
func (s *splitter) emit(end int) {
	last := 0
	if n := len(s.next); n > 0 {
		last = s.next[n-1]
	}
	if end > last {
		s.next = append(s.next, end)
	}
}

// stage is one expression: it cuts the piece [lo, hi) by calling s.emit.
type stage func(s *splitter, lo, hi int)

// run applies the stages in order to s.cp and leaves the word ends in s.ends.
func (s *splitter) run(stages []stage) {
	s.ends = append(s.ends[:0], len(s.cp))
	for _, st := range stages {
		s.next = s.next[:0]
		lo := 0
		for _, hi := range s.ends {
			st(s, lo, hi)
			s.emit(hi)
			lo = hi
		}
		s.ends, s.next = s.next, s.ends
	}
}

// asciiLower folds an ASCII capital; the contraction rules only ever compare against ASCII
// letters, and no other code point lower-cases to one of them (see TestContractionFolding).
func asciiLower(c rune) rune {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// contraction reports the length (2 or 3) of 's 't 're 've 'm 'll 'd at p, or 0; fold makes
// it case-insensitive.
func (s *splitter) contraction(p, hi int, fold bool) int {
	if s.cp[p] != '\'' || p+1 >= hi {
		return 0
	}
	low := func(c rune) rune {
		if fold {
			return asciiLower(c)
		}
		return c
	}
	c1 := low(s.cp[p+1])
	if c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd' {
		return 2
	}
	if p+2 < hi {
		c2 := low(s.cp[p+2])
		if (c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l') {
			return 3
		}
	}
	return 0
}

// spaceRun counts the white space at p and reports whether any of it is \r or \n, and the
// position just past the last such \r or \n.
func (s *splitter) spaceRun(p, hi int) (n int, lastNL int, nl bool) {
	for s.class(p+n, hi)&cpSpace != 0 {
		if c := s.cp[p+n]; c == '\r' || c == '\n' {
			lastNL, nl = p+n+1, true
		}
		n++
	}
	return n, lastNL, nl
}

const wordish = cpSpace | cpLetter | cpNumber

// gpt2Stage cuts by 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ .
func gpt2Stage(s *splitter, lo, hi int) {
	for p := lo; p < hi; {
		if n := s.contraction(p, hi, false); n > 0 {
			p += n
			s.emit(p)
			continue
		}
		c := s.cp[p]
		lead := 0 // an optional leading space
		cls := s.cls[p]
		if c == ' ' {
			lead, cls = 1, s.class(p+1, hi)
		}
		switch {
		case cls&cpLetter != 0:
			p += lead
			for s.class(p, hi)&cpLetter != 0 {
				p++
			}
			s.emit(p)
			continue
		case cls&cpNumber != 0:
			p += lead
			for s.class(p, hi)&cpNumber != 0 {
				p++
			}
			s.emit(p)
			continue
		case cls&wordish == 0 && cls != 0:
			p += lead
			for k := s.class(p, hi); k&wordish == 0 && k != 0; k = s.class(p, hi) {
				p++
			}
			s.emit(p)
			continue
		}
		n, _, _ := s.spaceRun(p, hi)
		switch {
		case n > 1 && p+n < hi: // \s+(?!\S): leave the last space to the next word
			p += n - 1
		case n > 0:
			p += n
		default:
			p++
		}
		s.emit(p)
	}
}

// llama3Stage returns the scanner of Llama 3's expression
// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// with digit groups of up to `digits` (3 for Llama 3, 1 for Qwen2's \p{N}).
func llama3Stage(digits int) stage {
	return func(s *splitter, lo, hi int) {
		for p := lo; p < hi; {
			if n := s.contraction(p, hi, true); n > 0 {
				p += n
				s.emit(p)
				continue
			}
			c, cls := s.cp[p], s.cls[p]
			if c != '\r' && c != '\n' && cls&cpNumber == 0 && (cls&cpLetter != 0 || s.class(p+1, hi)&cpLetter != 0) {
				p++
				for s.class(p, hi)&cpLetter != 0 {
					p++
				}
				s.emit(p)
				continue
			}
			if cls&cpNumber != 0 {
				start := p
				for s.class(p, hi)&cpNumber != 0 {
					p++
					if p-start >= digits {
						s.emit(p)
						start = p
					}
				}
				s.emit(p)
				continue
			}
			// " ?[^\s\p{L}\p{N}]+[\r\n]*". As in llama.cpp, whether this branch is taken
			// looks at the class after an optional space but tests the space's own class
			// for being defined.
			next := cls
			if c == ' ' {
				next = s.class(p+1, hi)
			}
			if next&wordish == 0 && cls != 0 {
				if c == ' ' {
					p++
				}
				for k := s.class(p, hi); k&wordish == 0 && k != 0; k = s.class(p, hi) {
					p++
				}
				for p < hi && (s.cp[p] == '\r' || s.cp[p] == '\n') {
					p++
				}
				s.emit(p)
				continue
			}
			n, lastNL, nl := s.spaceRun(p, hi)
			switch {
			case nl: // \s*[\r\n]+
				p = lastNL
			case n > 1 && p+n < hi:
				p += n - 1
			case n > 0:
				p += n
			default:
				p++
			}
			s.emit(p)
		}
	}
}

// The std::regex expressions. A predicate sees a code point and its class.
type cpPred func(c rune, cls uint16) bool

// wide returns the code point std::wregex sees in llama.cpp: non-ASCII white space has been
// replaced by U+000B.
func wide(c rune, cls uint16) rune {
	if c > 0x7F && cls&cpSpace != 0 {
		return 0x0B
	}
	return c
}

// In the collapsed text, every non-ASCII code point becomes one byte for its category (white
// space first), and ASCII stays as it is; llama.cpp's ASCII stand-ins for \p{N}, \p{L},
// \p{P} and \p{S} agree with the Unicode categories, so the class bits give the same answers.
func isNumber(_ rune, cls uint16) bool { return cls&cpNumber != 0 }
func isLetter(_ rune, cls uint16) bool { return cls&cpLetter != 0 }
func isPunct(_ rune, cls uint16) bool  { return cls&cpPunct != 0 }

func isNewline(c rune, _ uint16) bool { return c == '\r' || c == '\n' }
func isDigit(c rune, _ uint16) bool   { return c >= '0' && c <= '9' }

// punctOr returns [\p{P}<extra>] for ASCII extras.
func punctOr(extra string) cpPred {
	var set [128]bool
	for i := 0; i < len(extra); i++ {
		set[extra[i]] = true
	}
	return func(c rune, cls uint16) bool {
		return cls&cpPunct != 0 || (c < 128 && set[c])
	}
}

// inRanges returns a predicate for a std::wregex bracket expression of code point ranges.
func inRanges(r [][2]rune) cpPred {
	return func(c rune, cls uint16) bool {
		w := wide(c, cls)
		for _, x := range r {
			if w >= x[0] && w <= x[1] {
				return true
			}
		}
		return false
	}
}

// runStage cuts by [class]+ : maximal runs of the class are words, and so is what lies between.
func runStage(pred cpPred) stage {
	return func(s *splitter, lo, hi int) {
		for p := lo; p < hi; {
			if !pred(s.cp[p], s.cls[p]) {
				p++
				continue
			}
			s.emit(p)
			for p < hi && pred(s.cp[p], s.cls[p]) {
				p++
			}
			s.emit(p)
		}
	}
}

// singleStage cuts by [class] : each code point of the class is a word on its own.
func singleStage(pred cpPred) stage {
	return func(s *splitter, lo, hi int) {
		for p := lo; p < hi; p++ {
			if pred(s.cp[p], s.cls[p]) {
				s.emit(p)
				s.emit(p + 1)
			}
		}
	}
}

// spaceRunStage cuts by \s?[class]+ where the class holds no white space.
func spaceRunStage(pred cpPred) stage {
	return func(s *splitter, lo, hi int) {
		for p := lo; p < hi; {
			start := p
			switch {
			case s.cls[p]&cpSpace != 0 && p+1 < hi && pred(s.cp[p+1], s.cls[p+1]):
				p++
			case pred(s.cp[p], s.cls[p]):
			default:
				p++
				continue
			}
			s.emit(start)
			for p < hi && pred(s.cp[p], s.cls[p]) {
				p++
			}
			s.emit(p)
		}
	}
}

// trailingSpaceStage cuts by \s+$ : the white space that ends the piece.
func trailingSpaceStage(s *splitter, lo, hi int) {
	p := hi
	for p > lo && s.cls[p-1]&cpSpace != 0 {
		p--
	}
	s.emit(p)
}

// literalSpaceRunStage cuts by " ?[class]+" where the class holds no space.
func literalSpaceRunStage(pred cpPred) stage {
	return func(s *splitter, lo, hi int) {
		for p := lo; p < hi; {
			start := p
			switch {
			case s.cp[p] == ' ' && p+1 < hi && pred(s.cp[p+1], s.cls[p+1]):
				p++
			case pred(s.cp[p], s.cls[p]):
			default:
				p++
				continue
			}
			s.emit(start)
			for p < hi && pred(s.cp[p], s.cls[p]) {
				p++
			}
			s.emit(p)
		}
	}
}

// digitTriples cuts by [0-9][0-9][0-9] : runs of ASCII digits in threes from the left.
func digitTriples(s *splitter, lo, hi int) {
	for p := lo; p+3 <= hi; {
		if isDigit(s.cp[p], 0) && isDigit(s.cp[p+1], 0) && isDigit(s.cp[p+2], 0) {
			s.emit(p)
			p += 3
			s.emit(p)
			continue
		}
		p++
	}
}

// DeepSeek LLM's letter class, \s?[A-Za-zµÀ-ÖØ-öø-ƺ...]+, as code point ranges.
var deepseekLetters = [][2]rune{
	{0x41, 0x5A}, {0x61, 0x7A}, {0xB5, 0xB5}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x1BA},
	{0x1BC, 0x1BF}, {0x1C4, 0x293}, {0x295, 0x2AF}, {0x370, 0x373}, {0x376, 0x377},
	{0x37B, 0x37D}, {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C},
	{0x38E, 0x3A1}, {0x3A3, 0x3F5}, {0x3F7, 0x481}, {0x48A, 0x52F}, {0x531, 0x556},
	{0x10A0, 0x10C5}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF},
	{0x1D00, 0x1D2B}, {0x1D6B, 0x1D77}, {0x1D79, 0x1D9A}, {0x1E00, 0x1F15}, {0x1F18, 0x1F1D},
	{0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B},
	{0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE},
	{0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC},
	{0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113},
	{0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128},
	{0x212A, 0x212D}, {0x212F, 0x2134}, {0x2139, 0x2139}, {0x213C, 0x213F}, {0x2145, 0x2149},
	{0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2C7B}, {0x2C7E, 0x2CE4}, {0x2CEB, 0x2CEE},
	{0x2CF2, 0x2CF3}, {0xA640, 0xA66D}, {0xA680, 0xA69B}, {0xA722, 0xA76F}, {0xA771, 0xA787},
	{0xA78B, 0xA78E}, {0xAB70, 0xABBF}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFF21, 0xFF3A},
	{0xFF41, 0xFF5A}, {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
	{0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
}

// DeepSeek LLM's punctuation class, \s?[!-/:-~！-／：-～‘-‟　-。]+.
var deepseekPunct = [][2]rune{
	{0x21, 0x2F}, {0x3A, 0x7E}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E}, {0x2018, 0x201F}, {0x3000, 0x3002},
}

// DeepSeek's CJK class, [一-龥ࠀ-一가-퟿]+.
var deepseekCJK = [][2]rune{{0x4E00, 0x9FA5}, {0x0800, 0x4E00}, {0xAC00, 0xD7FF}}

// BLOOM's class, [^(\s|.,!?…。，、।۔،)]: anything but white space and these marks.
func bloomWord(c rune, cls uint16) bool {
	switch w := wide(c, cls); w {
	case '(', '|', ')', '.', ',', '!', '?', 0x2026, 0x3002, 0xFF0C, 0x3001, 0x0964, 0x06D4, 0x060C:
		return false
	default:
		return !(w == ' ' || (w >= '\t' && w <= '\r'))
	}
}

// The pre-tokenizers, by llama.cpp's LLAMA_VOCAB_PRE_TYPE_*.
var (
	preDefault = []stage{
		runStage(punctOr("$+<=>^~|")), gpt2Stage, runStage(isNumber), digitTriples,
	}
	preGPT2      = []stage{gpt2Stage}
	preStarcoder = []stage{singleStage(isNumber), gpt2Stage}
	preFalcon    = []stage{runStage(punctOr("$+<=>^~|`")), gpt2Stage, digitTriples}
	preLlama3    = []stage{llama3Stage(3)}
	preQwen2     = []stage{llama3Stage(1)}
	preDeepseek  = []stage{
		singleStage(isNewline),
		spaceRunStage(inRanges(deepseekLetters)),
		spaceRunStage(inRanges(deepseekPunct)),
		trailingSpaceStage,
		runStage(inRanges(deepseekCJK)),
		runStage(isNumber),
	}
	preBloom         = []stage{literalSpaceRunStage(bloomWord)}
	preDeepseekCoder = []stage{
		singleStage(isNewline),
		spaceRunStage(isLetter),
		spaceRunStage(isPunct),
		runStage(inRanges(deepseekCJK)),
		singleStage(isNumber),
	}
)
