package cli

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/compresskv/calibrate"
	"github.com/compresskv/compresskv/examples/internal/tinymodel"
	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/examples/llama/chat"
	"github.com/compresskv/compresskv/examples/niah"
	"github.com/compresskv/compresskv/kvcache"
)

// tiny writes a small random model and returns its path.
func tiny(t testing.TB, s tinymodel.Spec) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), s.Arch+"-"+string(s.Tokenizer)+".gguf")
	if err := tinymodel.Write(path, s); err != nil {
		t.Fatal(err)
	}
	return path
}

// openTiny opens a small random model with chat mode mode.
func openTiny(t testing.TB, s tinymodel.Spec, mode string) *Model {
	t.Helper()
	m, err := OpenChat(tiny(t, s), "", mode)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// convertedRetrieval writes the project's model as GGUF, as examples/convert
// does.
func convertedRetrieval(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "retrieval.gguf")
	if _, _, err := Convert(DefaultModel, "", path, "retrieval"); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestOpenGGUF: every architecture with every kind of tokenizer opens with
// its own vocabulary, end-of-generation tokens, BOS rule, the library's
// pooling kernel and the chat format of its file; the summary says so.
func TestOpenGGUF(t *testing.T) {
	for _, arch := range []string{"llama", "qwen2", "qwen3"} {
		for _, tk := range []tinymodel.Tokenizer{tinymodel.SPM, tinymodel.ChatML, tinymodel.Llama3} {
			m := openTiny(t, tinymodel.Spec{Arch: arch, Tokenizer: tk}, ChatAuto)
			want := map[tinymodel.Tokenizer]struct {
				chat chat.Template
				eog  []string
				bos  string
			}{
				tinymodel.SPM:    {"", []string{"</s>"}, "<s>"},
				tinymodel.ChatML: {chat.ChatML, []string{"<|endoftext|>", "<|im_end|>"}, ""},
				tinymodel.Llama3: {chat.Llama3, []string{"<|end_of_text|>", "<|eot_id|>"}, "<|begin_of_text|>"},
			}[tk]
			if m.ByteLevel || m.Kernel(0) != compresskv.DefaultKernel || m.Vocab == nil || m.Chat != want.chat || m.Arch != arch {
				t.Fatalf("%s/%s: byte-level %v, kernel %d, chat %q, arch %q", arch, tk, m.ByteLevel, m.Kernel(0), m.Chat, m.Arch)
			}
			for _, e := range want.eog {
				id, ok := m.Vocab.ID(e)
				if !ok || !m.IsEOG(id) {
					t.Errorf("%s/%s: %s is not end-of-generation", arch, tk, e)
				}
			}
			if m.IsEOG(m.Vocab.Size() - 300) {
				t.Errorf("%s/%s: an ordinary token ends generation", arch, tk)
			}
			if got := m.Render(m.BOS()); got != want.bos {
				t.Errorf("%s/%s: prompts begin with %q, want %q", arch, tk, got, want.bos)
			}
			sum := m.Summary()
			for _, w := range []string{"model " + m.Path + ": " + arch, "tokenizer " + m.Vocab.Model()} {
				if !strings.Contains(sum, w) {
					t.Errorf("summary %q lacks %q", sum, w)
				}
			}
			if want.chat != "" && !strings.Contains(sum, "chat template "+string(want.chat)+" (from tokenizer.chat_template)") {
				t.Errorf("summary %q does not name the template", sum)
			}
		}
	}
}

// TestChatModes: -chat auto, on, off and a format's name, and the errors of
// a mode that cannot be honoured.
func TestChatModes(t *testing.T) {
	ml := tiny(t, tinymodel.Spec{Arch: "qwen2", Tokenizer: tinymodel.ChatML})
	bare := tiny(t, tinymodel.Spec{Arch: "llama", Tokenizer: tinymodel.Llama3, NoTemplate: true})
	odd := tiny(t, tinymodel.Spec{Arch: "llama", Tokenizer: tinymodel.Llama3, Template: "{{ messages }}"})
	for _, tc := range []struct {
		path, mode string
		chat       chat.Template
		note       string
	}{
		{ml, ChatAuto, chat.ChatML, "from tokenizer.chat_template"},
		{ml, ChatOn, chat.ChatML, "from tokenizer.chat_template"},
		{ml, ChatOff, "", "off (-chat off): plain prompts; the file's template is chatml"},
		{ml, "llama3", chat.Llama3, "-chat llama3; the file's template is chatml"},
		{bare, ChatAuto, "", "none in the file"},
		{bare, "llama3", chat.Llama3, "-chat llama3"},
		{odd, ChatAuto, "", "not one this program writes"},
	} {
		m, err := OpenChat(tc.path, "", tc.mode)
		if err != nil {
			t.Fatalf("%s -chat %s: %v", filepath.Base(tc.path), tc.mode, err)
		}
		if m.Chat != tc.chat || !strings.Contains(m.ChatNote, tc.note) {
			t.Errorf("%s -chat %s: chat %q (%s), want %q (%s)", filepath.Base(tc.path), tc.mode, m.Chat, m.ChatNote, tc.chat, tc.note)
		}
		m.Close()
	}
	for _, tc := range []struct{ path, tok, mode, want string }{
		{bare, "", ChatOn, "-chat on"},
		{odd, "", ChatOn, "choose a format with -chat"},
		{ml, "", "jinja", "want auto, on, off or a format"},
		{Path(DefaultModel), "", ChatOn, "llama2.c checkpoint, which has no chat template"},
		{ml, "tok.bin", ChatAuto, "holds its own tokenizer"},
	} {
		if _, err := OpenChat(tc.path, tc.tok, tc.mode); !errors.Is(err, ErrFlags) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s -tokenizer %q -chat %s: %v, want an error saying %q", filepath.Base(tc.path), tc.tok, tc.mode, err, tc.want)
		}
	}
}

