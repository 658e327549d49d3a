#!/usr/bin/env python3
"""PyTorch side of tools/torchcmp: the same steps as compresskv, written plainly.

Scoring, selection and compaction of one layer are written the way the
published SnapKV / CompressKV code does it: batched matmul of the window
queries with the keys (CompressKV: of its SR heads only, with their KV heads
gathered; SnapKV: every head, through repeat_kv), causal mask inside the
window, softmax in float32, sum over the window, avg_pool1d (kernel 5,
padding 2, stride 1), mean over heads, topk, gather. Decode attention is softmax(q k^T / sqrt(d)) v
over the cache with grouped-query attention through a view.

Prints one JSON object: for every step, length and dtype, [min, median]
milliseconds. Decode reports the faster of two forms (grouped through a
view, or repeat_kv). Each timed run follows a read of a 256 MiB buffer, as
on the Go side, so that no run finds the cache in the last-level cache
(--no-flush turns that off). Run with OMP_NUM_THREADS=2.
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn.functional as F


def repeat_kv(x, n_rep):
    b, g, l, d = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(b, g, n_rep, l, d).reshape(b, g * n_rep, l, d)


def compress(key_states, value_states, query_states, window, budget, kernel, sr_heads=None, all_heads=False):
    """Keeps budget rows per KV head: budget-window by score, plus the window."""
    bsz, num_heads, _, head_dim = query_states.shape
    num_kv = key_states.shape[1]
    rep = num_heads // num_kv
    if sr_heads is not None and not all_heads:  # the published CompressKV code: the SR heads only
        q = query_states[:, sr_heads]
        k = key_states[:, [h // rep for h in sr_heads]]
    else:  # SnapKV; or, all_heads, a weaker CompressKV that scores every head, then picks
        q = query_states[..., -window:, :]
        k = repeat_kv(key_states, rep)
    attn = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(head_dim)
    mask = torch.full((window, window), torch.finfo(attn.dtype).min, device=attn.device)
    mask = torch.triu(mask, diagonal=1)
    attn[:, :, -window:, -window:] += mask
    attn = F.softmax(attn, dim=-1, dtype=torch.float32)
    votes = attn[:, :, -window:, :-window].sum(dim=-2)
    if sr_heads is not None:
        if all_heads:
            votes = votes[:, sr_heads]
        votes = F.avg_pool1d(votes, kernel_size=kernel, padding=kernel // 2, stride=1)
        score = votes.mean(dim=1, keepdim=True).expand(-1, num_kv, -1)
    else:
        votes = F.avg_pool1d(votes, kernel_size=kernel, padding=kernel // 2, stride=1)
        score = votes.view(bsz, num_kv, rep, -1).mean(dim=2)
    idx = score.topk(budget - window, dim=-1).indices
    idx = idx.unsqueeze(-1).expand(-1, -1, -1, head_dim)
    k_past = key_states[:, :, :-window, :].gather(dim=2, index=idx)
    v_past = value_states[:, :, :-window, :].gather(dim=2, index=idx)
    k_new = torch.cat([k_past, key_states[:, :, -window:, :]], dim=2)
    v_new = torch.cat([v_past, value_states[:, :, -window:, :]], dim=2)
    return k_new, v_new


def decode(q, k, v):
    """q [1, H, 1, d] over k, v [1, G, L, d]: out [1, H, d]; the query heads
    of a KV group share one matmul through a view."""
    _, num_heads, _, d = q.shape
    num_kv = k.shape[1]
    qg = q.view(1, num_kv, num_heads // num_kv, d)
    s = torch.matmul(qg, k.transpose(2, 3)) / math.sqrt(d)
    p = torch.softmax(s, dim=-1, dtype=torch.float32).to(v.dtype)
    return torch.matmul(p, v).view(1, num_heads, d)


def decode_repeat(q, k, v):
    """The same through repeat_kv, as the published decoders write it."""
    _, num_heads, _, d = q.shape
    rep = num_heads // k.shape[1]
    kr, vr = repeat_kv(k, rep), repeat_kv(v, rep)
    s = torch.matmul(q, kr.transpose(2, 3)) / math.sqrt(d)
    p = torch.softmax(s, dim=-1, dtype=torch.float32).to(v.dtype)
    return torch.matmul(p, vr).view(1, num_heads, d)


FLUSH = None


def times_ms(f, reps):
    """Milliseconds of reps timed runs after one warm run: (min, median).
    Before each timed run the 256 MiB flush buffer is read (untimed), as the
    Go side reads its bandwidth probe before each round: neither side finds
    the cache's rows in the last-level cache."""
    f()  # warm
    times = []
    for _ in range(reps):
        if FLUSH is not None:
            FLUSH.sum()
        t0 = time.perf_counter()
        f()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return [times[0], times[len(times) // 2]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", default="4096,32768")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--budget", type=int, default=1024)
    ap.add_argument("--kernel", type=int, default=5)
    ap.add_argument("--sr-heads", default="0,9,18,27")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--no-flush", action="store_true", help="do not read 256 MiB before each timed run")
    ap.add_argument("--decode-only", action="store_true", help="time decode attention alone")
    a = ap.parse_args()
    torch.manual_seed(0)
    global FLUSH
    if not a.no_flush:
        FLUSH = torch.ones(64 << 20, dtype=torch.float32)
    sr = [int(h) for h in a.sr_heads.split(",")]
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "ms": {}}
    ms = out["ms"]
    with torch.inference_mode():
        for L in [int(x) for x in a.lengths.split(",")]:
            for name in a.dtypes.split(","):
                dt = getattr(torch, name)
                k = torch.randn(1, a.kv_heads, L, a.dim).to(dt)
                v = torch.randn(1, a.kv_heads, L, a.dim).to(dt)
                q = (torch.randn(1, a.heads, a.window, a.dim) * 1.5).to(dt)
                key = f"{L}/{name}"
                if not a.decode_only:
                    ms[f"snapkv/{key}"] = times_ms(lambda: compress(k, v, q, a.window, a.budget, a.kernel), a.reps)
                    ms[f"compresskv/{key}"] = times_ms(lambda: compress(k, v, q, a.window, a.budget, a.kernel, sr), a.reps)
                    ms[f"compresskv-all-heads/{key}"] = times_ms(
                        lambda: compress(k, v, q, a.window, a.budget, a.kernel, sr, all_heads=True), a.reps)
                qd = torch.randn(1, a.heads, 1, a.dim).to(dt)
                grouped = times_ms(lambda: decode(qd, k, v), a.reps)
                repeated = times_ms(lambda: decode_repeat(qd, k, v), a.reps)
                ms[f"decode/{key}"] = min(grouped, repeated)  # the best form
                del k, v
    print(json.dumps(out))


if __name__ == "__main__":
    main()
