package quant

import (
	"os/exec"
	"testing"
)

// TestKernelsGenerated: the committed kernels_amd64.s and
// kernels_gen_amd64.go are what internal/kgen writes (go generate).
func TestKernelsGenerated(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the generator")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	out, err := exec.Command(goTool, "run", "./internal/kgen", "-check").CombinedOutput()
	if err != nil {
		t.Fatalf("the generated kernels are stale (run go generate in package quant): %v\n%s", err, out)
	}
}
