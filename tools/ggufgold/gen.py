#!/usr/bin/python3
"""Write random-weight GGUF models whose every byte of tensor data is defined
by a tiny counter-based generator, so that the Go twin
(examples/llama/internal/randmodel) rewrites the same tensors bit for bit.

Run with llama.cpp's gguf-py on the path:

    PYTHONPATH=<llama.cpp>/gguf-py /usr/bin/python3 tools/ggufgold/gen.py \
        -vocab ../shared/vocab -out /tmp/ggufgold llama2-f32 qwen3-q4_k_m ...

Names are <family>-<type>. Families: llama2, llama3, qwen2, qwen3 (small, for
the goldens) and qwen2.5-0.5b, llama3.2-1b (full-size shapes, for speed).
Types: f32, f16, bf16, q8_0, q4_0, q4_k_m. `-list` prints every name;
`-sums FILE` prints the digests of a file written before.

The generator (the Go twin implements the same definitions):

- splitmix64 counter stream: draw j (j = 0, 1, ...) of a tensor is
  mix(seed + (j+1) * 0x9E3779B97F4A7C15) with splitmix64's finaliser, all
  arithmetic modulo 2^64; seed = FNV-1a 64 of "<family>/<tensor name>".
- float weights: element i takes draw i, m = (draw >> 40) - 2^23 (a signed
  24-bit integer); F32 stores m * 2^-23 * a, F16 (m >> 13) * 2^-10 * a, BF16
  (m >> 16) * 2^-7 * a (arithmetic shifts), every value exact in its type.
  a = 2^-(floor(log2 fan_in) // 2 - 1), fan_in = ne[0]: about sqrt(3/fan_in),
  so that a uniform weight has standard deviation near 1/sqrt(fan_in).
- norm weights (F32): 1 + (m >> 13) * 2^-12, in [0.75, 1.25).
- biases (F32): m * 2^-23 * 2^-2.
- quantized blocks take a fixed number of draws per block (block b uses draws
  b*n .. b*n+n-1) and fill the block's fields directly; see quant_blocks.
- rope_freqs (llama3 style): the converter's llama3 formula in float64,
  stored as float32.
"""

import argparse
import hashlib
import math
import os
import struct
import sys

import numpy as np

try:
    import gguf
    from gguf import GGMLQuantizationType as QT
    from gguf import GGUFValueType as VT
except ImportError:  # pragma: no cover
    sys.exit("gen.py: gguf-py not found; run with PYTHONPATH=<llama.cpp>/gguf-py")

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for b in s.encode("utf-8"):
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def draws(seed, start, n):
    """Draws start .. start+n-1 of the stream with this seed, as uint64."""
    with np.errstate(over="ignore"):
        idx = np.arange(start + 1, start + n + 1, dtype=np.uint64)
        z = np.uint64(seed) + idx * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * M1
        z = (z ^ (z >> np.uint64(27))) * M2
        return z ^ (z >> np.uint64(31))


def signed24(d):
    return (d >> np.uint64(40)).astype(np.int64) - (1 << 23)


def scale_exp(fan_in):
    """k with a = 2^-k."""
    return (fan_in.bit_length() - 1) // 2 - 1


CHUNK = 1 << 22  # draws per numpy chunk, to bound memory on full-size models


def float_weights(seed, n, fan_in, kind):
    """n weights of a float tensor as float32 (exact in kind's type)."""
    k = scale_exp(fan_in)
    out = np.empty(n, dtype=np.float32)
    for s in range(0, n, CHUNK):
        e = min(n, s + CHUNK)
        m = signed24(draws(seed, s, e - s))
        if kind == "f32":
            v = np.ldexp(m.astype(np.float64), -23 - k)
        elif kind == "f16":
            v = np.ldexp((m >> 13).astype(np.float64), -10 - k)
        elif kind == "bf16":
            v = np.ldexp((m >> 16).astype(np.float64), -7 - k)
        else:
            raise ValueError(kind)
        out[s:e] = v.astype(np.float32)
    return out


