package vocab

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Metadata is the key/value section of a GGUF file, as FromMetadata reads it.
//
// Lookup returns the value under key: a string, a bool, a Go integer type, or a slice
// ([]string, []float32, or a slice of an integer type) for arrays.
type Metadata interface {
	Lookup(key string) (value any, ok bool)
}

// Map is Metadata held in a Go map, for vocabularies built in code and in tests.
type Map map[string]any

// Lookup returns m[key].
func (m Map) Lookup(key string) (any, bool) {
	v, ok := m[key]
	return v, ok
}

// Metadata keys read by FromMetadata.
const (
	KeyModel          = "tokenizer.ggml.model"
	KeyPre            = "tokenizer.ggml.pre"
	KeyTokens         = "tokenizer.ggml.tokens"
	KeyScores         = "tokenizer.ggml.scores"
	KeyTokenType      = "tokenizer.ggml.token_type"
	KeyMerges         = "tokenizer.ggml.merges"
	KeyBOS            = "tokenizer.ggml.bos_token_id"
	KeyEOS            = "tokenizer.ggml.eos_token_id"
	KeyEOT            = "tokenizer.ggml.eot_token_id"
	KeyEOM            = "tokenizer.ggml.eom_token_id"
	KeyUNK            = "tokenizer.ggml.unknown_token_id"
	KeyPAD            = "tokenizer.ggml.padding_token_id"
	KeyAddBOS         = "tokenizer.ggml.add_bos_token"
	KeyAddEOS         = "tokenizer.ggml.add_eos_token"
	KeyAddSpacePrefix = "tokenizer.ggml.add_space_prefix"
	KeyName           = "general.name"
)

// Keys of the ids llama.cpp also reads; they matter here only through the end-of-generation
// set and token attributes.
const (
	keyFIMPre = "tokenizer.ggml.fim_pre_token_id"
	keyFIMSuf = "tokenizer.ggml.fim_suf_token_id"
	keyFIMMid = "tokenizer.ggml.fim_mid_token_id"
	keyFIMPad = "tokenizer.ggml.fim_pad_token_id"
	keyFIMRep = "tokenizer.ggml.fim_rep_token_id"
	keyFIMSep = "tokenizer.ggml.fim_sep_token_id"
	keyPrefix = "tokenizer.ggml.prefix_token_id" // older names of fim_pre/suf/mid
	keySuffix = "tokenizer.ggml.suffix_token_id"
	keyMiddle = "tokenizer.ggml.middle_token_id"
)

// GGUF token types (tokenizer.ggml.token_type).
const (
	typeUndefined = iota
	typeNormal
	typeUnknown
	typeControl
	typeUserDefined
	typeUnused
	typeByte
)

// preTokenizer is what a tokenizer.ggml.pre name selects in llama.cpp.
type preTokenizer struct {
	stages       []stage
	keepSpaces   bool // clean_spaces off: Detokenize leaves " ," and the like alone
	ignoreMerges bool // a word that is a token is taken whole
	addBOS       bool // add_bos defaults on
	noBOS        bool // no default BOS id
}

