#!/bin/sh
# Regenerate the golden outputs in testdata/gguf from a llama.cpp build.
#
#   tools/ggufgold/make.sh LLAMA_CPP_DIR [NAME ...]
#
# LLAMA_CPP_DIR holds llama.cpp's source with a CPU build (shared libraries)
# in LLAMA_CPP_DIR/build. For each NAME (default: the golden set below) it
# writes the model with gen.py into a scratch folder, runs logits.cpp's
# program on it (12 greedy steps) and writes testdata/gguf/NAME.txt.bz2:
# comment lines with the model's name, the llama.cpp commit, the prompt and
# the model's digests, then logits' output as it printed it. Run it from the
# repository root; it needs g++, bzip2 and /usr/bin/python3 with numpy.
set -eu

if [ $# -lt 1 ]; then
	echo "usage: $0 LLAMA_CPP_DIR [NAME ...]" >&2
	exit 2
fi
LL=$(cd "$1" && pwd)
shift
VOCAB=${VOCAB:-../shared/vocab}
OUT=${OUT:-testdata/gguf}
STEPS=12
# Every architecture with every weight type, less three (llama3-q4_0,
# qwen2-bf16, qwen3-f16) to keep the set near 3 MB; every type still runs
# on three architectures and both rope layouts.
NAMES=${*:-"llama2-f32 llama2-f16 llama2-bf16 llama2-q8_0 llama2-q4_0 llama2-q4_k_m
llama3-f32 llama3-f16 llama3-bf16 llama3-q8_0 llama3-q4_k_m
qwen2-f32 qwen2-f16 qwen2-q8_0 qwen2-q4_0 qwen2-q4_k_m
qwen3-f32 qwen3-bf16 qwen3-q8_0 qwen3-q4_0 qwen3-q4_k_m"}

COMMIT=$(git -C "$LL" rev-parse HEAD 2>/dev/null || echo "${LLAMA_COMMIT:-unknown}")
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export PYTHONPATH="$LL/gguf-py"
PY=/usr/bin/python3
GEN=tools/ggufgold/gen.py

g++ -O2 -std=c++17 -I"$LL/include" -I"$LL/ggml/include" tools/ggufgold/logits.cpp -o "$TMP/logits" \
	-L"$LL/build/bin" -lllama -lggml -lggml-base -Wl,-rpath,"$LL/build/bin"

mkdir -p "$OUT"
for n in $NAMES; do
	echo "$n" >&2
	$PY $GEN -q -vocab "$VOCAB" -out "$TMP" "$n"
	$PY $GEN -prompt "$n" >"$TMP/prompt"
	{
		echo "# golden output of llama.cpp for a random-weight model (tools/ggufgold)"
		echo "# model $n"
		echo "# llama.cpp $COMMIT"
		echo "# steps $STEPS"
		printf '# prompt %s\n' "$($PY -c 'import json,sys; print(json.dumps(open(sys.argv[1], encoding="utf-8").read()))' "$TMP/prompt")"
		$PY $GEN -sums "$TMP/$n.gguf" | sed 's/^/# /'
		"$TMP/logits" -model "$TMP/$n.gguf" -prompt-file "$TMP/prompt" -steps $STEPS
	} | bzip2 -9 >"$OUT/$n.txt.bz2"
	rm -f "$TMP/$n.gguf"
done
