#!/usr/bin/env python3
"""Trains compresskv's own small retrieval model and exports it in llama2.c format.

A byte-level Llama (RMSNorm, interleaved-pair RoPE, SwiGLU, grouped-query
attention with 4 query heads per KV head, tied embeddings) learns to answer
needle-in-a-haystack questions over public-domain text: needles such as
"The special magic number for <word> is <digits>." are inserted at random
depths of a haystack, distractor needles beside them, and questions at the end
repeat the needle's wording up to the answer, so that retrieval is a copy.

Vocabulary: 0 <unk>, 1 BOS, 2 EOS, 3+b for byte b (259 tokens), the llama2.c
convention, so the Go runner reads it with its own loader.

Debian's torch 1.13 on 2 cores (apt-get install python3-torch
libopenblas0-pthread; OMP_NUM_THREADS=2):

    OMP_NUM_THREADS=2 /usr/bin/python3 tools/train/train.py \
        --data testdata/haystack/train.txt --out /tmp/retrieval --minutes 90

It trains on a length curriculum (256, 512, 1024, 2048 tokens), moving on when
teacher-forced answer accuracy at the current length passes --advance, and
writes <out>.bin (llama2.c weights), <out>.pt (a checkpoint to resume from with
--resume) and <out>.json (the manifest: data, seed, steps, time, loss,
accuracy) every few minutes and at the end.
"""
import argparse
import json
import math
import os
import platform
import random
import struct
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB, UNK, BOS, EOS, BYTE0 = 259, 0, 1, 2, 3
LM_WEIGHT = 0.1  # loss weight of haystack and question bytes; answers weigh 1

# Needle templates: (needle, question, answer prefix). The answer prefix
# repeats the needle's words up to the value.
TEMPLATES = [
    ("The special magic number for {w} is {n}.",
     "What is the special magic number for {w}?", "The special magic number for {w} is "),
    ("The secret code of the {w} is {n}.",
     "What is the secret code of the {w}?", "The secret code of the {w} is "),
    ("Remember that the {w} key opens door {n}.",
     "Which door does the {w} key open?", "The {w} key opens door "),
    ("The {w} was born in the year {n}.",
     "In which year was the {w} born?", "The {w} was born in the year "),
]

# A compact wording used only in training, so that a 256-token sequence holds
# many needles and as many answers: the copy mechanism is learned from dense
# answers and then carries over to the long wordings above.
COMPACT = ("{w} = {n}.", "", "{w} = ")

CONS, VOWS = "bcdfghjklmnprstvwz", "aeiou"

# Below this length only the compact wording fits a sequence (with room for
# its question and some haystack).
COMPACT_ONLY_BELOW = 200


def pseudo_word(rng):
    """A pronounceable random word, 4 to 9 letters."""
    n = rng.randint(2, 4)
    w = "".join(rng.choice(CONS) + rng.choice(VOWS) for _ in range(n))
    if rng.random() < 0.5:
        w += rng.choice(CONS)
    return w


def digits(rng, n=5):
    return "".join(rng.choice("0123456789") for _ in range(n))


def encode(s):
    return [BYTE0 + b for b in s.encode("ascii")]


def excluded_words(go_file):
    """The evaluation and calibration key words listed in examples/niah/niah.go
    (its backquoted word lists), which training never uses as keys."""
    if not go_file or not os.path.exists(go_file):
        return set()
    src = open(go_file, encoding="utf-8").read()
    out = set()
    for i, part in enumerate(src.split("`")):
        if i % 2 == 1:
            out.update(part.split())
    return out


