#!/usr/bin/python3
"""A float64 NumPy forward pass of the llama, qwen2 and qwen3 GGUF models
that gen.py writes, to check what README.md says about llama.cpp's numerics
against llama.cpp's own output, and to measure how far from it a runner lands
with and without each of llama.cpp's rounding steps.

    PYTHONPATH=<llama.cpp>/gguf-py /usr/bin/python3 tools/ggufgold/ref.py \
        -model M.gguf -golden G.txt[.bz2] [-mode ggml|ggml32|exact] [-steps N] \
        [-tweak T ...] [-dump DIR]

Modes:
  exact   float64 throughout (the dequantized weights are the only rounding);
  ggml    rounds where llama.cpp's CPU backend rounds (README.md, "What
          llama.cpp computes"): K and V stored as F16; Q rounded to F16 before
          Q.K; softmax probabilities rounded to F16 before P.V; matmul
          activations converted to the weight's vec_dot_type (F16 for F16
          weights, BF16 for BF16, Q8_0 blocks for Q8_0/Q4_0, Q8_K blocks for
          Q4_K/Q6_K); rope angles in float32 as ggml computes them; RMS norm
          as ggml computes it; dot products accumulated in float64;
  ggml32  ggml, with the matmuls accumulated in float32 (numpy's BLAS order).
Tweaks (to show that the goldens catch a runner that ignores metadata):
  eps=X           use RMS epsilon X instead of the file's;
  base=X          use rope base X;
  no-freqs        ignore rope_freqs.weight;
  rope=norm|neox  force the rope layout;
  noact=NAME      do not convert the activations of the weights whose name
                  ends in NAME (* for all).
Prints the max |logit difference| over the last prompt position in units of
the golden's standard deviation, then each greedy step (each recomputes the
whole sequence). With -dump DIR (the folder of logits' -dump), it prints the
largest difference of every intermediate tensor of the prompt's pass instead:
where a reference parts from llama.cpp, layer by layer.
"""

import argparse
import bz2
import gzip
import math
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT


def f16(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float64)


def bf16(x):
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return r.astype(np.uint32).view(np.float32).astype(np.float64)


def rne(x):
    return np.rint(x)  # numpy rounds half to even