// TestNeedlePrompts: a needle prompt in each tokenizer's tokens is at most
// the length asked and close to it, its value spans several tokens that
// render as the value; a chat model's is one user turn, holding the
// haystack and the question, then the assistant's opening and the
// answer's start; a plain one begins with BOS where the model uses one.
func TestNeedlePrompts(t *testing.T) {
	hay, err := niah.LoadHaystack(Path("testdata/haystack/eval.txt"))
	if err != nil {
		t.Fatal(err)
	}
	n := niah.Needles(niah.EvalWords, 1, 3)[0]
	lead := " " + strings.SplitN(n.Ask(), "? ", 2)[1] // the answer's start
	question := strings.SplitN(n.Ask(), "? ", 2)[0][1:] + "?"
	for _, tc := range []struct {
		tok          tinymodel.Tokenizer
		mode         string
		begin, turns string
	}{
		{tinymodel.ChatML, ChatAuto, "<|im_start|>user\n", question + "<|im_end|>\n<|im_start|>assistant\n" + strings.TrimPrefix(lead, " ")},
		{tinymodel.Llama3, ChatAuto, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n", question + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n" + strings.TrimPrefix(lead, " ")},
		{tinymodel.ChatML, ChatOff, "", question + lead},
		{tinymodel.Llama3, ChatOff, "<|begin_of_text|>", question + lead},
		{tinymodel.SPM, ChatAuto, "<s>", question + lead},
	} {
		m := openTiny(t, tinymodel.Spec{Arch: "qwen2", Tokenizer: tc.tok}, tc.mode)
		for i, L := range []int{200, 700} {
			p, err := m.Needle(hay, 1234, L, float64(i)/2, n) // depth 0: the user's turn opens with the needle
			if err != nil {
				t.Fatal(err)
			}
			text := m.Render(p.Tokens)
			span := m.Render(p.Tokens[p.ValueStart:p.ValueEnd])
			if len(p.Tokens) > L || len(p.Tokens) < L-10 || span != n.Value || p.ValueEnd-p.ValueStart < 2 {
				t.Fatalf("%s -chat %s: %d tokens for %d, span [%d, %d) = %q, want %q in several tokens", tc.tok, tc.mode, len(p.Tokens), L, p.ValueStart, p.ValueEnd, span, n.Value)
			}
			if !strings.HasPrefix(text, tc.begin) || (tc.mode == ChatAuto && tc.tok != tinymodel.SPM && strings.HasPrefix(text, tc.begin+" ")) || !strings.HasSuffix(text, tc.turns) || strings.Count(text, n.Value) != 1 ||
				!strings.Contains(text[:strings.Index(text, question)], n.Sentence()) {
				t.Fatalf("%s -chat %s: the prompt\n%s\ndoes not begin with %q, hold the needle once before the question and end with %q", tc.tok, tc.mode, text, tc.begin, tc.turns)
			}
			if b := m.BOS(); len(b) == 1 && slices.Contains(p.Tokens[1:], b[0]) {
				t.Fatalf("%s -chat %s: BOS twice", tc.tok, tc.mode)
			}
		}
	}
}

