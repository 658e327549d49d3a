package chat

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// readCases reads testdata/chat/cases.txt: the templates and conversations
// that tools/ggufgold/chat.cpp ran through llama.cpp.
func readCases(t *testing.T) (templates []string, convs [][]Message) {
	t.Helper()
	f, err := os.Open("../../../testdata/chat/cases.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	unescape := strings.NewReplacer(`\n`, "\n", `\t`, "\t", `\\`, `\`)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "template "):
			templates = append(templates, unescape.Replace(line[len("template "):]))
		case line == "conv":
			convs = append(convs, nil)
		case strings.HasPrefix(line, "msg "):
			role, content, _ := strings.Cut(line[len("msg "):], " ")
			convs[len(convs)-1] = append(convs[len(convs)-1], Message{role, unescape.Replace(content)})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return templates, convs
}

// unescapeGolden undoes chat.cpp's escape: \\, \n, \t, \r and \xHH.
func unescapeGolden(t *testing.T, s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'x':
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				t.Fatalf("bad escape in golden: %q", s[i-1:i+3])
			}
			b.WriteByte(byte(v))
			i += 2
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// TestAgainstLlamaCpp holds Detect and Apply against what llama.cpp's
// llama_chat_apply_template wrote for every template, conversation and
// add_ass of testdata/chat/cases.txt (testdata/chat/golden.txt, recorded by
// tools/ggufgold/chat.cpp). A template llama.cpp does not know must be
// ErrUnknown here; one it formats in a family this package does not write
// must be ErrUnsupported; every other case must be the same text.
func TestAgainstLlamaCpp(t *testing.T) {
	templates, convs := readCases(t)
	f, err := os.Open("../../../testdata/chat/golden.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	written := map[Template]int{}
	cases, unsupported := 0, 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		fields := strings.SplitN(sc.Text(), " ", 6)
		if len(fields) < 5 || fields[0] != "case" {
			t.Fatalf("malformed golden line %q", sc.Text())
		}
		ti, _ := strconv.Atoi(fields[1])
		ci, _ := strconv.Atoi(fields[2])
		add := fields[3] == "1"
		rc, _ := strconv.Atoi(fields[4])
		want := ""
		if len(fields) == 6 {
			want = unescapeGolden(t, fields[5])
		}
		cases++
		tmpl, err := Detect(templates[ti])
		switch {
		case rc < 0:
			if !errors.Is(err, ErrUnknown) {
				t.Errorf("template %d: llama.cpp does not know it, Detect gives %q, %v", ti, tmpl, err)
			}
			continue
		case errors.Is(err, ErrUnsupported):
			unsupported++
			continue
		case err != nil:
			t.Errorf("template %d: %v (llama.cpp formats it)", ti, err)
			continue
		}
		got, err := Apply(tmpl, convs[ci], add)
		if err != nil {
			t.Errorf("template %d (%s), conversation %d: %v", ti, tmpl, ci, err)
			continue
		}
		if got != want {
			t.Errorf("template %d (%s), conversation %d, add_ass %v:\n got %q\nwant %q", ti, tmpl, ci, add, got, want)
			continue
		}
		if len(want) != rc {
			t.Errorf("template %d: golden text of %d bytes, llama.cpp reported %d", ti, len(want), rc)
		}
		written[tmpl]++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if want := len(templates) * len(convs) * 2; cases != want {
		t.Fatalf("golden has %d cases, cases.txt makes %d: regenerate it with tools/ggufgold/chat.cpp", cases, want)
	}
	for _, tm := range Templates {
		if written[tm] == 0 {
			t.Errorf("format %s was never compared with llama.cpp", tm)
		}
	}
	t.Logf("%d cases: %d equal to llama.cpp over %d formats, %d in families not written", cases, cases-unsupported, len(written), unsupported)
}

func TestDetectFamilies(t *testing.T) {
	for _, c := range []struct {
		tmpl string
		want Template
		err  error
	}{
		{"{{'<|im_start|>' + message['role']}}", ChatML, nil},
		{"<|start_header_id|>{{ role }}<|end_header_id|>", Llama3, nil},
		{"<|im_start|>x<|im_sep|>", "", ErrUnsupported},
		{"[INST] {{ m }} [/INST] <<SYS>>", Llama2Sys, nil},
		{"[SYSTEM_PROMPT]{{ s }}[INST]", MistralV7, nil},
		{"USER: {{ a }} ASSISTANT: ", "", ErrUnsupported},
		{"{{ content }}", "", ErrUnknown},
		{"", "", ErrUnknown},
		{"llama3", Llama3, nil},
	} {
		got, err := Detect(c.tmpl)
		if got != c.want || !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
			t.Errorf("Detect(%q) = %q, %v; want %q, %v", c.tmpl, got, err, c.want, c.err)
		}
	}
}

func TestApplyRejects(t *testing.T) {
	if _, err := Apply(ChatML, []Message{{"tool", "x"}}, true); !errors.Is(err, ErrRole) {
		t.Errorf("role tool: %v, want ErrRole", err)
	}
	if _, err := Apply("vicuna", []Message{{"user", "x"}}, true); !errors.Is(err, ErrUnknown) {
		t.Errorf("format vicuna: %v, want ErrUnknown", err)
	}
}

func ExampleApply() {
	tmpl, err := Detect("{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n'}}{% endfor %}")
	if err != nil {
		panic(err)
	}
	prompt, err := Apply(tmpl, []Message{
		{Role: "system", Content: "Answer with one word."},
		{Role: "user", Content: "What is the pass key?"},
	}, true)
	if err != nil {
		panic(err)
	}
	fmt.Print(prompt)
	// Output:
	// <|im_start|>system
	// Answer with one word.<|im_end|>
	// <|im_start|>user
	// What is the pass key?<|im_end|>
	// <|im_start|>assistant
}
