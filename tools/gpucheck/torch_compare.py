"""PyTorch equivalent of backend/cuda's benchmarks, on the same GPU.

Prints one line per case: "<op> L=<n>K <ms> <GB/s>", GB/s counted as the Go
benchmarks count it (tools/gpucheck/run.sh's timing phase times the same
operations on the Go side). Shapes: 32 query heads, 8 KV heads, d = 128, float16.
SelectCompact: CompressKV's selection with 4 SR heads on 4 KV heads (window
8, causal inside the window, float32 softmax, sum, avg_pool1d 5 counting the
padding, mean, top-k 2040 + window) and the gather of the kept rows of all
8 KV heads. Attend: decode attention of one token (SDPA with GQA).
H2OScores: H2O's scoring of one layer (every prompt query against every
key, causal, float32 softmax, summed over the queries) for all 32 query
heads, one head at a time so that the L x L logits fit; its rate is TFLOP/s
of the 2*L*L*d logits per head, as the Go benchmark counts it.
"""
import torch
import torch.nn.functional as F

H, G, D, W, KEEP = 32, 8, 128, 8, 2040
SR = [0, 8, 16, 24]


def timed(fn, reps=10):
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def main():
    dev = "cuda"
    torch.manual_seed(0)
    for L in (32 << 10, 128 << 10):
        k = torch.randn(G, L, D, device=dev, dtype=torch.float16)
        v = torch.randn(G, L, D, device=dev, dtype=torch.float16)
        q = torch.randn(W, H, D, device=dev, dtype=torch.float16)
        mask = torch.ones(W, L, dtype=torch.bool, device=dev)
        mask[:, L - W:] = torch.tril(torch.ones(W, W, dtype=torch.bool, device=dev))

        def select_compact():
            rows = []
            for h in SR:
                logits = (q[:, h, :].float() @ k[h // (H // G)].float().T) / D ** 0.5
                logits = logits.masked_fill(~mask, float("-inf"))
                p = torch.softmax(logits, dim=-1).sum(0)[: L - W]
                rows.append(F.avg_pool1d(p.view(1, 1, -1), 5, 1, 2, count_include_pad=True).view(-1))
            score = torch.stack(rows).mean(0)
            idx = torch.topk(score, KEEP).indices.sort().values
            idx = torch.cat([idx, torch.arange(L - W, L, device=dev)])
            return k.index_select(1, idx), v.index_select(1, idx)

        ms = timed(select_compact)
        moved = 4.0 * L * D * 2 + 2 * 2 * G * 2048 * D * 2
        print(f"SelectCompact L={L >> 10}K {ms:.3f} {moved / (ms * 1e-3) / 1e9:.1f}")

        q1 = torch.randn(1, H, 1, D, device=dev, dtype=torch.float16)

        def attend():
            return F.scaled_dot_product_attention(q1, k.unsqueeze(0), v.unsqueeze(0), enable_gqa=True)

        try:
            attend()
        except TypeError:  # PyTorch < 2.5: no enable_gqa
            kk, vv = k.repeat_interleave(H // G, 0).unsqueeze(0), v.repeat_interleave(H // G, 0).unsqueeze(0)

            def attend():
                return F.scaled_dot_product_attention(q1, kk, vv)

        ms = timed(attend)
        moved = 2.0 * G * L * D * 2
        print(f"Attend L={L >> 10}K {ms:.3f} {moved / (ms * 1e-3) / 1e9:.1f}")

    for L in (4 << 10, 16 << 10):
        k = torch.randn(G, L, D, device=dev, dtype=torch.float16)
        q = torch.randn(L, H, D, device=dev, dtype=torch.float16)
        causal = torch.ones(L, L, dtype=torch.bool, device=dev).tril()

        def h2o():
            out = []
            for h in range(H):
                logits = (q[:, h, :].float() @ k[h // (H // G)].float().T) / D ** 0.5
                logits = logits.masked_fill(~causal, float("-inf"))
                out.append(torch.softmax(logits, dim=-1).sum(0))
            return torch.stack(out)

        ms = timed(h2o, reps=3)
        print(f"H2OScores L={L >> 10}K {ms:.3f} {2.0 * H * L * L * D / (ms * 1e-3) / 1e12:.2f}")


if __name__ == "__main__":
    main()
