#!/usr/bin/env python3
"""Plain-PyTorch baseline for valuedrift's trainer: SFT / DPO steps on SmolLM2-135M, fp32, CPU.

Usage (from the repository root, with a Python that has torch, transformers, gguf):
  python scripts/bench/train_peers.py sft|dpo --batch 4 --seq-len 256 --steps 3 [--ids FILE] [--threads 2]

--ids FILE: JSON written by the Rust side, {"sequences": [[ids...], ...]} (sft) or
{"pairs": [{"prompt": [...], "chosen": [...], "rejected": [...]}, ...]} (dpo). Without it,
inputs are consecutive token windows of the assistant answers in data/sft/supportive.jsonl.
The first step is warm-up; s_per_step is the median of the rest. "tokens" are the tokens fed
forward: batch*seq_len for sft, 2*batch*seq_len (padded length) for dpo.
Prints one JSON line on stdout; everything else goes to stderr."""
import argparse, copy, json, resource, statistics, sys, time

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

MODELS, GGUF = "models", "smollm2-135m-instruct.q4_1.gguf"
BETA = 0.1


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def windows(tok, n, length):
    """n consecutive token windows of `length` from the supportive SFT answers (wrapping around)."""
    rows = [json.loads(l) for l in open("data/sft/supportive.jsonl") if l.strip()]
    text = "\n\n".join(m["content"] for r in rows for m in r["messages"] if m["role"] == "assistant")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return [[ids[(i * length + j) % len(ids)] for j in range(length)] for i in range(n)]


def sft_inputs(a, tok):
    seqs = json.load(open(a.ids))["sequences"] if a.ids else windows(tok, a.batch, a.seq_len)
    return torch.tensor(seqs)


def dpo_inputs(a, tok):
    if a.ids:
        pairs = json.load(open(a.ids))["pairs"]
    else:
        half = a.seq_len // 2
        w = windows(tok, 3 * a.batch, half)
        pairs = [{"prompt": w[3 * i], "chosen": w[3 * i + 1], "rejected": w[3 * i + 2]} for i in range(a.batch)]
    # rows 0..B-1: prompt+chosen, rows B..2B-1: prompt+rejected; right-padded
    seqs = [p["prompt"] + p[k] for k in ("chosen", "rejected") for p in pairs]
    starts = [len(p["prompt"]) for _ in range(2) for p in pairs]
    length = max(map(len, seqs))
    ids = torch.zeros(len(seqs), length, dtype=torch.long)
    mask = torch.zeros(len(seqs), length, dtype=torch.long)
    resp = torch.zeros(len(seqs), length - 1)  # 1 where the *target* token ids[:, t+1] is a response token
    for i, (s, st) in enumerate(zip(seqs, starts)):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
        resp[i, st - 1:len(s) - 1] = 1
    return ids, mask, resp


def seq_logps(model, ids, mask, resp):
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    lp = torch.gather(logits.log_softmax(-1), 2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (lp * resp).sum(-1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("workload", choices=["sft", "dpo"])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--ids")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    tok = AutoTokenizer.from_pretrained(MODELS, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(MODELS, gguf_file=GGUF, dtype=torch.float32)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0)

    if a.workload == "sft":
        ids = sft_inputs(a, tok)

        def step():  # mean cross-entropy over the shifted tokens (all but the first)
            return model(input_ids=ids, labels=ids).loss
        batch, seq_len = ids.shape
        tokens = batch * seq_len
    else:
        ids, mask, resp = dpo_inputs(a, tok)
        ref = copy.deepcopy(model).eval()
        ref.requires_grad_(False)

        def step():
            with torch.no_grad():
                r = seq_logps(ref, ids, mask, resp)
            pol = seq_logps(model, ids, mask, resp)
            b = ids.shape[0] // 2
            margin = (pol[:b] - r[:b]) - (pol[b:] - r[b:])
            return -F.logsigmoid(BETA * margin).mean()
        batch, seq_len = ids.shape[0] // 2, ids.shape[1]
        tokens = 2 * batch * seq_len

    times = []
    for i in range(a.steps):
        t = time.perf_counter()
        loss = step()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
        log(f"step {i}: loss {loss.item():.4f} {times[-1]:.2f}s")

    s = statistics.median(times[1:] if len(times) > 1 else times)
    print(json.dumps({"engine": "pytorch", "workload": a.workload, "batch": batch, "seq_len": seq_len,
                      "threads": a.threads, "s_per_step": round(s, 3), "tok_per_s": round(tokens / s, 1),
                      "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
                      "torch": torch.__version__, "steps": a.steps}), flush=True)


if __name__ == "__main__":
    main()
