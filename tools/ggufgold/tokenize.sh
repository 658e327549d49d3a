#!/bin/sh
# Records llama.cpp's tokenizer output as the golden files of examples/llama/vocab
# (testdata/vocab/). Run from the repository root:
#
#   tools/ggufgold/tokenize.sh LLAMA_CPP [VOCAB_DIR]
#
# LLAMA_CPP is a llama.cpp source tree already built with shared libraries (libllama.so under
# build/bin); its gguf-py and numpy write the relabelled vocabularies. VOCAB_DIR holds
# llama.cpp's test vocabularies ggml-vocab-{llama-spm,gpt-2,starcoder}.gguf with their .inp
# files (default ../shared/vocab). Nothing is written outside testdata/vocab but a temporary
# directory.
set -eu

LLAMA_CPP=${1:?usage: tools/ggufgold/tokenize.sh LLAMA_CPP [VOCAB_DIR]}
VOCAB=${2:-../shared/vocab}
OUT=testdata/vocab
PY=${PYTHON:-/usr/bin/python3}

# One name per distinct behaviour: the same expressions with different flags count apart.
PRES="default gpt-2 mpt trillion starcoder refact smollm llama-bpe dbrx glm4 qwen2 stablelm2
deepseek-llm deepseek-coder falcon bloom poro-chat"
DETOK="gpt-2 qwen2 llama-bpe deepseek-llm"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

c++ -O2 -std=c++17 -I"$LLAMA_CPP/include" -I"$LLAMA_CPP/ggml/include" tools/ggufgold/tokenize.cpp \
	-L"$LLAMA_CPP/build/bin" -lllama -lggml -lggml-base -Wl,-rpath,"$LLAMA_CPP/build/bin" \
	-o "$tmp/tokenize"

record() { # record NAME VOCAB_FILE DETOK(0|1)
	"$tmp/tokenize" "$2" - info >"$OUT/$1.info"
	"$tmp/tokenize" "$2" "$OUT/extra.inp" ids 0 0 >"$OUT/$1.extra.out"
	"$tmp/tokenize" "$2" "$OUT/extra.inp" ids 1 1 >"$OUT/$1.special.out"
	if [ "$3" = 1 ]; then
		"$tmp/tokenize" "$2" "$OUT/extra.inp" detok >"$OUT/$1.detok"
	fi
}

for v in llama-spm gpt-2 starcoder; do
	f="$VOCAB/ggml-vocab-$v.gguf"
	"$tmp/tokenize" "$f" "$f.inp" ids 0 0 | cmp -s - "$f.out" ||
		{ echo "llama.cpp does not reproduce $f.out; wrong build?" >&2; exit 1; }
	record "$v" "$f" 1
done

for p in $PRES; do
	f="$tmp/gpt-2-$p.gguf"
	PYTHONPATH="$LLAMA_CPP/gguf-py" "$PY" tools/ggufgold/relabel_vocab.py "$VOCAB/ggml-vocab-gpt-2.gguf" "$f" "$p"
	d=0
	case " $DETOK " in *" $p "*) d=1 ;; esac
	record "pre-$p" "$f" "$d"
	"$tmp/tokenize" "$f" "$VOCAB/ggml-vocab-gpt-2.gguf.inp" ids 0 0 >"$OUT/pre-$p.shared.out"
	"$tmp/tokenize" "$f" "$OUT/extra.inp" split >"$OUT/pre-$p.split"
	"$tmp/tokenize" "$f" "$VOCAB/ggml-vocab-gpt-2.gguf.inp" split >"$OUT/pre-$p.shared.split"
done

if git -C "$LLAMA_CPP" rev-parse HEAD >/dev/null 2>&1; then
	echo "llama.cpp $(git -C "$LLAMA_CPP" rev-parse HEAD)"
fi
echo "wrote $(ls "$OUT" | wc -l) files to $OUT"