var preTokenizers = func() map[string]preTokenizer {
	m := map[string]preTokenizer{}
	add := func(p preTokenizer, names ...string) {
		for _, n := range names {
			m[n] = p
		}
	}
	add(preTokenizer{stages: preDefault}, "default")
	add(preTokenizer{stages: preLlama3, ignoreMerges: true, addBOS: true},
		"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano")
	add(preTokenizer{stages: preLlama3}, "dbrx", "smaug-bpe")
	add(preTokenizer{stages: preLlama3, noBOS: true}, "glm4", "chatglm-bpe")
	add(preTokenizer{stages: preDeepseek, keepSpaces: true}, "deepseek-llm")
	add(preTokenizer{stages: preDeepseekCoder, keepSpaces: true}, "deepseek-coder")
	add(preTokenizer{stages: preFalcon}, "falcon")
	add(preTokenizer{stages: preGPT2}, "mpt", "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat",
		"a.x-4.0", "mellum", "modern-bert", "exaone4", "olmo", "jais",
		"jina-v1-en", "jina-v2-code", "roberta-bpe", "jina-v2-es", "jina-v2-de")
	add(preTokenizer{stages: preGPT2, keepSpaces: true}, "trillion", "granite-docling")
	add(preTokenizer{stages: preStarcoder}, "starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2")
	add(preTokenizer{stages: preStarcoder, keepSpaces: true}, "command-r", "smollm")
	add(preTokenizer{stages: preQwen2}, "stablelm2", "megrez")
	add(preTokenizer{stages: preQwen2, keepSpaces: true}, "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "solar-open")
	add(preTokenizer{stages: preBloom}, "bloom", "gpt3-finnish")
	add(preTokenizer{stages: preBloom, keepSpaces: true}, "poro-chat")
	return m
}()

// PreTokenizers returns the tokenizer.ggml.pre names this package accepts, sorted. A byte-level
// BPE vocabulary without tokenizer.ggml.pre gets "default", as in llama.cpp.
func PreTokenizers() []string {
	out := make([]string, 0, len(preTokenizers))
	for n := range preTokenizers {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// FromMetadata builds a vocabulary from GGUF tokenizer metadata, as llama.cpp's
// llama_vocab::load does. It reads the token list, scores, types and merges once and builds
// lookup tables: O(tokens + merges) time and memory (about 40 MB for Llama 3's 128k tokens
// and 280k merges).
func FromMetadata(md Metadata) (*Vocab, error) {
	model, ok, err := getString(md, KeyModel)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrMissing, KeyModel)
	}
	v := &Vocab{model: model, eot: -1, eom: -1, pad: -1}
	var pre preTokenizer
	switch model {
	case ModelSPM:
		v.bos, v.eos, v.unk = 1, 2, 0
		v.addBOS, v.addSpacePrefix = true, true
	case ModelBPE:
		v.bos, v.eos, v.unk = 11, 11, -1
		v.cleanSpaces = true
		if v.pre, _, err = getString(md, KeyPre); err != nil {
			return nil, err
		}
		name := v.pre
		if name == "" {
			name = "default"
		}
		if pre, ok = preTokenizers[name]; !ok {
			if llamaCppPre[name] {
				return nil, fmt.Errorf("%w: pre-tokenizer %q (%s) is known to llama.cpp but not implemented here", ErrUnsupported, name, KeyPre)
			}
			return nil, fmt.Errorf("%w: unknown pre-tokenizer %q (%s)", ErrUnsupported, name, KeyPre)
		}
		v.cleanSpaces = !pre.keepSpaces
		v.addBOS = pre.addBOS
		if pre.noBOS {
			v.bos = -1
		}
	default:
		return nil, fmt.Errorf("%w: tokenizer model %q (%s); want %q or %q", ErrUnsupported, model, KeyModel, ModelSPM, ModelBPE)
	}
	if b, ok, err := getBool(md, KeyAddSpacePrefix); err != nil {
		return nil, err
	} else if ok {
		v.addSpacePrefix = b
	}

	if err := v.loadTokens(md); err != nil {
		return nil, err
	}
	if model == ModelSPM {
		v.spmWords = spmWordsIndependent(v.texts)
	}
	if model == ModelBPE {
		merges, ok, err := getStrings(md, KeyMerges)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: %s", ErrMissing, KeyMerges)
		}
		v.bpe = newBPE(v, merges, pre)
	}
	if err := v.loadSpecials(md); err != nil {
		return nil, err
	}
	if err := v.buildPieces(); err != nil {
		return nil, err
	}
	if err := v.applyNameRules(md); err != nil {
		return nil, err
	}
	return v, nil
}

func (v *Vocab) loadTokens(md Metadata) error {
	texts, ok, err := getStrings(md, KeyTokens)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: %s", ErrMissing, KeyTokens)
	}
	n := len(texts)
	if n == 0 || n > 1<<31-1 {
		return fmt.Errorf("%w: %s holds %d tokens", ErrMalformed, KeyTokens, n)
	}
	scores, hasScores, err := getFloat32s(md, KeyScores)
	if err != nil {
		return err
	}
	if hasScores && len(scores) < n {
		return fmt.Errorf("%w: %s has %d entries for %d tokens", ErrMalformed, KeyScores, len(scores), n)
	}
	types, hasTypes, err := getInt32s(md, KeyTokenType)
	if err != nil {
		return err
	}
	if hasTypes && len(types) < n {
		return fmt.Errorf("%w: %s has %d entries for %d tokens", ErrMalformed, KeyTokenType, len(types), n)
	}

	v.texts = make([]string, n)
	v.scores = make([]float32, n)
	v.attrs = make([]Attr, n)
	v.ids = make(map[string]int32, n)
	for i, t := range texts {
		if t == "" {
			t = fmt.Sprintf("[EMPTY_%d]", i)
		}
		if j, dup := v.ids[t]; dup {
			return fmt.Errorf("%w: %s: tokens %d and %d are both %q", ErrMalformed, KeyTokens, j, i, t)
		}
		v.ids[t] = int32(i)
		v.texts[i] = t
		if hasScores {
			v.scores[i] = scores[i]
		}
		v.attrs[i] = AttrNormal
		if hasTypes {
			switch types[i] {
			case typeUnknown:
				v.attrs[i] = AttrUnknown
			case typeUnused:
				v.attrs[i] = AttrUnused
			case typeNormal:
				v.attrs[i] = AttrNormal
			case typeControl:
				v.attrs[i] = AttrControl
			case typeUserDefined:
				v.attrs[i] = AttrUserDefined
			case typeByte:
				v.attrs[i] = AttrByte
			default:
				v.attrs[i] = AttrUndefined
			}
		}
	}
	return nil
}

