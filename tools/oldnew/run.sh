#!/usr/bin/env bash
# Builds one binary that holds backend/cpu as it was before the four-head
# kernels (OLD, commit 16a5a79, or the commit in $OLD; written into
# tools/oldnew/old, which git ignores) and as it is in the working tree (NEW), and runs it: every step
# alternates OLD and NEW round by round on the same data, each round beside
# a read of the bandwidth probe. Arguments go to the tool (-h lists them).
#
#	tools/oldnew/run.sh -lengths 4096,32768,131072 -reps 7
set -euo pipefail
cd "$(dirname "$0")/../.."
old=${OLD:-16a5a79}
dir=tools/oldnew/old
rm -rf "$dir"
mkdir -p "$dir"
for f in $(git ls-tree --name-only "$old" backend/cpu/); do
  case "$f" in
    *_test.go) ;;
    *.go|*.s) git show "$old:$f" | sed 's/^package cpu$/package old/' > "$dir/$(basename "$f")" ;;
  esac
done
cat > "$dir/level.go" <<'GO'
//go:build amd64 && !noasm

// Package old is backend/cpu at an earlier commit, written by run.sh.
package old

import "os"

// COMPRESSKV_CPU caps OLD's kernels as it caps NEW's.
func init() {
	switch os.Getenv("COMPRESSKV_CPU") {
	case "avx2":
		useAVX512 = false
	case "go":
		useAVX2, useAVX512 = false, false
	}
}
GO
go build -tags oldnew -o /tmp/oldnew.$$ ./tools/oldnew
trap 'rm -f /tmp/oldnew.$$' EXIT
/tmp/oldnew.$$ "$@"
