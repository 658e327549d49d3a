package cuda

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/backend/cuda/internal/ptx"
)

// unreachable lists PTX instructions that no launch of the backend can
// execute, each with the reason. An entry names the kernel, how many of its
// instructions the entry excuses (TestUnreachableEntries holds it to that),
// a pattern of the instruction's text and, because label numbers and
// register names change whenever the module is regenerated, patterns of its
// neighbourhood: before is matched against the up to contextLines lines
// that precede it in the module, after against those that follow it (an
// empty pattern matches anything). Context lines are joined with "\n", in
// order, each with its whitespace collapsed to one space and its ';'
// dropped, so `\A` anchors after at the next line and `$` anchors before at
// the previous one. The coverage check fails on any other line never
// executed.
var unreachable = []struct {
	kernel  string
	lines   int // how many instructions of the module the entry excuses
	pattern string
	before  string
	after   string
	why     string
}{
	// widen_rows: launched only for float16/bfloat16 keys (gemm.go,
	// windowSumsGEMM: c.dtype != kvcache.Float32), so load()'s float32 arm
	// (the kernel's one ld.global.f32) never runs.
	{"widen_rows", 1, `^bra\.uni\s+\$L__BB\d+_\d+$`, "", `\A\$L__BB\d+_\d+:\nld\.global\.u16 `,
		"float16/bfloat16 keys only: the branch to the float32 load"},
	{"widen_rows", 1, `^add\.s64\s+%rd\d+, %rd\d+, %rd\d+$`, "", `\Ald\.global\.f32 `, "float16/bfloat16 keys only: the float32 load's address"},
	{"widen_rows", 1, `^ld\.global\.f32\s`, "", "", "float16/bfloat16 keys only: the float32 load"},
	// colsum_rows: C is a chunk's row count, min(chunk, w - i0) with
	// i0 < w and chunk >= 1 (gemm.go, windowSumsGEMM and gemmChunkRows),
	// so the arm for an empty chunk (acc = 0) never runs.
	{"colsum_rows", 1, `^bra\.uni\s+\$L__BB\d+_\d+$`,
		`(?s)\[colsum_rows_param_3\]\n.*\nsetp\.gt\.s32 %p\d+, %r\d+, 0\n@%p\d+ bra \S+$`, "",
		"C >= 1: the branch for an empty chunk"},
	{"colsum_rows", 2, `^cvt\.s64\.s32\s+%rd\d+, %r\d+$|^mov\.f32\s+%f\d+, 0f00000000$`,
		`(?m)^\$L__BB\d+_\d+:$`, `(?m)^\$L__BB\d+_\d+:\nmul\.wide\.s32 `,
		"C >= 1: the empty chunk's sum"},
}

// contextLines is how many lines before and after a missed instruction an
// unreachable entry's before and after patterns see.
const contextLines = 6

// TestMain runs the tests, then, when the whole suite ran (no -run, -skip
// or -short), requires every line of every kernel of the embedded PTX to have
// executed in the executor, except those listed in unreachable. It prints
// the coverage report with -v.
func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	filtered := false
	for _, f := range []string{"test.run", "test.skip", "test.list"} {
		if fl := flag.Lookup(f); fl != nil && fl.Value.String() != "" {
			filtered = true
		}
	}
	if code != 0 || testing.Short() || filtered {
		os.Exit(code)
	}
	report, ok := ptxCoverage()
	if testing.Verbose() || !ok {
		fmt.Print(report)
	}
	if !ok {
		fmt.Println("FAIL: PTX lines never executed (list them in unreachable with the reason, or test them)")
		code = 1
	}
	os.Exit(code)
}

// unreachableEntry returns the index of the entry of unreachable that
// excuses line l of kernel name of the module src, or -1.
func unreachableEntry(src []string, name string, l ptx.Line) int {
	// context returns the normalised lines [from, to) of the module
	// (1-based line numbers), clipped to it.
	context := func(from, to int) string {
		var ls []string
		for n := max(from, 1); n < to && n <= len(src); n++ {
			ls = append(ls, strings.TrimSuffix(strings.Join(strings.Fields(src[n-1]), " "), ";"))
		}
		return strings.Join(ls, "\n")
	}
	match := func(pattern, text string) bool {
		return pattern == "" || regexp.MustCompile(pattern).MatchString(text)
	}
	for i, u := range unreachable {
		if u.kernel == name && match(u.pattern, l.Text) &&
			match(u.before, context(l.N-contextLines, l.N)) && match(u.after, context(l.N+1, l.N+1+contextLines)) {
			return i
		}
	}
	return -1
}

// ptxCoverage reports, per kernel of the embedded module, the lines
// executed across every fake-device launch of the test binary.
func ptxCoverage() (string, bool) {
	mod, err := loadModule(ptxSource)
	if err != nil {
		return "PTX coverage: " + err.Error() + "\n", false
	}
	src := strings.Split(ptxSource, "\n")
	var b strings.Builder
	ok := true
	b.WriteString("PTX line coverage of kernels/compresskv.ptx (executor, whole suite):\n")
	for _, name := range mod.Kernels() {
		lines, missed := mod.Kernel(name).LineCoverage()
		var bad []string
		excused := 0
		for _, l := range missed {
			if unreachableEntry(src, name, l) < 0 {
				bad = append(bad, fmt.Sprintf("    line %d: %s", l.N, l.Text))
			} else {
				excused++
			}
		}
		fmt.Fprintf(&b, "  %-15s %4d of %4d lines executed, %d listed unreachable, %d missed\n", name, lines-len(missed), lines, excused, len(bad))
		for _, s := range bad {
			b.WriteString(s + "\n")
		}
		if len(bad) > 0 {
			ok = false
		}
	}
	return b.String(), ok
}

// TestUnreachableEntries: every entry of unreachable excuses exactly the
// number of instructions of its kernel it says, in the embedded module, so
// that an entry left stale by a regeneration, or whose patterns grew loose
// enough to excuse lines a test should reach, fails here rather than hiding
// in the coverage report.
func TestUnreachableEntries(t *testing.T) {
	mod, err := ptx.Parse(ptxSource) // fresh: no line has executed
	if err != nil {
		t.Fatal(err)
	}
	src := strings.Split(ptxSource, "\n")
	counts := make([]int, len(unreachable))
	for _, name := range mod.Kernels() {
		_, all := mod.Kernel(name).LineCoverage()
		for _, l := range all {
			if i := unreachableEntry(src, name, l); i >= 0 {
				counts[i]++
			}
		}
	}
	for i, u := range unreachable {
		if counts[i] != u.lines {
			t.Errorf("unreachable entry %d (%s: %q, %s) excuses %d instructions of the module, want %d", i, u.kernel, u.pattern, u.why, counts[i], u.lines)
		}
	}
}