class Data:
    def __init__(self, path, seed, compact=0.0, repeat=0.0, exclude=()):
        self.text = open(path, encoding="ascii").read().replace("\n", " ")
        self.rng = random.Random(seed)
        self.compact = compact  # share of sequences in the compact wording
        self.repeat = repeat  # share of sequences that repeat a random segment
        # Real words of the text (lower case, 4-9 letters) serve as keys
        # beside pseudo-words, so that keys that also occur in the haystack
        # are retrieved by the whole needle wording, not by the word alone.
        ws = {w for w in self.text.split() if w.isalpha() and w.islower() and 4 <= len(w) <= 9}
        self.words = sorted(ws - set(exclude))

    def key_word(self):
        if self.words and self.rng.random() < 0.5:
            return self.rng.choice(self.words)
        return pseudo_word(self.rng)

    def repeated(self, T):
        """A random segment of pseudo-words and digit strings, then the same
        segment again: the loss on the repeat teaches copying (induction),
        the mechanism that answering a needle question builds on."""
        rng = self.rng
        half = (T - 2) // 2
        seg = ""
        while len(seg) < half:
            seg += (self.key_word() if rng.random() < 0.5 else digits(rng)) + " "
        seg = seg[:half]
        toks = [BOS] + encode(seg) + encode("\n") + encode(seg)
        wts = [0.0] + [LM_WEIGHT] * (half + 1) + [1.0] * half
        toks += [EOS] * (T - len(toks))
        wts += [0.0] * (T - len(wts))
        return toks, wts, []

    def haystack(self, n):
        """n bytes of text starting at a sentence start."""
        t, rng = self.text, self.rng
        for _ in range(20):
            i = rng.randrange(0, len(t) - n - 1)
            j = t.find(". ", i)
            if j >= 0 and j + 2 + n <= len(t):
                return t[j + 2:j + 2 + n]
        return t[i:i + n]

    def sample(self, T, needles, asked, compact=False):
        """One sequence of exactly T tokens and its per-token loss weights.

        needles: how many needles; asked: how many of them are asked about.
        Returns (tokens, weights, answer_spans) where answer_spans are the
        (start, end) token ranges of the answers' digits (for accuracy)."""
        rng = self.rng
        words = set()
        while len(words) < needles:
            words.add(self.key_word())
        words = list(words)
        tmpl = rng.randrange(len(TEMPLATES)) if rng.random() < 0.7 else None
        items = []
        for w in words:
            k = tmpl if tmpl is not None else rng.randrange(len(TEMPLATES))
            items.append((k, w, digits(rng)))
        ask = rng.sample(items, asked)
        tmpls = [COMPACT] * len(TEMPLATES) if compact else TEMPLATES
        tail = []  # (text, is_answer)
        for k, w, n in ask:
            _, q, a = tmpls[k]
            tail.append(("\n" + (q.format(w=w) + " " if q else "") + a.format(w=w), False))
            tail.append((n + ".", True))
        needle_txt = [" " + tmpls[k][0].format(w=w, n=n) + " " for k, w, n in items]
        fixed = 1 + sum(len(s) for s in needle_txt) + sum(len(s) for s, _ in tail)
        room = T - fixed
        if room < 16:
            return None
        hay = self.haystack(room)
        # Insert needles at random word boundaries of the haystack.
        cuts = sorted(rng.randrange(0, room + 1) for _ in needle_txt)
        cuts = [hay.rfind(" ", 0, c) + 1 if hay.rfind(" ", 0, c) >= 0 else 0 for c in cuts]
        parts, prev = [], 0
        for c, s in zip(cuts, needle_txt):
            parts.append(hay[prev:c])
            parts.append(s)
            prev = c
        parts.append(hay[prev:])
        body = "".join(parts)
        toks = [BOS] + encode(body)
        wts = [0.0] + [LM_WEIGHT] * len(body)
        spans = []
        for s, is_ans in tail:
            if is_ans:
                spans.append((len(toks), len(toks) + len(s) - 1))  # digits, not the period
            toks += encode(s)
            wts += [1.0 if is_ans else LM_WEIGHT] * len(s)
        assert len(toks) == T, (len(toks), T)
        return toks, wts, spans

    def batch(self, B, T, compact=None):
        """B sequences of T tokens. compact=None draws the kind of each
        sequence from the mix (repeat, compact, long wordings); True or
        False asks for needles in that wording only (accuracy probes)."""
        xs, ws, spans = [], [], []
        rng = self.rng
        while len(xs) < B:
            if compact is None and rng.random() < self.repeat:
                s = self.repeated(T)
            else:
                # Most needles are asked about: answers are the signal
                # retrieval is learned from (a run that asked about one
                # needle in 1-2 learned none in 1,300 steps at 256 tokens);
                # the rest are distractors.
                c = compact if compact is not None else (T < COMPACT_ONLY_BELOW or rng.random() < self.compact)
                if c:
                    nd = rng.randint(2, 3) if T < COMPACT_ONLY_BELOW else rng.randint(3, max(3, T // 40))
                else:
                    nd = rng.randint(1, {256: 2, 512: 3, 1024: 4}.get(T, 6))
                asked = nd if rng.random() < 0.6 else rng.randint(1, nd)
                s = self.sample(T, nd, asked, c)
            if s is None:
                continue
            xs.append(s[0])
            ws.append(s[1])
            spans.append(s[2])
        return torch.tensor(xs), torch.tensor(ws), spans


class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5))


