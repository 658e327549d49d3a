package cuda

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

// unreachable lists PTX instructions that no launch of the backend can
// execute, by kernel and a pattern of the instruction's text (line numbers
// and register names change when the module is regenerated), each with the
// reason. The coverage check fails on any other line never executed.
var unreachable = []struct {
	kernel, pattern, why string
}{
	// mean_groups: per >= 1 (Selection.PerRow is checked), so the loop over
	// the group's rows always runs.
	{"mean_groups", `^bra\.uni\s+\$L__BB3_2$`, "per >= 1: the branch for an empty group"},
	{"mean_groups", `^cvt\.s64\.s32\s+%rd50, %r11$|^cvt\.s64\.s32\s+%rd49, %r1$|^mov\.f32\s+%f26, 0f00000000$`, "per >= 1: the sum of an empty group"},
	// pool1d: kernels up to 15 sum at most 15 values directly; the loop
	// unrolled by 8 never takes a second turn.
	{"pool1d", `^bra\.uni\s+\$L__BB2_16$`, "kernel <= 15: no second turn of the 8-way unrolled sum"},
	// topk_rows: with 0 < k < n the k-th key's bucket always exists, so
	// the bucket scan always breaks before its end.
	{"topk_rows", `^bra\.uni\s+\$L__BB4_33$`, "the scan over 256 buckets always finds the k-th key"},
	// attend_partial: grid.z = ceil(group/8), so every block has at least
	// one query head (nh > 0).
	{"attend_partial", `^bra\.uni\s+\$L__BB6_353$`, "nh > 0: the branch past the output loop for a block without heads"},
}

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

// ptxCoverage reports, per kernel of the embedded module, the lines
// executed across every fake-device launch of the test binary.
func ptxCoverage() (string, bool) {
	mod, err := loadModule(ptxSource)
	if err != nil {
		return "PTX coverage: " + err.Error() + "\n", false
	}
	var b strings.Builder
	ok := true
	b.WriteString("PTX line coverage of kernels/compresskv.ptx (executor, whole suite):\n")
	for _, name := range mod.Kernels() {
		lines, missed := mod.Kernel(name).LineCoverage()
		var bad []string
		excused := 0
		for _, l := range missed {
			why := ""
			for _, u := range unreachable {
				if u.kernel == name && regexp.MustCompile(u.pattern).MatchString(l.Text) {
					why = u.why
				}
			}
			if why == "" {
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
