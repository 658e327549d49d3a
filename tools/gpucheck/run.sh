#!/usr/bin/env bash
# GPU check of backend/cuda: one command that returns its figures within a
# 600 s call, whatever fails. Build the test binary anywhere (no cgo, no
# CUDA toolkit), and, for compute-sanitizer, gather it beside the binary:
#   tools/gpucheck/run.sh --pack      # bin/cuda.test and bin/sanitizer/
# then on the GPU machine, from the repository root:
#   tools/gpucheck/run.sh
# or here, against the fake device (the PTX executor), end to end:
#   tools/gpucheck/run.sh --fake
#
# Phases, each under its own timeout, each appending its summary lines to
# $OUT/summary.txt (and printing them) as soon as it ends:
#   preflight    driver, device, memory, compute capability; aborts on failure
#   resources    the driver JIT's registers, local memory, shared memory and
#                occupancy per kernel (cuFuncGetAttribute,
#                cuOccupancyMaxActiveBlocksPerMultiprocessor)
#   correctness  a Llama-3.1-8B layer at 32K: attention and window sums
#                against the float64 reference, kept sets against the CPU
#                backend, compaction
#   timing       CUDA-event times per operation and per kernel, 32K and 128K
#   sanitizer    compute-sanitizer racecheck and synccheck on a short subset
#                (the fake device: every schedule of the executor instead)
#   tests        the GPU tests of the package (TestGPU*)
#   torch        PyTorch doing the same, when python3 has torch
# Environment: BIN (the test binary), OUT (results), BUDGET (seconds for
# the whole run, 570), GPUCHECK_L (lengths; 32768,131072), SANITIZER.
set -uo pipefail
cd "$(dirname "$0")/../.."
MODE=gpu
case "${1:-}" in
  --fake) MODE=fake ;;
  --pack)
    set -e
    mkdir -p bin
    CGO_ENABLED=0 go test -c -o bin/cuda.test ./backend/cuda
    root=$(dirname "$(dirname "$(dirname "$(tools/ptxas/fetch.sh)")")") # .../root of the unpacked toolkit
    rm -rf bin/sanitizer && mkdir -p bin/sanitizer
    # compute-sanitizer finds its libraries beside itself (NVIDIA's layout;
    # Debian's splits them into /usr/lib).
    cp "$root"/usr/bin/compute-sanitizer "$root"/usr/bin/TreeLauncher* "$root"/usr/lib/nvidia-cuda-toolkit/compute-sanitizer/*.so bin/sanitizer/
    du -sh bin/cuda.test bin/sanitizer
    exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--fake | --pack]" >&2; exit 2 ;;
esac
BIN=$(realpath -m "${BIN:-bin/cuda.test}")
OUT=${OUT:-${TMPDIR:-/tmp}/gpucheck}
BUDGET=${BUDGET:-570}
mkdir -p "$OUT"
: >"$OUT/summary.txt"
start=$SECONDS
if [ "$MODE" = fake ]; then
  export COMPRESSKV_GPUCHECK=fake GPUCHECK_L=${GPUCHECK_L:-512}
  if [ ! -x "$BIN" ]; then
    echo "building $BIN" >&2
    mkdir -p "$(dirname "$BIN")" && CGO_ENABLED=0 go test -c -o "$BIN" ./backend/cuda || exit 2
  fi
else
  export COMPRESSKV_GPUCHECK=gpu GPUCHECK_L=${GPUCHECK_L:-32768,131072}
fi
if [ ! -x "$BIN" ]; then
  echo "SUMMARY preflight:  FAIL no test binary at $BIN: tools/gpucheck/run.sh --pack builds it" | tee -a "$OUT/summary.txt"
  exit 2
fi

# left prints the seconds the budget leaves, reserving r for the phases
# after this one.
left() { echo $((BUDGET - (SECONDS - start) - $1)); }

# phase NAME SECONDS RESERVE CMD...: runs CMD under the smaller of SECONDS
# and what the budget leaves after RESERVE, keeps its output in
# $OUT/NAME.txt and appends its SUMMARY lines (or why it gave none) to the
# summary.
phase() {
  local name=$1 limit=$2 reserve=$3
  shift 3
  local t=$(($(left "$reserve") < limit ? $(left "$reserve") : limit))
  if [ "$t" -lt 5 ]; then
    echo "SUMMARY $name: SKIPPED: the budget of ${BUDGET}s is spent" | tee -a "$OUT/summary.txt"
    return 3
  fi
  local t0=$SECONDS
  timeout --kill-after=5 "$t" "$@" >"$OUT/$name.txt" 2>&1
  local rc=$?
  grep -a '^SUMMARY ' "$OUT/$name.txt" | tee -a "$OUT/summary.txt"
  local how="ok"
  [ "$rc" = 124 ] || [ "$rc" = 137 ] && how="TIMEOUT after ${t}s"
  [ "$rc" != 0 ] && [ "$how" = ok ] && how="FAIL (exit $rc, see $OUT/$name.txt: $(grep -a -m1 -E -- '--- FAIL|FAIL|panic|Error' "$OUT/$name.txt" | cut -c1-160))"
  echo "SUMMARY $name: $how in $((SECONDS - t0))s" | tee -a "$OUT/summary.txt"
  return "$rc"
}

# check NAME LIMIT RESERVE TEST: the phase of one check of the test binary.
check() {
  phase "$1" "$2" "$3" bash -c "cd backend/cuda && exec '$BIN' -test.run '^$4\$' -test.v -test.count=1 -test.timeout $(($2 - 5))s"
}

echo "== gpucheck ($MODE) $(date -u +%Y-%m-%dT%H:%MZ), budget ${BUDGET}s, results in $OUT"
if ! check preflight 40 480 TestGPUCheckPreflight; then
  echo "== preflight failed: nothing else can run"
  exit 1
fi
check resources 60 400 TestGPUCheckResources
check correctness 130 260 TestGPUCheckCorrectness
check timing 130 130 TestGPUCheckTiming

if [ "$MODE" = fake ]; then
  check sanitizer 60 0 TestGPUCheckSanitize
else
  san=${SANITIZER:-}
  for c in "$san" "$(command -v compute-sanitizer 2>/dev/null)" bin/sanitizer/compute-sanitizer /usr/local/cuda/bin/compute-sanitizer \
    "${XDG_CACHE_HOME:-$HOME/.cache}/compresskv-ptxas/root/usr/bin/compute-sanitizer"; do
    if [ -n "$c" ] && [ -x "$c" ]; then san=$c; break; fi
  done
  if [ -x "$san" ]; then
    for tool in racecheck synccheck; do
      phase "sanitizer-$tool" 60 $((tool == racecheck ? 100 : 40)) "$san" --tool "$tool" --error-exitcode 9 --print-limit 20 \
        "$BIN" -test.run '^TestGPUCheckSanitize$' -test.v -test.count=1
    done
  else
    echo "SUMMARY sanitizer: SKIPPED: no compute-sanitizer (tools/gpucheck/run.sh --pack puts one in bin/sanitizer)" | tee -a "$OUT/summary.txt"
  fi
  phase tests 90 40 bash -c "cd backend/cuda && '$BIN' -test.run '^TestGPU[^C]' -test.v -test.count=1 -test.short -test.timeout 85s | grep -aE '^(---|ok|FAIL|PASS)|skipped|differ|cycles in' | sed 's/^/SUMMARY tests:      /'"
  if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    phase torch 60 0 bash -c "python3 tools/gpucheck/torch_compare.py | sed 's/^/SUMMARY torch:      /'"
  else
    echo "SUMMARY torch: SKIPPED: no PyTorch with CUDA" | tee -a "$OUT/summary.txt"
  fi
fi

echo
echo "== Summary ($MODE, $((SECONDS - start))s)"
cat "$OUT/summary.txt"
! grep -q 'FAIL' "$OUT/summary.txt"
