#!/usr/bin/env bash
# GPU check of backend/cuda, for a machine with an NVIDIA GPU and PyTorch.
#
# Build the test binary anywhere (no cgo, no CUDA toolkit needed):
#   CGO_ENABLED=0 go test -c -o bin/cuda.test ./backend/cuda
# then, on the GPU machine, from the repository root:
#   tools/gpucheck/run.sh
# It runs the GPU tests (same kept positions as the CPU, attention against
# the float64 reference, 1,000 create/compress/close cycles), the benchmarks
# at 32K and 128K tokens, the PyTorch equivalent, and prints a table last.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=$(realpath -m "${BIN:-bin/cuda.test}")
OUT=${OUT:-${TMPDIR:-/tmp}/gpucheck}
BENCHTIME=${BENCHTIME:-10x}
mkdir -p "$OUT"
if [ ! -x "$BIN" ]; then
  echo "missing $BIN: build it with CGO_ENABLED=0 go test -c -o bin/cuda.test ./backend/cuda" >&2
  exit 2
fi
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)

echo "== GPU tests"
(cd backend/cuda && "$BIN" -test.run '^TestGPU|^TestSystemDiscovery' -test.v -test.count=1 -test.timeout 300s) 2>&1 | tee "$OUT/tests.txt" | grep -E '^(---|ok|FAIL|PASS)|skipped|differ|cycles in'
tests_rc=${PIPESTATUS[0]}

echo "== Go benchmarks"
"$BIN" -test.run '^$' -test.bench 'GPU' -test.benchtime "$BENCHTIME" -test.timeout 300s 2>&1 | tee "$OUT/bench.txt" | grep -E '^Benchmark|FAIL|skip'

echo "== PyTorch"
python3 tools/gpucheck/torch_compare.py 2>&1 | tee "$OUT/torch.txt"

echo
echo "== Summary"
echo "date:   $(date -u +%Y-%m-%dT%H:%MZ)"
echo "gpu:    ${GPU:-unknown}"
echo "driver: ${DRIVER:-unknown}"
if [ "$tests_rc" != 0 ]; then status="FAIL (see $OUT/tests.txt)"
elif grep -q -- '--- SKIP: TestGPU' "$OUT/tests.txt"; then status="SKIPPED: no GPU found (see $OUT/tests.txt)"; tests_rc=3
else status=pass; fi
echo "tests:  $status"
printf '%-34s %12s %10s %12s %10s\n' "benchmark (32 q heads, 8 KV, d=128)" "go ms" "go GB/s" "torch ms" "torch GB/s"
for op in SelectCompact Attend; do
  for L in 32K 128K; do
    go_line=$(grep -E "^BenchmarkGPU$op/L=$L" "$OUT/bench.txt" | head -1)
    go_ms=$(echo "$go_line" | awk '{for(i=1;i<=NF;i++) if ($i ~ /^ms\//) print $(i-1)}')
    go_gbs=$(echo "$go_line" | awk '{for(i=1;i<=NF;i++) if ($i=="GB/s") print $(i-1)}')
    t_line=$(grep -E "^$op L=$L " "$OUT/torch.txt" | head -1)
    t_ms=$(echo "$t_line" | awk '{print $3}')
    t_gbs=$(echo "$t_line" | awk '{print $4}')
    printf '%-34s %12s %10s %12s %10s\n' "$op L=$L" "${go_ms:--}" "${go_gbs:--}" "${t_ms:--}" "${t_gbs:--}"
  done
done
exit "$tests_rc"