// Texts by which llama.cpp recognises special tokens the metadata does not name. Order
// matters only when a vocabulary holds several candidates for one role: llama.cpp then takes
// whichever its hash map yields first, this package the first in these lists.
var (
	eotTexts    = []string{"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"}
	eomTexts    = []string{"<|eom_id|>"}
	fimPreTexts = []string{"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"}
	fimSufTexts = []string{"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"}
	fimMidTexts = []string{"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"}
	fimPadTexts = []string{"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"}
	fimRepTexts = []string{"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"}
	fimSepTexts = []string{"<|file_sep|>"}
	eogTexts    = []string{"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>"}
	// Tokens gpt-oss needs rendered; llama.cpp makes them user-defined.
	renderedTexts = []string{"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"}
)

// loadSpecials reads the special ids and flags, then applies llama.cpp's recognition of
// special tokens by text, in its order.
func (v *Vocab) loadSpecials(md Metadata) error {
	var fimPre, fimSuf, fimMid, fimPad, fimRep, fimSep int32 = -1, -1, -1, -1, -1, -1
	n := int32(len(v.texts))
	// Defaults that name no token of this vocabulary are dropped (llama.cpp keeps them and
	// would emit or test an id it does not have).
	for _, p := range []*int32{&v.bos, &v.eos, &v.unk} {
		if *p >= n {
			*p = -1
		}
	}
	ids := []struct {
		key string
		dst *int32
	}{
		{KeyBOS, &v.bos}, {KeyEOS, &v.eos}, {KeyEOT, &v.eot}, {KeyEOM, &v.eom},
		{KeyUNK, &v.unk}, {KeyPAD, &v.pad},
		{keyFIMPre, &fimPre}, {keyFIMSuf, &fimSuf}, {keyFIMMid, &fimMid},
		{keyFIMPad, &fimPad}, {keyFIMRep, &fimRep}, {keyFIMSep, &fimSep},
		{keyPrefix, &fimPre}, {keySuffix, &fimSuf}, {keyMiddle, &fimMid},
	}
	for _, k := range ids {
		id, ok, err := getUint(md, k.key)
		if err != nil {
			return err
		}
		if ok && id < uint64(n) { // llama.cpp ignores an id past the vocabulary
			*k.dst = int32(id)
		}
	}
	for _, k := range []struct {
		key string
		dst *bool
	}{{KeyAddBOS, &v.addBOS}, {KeyAddEOS, &v.addEOS}} {
		b, ok, err := getBool(md, k.key)
		if err != nil {
			return err
		}
		if ok {
			*k.dst = b
		}
	}

	find := func(dst *int32, texts []string) {
		if *dst != -1 {
			return
		}
		for _, t := range texts {
			if id, ok := v.ids[t]; ok {
				*dst = id
				v.attrs[id] |= AttrControl
				return
			}
		}
	}
	find(&v.eot, eotTexts)
	find(&v.eom, eomTexts)
	find(&fimPre, fimPreTexts)
	find(&fimSuf, fimSufTexts)
	find(&fimMid, fimMidTexts)
	find(&fimPad, fimPadTexts)
	find(&fimRep, fimRepTexts)
	find(&fimSep, fimSepTexts)

	for id, t := range v.texts {
		if v.attrs[id]&AttrControl != 0 && strings.Contains(t, "unused") {
			v.attrs[id] |= AttrUnused
		}
	}

	v.eog = map[int32]bool{}
	for _, id := range []int32{fimPad, fimRep, fimSep} {
		if id != -1 {
			v.eog[id] = true
		}
	}
	for _, t := range eogTexts {
		if id, ok := v.ids[t]; ok {
			v.eog[id] = true
			v.attrs[id] |= AttrControl
		}
	}
	for _, t := range renderedTexts {
		if id, ok := v.ids[t]; ok {
			v.attrs[id] = AttrUserDefined
		}
	}
	for _, id := range []int32{v.eos, v.eot, v.eom} {
		if id != -1 {
			v.eog[id] = true
		}
	}
	// Where "<|end|>" only separates messages (gpt-oss, Solar Open), llama.cpp takes it out of
	// the set again.
	in := func(t string) bool {
		id, ok := v.ids[t]
		return ok && v.eog[id]
	}
	if in("<|end|>") && ((in("<|return|>") && (in("<|call|>") || in("<|calls|>"))) ||
		((in("<|call|>") || in("<|calls|>")) && in("<|flush|>"))) {
		id := v.ids["<|end|>"]
		delete(v.eog, id)
		v.attrs[id] = AttrUserDefined
	}
	if in("<|tool_response>") && in("</s>") {
		id := v.ids["</s>"]
		delete(v.eog, id)
		v.attrs[id] = AttrNormal
	}

	for id, a := range v.attrs {
		if a&(AttrControl|AttrUserDefined|AttrUnknown) != 0 {
			v.specials = append(v.specials, int32(id))
		}
	}
	// Longest first; llama.cpp's sort leaves ties in no set order, here they go by id.
	slices.SortStableFunc(v.specials, func(a, b int32) int {
		return cmp.Compare(len(v.texts[b]), len(v.texts[a]))
	})
	return nil
}