def norm_weights(seed, n):
    m = signed24(draws(seed, 0, n)) >> 13
    return (1.0 + np.ldexp(m.astype(np.float64), -12)).astype(np.float32)


def bias_weights(seed, n):
    m = signed24(draws(seed, 0, n))
    return np.ldexp(m.astype(np.float64), -25).astype(np.float32)


def f16bits(e, mant):
    """F16 bit pattern of 2^e * (1 + mant/1024) where that is normal; where
    e + 15 < 1, the pattern (1024 | mant) >> (1 - (e + 15)) (a subnormal near
    that value). mant: uint64 array of 10-bit values."""
    b = e + 15
    if b >= 31:
        raise ValueError("f16 exponent overflow")
    mant = mant.astype(np.uint64) & np.uint64(0x3FF)
    if b >= 1:
        return ((np.uint64(b) << np.uint64(10)) | mant).astype(np.uint16)
    return ((np.uint64(1024) | mant) >> np.uint64(1 - b)).astype(np.uint16)


def le_bytes(d):
    """uint64 draws (nb, n) -> their little-endian bytes (nb, 8n)."""
    return d.astype("<u8").view(np.uint8).reshape(d.shape[0], -1)


# Draws per block and block bytes of each quantized type.
QDRAWS = {QT.Q8_0: 5, QT.Q4_0: 3, QT.Q5_0: 4, QT.Q4_K: 17, QT.Q6_K: 27}
QBYTES = {QT.Q8_0: 34, QT.Q4_0: 18, QT.Q5_0: 22, QT.Q4_K: 144, QT.Q6_K: 210}
QBLOCK = {QT.Q8_0: 32, QT.Q4_0: 32, QT.Q5_0: 32, QT.Q4_K: 256, QT.Q6_K: 256}