// TestByteLevelGGUF: the project's model converted to GGUF opens as
// byte-level (kernel 9, exact prompts, BOS), and its needle prompt is the
// llama2.c checkpoint's, token for token.
func TestByteLevelGGUF(t *testing.T) {
	g, err := Open(convertedRetrieval(t), "")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	b, err := Open(DefaultModel, "")
	if err != nil {
		t.Fatal(err)
	}
	if !g.ByteLevel || g.Kernel(0) != DefaultByteKernel || g.Chat != "" || !slices.Equal(g.BOS(), b.BOS()) {
		t.Fatalf("converted model: byte-level %v, kernel %d, chat %q, BOS %v", g.ByteLevel, g.Kernel(0), g.Chat, g.BOS())
	}
	hay, err := niah.LoadHaystack(Path("testdata/haystack/eval.txt"))
	if err != nil {
		t.Fatal(err)
	}
	n := niah.Needles(niah.EvalWords, 1, 9)[0]
	pg, err := g.Needle(hay, 77, 300, 0.3, n)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := b.Needle(hay, 77, 300, 0.3, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(pg.Tokens) != 300 || !slices.Equal(pg.Tokens, pb.Tokens) || pg.ValueStart != pb.ValueStart || pg.ValueEnd != pb.ValueEnd {
		t.Fatalf("the converted model's prompt differs from the checkpoint's")
	}
	ig, _ := g.EncodePrompt("What is it?\n")
	ib, _ := b.EncodePrompt("What is it?\n")
	if !slices.Equal(ig, ib) {
		t.Fatalf("prompt ids %v, the checkpoint's %v", ig, ib)
	}
}

// TestEncodeChat: a user's prompt to a chat model is a user turn and the
// assistant's opening with special tokens parsed; off, the text alone with
// its special tokens parsed, as llama.cpp tokenizes a prompt.
func TestEncodeChat(t *testing.T) {
	m := openTiny(t, tinymodel.Spec{Arch: "qwen3", Tokenizer: tinymodel.ChatML}, ChatAuto)
	ids, err := m.EncodePrompt("Hi<|im_end|>")
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Render(ids); got != "<|im_start|>user\nHi<|im_end|><|im_end|>\n<|im_start|>assistant\n" {
		t.Fatalf("chat prompt %q", got)
	}
	end, _ := m.Vocab.ID("<|im_end|>")
	if !slices.Contains(ids, end) {
		t.Fatal("special tokens not parsed")
	}
	off := openTiny(t, tinymodel.Spec{Arch: "qwen3", Tokenizer: tinymodel.ChatML}, ChatOff)
	ids, err = off.EncodePrompt("Hi<|im_end|>")
	if err != nil || off.Render(ids) != "Hi<|im_end|>" || ids[len(ids)-1] != end {
		t.Fatalf("plain prompt %v %q, %v", ids, off.Render(ids), err)
	}
	// A text the vocabulary cannot tokenize is an error, from the probe
	// builders too.
	bad := "\xf7\xbf\xbf\xbf"
	if _, err := off.EncodePrompt(bad); err == nil {
		t.Fatal("an untokenizable prompt was accepted")
	}
	_, err = m.Needle(strings.Repeat("word "+bad+" ", 400), 0, 200, 0.5, niah.Needles(niah.EvalWords, 1, 1)[0])
	if err == nil || !strings.Contains(err.Error(), "cannot be tokenized") {
		t.Fatalf("a haystack that cannot be tokenized: %v", err)
	}
}

// TestAnswerProbe: decoding an answer stops at an end-of-generation token
// without running it, and a right answer is found from the decoded text,
// with the subword model's pieces; the needle answer of a subword model
// goes through the same judgement.
func TestAnswerProbe(t *testing.T) {
	hay, err := niah.LoadHaystack(Path("testdata/haystack/eval.txt"))
	if err != nil {
		t.Fatal(err)
	}
	n := niah.Needles(niah.EvalWords, 1, 4)[0]
	for _, tc := range []struct {
		tok    tinymodel.Tokenizer
		favour string
		answer string
		right  bool
		ran    int // tokens run after the prompt
	}{
		{tinymodel.ChatML, "<|im_end|>", n.Value, false, 0},
		{tinymodel.Llama3, "<|eot_id|>", n.Value, false, 0},
		{tinymodel.SPM, "</s>", n.Value, false, 0},
		{tinymodel.ChatML, "Ġmagic", "magic", true, 1}, // " magic magic": decided at the second token
		{tinymodel.SPM, "▁the", "the", true, 1},
		{tinymodel.SPM, "▁the", "them", false, 1}, // " the the": wrong at the space after "the"
	} {
		m := openTiny(t, tinymodel.Spec{Arch: "llama", Tokenizer: tc.tok, Favour: tc.favour}, ChatAuto)
		p, err := m.Needle(hay, 0, 150, 0.5, n)
		if err != nil {
			t.Fatal(err)
		}
		pre, err := Prefill(m.Model, kvcache.Float32, p.Tokens)
		if err != nil {
			t.Fatal(err)
		}
		s := pre.Full()
		probe := calibrate.Probe{Prompt: p.Tokens, AnswerStart: p.ValueStart, AnswerEnd: p.ValueEnd, Answer: tc.answer}
		right, err := m.AnswerProbe(s, pre.Logits, &probe)
		if err != nil {
			t.Fatal(err)
		}
		if right != tc.right || s.Pos() != len(p.Tokens)+tc.ran {
			t.Errorf("%s favouring %s, answer %q: right %v after running %d tokens; want %v after %d", tc.tok, tc.favour, tc.answer, right, s.Pos()-len(p.Tokens), tc.right, tc.ran)
		}
		if tc.answer == n.Value {
			s = pre.Full()
			if ok, err := m.Answer(s, pre.Logits, p); ok || err != nil || s.Pos() != len(p.Tokens) {
				t.Errorf("%s: the needle answered %v (%v) after %d tokens, want a wrong answer at once", tc.tok, ok, err, s.Pos()-len(p.Tokens))
			}
		}
	}
}

// TestAnswerStopsEarly checks that stopping at the first wrong digit gives
// the verdict of decoding the whole answer, on the project's model with a
// full cache and with a cache cut to the window (where answers go wrong).
func TestAnswerStopsEarly(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the model")
	}
	m, err := Open(DefaultModel, "")
	if err != nil {
		t.Fatal(err)
	}
	hay, err := niah.LoadHaystack(Path("testdata/haystack/eval.txt"))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := compresskv.New(compresskv.StreamingLLM, compresskv.Config{Budget: 16})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[bool]int{}
	for i, n := range niah.Needles(niah.EvalWords, 4, 5) {
		p, err := m.Needle(hay, i*997, 256, float64(i)/3, n)
		if err != nil {
			t.Fatal(err)
		}
		pre, err := Prefill(m.Model, kvcache.Float32, p.Tokens)
		if err != nil {
			t.Fatal(err)
		}
		for _, pol := range []*compresskv.Policy{nil, stream} {
			session := func() *llama.Session {
				if pol == nil {
					return pre.Full()
				}
				s, _, err := pre.Compress(t.Context(), pol)
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
			full, err := niah.Greedy(session(), pre.Logits, len(n.Value)+1, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.Answer(session(), pre.Logits, p)
			if err != nil {
				t.Fatal(err)
			}
			if want := niah.Correct(full, n); got != want {
				t.Errorf("needle %d, policy %v: Answer says %v, the whole answer %q says %v", i, pol != nil, got, m.Tok.Decode(full), want)
			}
			seen[got]++
		}
	}
	if seen[true] == 0 || seen[false] == 0 {
		t.Errorf("verdicts %v: the test needs right and wrong answers", seen)
	}
}

// TestProfileAdvice: a method that needs a profile, on a model without
// one, is told the exact command that makes it and where it is written.
func TestProfileAdvice(t *testing.T) {
	m := openTiny(t, tinymodel.Spec{Arch: "qwen2", Tokenizer: tinymodel.ChatML}, ChatAuto)
	f := &ModelFlags{Model: m.Path, Chat: ChatOff, Profile: DefaultProfile}
	_, err := f.ProfileFor(m, compresskv.CompressKV)
	want := "go run ./examples/calibrate -model " + m.Path + " -chat off (it writes out/qwen2-chatml.profile.json) and pass it with -profile out/qwen2-chatml.profile.json"
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "not on "+m.Path) {
		t.Fatalf("error %v\nwant it to say %q", err, want)
	}
	f.Profile = filepath.Join(t.TempDir(), "none.json")
	if _, err := f.ProfileFor(m, compresskv.AdaCompressKV); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), want) {
		t.Fatalf("a missing profile: %v", err)
	}
}