def rope_tables(T, hd, device=None):
    inv = 1.0 / (10000 ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cos(ang).float(), torch.sin(ang).float()


def rope(x, cos, sin):
    """Rotate interleaved pairs (x[2j], x[2j+1]) of the last dimension; x is (B, T, nh, hd)."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)


class Block(nn.Module):
    def __init__(self, d, hidden, H, G):
        super().__init__()
        self.H, self.G, self.hd = H, G, d // H
        self.attn_norm, self.ffn_norm = RMSNorm(d), RMSNorm(d)
        self.wq = nn.Linear(d, d, bias=False)
        self.wk = nn.Linear(d, G * self.hd, bias=False)
        self.wv = nn.Linear(d, G * self.hd, bias=False)
        self.wo = nn.Linear(d, d, bias=False)
        self.w1 = nn.Linear(d, hidden, bias=False)
        self.w2 = nn.Linear(hidden, d, bias=False)
        self.w3 = nn.Linear(d, hidden, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, D = x.shape
        H, G, hd = self.H, self.G, self.hd
        R = H // G
        h = self.attn_norm(x)
        q = rope(self.wq(h).view(B, T, H, hd), cos, sin)
        k = rope(self.wk(h).view(B, T, G, hd), cos, sin)
        v = self.wv(h).view(B, T, G, hd)
        # Grouped-query attention: the R query heads of KV head g (heads
        # g*R..g*R+R-1) are stacked along the rows of one product with its
        # keys, so no key or value is repeated and no batch is broadcast.
        q = q.view(B, T, G, R, hd).permute(0, 2, 3, 1, 4).reshape(B, G, R * T, hd)
        k = k.permute(0, 2, 1, 3)  # B G T hd
        v = v.permute(0, 2, 1, 3)
        att = (torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(hd))).view(B, G, R, T, T) + mask
        att = torch.softmax(att, dim=-1).view(B, G, R * T, T)
        o = torch.matmul(att, v).view(B, G, R, T, hd)
        o = o.permute(0, 3, 1, 2, 4).reshape(B, T, D)
        x = x + self.wo(o)
        h = self.ffn_norm(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class Model(nn.Module):
    def __init__(self, d, hidden, layers, H, G, seq_len):
        super().__init__()
        self.cfg = dict(dim=d, hidden=hidden, layers=layers, heads=H, kv_heads=G, vocab=VOCAB, seq_len=seq_len)
        self.emb = nn.Embedding(VOCAB, d)
        nn.init.normal_(self.emb.weight, std=0.02)
        self.blocks = nn.ModuleList(Block(d, hidden, H, G) for _ in range(layers))
        self.norm = RMSNorm(d)
        self._cache = {}

    def tables(self, T):
        if T not in self._cache:
            cos, sin = rope_tables(T, self.cfg["dim"] // self.cfg["heads"])
            mask = torch.full((T, T), float("-inf")).triu(1)
            self._cache[T] = (cos, sin, mask)
        return self._cache[T]

    def forward(self, idx):
        cos, sin, mask = self.tables(idx.shape[1])
        x = self.emb(idx)
        for b in self.blocks:
            x = b(x, cos, sin, mask)
        return F.linear(self.norm(x), self.emb.weight)


def export(model, path):
    """llama2.c format: 7 int32 header fields, then float32 weights."""
    c = model.cfg
    hd = c["dim"] // c["heads"]
    with open(path, "wb") as f:
        f.write(struct.pack("7i", c["dim"], c["hidden"], c["layers"], c["heads"], c["kv_heads"], c["vocab"], c["seq_len"]))

        def w(t):
            f.write(t.detach().float().contiguous().numpy().tobytes())

        w(model.emb.weight)
        for name in ["attn_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3"]:
            for b in model.blocks:
                w(getattr(b, name).weight)
        w(model.norm.weight)
        f.write(b"\0" * (4 * c["seq_len"] * hd))  # legacy rotary tables, unused


@torch.no_grad()
def load_bin(model, path):
    """Loads weights exported by export() (llama2.c format) into model."""
    c = model.cfg
    with open(path, "rb") as f:
        hdr = struct.unpack("7i", f.read(28))
        want = (c["dim"], c["hidden"], c["layers"], c["heads"], c["kv_heads"], c["vocab"], c["seq_len"])
        if hdr != want:
            raise SystemExit(f"{path}: shape {hdr}, model {want}")

        def r(t):
            n = t.numel()
            t.copy_(torch.frombuffer(bytearray(f.read(4 * n)), dtype=torch.float32).view_as(t))

        r(model.emb.weight)
        for name in ["attn_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3"]:
            for b in model.blocks:
                r(getattr(b, name).weight)
        r(model.norm.weight)


@torch.no_grad()
def accuracy(model, data, T, n=32, compact=False):
    """Teacher-forced: share of asked answers whose digits are all argmax-correct."""
    model.eval()
    ok = tot = 0
    for _ in range(max(1, n // 8)):
        x, _, spans = data.batch(8, T, compact=compact)
        pred = model(x[:, :-1]).argmax(-1)
        for i, sp in enumerate(spans):
            for a, b in sp:
                tot += 1
                ok += bool((pred[i, a - 1:b - 1] == x[i, a:b]).all())
    model.train()
    return ok / max(1, tot)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=90)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=352)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lengths", default="128:32,256:16,512:8,1024:4,2048:2", help="curriculum: length:batch,...")
    ap.add_argument("--advance", type=float, default=0.9, help="accuracy that moves to the next length")
    ap.add_argument("--compact", type=float, default=0.3, help="share of needle sequences in the compact wording (all of them below 200 tokens)")
    ap.add_argument("--repeat", type=float, default=0.2, help="share of sequences that repeat a random segment")
    ap.add_argument("--exclude", default="examples/niah/niah.go", help="Go file whose backquoted word lists are never training keys")
    ap.add_argument("--anneal", action="store_true", help="decay the learning rate linearly to a tenth over the run (a final phase)")
    ap.add_argument("--replay", type=float, default=0.25, help="share of batches drawn at an earlier stage's length")
    ap.add_argument("--resume", default="", help="a .pt checkpoint: weights, optimizer and curriculum state")
    ap.add_argument("--init", default="", help="a .bin export to start from (fresh optimizer)")
    ap.add_argument("--stage", type=int, default=0, help="curriculum stage to start at (with --init, or to move a resumed run on)")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    stages = [tuple(int(v) for v in s.split(":")) for s in args.lengths.split(",")]
    exclude = excluded_words(args.exclude)
    data = Data(args.data, args.seed, args.compact, args.repeat, exclude)
    probe = Data(args.data, args.seed + 1, exclude=exclude)
    model = Model(args.dim, args.hidden, args.layers, args.heads, args.kv_heads, stages[-1][0])
    # No weight decay on norms and embeddings.
    decay, rest = [], []
    for n, p in model.named_parameters():
        (decay if p.dim() == 2 and not n.startswith("emb") else rest).append(p)
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=0.01), dict(params=rest, weight_decay=0.0)],
                            lr=args.lr, betas=(0.9, 0.95))
    state = dict(step=0, stage=0, tokens=0, seconds=0.0, history=[])
    if args.init:
        load_bin(model, args.init)
        state["stage"] = args.stage
    if args.resume:
        ck = torch.load(args.resume)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        if args.stage:
            state["stage"] = args.stage
    params = sum(p.numel() for p in model.parameters())
    print(f"model {model.cfg} params {params}", flush=True)

    start, last_save, last_eval = time.time(), time.time(), time.time()
    t0 = state["seconds"]
    loss_avg = None
    while True:
        elapsed = t0 + time.time() - start
        if elapsed > args.minutes * 60:
            break
        T, B = stages[state["stage"]]
        if state["stage"] > 0 and data.rng.random() < args.replay:
            # A share of the batches stays at the shorter lengths already
            # learned, so that moving on does not unlearn them.
            T, B = stages[data.rng.randrange(state["stage"])]
        lr = args.lr * min(1.0, (state["step"] + 1) / 100)
        if args.anneal:
            # Linear decay to a tenth of --lr over this invocation's minutes.
            done = (time.time() - start) / max(1.0, args.minutes * 60 - t0)
            lr = args.lr * (1 - 0.9 * min(1.0, done))
        for g in opt.param_groups:
            g["lr"] = lr
        x, w, _ = data.batch(B, T)
        logits = model(x[:, :-1])
        ce = F.cross_entropy(logits.reshape(-1, VOCAB), x[:, 1:].reshape(-1), reduction="none")
        wt = w[:, 1:].reshape(-1)
        loss = (ce * wt).sum() / wt.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state["step"] += 1
        state["tokens"] += B * T
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        if time.time() - last_eval > 90:
            last_eval = time.time()
            T = stages[state["stage"]][0]  # the current stage's length, not a replayed one
            acc = accuracy(model, probe, T, compact=T < COMPACT_ONLY_BELOW)
            state["seconds"] = t0 + time.time() - start
            rec = dict(step=state["step"], T=T, loss=round(loss_avg, 4), acc=acc, tokens=state["tokens"],
                       minutes=round(state["seconds"] / 60, 1))
            state["history"].append(rec)
            print(json.dumps(rec), flush=True)
            if acc >= args.advance and state["stage"] + 1 < len(stages):
                state["stage"] += 1
                print(f"-> length {stages[state['stage']][0]}", flush=True)
        if time.time() - last_save > 300:
            last_save = time.time()
            save(model, opt, state, args, t0 + time.time() - start, loss_avg, probe, stages)
    save(model, opt, state, args, t0 + time.time() - start, loss_avg, probe, stages, final=True)


def save(model, opt, state, args, seconds, loss_avg, data, stages, final=False):
    state["seconds"] = seconds
    torch.save(dict(model=model.state_dict(), opt=opt.state_dict(), state=state), args.out + ".pt")
    export(model, args.out + ".bin")
    accs = {}
    if final:
        for T, _ in stages:
            accs[T] = accuracy(model, data, T, n=64, compact=T < COMPACT_ONLY_BELOW)
    manifest = dict(
        model=model.cfg, params=sum(p.numel() for p in model.parameters()),
        data=os.path.basename(args.data), seed=args.seed, steps=state["step"], tokens=state["tokens"],
        wall_minutes=round(seconds / 60, 1), hardware=f"{platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}",
        final_loss=loss_avg, teacher_forced_accuracy=accs, curriculum=args.lengths, lr=args.lr,
        history=state["history"][-50:],
        command="OMP_NUM_THREADS=2 /usr/bin/python3 tools/train/train.py " + " ".join(
            f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}")
            for k, v in vars(args).items() if v != "" and v is not False),
    )
    with open(args.out + ".json", "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"saved {args.out} at step {state['step']}", flush=True)


if __name__ == "__main__":
    main()