// applyNameRules sets the strip attributes llama.cpp gives some models by name.
func (v *Vocab) applyNameRules(md Metadata) error {
	name, _, err := getString(md, KeyName)
	if err != nil {
		return err
	}
	name = strings.ToLower(name)
	arch, _, err := getString(md, "general.architecture")
	if err != nil {
		return err
	}
	has := func(s string, subs ...string) bool {
		for _, x := range subs {
			if strings.Contains(s, x) {
				return true
			}
		}
		return false
	}
	set := func(text string, a Attr, on bool) error {
		id, ok := v.ids[text]
		if !ok {
			return fmt.Errorf("%w: model %q needs token %q", ErrMalformed, name, text)
		}
		if on {
			v.attrs[id] |= a
		} else {
			v.attrs[id] &^= a
		}
		return nil
	}
	switch {
	case has(v.pre, "jina-v2-de", "jina-v2-es", "jina-v2-code") || has(arch, "nomic-bert-moe", "jina-bert-v3"):
		if _, ok := v.ids["<mask>"]; ok {
			return set("<mask>", AttrLStrip, true)
		}
	case has(name, "phi-3", "phi3"):
		for _, id := range v.specials {
			v.attrs[id] |= AttrRStrip
		}
		if err := set("</s>", AttrRStrip, true); err != nil {
			return err
		}
		for _, t := range []string{"<unk>", "<s>", "<|endoftext|>"} {
			if err := set(t, AttrRStrip, false); err != nil {
				return err
			}
		}
	case has(name, "modern-bert"):
		if _, ok := v.ids["[MASK]"]; ok {
			return set("[MASK]", AttrLStrip, true)
		}
	}
	return nil
}

// llamaCppPre lists the tokenizer.ggml.pre names llama.cpp knows and this package does not
// implement, so that the error can say which case it is.
var llamaCppPre = map[string]bool{
	"minicpm5": true, "deepseek-v3": true, "youtu": true, "jais-2": true, "gemma4": true,
	"granite-embed-multi-311m": true, "sarvam-moe": true, "whitespace": true, "qwen35": true,
	"viking": true, "tekken": true, "exaone-moe": true, "chameleon": true, "gpt-4o": true,
	"llama4": true, "kanana2": true, "talkie": true, "granite-embed-multi-97m": true,
	"tiny_aya": true, "cohere2moe": true, "superbpe": true, "bailingmoe": true,
	"bailingmoe2": true, "llada-moe": true, "seed-coder": true, "hunyuan-dense": true,
	"joyai-llm": true, "kimi-k2": true, "grok-2": true, "afmoe": true, "minimax-m2": true,
}

// Typed access to metadata values.