def q8_0(x):
    """Activations through quantize_row_q8_0 (x86 SIMD: ties to even)."""
    x = np.asarray(x, dtype=np.float32)
    sh = x.shape
    b = x.reshape(-1, 32)
    amax = np.abs(b).max(axis=1, keepdims=True)
    d = amax / np.float32(127)
    with np.errstate(divide="ignore"):
        idv = np.where(amax != 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    q = rne((b * idv).astype(np.float32))
    return (q * f16(d)).reshape(sh)


def q8_k(x):
    """Activations through quantize_row_q8_K_ref."""
    x = np.asarray(x, dtype=np.float32)
    sh = x.shape
    b = x.reshape(-1, 256)
    i = np.abs(b).argmax(axis=1)
    mx = b[np.arange(b.shape[0]), i][:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = np.where(mx != 0, np.float32(-127) / mx, np.float32(0)).astype(np.float32)
        q = np.minimum(127, rne((iscale * b).astype(np.float32)))
        d = np.where(mx != 0, (np.float32(1) / iscale).astype(np.float32), 0)
    return (q * d.astype(np.float64)).reshape(sh)


ACT = {QT.F32: lambda x: np.asarray(x, dtype=np.float32).astype(np.float64), QT.F16: f16, QT.BF16: bf16,
       QT.Q8_0: q8_0, QT.Q4_0: q8_0, QT.Q4_K: q8_k, QT.Q6_K: q8_k}


class Model:
    def __init__(self, path):
        r = gguf.GGUFReader(path)
        self.kv = {}
        for k, f in r.fields.items():
            if f.types and f.types[0] != gguf.GGUFValueType.ARRAY:
                self.kv[k] = f.contents()
        self.arch = self.kv["general.architecture"]
        self.noact = set()
        self.w = {}
        self.types = {}
        for t in r.tensors:
            self.w[t.name] = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float64)
            self.types[t.name] = t.tensor_type
        a = self.arch
        self.n_layer = self.kv[a + ".block_count"]
        self.n_head = self.kv[a + ".attention.head_count"]
        self.n_kv = self.kv[a + ".attention.head_count_kv"]
        self.n_embd = self.kv[a + ".embedding_length"]
        self.head_dim = self.kv.get(a + ".attention.key_length", self.n_embd // self.n_head)
        self.eps = self.kv[a + ".attention.layer_norm_rms_epsilon"]
        self.base = self.kv.get(a + ".rope.freq_base", 10000.0)
        self.n_rot = self.kv.get(a + ".rope.dimension_count", self.head_dim)
        self.neox = a in ("qwen2", "qwen3")
        self.freqs = self.w.get("rope_freqs.weight")
        if "output.weight" not in self.w:
            self.w["output.weight"] = self.w["token_embd.weight"]
            self.types["output.weight"] = self.types["token_embd.weight"]


def forward(m, ids, mode, trace=None):
    ggml = mode.startswith("ggml")
    tr = trace if trace is not None else {}
    T = len(ids)
    D, H, G = m.head_dim, m.n_head, m.n_kv
    eps = np.float32(m.eps)

    def rms(x, w):
        if ggml:
            x32 = x.astype(np.float32)
            s = (x32 * x32).astype(np.float64).sum(axis=-1, keepdims=True)
            mean = (s / x.shape[-1]).astype(np.float32)
            sc = (np.float32(1) / np.sqrt(mean + eps)).astype(np.float32)
            return ((x32 * sc).astype(np.float32) * w.astype(np.float32)).astype(np.float64)
        return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + float(eps)) * w

    def mm(x, name):
        w = m.w[name]
        if ggml and not (name in m.noact or "*" in m.noact or any(name.endswith(n) for n in m.noact)):
            x = ACT[m.types[name]](x)
        if mode == "ggml32":
            return (x.astype(np.float32) @ w.T.astype(np.float32)).astype(np.float64)
        return x @ w.T

    # rope cache: (T, n_rot/2) cos and sin
    half = m.n_rot // 2
    ff = m.freqs if m.freqs is not None else np.ones(half)
    if ggml:
        ts = np.float32(np.float32(m.base) ** np.float32(-2.0 / m.n_rot))
        cos = np.zeros((T, half))
        sin = np.zeros((T, half))
        for p in range(T):
            th = np.float32(p)
            for i in range(half):
                a = np.float32(th / np.float32(ff[i]))
                cos[p, i] = np.float32(math.cos(a))
                sin[p, i] = np.float32(math.sin(a))
                th = np.float32(th * ts)
    else:
        inv = m.base ** (-2.0 * np.arange(half) / m.n_rot) / ff
        ang = np.arange(T)[:, None] * inv[None, :]
        cos, sin = np.cos(ang), np.sin(ang)

    def rope(x):  # x: (T, heads, D)
        y = x.copy()
        c, s = cos[:, None, :], sin[:, None, :]
        if m.neox:
            a, b = x[..., :half], x[..., half:2 * half]
            y[..., :half] = a * c - b * s
            y[..., half:2 * half] = a * s + b * c
        else:
            a, b = x[..., 0:2 * half:2], x[..., 1:2 * half:2]
            y[..., 0:2 * half:2] = a * c - b * s
            y[..., 1:2 * half:2] = a * s + b * c
        if ggml:
            y = y.astype(np.float32).astype(np.float64)
        return y

    x = m.w["token_embd.weight"][ids]
    scale = np.float32(1.0 / math.sqrt(D)) if ggml else 1.0 / math.sqrt(D)
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for il in range(m.n_layer):
        p = f"blk.{il}."
        h = rms(x, m.w[p + "attn_norm.weight"])
        tr[f"attn_norm-{il}"] = h
        q = mm(h, p + "attn_q.weight")
        k = mm(h, p + "attn_k.weight")
        v = mm(h, p + "attn_v.weight")
        if p + "attn_q.bias" in m.w:
            q = q + m.w[p + "attn_q.bias"]
            k = k + m.w[p + "attn_k.bias"]
            v = v + m.w[p + "attn_v.bias"]
        q = q.reshape(T, H, D)
        k = k.reshape(T, G, D)
        v = v.reshape(T, G, D)
        if p + "attn_q_norm.weight" in m.w:
            q = rms(q, m.w[p + "attn_q_norm.weight"])
            k = rms(k, m.w[p + "attn_k_norm.weight"])
        q, k = rope(q), rope(k)
        tr[f"Qcur-{il}"], tr[f"Kcur-{il}"], tr[f"Vcur-{il}"] = q, k, v
        if ggml:
            k, v, q = f16(k), f16(v), f16(q)
        out = np.zeros((T, H, D))
        for hh in range(H):
            g = hh // (H // G)
            s = q[:, hh, :] @ k[:, g, :].T
            if ggml:
                s = (s.astype(np.float32) * scale).astype(np.float64)
            else:
                s = s * scale
            s = s + mask
            s = s - s.max(axis=1, keepdims=True)
            e = np.exp(s)
            pr = e / e.sum(axis=1, keepdims=True)
            if ggml:
                pr = f16(pr)
            out[:, hh, :] = pr @ v[:, g, :]
            tr.setdefault(f"kq_soft_max-{il}", np.zeros((H, T, T)))[hh] = pr
        tr[f"kqv_out-{il}"] = out.reshape(T, H * D)
        a = mm(out.reshape(T, H * D), p + "attn_output.weight")
        tr[f"attn_out-{il}"] = a
        x = x + a
        tr[f"ffn_inp-{il}"] = x
        h = rms(x, m.w[p + "ffn_norm.weight"])
        tr[f"ffn_norm-{il}"] = h
        gt = mm(h, p + "ffn_gate.weight")
        up = mm(h, p + "ffn_up.weight")
        act = gt / (1 + np.exp(-gt)) * up
        tr[f"ffn_gate-{il}"], tr[f"ffn_up-{il}"], tr[f"ffn_swiglu-{il}"] = gt, up, act
        f = mm(act, p + "ffn_down.weight")
        tr[f"ffn_out-{il}"] = f
        x = x + f
        tr[f"l_out-{il}"] = x
    h = rms(x, m.w["output_norm.weight"])
    tr["result_norm"] = h[-1]
    out = mm(h[-1:], "output.weight")[0]
    tr["result_output"] = out
    return out


def read_golden(path):
    op = bz2.open if path.endswith(".bz2") else gzip.open if path.endswith(".gz") else open
    g = {"steps": []}
    with op(path, "rt") as f:
        for line in f:
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            if parts[0] == "prompt_ids":
                g["ids"] = [int(t) for t in parts[1:]]
            elif parts[0] == "last_logits":
                g["logits"] = np.array([float(t) for t in parts[1:]])
            elif parts[0] == "step":
                top = [(int(a), float(b)) for a, b in (t.split(":") for t in parts[5:])]
                g["steps"].append((int(parts[3]), top))
    return g


def compare_dump(m, ids, mode, d):
    """Prints, for each tensor of the prompt's pass that logits -dump wrote
    and forward traces, the largest |difference| and that relative to the
    tensor's largest |value|."""
    idx = {}
    with open(d + "/index.txt") as f:
        for line in f:
            p = line.split()
            if p[0] != "0":
                continue
            name = " ".join(p[2:-6])
            idx.setdefault(name, []).append((p[-6], [int(x) for x in p[-5:-1]], p[-1]))
    tr = {}
    forward(m, ids, mode, tr)
    T = len(ids)
    for name, mine in tr.items():
        if name not in idx:
            continue
        typ, ne, fn = idx[name][-1]  # the last tensor of that name: after rope for Q and K
        a = np.fromfile(d + "/" + fn, dtype=np.float32 if typ == "f32" else np.float16).astype(np.float64)
        a = a.reshape(ne[::-1]).squeeze()
        if name.startswith("kq_soft_max"):
            a = a[:, :, :T]  # llama.cpp's KV rows are padded to 256
        if a.ndim == mine.ndim - 1:
            mine = mine[-1]  # the last layer computes the output row only
        if a.size != mine.size:
            print(f"{name:16s} shapes {a.shape} and {mine.shape}")
            continue
        a = a.reshape(mine.shape)
        diff = np.abs(a - mine).max()
        print(f"{name:16s} max|diff| {diff:.3g} ({diff / max(np.abs(a).max(), 1e-30):.3g} of max|value|)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-model", required=True)
    ap.add_argument("-golden", required=True)
    ap.add_argument("-mode", default="ggml", choices=["ggml", "ggml32", "exact"])
    ap.add_argument("-tweak", action="append", default=[])
    ap.add_argument("-steps", type=int, default=12)
    ap.add_argument("-dump", metavar="DIR", help="compare intermediate tensors with logits -dump DIR")
    a = ap.parse_args()
    m = Model(a.model)
    for t in a.tweak:
        if t.startswith("eps="):
            m.eps = float(t[4:])
        elif t.startswith("base="):
            m.base = float(t[5:])
        elif t.startswith("noact="):
            m.noact.add(t[6:])
        elif t == "no-freqs":
            m.freqs = None
        elif t.startswith("rope="):
            m.neox = t[5:] == "neox"
        else:
            sys.exit(f"unknown tweak {t}")
    g = read_golden(a.golden)
    if a.dump:
        compare_dump(m, list(g["ids"]), a.mode, a.dump)
        return
    ids = list(g["ids"])
    ref = g["logits"]
    sd = ref.std()
    lg = forward(m, ids, a.mode)
    d = np.abs(lg - ref)
    print(f"last logits: max|diff| = {d.max():.3g} = {d.max() / sd:.3g} std (std {sd:.4g}, mean|diff| {d.mean() / sd:.3g} std)")
    agree = 0
    worst = 0.0
    for s, (gid, top) in enumerate(g["steps"][: a.steps]):
        if s > 0:
            lg = forward(m, ids, a.mode)
        mine = int(np.argmax(lg))
        gap = top[0][1] - top[1][1]
        dv = max(abs(lg[i] - v) for i, v in top)
        worst = max(worst, dv / sd)
        flag = "" if mine == gid else f"  DIFFERS (mine {mine}, golden gap {gap:.3g} = {gap / sd:.3g} std)"
        print(f"step {s}: golden {gid} gap {gap / sd:.3g} std, top5 max|diff| {dv / sd:.3g} std{flag}")
        if mine != gid:
            break
        agree += 1
        ids.append(gid)
    print(f"greedy agreement {agree}/{len(g['steps'][: a.steps])}; top5 max|diff| {worst:.3g} std")


if __name__ == "__main__":
    main()
