#!/usr/bin/env bash
# Assembles the embedded PTX module (backend/cuda/kernels/compresskv.ptx)
# with ptxas for sm_80 and sm_90, prints each kernel's registers, spills and
# shared memory, and fails on any ptxas error or warning and on any spill.
# ptxas comes from tools/ptxas/fetch.sh (Debian's nvidia-cuda-toolkit 11.8).
set -euo pipefail
cd "$(dirname "$0")/../.."
ptxas=$(tools/ptxas/fetch.sh)
ptx=${PTX:-backend/cuda/kernels/compresskv.ptx}
"$ptxas" --version | tail -1
fail=0
printf '%-22s %-6s %5s %13s %12s %10s\n' kernel arch regs "spill st/ld" "stack bytes" "smem bytes"
for arch in sm_80 sm_90; do
  log=$(mktemp)
  if ! "$ptxas" -arch="$arch" -v -warn-spills -warn-lmem-usage -o /dev/null "$ptx" >"$log" 2>&1; then
    cat "$log"; echo "ptxas failed for $arch"; exit 1
  fi
  if grep -qiE 'warning|error' "$log"; then
    grep -iE 'warning|error' "$log"; echo "ptxas warned for $arch"; fail=1
  fi
  # ptxas -v prints, per kernel: "Compiling entry function 'k' for 'sm_xx'",
  # "N bytes stack frame, S bytes spill stores, L bytes spill loads",
  # "Used R registers[, M bytes smem], ...".
  awk -v arch="$arch" '
    /Compiling entry function/ { match($0, /function .[a-z0-9_]+/); k = substr($0, RSTART + 10, RLENGTH - 10); next }
    /bytes stack frame/ { stack = $1 + 0; st = $5 + 0; ld = $9 + 0; next }
    /Used [0-9]+ registers/ {
      regs = $0; sub(/.*Used /, "", regs); regs += 0
      smem = 0; if (match($0, /[0-9]+ bytes smem/)) smem = substr($0, RSTART, RLENGTH) + 0
      printf "%-22s %-6s %5d %6d/%-6d %12d %10d\n", k, arch, regs, st, ld, stack, smem
      if (st > 0 || ld > 0) bad = 1
    }
    END { exit bad }' "$log" || { echo "a kernel spills registers for $arch"; fail=1; }
  rm -f "$log"
done
exit "$fail"