func lookup(md Metadata, key string) (any, bool) {
	if md == nil {
		return nil, false
	}
	return md.Lookup(key)
}

func getString(md Metadata, key string) (string, bool, error) {
	x, ok := lookup(md, key)
	if !ok {
		return "", false, nil
	}
	s, ok := x.(string)
	if !ok {
		return "", false, fmt.Errorf("%w: %s is %T, want a string", ErrMalformed, key, x)
	}
	return s, true, nil
}

func getBool(md Metadata, key string) (bool, bool, error) {
	x, ok := lookup(md, key)
	if !ok {
		return false, false, nil
	}
	b, ok := x.(bool)
	if !ok {
		return false, false, fmt.Errorf("%w: %s is %T, want a bool", ErrMalformed, key, x)
	}
	return b, true, nil
}

// getUint reads a non-negative integer of any Go integer type.
func getUint(md Metadata, key string) (uint64, bool, error) {
	x, ok := lookup(md, key)
	if !ok {
		return 0, false, nil
	}
	var n int64
	switch t := x.(type) {
	case uint8:
		return uint64(t), true, nil
	case uint16:
		return uint64(t), true, nil
	case uint32:
		return uint64(t), true, nil
	case uint64:
		return t, true, nil
	case uint:
		return uint64(t), true, nil
	case int8:
		n = int64(t)
	case int16:
		n = int64(t)
	case int32:
		n = int64(t)
	case int64:
		n = t
	case int:
		n = int64(t)
	default:
		return 0, false, fmt.Errorf("%w: %s is %T, want an integer", ErrMalformed, key, x)
	}
	if n < 0 {
		return 0, false, fmt.Errorf("%w: %s is %d, want a token id", ErrMalformed, key, n)
	}
	return uint64(n), true, nil
}

func getStrings(md Metadata, key string) ([]string, bool, error) {
	x, ok := lookup(md, key)
	if !ok {
		return nil, false, nil
	}
	switch t := x.(type) {
	case []string:
		return t, true, nil
	case []any:
		out := make([]string, len(t))
		for i, e := range t {
			s, ok := e.(string)
			if !ok {
				return nil, false, fmt.Errorf("%w: %s[%d] is %T, want a string", ErrMalformed, key, i, e)
			}
			out[i] = s
		}
		return out, true, nil
	}
	return nil, false, fmt.Errorf("%w: %s is %T, want an array of strings", ErrMalformed, key, x)
}

func getFloat32s(md Metadata, key string) ([]float32, bool, error) {
	x, ok := lookup(md, key)
	if !ok {
		return nil, false, nil
	}
	switch t := x.(type) {
	case []float32:
		return t, true, nil
	case []any:
		out := make([]float32, len(t))
		for i, e := range t {
			f, ok := e.(float32)
			if !ok {
				return nil, false, fmt.Errorf("%w: %s[%d] is %T, want a float32", ErrMalformed, key, i, e)
			}
			out[i] = f
		}
		return out, true, nil
	}
	return nil, false, fmt.Errorf("%w: %s is %T, want an array of float32", ErrMalformed, key, x)
}

func getInt32s(md Metadata, key string) ([]int32, bool, error) {
	x, ok := lookup(md, key)
	if !ok {
		return nil, false, nil
	}
	conv := func(n int, at func(int) (int64, bool)) ([]int32, bool, error) {
		out := make([]int32, n)
		for i := range out {
			v, ok := at(i)
			if !ok || v < -1<<31 || v > 1<<31-1 {
				return nil, false, fmt.Errorf("%w: %s[%d] is not a 32-bit integer", ErrMalformed, key, i)
			}
			out[i] = int32(v)
		}
		return out, true, nil
	}
	switch t := x.(type) {
	case []int32:
		return t, true, nil
	case []uint32:
		return conv(len(t), func(i int) (int64, bool) { return int64(t[i]), true })
	case []int64:
		return conv(len(t), func(i int) (int64, bool) { return t[i], true })
	case []int:
		return conv(len(t), func(i int) (int64, bool) { return int64(t[i]), true })
	case []any:
		return conv(len(t), func(i int) (int64, bool) {
			switch e := t[i].(type) {
			case int32:
				return int64(e), true
			case int:
				return int64(e), true
			case int64:
				return e, true
			case uint32:
				return int64(e), true
			}
			return 0, false
		})
	}
	return nil, false, fmt.Errorf("%w: %s is %T, want an array of int32", ErrMalformed, key, x)
}
