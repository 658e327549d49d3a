#!/usr/bin/env python3
"""Copy a vocabulary-only GGUF file with tokenizer.ggml.pre set to another pre-tokenizer name.

    relabel_vocab.py IN.gguf OUT.gguf PRE

The copy also gains eight tokens at the end of its token list, so that the golden outputs
exercise special-token matching, llama.cpp's recognition of special tokens by their text and
whole-word lookup (ignore_merges):

    <|im_start|> <|im_end|> <|eot_id|> <|unused_0|>   control
    <think> <|fim_pad|>                             user-defined
    <|end|> Ġzqxjv                                  normal

examples/llama/vocab's tests make the same copy in memory (relabel in golden_test.go); keep
the two in step. Needs llama.cpp's gguf-py on PYTHONPATH and numpy.
"""

import sys

import gguf

EXTRA = [
    ("<|im_start|>", gguf.TokenType.CONTROL),
    ("<|im_end|>", gguf.TokenType.CONTROL),
    ("<|eot_id|>", gguf.TokenType.CONTROL),
    ("<|unused_0|>", gguf.TokenType.CONTROL),
    ("<think>", gguf.TokenType.USER_DEFINED),
    ("<|fim_pad|>", gguf.TokenType.USER_DEFINED),
    ("<|end|>", gguf.TokenType.NORMAL),
    ("\u0120zqxjv", gguf.TokenType.NORMAL),
]


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    src, dst, pre = sys.argv[1:]
    reader = gguf.GGUFReader(src)
    if reader.tensors:
        sys.exit(f"{src}: has tensors; want a vocabulary-only file")
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(dst, arch)
    for field in reader.fields.values():
        name = field.name
        if name == gguf.Keys.General.ARCHITECTURE or name.startswith("GGUF."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        if name == gguf.Keys.Tokenizer.PRE:
            value = pre
        elif name == gguf.Keys.Tokenizer.LIST:
            value = list(value) + [t for t, _ in EXTRA]
        elif name == gguf.Keys.Tokenizer.TOKEN_TYPE:
            value = list(value) + [int(k) for _, k in EXTRA]
        elif name == gguf.Keys.Tokenizer.SCORES:
            value = list(value) + [0.0] * len(EXTRA)
        writer.add_key_value(name, value, vtype, sub_type=sub)
    if gguf.Keys.Tokenizer.PRE not in reader.fields:
        writer.add_key_value(gguf.Keys.Tokenizer.PRE, pre, gguf.GGUFValueType.STRING)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()


if __name__ == "__main__":
    main()