def quant_blocks(seed, nblocks, fan_in, qt):
    """The bytes (nblocks, QBYTES[qt]) of nblocks random blocks.

    With k the float scale exponent (a = 2^-k) and d0 the first draw of a
    block, mant = d0 & 1023:
    - Q8_0: d = f16(2^(-k-8) (1+mant/1024)); qs = bytes of draws 1..4 as int8,
      -128 replaced by -127. |w| < a.
    - Q4_0: d = f16(2^(-k-4) (1+mant/1024)); qs = bytes of draws 1..2 with
      a nibble 0 (value -8) replaced by 8 (value 0), so that values are
      symmetric (-7 .. 7).
    - Q5_0: d = f16(2^(-k-5) (1+mant/1024)); qh = bytes 0..3 of draws 1..3,
      qs = bytes 4..19; an element whose 5-bit value is 0 (-16) gets its
      high bit set (16, value 0): values -15 .. 15.
    - Q4_K: d = f16(2^(-k-9) (1+mant/1024)), dmin = f16(2^(-k-6) (1+mant/1024))
      (= 8 d); sub-block j (0..7) has scale sc_j = 32 + ((d0 >> (10+5j)) & 31)
      and min m_j = (15 sc_j + 8) >> 4, so that d sc q - dmin m is centred on
      q = 7.5; scales[12] packed as ggml's get_scale_min_k4 reads them;
      qs = bytes of draws 1..16.
    - Q6_K: ql = bytes of draws 3..18, qh = bytes of draws 19..26; scale j
      (0..15) from byte j of draws 1..2 (r): (8 + (r & 63) % 56), negated when
      r >= 128; d = f16(2^(-k-11) (1+mant/1024)).
    """
    k = scale_exp(fan_in)
    nd = QDRAWS[qt]
    out = np.empty((nblocks, QBYTES[qt]), dtype=np.uint8)
    step = max(1, CHUNK // nd)
    for s in range(0, nblocks, step):
        e = min(nblocks, s + step)
        nb = e - s
        d = draws(seed, s * nd, nb * nd).reshape(nb, nd)
        d0 = d[:, 0]
        mant = d0 & np.uint64(1023)
        o = out[s:e]
        if qt == QT.Q8_0:
            o[:, 0:2] = f16bits(-k - 8, mant).astype("<u2").view(np.uint8).reshape(nb, 2)
            qs = le_bytes(d[:, 1:5]).view(np.int8).copy()
            qs[qs == -128] = -127
            o[:, 2:34] = qs.view(np.uint8)
        elif qt == QT.Q4_0:
            o[:, 0:2] = f16bits(-k - 4, mant).astype("<u2").view(np.uint8).reshape(nb, 2)
            qs = le_bytes(d[:, 1:3])
            lo, hi = qs & 15, qs >> 4
            lo[lo == 0] = 8
            hi[hi == 0] = 8
            o[:, 2:18] = lo | (hi << 4)
        elif qt == QT.Q5_0:
            o[:, 0:2] = f16bits(-k - 5, mant).astype("<u2").view(np.uint8).reshape(nb, 2)
            b = le_bytes(d[:, 1:4])
            qh = b[:, 0:4].copy().view("<u4")[:, 0].astype(np.uint64)
            qs = b[:, 4:20]
            for j in range(16):
                for nib, bit in ((qs[:, j] & 15, j), (qs[:, j] >> 4, j + 16)):
                    zero = (nib == 0) & (((qh >> np.uint64(bit)) & np.uint64(1)) == 0)
                    qh = np.where(zero, qh | np.uint64(1 << bit), qh)
            o[:, 2:6] = qh.astype("<u4").view(np.uint8).reshape(nb, 4)
            o[:, 6:22] = qs
        elif qt == QT.Q4_K:
            o[:, 0:2] = f16bits(-k - 9, mant).astype("<u2").view(np.uint8).reshape(nb, 2)
            o[:, 2:4] = f16bits(-k - 6, mant).astype("<u2").view(np.uint8).reshape(nb, 2)
            sc = np.stack([32 + ((d0 >> np.uint64(10 + 5 * j)) & np.uint64(31)).astype(np.int64)
                           for j in range(8)], axis=1)
            mn = (15 * sc + 8) >> 4
            q = np.zeros((nb, 12), dtype=np.int64)
            for j in range(4):
                q[:, j] = (sc[:, j] & 63) | ((sc[:, j + 4] >> 4) << 6)
                q[:, j + 4] = (mn[:, j] & 63) | ((mn[:, j + 4] >> 4) << 6)
                q[:, j + 8] = (sc[:, j + 4] & 15) | ((mn[:, j + 4] & 15) << 4)
            o[:, 4:16] = q.astype(np.uint8)
            o[:, 16:144] = le_bytes(d[:, 1:17])
        elif qt == QT.Q6_K:
            o[:, 0:128] = le_bytes(d[:, 3:19])
            o[:, 128:192] = le_bytes(d[:, 19:27])
            r = le_bytes(d[:, 1:3]).astype(np.int64)
            sc = 8 + (r & 63) % 56
            sc = np.where(r >= 128, -sc, sc)
            o[:, 192:208] = sc.astype(np.int8).view(np.uint8)
            o[:, 208:210] = f16bits(-k - 11, mant).astype("<u2").view(np.uint8).reshape(nb, 2)
        else:
            raise ValueError(qt)
    return out


def llama3_rope_factors(base, dim, factor, low, high, old_ctx):
    out = []
    lw = old_ctx / low
    hw = old_ctx / high
    for i in range(0, dim, 2):
        freq = 1.0 / (base ** (i / dim))
        wavelen = 2 * math.pi / freq
        if wavelen < hw:
            out.append(1.0)
        elif wavelen > lw:
            out.append(float(factor))
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


# ---------------------------------------------------------------- families

FAMILIES = {
    # Llama 2 style: SentencePiece vocabulary, NORM rope, separate output.
    "llama2": dict(arch="llama", vocab="llama-spm", n_embd=256, n_layer=3, n_head=4, n_head_kv=2,
                   head_dim=64, n_ff=768, ctx=1536, rope_base=50000.0, eps=1e-4, tied=False,
                   prompt="Hello world</s><s> The quick brown fox jumps over the lazy dog. 1234 \u00e9\u00e8 \u4f60\u597d!"),
    # Llama 3.x style: BPE (llama-bpe), rope_freqs, tied output, GQA 4:1.
    "llama3": dict(arch="llama", vocab="gpt2-llama3", n_embd=256, n_layer=2, n_head=4, n_head_kv=1,
                   head_dim=64, n_ff=512, ctx=2048, rope_base=500000.0, eps=2e-5, tied=True,
                   rope_llama3=dict(factor=8.0, low=1.0, high=4.0, old_ctx=64),
                   prompt="<|start_header_id|>user<|end_header_id|>\n\nThe quick brown fox jumps over the lazy dog. 1234 \u00e9\u00e8<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"),
    # Qwen2: QKV biases, NEOX rope, separate output.
    "qwen2": dict(arch="qwen2", vocab="gpt2-qwen", n_embd=256, n_layer=3, n_head=4, n_head_kv=2,
                  head_dim=64, n_ff=768, ctx=4096, rope_base=1000000.0, eps=3e-5, tied=False, qkv_bias=True,
                  prompt="<|im_start|>user\nThe quick brown fox jumps over the lazy dog. 1234 \u00e9\u00e8<|im_end|>\n<|im_start|>assistant\n"),
    # Qwen3: per-head Q/K RMS norm, NEOX rope, n_head*head_dim != n_embd, tied.
    "qwen3": dict(arch="qwen3", vocab="gpt2-qwen", n_embd=256, n_layer=2, n_head=8, n_head_kv=2,
                  head_dim=64, n_ff=512, ctx=8192, rope_base=20000.0, eps=1e-4, tied=True, qk_norm=True,
                  prompt="<|im_start|>user\nThe quick brown fox jumps over the lazy dog. 1234 \u00e9\u00e8<|im_end|>\n<|im_start|>assistant\n"),
    # Full-size shapes for speed, with synthetic vocabularies of the real size.
    "qwen2.5-0.5b": dict(arch="qwen2", vocab="gpt2-qwen", vocab_size=151936, n_embd=896, n_layer=24, n_head=14,
                         n_head_kv=2, head_dim=64, n_ff=4864, ctx=32768, rope_base=1000000.0, eps=1e-6,
                         tied=True, qkv_bias=True, prompt=""),
    "llama3.2-1b": dict(arch="llama", vocab="gpt2-llama3", vocab_size=128256, n_embd=2048, n_layer=16, n_head=32,
                        n_head_kv=8, head_dim=64, n_ff=8192, ctx=131072, rope_base=500000.0, eps=1e-5,
                        tied=True, rope_llama3=dict(factor=32.0, low=1.0, high=4.0, old_ctx=8192), prompt=""),
}

TYPES = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m"]
FTYPE = {"f32": 0, "f16": 1, "bf16": 32, "q8_0": 7, "q4_0": 2, "q4_k_m": 15}

QWEN_SPECIALS = ["<|im_start|>", "<|im_end|>"]
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def all_names():
    return [f"{f}-{t}" for f in FAMILIES for t in TYPES]


def split_name(name):
    for t in TYPES:
        if name.endswith("-" + t) and name[: -len(t) - 1] in FAMILIES:
            return name[: -len(t) - 1], t
    raise SystemExit(f"gen.py: unknown model {name!r}; -list prints the names")


# ---------------------------------------------------------------- vocab

class KV:
    """One metadata entry: key, value type, sub type (arrays), value."""

    def __init__(self, key, vtype, value, sub=None):
        self.key, self.vtype, self.value, self.sub = key, vtype, value, sub


def read_vocab(path):
    """The tokenizer.* entries of a vocab file, in file order, with raw
    string bytes."""
    r = gguf.GGUFReader(path)
    out = []
    for key, f in r.fields.items():
        if not key.startswith("tokenizer."):
            continue
        t = f.types[0]
        if t == VT.ARRAY:
            sub = f.types[-1]
            if sub == VT.STRING:
                val = [bytes(f.parts[i]) for i in f.data]
            else:
                val = [f.parts[i][0].item() for i in f.data]
            out.append(KV(key, VT.ARRAY, val, sub))
        elif t == VT.STRING:
            out.append(KV(key, t, bytes(f.parts[f.data[0]])))
        else:
            out.append(KV(key, t, f.parts[f.data[0]][0].item()))
    return out


def tokenizer_kvs(vocab_dir, kind, vocab_size=None):
    """Tokenizer metadata for a vocabulary kind:
    - llama-spm: ggml-vocab-llama-spm.gguf as it is.
    - gpt2-qwen: ggml-vocab-gpt-2.gguf with pre = qwen2, <|endoftext|> made a
      control token, <|im_start|> and <|im_end|> appended (control), bos =
      <|endoftext|>, eos = <|im_end|>, add_bos_token false.
    - gpt2-llama3: gpt-2 with pre = llama-bpe, <|endoftext|> control, the five
      Llama 3 chat specials appended (control), bos = <|begin_of_text|>, eos =
      <|eot_id|>, add_bos_token true.
    With vocab_size, [PAD<i>] tokens (type UNUSED) fill the list up to it, as
    the converter pads.
    """
    if kind == "llama-spm":
        kvs = read_vocab(os.path.join(vocab_dir, "ggml-vocab-llama-spm.gguf"))
        if vocab_size:
            raise ValueError("llama-spm is not padded")
        return kvs
    src = {kv.key: kv for kv in read_vocab(os.path.join(vocab_dir, "ggml-vocab-gpt-2.gguf"))}
    tokens = list(src["tokenizer.ggml.tokens"].value)
    ttype = list(src["tokenizer.ggml.token_type"].value)
    eot = tokens.index(b"<|endoftext|>")
    ttype[eot] = 3
    specials = QWEN_SPECIALS if kind == "gpt2-qwen" else LLAMA3_SPECIALS
    for s in specials:
        tokens.append(s.encode())
        ttype.append(3)
    if kind == "gpt2-qwen":
        pre, bos, eos, add_bos = "qwen2", eot, tokens.index(b"<|im_end|>"), False
    else:
        pre, bos, eos, add_bos = "llama-bpe", tokens.index(b"<|begin_of_text|>"), tokens.index(b"<|eot_id|>"), True
    if vocab_size:
        n = len(tokens)
        for i in range(n, vocab_size):
            tokens.append(f"[PAD{i}]".encode())
            ttype.append(5)
    return [
        KV("tokenizer.ggml.model", VT.STRING, b"gpt2"),
        KV("tokenizer.ggml.pre", VT.STRING, pre.encode()),
        KV("tokenizer.ggml.tokens", VT.ARRAY, tokens, VT.STRING),
        KV("tokenizer.ggml.token_type", VT.ARRAY, ttype, VT.INT32),
        KV("tokenizer.ggml.merges", VT.ARRAY, list(src["tokenizer.ggml.merges"].value), VT.STRING),
        KV("tokenizer.ggml.bos_token_id", VT.UINT32, bos),
        KV("tokenizer.ggml.eos_token_id", VT.UINT32, eos),
        KV("tokenizer.ggml.add_bos_token", VT.BOOL, add_bos),
    ]


# ---------------------------------------------------------------- model

def use_more_bits(i, n):
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


class Tensor:
    def __init__(self, name, ne, role, fan_in=None, layer=None):
        self.name, self.ne, self.role, self.layer = name, ne, role, layer
        self.fan_in = fan_in if fan_in is not None else ne[0]


def tensor_list(fam):
    """The model's tensors in file order; ne as GGML orders it (ne[0] the
    contiguous one). role: embd, output, weight, attn_v, ffn_down, norm, bias,
    rope_freqs."""
    E, L, H, G, D, F = fam["n_embd"], fam["n_layer"], fam["n_head"], fam["n_head_kv"], fam["head_dim"], fam["n_ff"]
    V = fam["n_vocab"]
    ts = [Tensor("token_embd.weight", [E, V], "embd")]
    if "rope_llama3" in fam:
        ts.append(Tensor("rope_freqs.weight", [D // 2], "rope_freqs"))
    for i in range(L):
        p = f"blk.{i}."
        ts.append(Tensor(p + "attn_norm.weight", [E], "norm"))
        ts.append(Tensor(p + "attn_q.weight", [E, H * D], "weight", layer=i))
        if fam.get("qkv_bias"):
            ts.append(Tensor(p + "attn_q.bias", [H * D], "bias"))
        ts.append(Tensor(p + "attn_k.weight", [E, G * D], "weight", layer=i))
        if fam.get("qkv_bias"):
            ts.append(Tensor(p + "attn_k.bias", [G * D], "bias"))
        ts.append(Tensor(p + "attn_v.weight", [E, G * D], "attn_v", layer=i))
        if fam.get("qkv_bias"):
            ts.append(Tensor(p + "attn_v.bias", [G * D], "bias"))
        if fam.get("qk_norm"):
            ts.append(Tensor(p + "attn_q_norm.weight", [D], "norm"))
            ts.append(Tensor(p + "attn_k_norm.weight", [D], "norm"))
        ts.append(Tensor(p + "attn_output.weight", [H * D, E], "weight", layer=i))
        ts.append(Tensor(p + "ffn_norm.weight", [E], "norm"))
        ts.append(Tensor(p + "ffn_gate.weight", [E, F], "weight", layer=i))
        ts.append(Tensor(p + "ffn_up.weight", [E, F], "weight", layer=i))
        ts.append(Tensor(p + "ffn_down.weight", [F, E], "ffn_down", layer=i))
    ts.append(Tensor("output_norm.weight", [E], "norm"))
    if not fam["tied"]:
        ts.append(Tensor("output.weight", [E, V], "output"))
    return ts


def tensor_type(fam, t, wtype):
    """The GGML type of tensor t in a model of weight type wtype."""
    if t.role in ("norm", "bias", "rope_freqs"):
        return QT.F32
    base = {"f32": QT.F32, "f16": QT.F16, "bf16": QT.BF16, "q8_0": QT.Q8_0, "q4_0": QT.Q4_0}.get(wtype)
    if base is not None:
        return base
    # Q4_K_M as llama.cpp's quantizer mixes it: Q6_K for the output (or the
    # tied embeddings), attn_v and ffn_down of use_more_bits layers; Q4_K
    # elsewhere. Where ne[0] % 256 != 0, Q6_K falls back to Q8_0 and Q4_K to
    # Q5_0, as llama.cpp's tensor_type_fallback does.
    q = QT.Q4_K
    if t.role == "output" or (t.role == "embd" and fam["tied"]):
        q = QT.Q6_K
    elif t.role in ("attn_v", "ffn_down") and use_more_bits(t.layer, fam["n_layer"]):
        q = QT.Q6_K
    if t.ne[0] % 256 != 0:
        q = QT.Q8_0 if q == QT.Q6_K else QT.Q5_0
    return q


def tensor_bytes(fam, family, t, qt):
    """The tensor's data as a numpy array (float32/float16/uint16 for BF16, or
    uint8 blocks)."""
    seed = fnv1a64(family + "/" + t.name)
    n = int(np.prod(t.ne))
    if t.role == "norm":
        return norm_weights(seed, n)
    if t.role == "bias":
        return bias_weights(seed, n)
    if t.role == "rope_freqs":
        r = fam["rope_llama3"]
        return llama3_rope_factors(fam["rope_base"], fam["head_dim"], r["factor"], r["low"], r["high"], r["old_ctx"])
    if qt == QT.F32:
        return float_weights(seed, n, t.fan_in, "f32")
    if qt == QT.F16:
        return float_weights(seed, n, t.fan_in, "f16").astype(np.float16)
    if qt == QT.BF16:
        w = float_weights(seed, n, t.fan_in, "bf16")
        return (w.view(np.uint32) >> 16).astype(np.uint16)  # exact: low half is zero
    nblocks = n // QBLOCK[qt]
    return quant_blocks(seed, nblocks, t.fan_in, qt).reshape(-1)


def model_kvs(family, wtype, fam, vocab_dir):
    a = fam["arch"]
    kvs = [
        KV("general.architecture", VT.STRING, a.encode()),
        KV("general.name", VT.STRING, f"randmodel {family}-{wtype}".encode()),
        KV("general.file_type", VT.UINT32, FTYPE[wtype]),
    ]
    if wtype.startswith("q"):
        kvs.append(KV("general.quantization_version", VT.UINT32, 2))
    kvs += [
        KV(a + ".context_length", VT.UINT32, fam["ctx"]),
        KV(a + ".embedding_length", VT.UINT32, fam["n_embd"]),
        KV(a + ".block_count", VT.UINT32, fam["n_layer"]),
        KV(a + ".feed_forward_length", VT.UINT32, fam["n_ff"]),
        KV(a + ".attention.head_count", VT.UINT32, fam["n_head"]),
        KV(a + ".attention.head_count_kv", VT.UINT32, fam["n_head_kv"]),
        KV(a + ".rope.freq_base", VT.FLOAT32, fam["rope_base"]),
        KV(a + ".attention.layer_norm_rms_epsilon", VT.FLOAT32, fam["eps"]),
        KV(a + ".rope.dimension_count", VT.UINT32, fam["head_dim"]),
    ]
    if fam["head_dim"] * fam["n_head"] != fam["n_embd"]:
        kvs.append(KV(a + ".attention.key_length", VT.UINT32, fam["head_dim"]))
        kvs.append(KV(a + ".attention.value_length", VT.UINT32, fam["head_dim"]))
    tok = tokenizer_kvs(vocab_dir, fam["vocab"], fam.get("vocab_size"))
    ntok = len(next(kv for kv in tok if kv.key == "tokenizer.ggml.tokens").value)
    if a == "llama":
        kvs.append(KV(a + ".vocab_size", VT.UINT32, ntok))
    return kvs + tok, ntok


def write_model(name, vocab_dir, out_path, quiet=False):
    family, wtype = split_name(name)
    fam = dict(FAMILIES[family])
    kvs, ntok = model_kvs(family, wtype, fam, vocab_dir)
    fam["n_vocab"] = ntok
    tensors = tensor_list(fam)
    w = gguf.GGUFWriter(out_path, fam["arch"])
    # GGUFWriter adds general.architecture itself; the rest in our order.
    for kv in kvs[1:]:
        w.add_key_value(kv.key, kv.value, kv.vtype, sub_type=kv.sub)
    types = {}
    for t in tensors:
        qt = tensor_type(fam, t, wtype)
        types[t.name] = qt
        shape = list(reversed(t.ne))  # numpy order
        if qt in QBYTES:
            nbytes = int(np.prod(t.ne)) // QBLOCK[qt] * QBYTES[qt]
            w.add_tensor_info(t.name, shape[:-1] + [t.ne[0] // QBLOCK[qt] * QBYTES[qt]], np.dtype(np.uint8), nbytes, raw_dtype=qt)
        else:
            size = 2 if qt in (QT.F16, QT.BF16) else 4
            w.add_tensor_info(t.name, shape, np.dtype(np.float16 if qt == QT.F16 else np.float32), int(np.prod(t.ne)) * size, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for t in tensors:
        data = tensor_bytes(fam, family, t, types[t.name])
        w.write_tensor_data(data)
        if not quiet:
            print(f"  {t.name} {types[t.name].name} {t.ne}", file=sys.stderr)
    w.close()


# ---------------------------------------------------------------- digests

def skip_value(buf, off, vtype):
    fixed = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    if vtype in fixed:
        return off + fixed[vtype]
    if vtype == 8:
        (n,) = struct.unpack_from("<Q", buf, off)
        return off + 8 + n
    if vtype == 9:
        sub, n = struct.unpack_from("<IQ", buf, off)
        off += 12
        if sub in fixed:
            return off + n * fixed[sub]
        for _ in range(n):
            off = skip_value(buf, off, sub)
        return off
    raise ValueError(f"bad value type {vtype}")


def digests(path):
    """file sha256, metadata (KV section) sha256, and per tensor (name, type
    name, ne, sha256 of its data bytes)."""
    with open(path, "rb") as f:
        buf = f.read()
    magic, ver, nt, nkv = struct.unpack_from("<IIQQ", buf, 0)
    if magic != 0x46554747 or ver != 3:
        raise ValueError("not a GGUF v3 file")
    off = 24
    align = 32
    for _ in range(nkv):
        (n,) = struct.unpack_from("<Q", buf, off)
        key = buf[off + 8: off + 8 + n].decode()
        off += 8 + n
        (vt,) = struct.unpack_from("<I", buf, off)
        off += 4
        if key == "general.alignment":
            (align,) = struct.unpack_from("<I", buf, off)
        off = skip_value(buf, off, vt)
    kv_sha = hashlib.sha256(buf[24:off]).hexdigest()
    infos = []
    for _ in range(nt):
        (n,) = struct.unpack_from("<Q", buf, off)
        name = buf[off + 8: off + 8 + n].decode()
        off += 8 + n
        (nd,) = struct.unpack_from("<I", buf, off)
        ne = list(struct.unpack_from(f"<{nd}Q", buf, off + 4))
        off += 4 + 8 * nd
        tt, toff = struct.unpack_from("<IQ", buf, off)
        off += 12
        infos.append((name, tt, ne, toff))
    start = (off + align - 1) // align * align
    out = []
    for name, tt, ne, toff in infos:
        qt = QT(tt)
        bs, ts = gguf.GGML_QUANT_SIZES[qt]
        nbytes = int(np.prod(ne)) // bs * ts
        data = buf[start + toff: start + toff + nbytes]
        out.append((name, qt.name, ne, hashlib.sha256(data).hexdigest()))
    return hashlib.sha256(buf).hexdigest(), kv_sha, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-vocab", default="../shared/vocab", help="folder with ggml-vocab-*.gguf")
    ap.add_argument("-out", default=".", help="output folder")
    ap.add_argument("-list", action="store_true", help="print the model names and exit")
    ap.add_argument("-sums", metavar="FILE", help="print a file's digests and exit")
    ap.add_argument("-prompt", metavar="NAME", help="print the golden prompt of a model and exit")
    ap.add_argument("-q", action="store_true", help="quiet")
    ap.add_argument("names", nargs="*")
    a = ap.parse_args()
    if a.list:
        print("\n".join(all_names()))
        return
    if a.prompt:
        sys.stdout.write(FAMILIES[split_name(a.prompt)[0]]["prompt"])
        return
    if a.sums:
        fsha, ksha, ts = digests(a.sums)
        print("file_sha256", fsha)
        print("kv_sha256", ksha)
        for name, tn, ne, sha in ts:
            print("tensor", name, tn, "x".join(map(str, ne)), sha)
        return
    os.makedirs(a.out, exist_ok=True)
    for name in a.names:
        path = os.path.join(a.out, name + ".gguf")
        if not a.q:
            print(f"writing {path}", file=sys.stderr)
        write_model(name, a.vocab, path, quiet=a.q)


if __name__ == "__main__":
    main()
