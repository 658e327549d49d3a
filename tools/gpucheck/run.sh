#!/usr/bin/env bash
# GPU check of backend/cuda, for a machine with an NVIDIA GPU and PyTorch.
#
# Build the test binary anywhere (no cgo, no CUDA toolkit needed):
#   CGO_ENABLED=0 go test -c -o bin/cuda.test ./backend/cuda
# then, on the GPU machine, from the repository root:
#   tools/gpucheck/run.sh
# It runs the GPU tests (same kept positions as the CPU, attention against
# the float64 reference, the cuBLAS window sums against the fused kernels,
# 1,000 create/compress/close cycles after a warm-up), the benchmarks at 32K
# and 128K tokens, H2O's all-query scoring at 4K and 16K with cuBLAS and with
# the fused kernels, the PyTorch equivalent, and prints a table last: each
# benchmark with its ratio to PyTorch on the same GPU (torch ms / go ms: above
# 1, the Go backend is faster).
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
(cd backend/cuda && "$BIN" -test.run '^TestGPU|^TestSystemDiscovery' -test.v -test.count=1 -test.timeout 300s) 2>&1 | tee "$OUT/tests.txt" | grep -E '^(---|ok|FAIL|PASS)|skipped|differ|cycles in|CUDA found'
tests_rc=${PIPESTATUS[0]}

echo "== Go benchmarks"
"$BIN" -test.run '^$' -test.bench 'GPU' -test.benchtime "$BENCHTIME" -test.timeout 600s 2>&1 | tee "$OUT/bench.txt" | grep -E '^Benchmark|FAIL|skip'

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
cublas=$(grep -m1 -o 'cuBLAS [^;]*' "$OUT/tests.txt" || true)
echo "cublas: ${cublas:-unknown}"
printf '%-36s %10s %10s %10s %10s %8s\n' "benchmark (32 q heads, 8 KV, d=128)" "go ms" "go rate" "torch ms" "torch rate" "ratio"
row() { # label, Go benchmark name, torch line prefix, Go rate unit
  local go_line go_ms go_rate t_line t_ms t_rate ratio
  go_line=$(grep -E "^$2" "$OUT/bench.txt" | head -1)
  go_ms=$(echo "$go_line" | awk '{for(i=1;i<=NF;i++) if ($i ~ /^ms\//) print $(i-1)}')
  go_rate=$(echo "$go_line" | awk -v u="$4" '{for(i=1;i<=NF;i++) if ($i==u) print $(i-1)}')
  t_line=$(grep -E "^$3 " "$OUT/torch.txt" | head -1)
  t_ms=$(echo "$t_line" | awk '{print $3}')
  t_rate=$(echo "$t_line" | awk '{print $4}')
  ratio=$(awk -v a="$t_ms" -v b="$go_ms" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b }')
  printf '%-36s %10s %10s %10s %10s %8s\n' "$1" "${go_ms:--}" "${go_rate:--}" "${t_ms:--}" "${t_rate:--}" "${ratio:--}"
}
for op in SelectCompact Attend; do
  for L in 32K 128K; do
    row "$op L=$L (GB/s)" "BenchmarkGPU$op/L=$L" "$op L=$L" GB/s
  done
done
for L in 4K 16K; do
  for path in cublas fused; do
    row "H2OScores L=$L $path (TFLOP/s)" "BenchmarkGPUH2OScores/L=$L/$path" "H2OScores L=$L" TFLOP/s
  done
done
exit "$tests_rc"
