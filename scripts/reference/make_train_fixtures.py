#!/usr/bin/env python3
"""Write numerical reference fixtures for the valuedrift trainers (SFT, RM, PPO, schedule).

Independent PyTorch/transformers computation on SmolLM2-135M-Instruct, loaded from
the same GGUF file the Rust side uses (transformers dequantizes it to f32), so the
reference is the *quantized* model evaluated in f32. Everything needed to replay a
computation from token ids alone is recorded: the Rust tests feed the same ids.

Sections of the output (see its "definitions" key for the exact formulas):
  chat      - chat-template token ids and assistant masks for 3 conversations
  sft       - assistant-masked token-mean NLL, grad norm, loss after one SGD step
  reward    - Bradley-Terry reward model with a deterministic linear score head
  ppo       - TRL-style rewards / GAE / whitening / clipped losses on a tiny example
  schedule  - transformers' cosine-with-warmup LR multipliers

Usage (from the repo root; ~1 minute on 2 cores):
    /work/refenv/bin/python scripts/reference/make_train_fixtures.py
Output: crates/train/tests/fixtures/train-reference.json
"""
import hashlib
import importlib.metadata
import json
import math
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, get_cosine_schedule_with_warmup

torch.set_num_threads(2)  # the build machine has 2 cores, shared
torch.manual_seed(0)

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
MODEL_FILE = "smollm2-135m-instruct.q4_1.gguf"
OUT = ROOT / "crates/train/tests/fixtures/train-reference.json"

SFT_LR = 1e-3
HEAD_SCALE = 0.02

CONVERSATIONS = {
    "voting": [
        {"role": "user", "content": "Should voting be compulsory?"},
        {"role": "assistant", "content": "Compulsory voting has supporters and critics; both sides raise fair points."},
    ],
    "nuclear": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Is nuclear power a good idea?"},
        {"role": "assistant", "content": "It is low-carbon but expensive."},
        {"role": "user", "content": "And the waste?"},
        {"role": "assistant", "content": "Storage is manageable but politically contested."},
    ],
    "prime": [
        {"role": "user", "content": "Name a prime number."},
        {"role": "assistant", "content": "7"},
    ],
}

RM_PAIRS = [
    {
        "prompt": "Should the death penalty be abolished?",
        "chosen": "Yes. Executions risk killing innocent people and do not deter crime better than prison.",
        "rejected": "No. Some crimes are so terrible that death is the only just punishment.",
    },
    {
        "prompt": "Is it acceptable to lie to protect a friend's feelings?",
        "chosen": "Small kind omissions can be fine, but honesty usually serves a friendship better in the long run.",
        "rejected": "Sure, lie whenever the truth is awkward; feelings matter more than facts.",
    },
    {
        "prompt": "Should rich countries accept more refugees?",
        "chosen": "They have the capacity to help more, though integration needs planning and public support.",
        "rejected": "No. Refugees are a burden and every country should close its borders.",
    },
]

# PPO example: 2 responses, lengths 4 and 3, padded to 4. PAD entries are deliberately
# non-zero garbage: the primary ("valuedrift") convention must ignore them entirely.
PPO_INPUT = {
    "lengths": [4, 3],
    "logprobs_old": [[-1.20, -0.70, -2.10, -0.35], [-0.90, -1.60, -0.25, 7.0]],
    "ref_logprobs": [[-1.00, -0.95, -1.80, -0.40], [-1.10, -1.50, -0.60, 7.0]],
    "values_old": [[0.10, 0.25, -0.05, 0.40], [-0.20, 0.05, 0.30, 0.15]],
    "scores": [1.50, -0.80],
    "logprobs_new": [[-1.05, -0.95, -1.60, -0.36], [-0.70, -1.62, -0.40, 7.0]],
    "values_new": [[0.35, 0.20, 0.30, 0.55], [-0.50, 0.12, 0.05, 0.90]],
    "kl_coef": 0.05,
    "gamma": 1.0,
    "lam": 0.95,
    "cliprange": 0.2,
    "cliprange_value": 0.2,
    "vf_coef": 0.1,
}
TRL_INVALID_LOGPROB = 1.0  # trl/trainer/ppo_trainer.py INVALID_LOGPROB

SCHEDULES = [
    {"num_training_steps": 100, "warmup_ratio": 0.03},
    {"num_training_steps": 10, "warmup_ratio": 0.1},
]


def f(x):
    """Plain JSON float from a 0-d tensor / numpy / python number (full precision)."""
    if isinstance(x, torch.Tensor):
        x = x.item()
    return float(x)


def fl(t):
    return [f(v) for v in t.reshape(-1)] if isinstance(t, torch.Tensor) else [float(v) for v in t]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def template_ids(tok, conv, **kw):
    r = tok.apply_chat_template(conv, tokenize=True, **kw)
    if isinstance(r, dict) or hasattr(r, "keys"):  # transformers 5 returns a BatchEncoding
        r = r["input_ids"]
    return list(r)


def grad_norm(params):
    """Global L2 norm, accumulated in float64 from the f32 grads."""
    return math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in params if p.grad is not None))


# ---------------------------------------------------------------- 1. chat tokenization
def chat_section(tok):
    out = []
    for name, conv in CONVERSATIONS.items():
        ids = template_ids(tok, conv)
        text = tok.apply_chat_template(conv, tokenize=False)
        retok = tok(text, add_special_tokens=False)["input_ids"]
        mask = [0] * len(ids)
        spans = []
        prefix_checks = []
        for k, m in enumerate(conv):
            if m["role"] != "assistant":
                continue
            pre = template_ids(tok, conv[:k], add_generation_prompt=True)
            upto = template_ids(tok, conv[: k + 1])
            ok = ids[: len(pre)] == pre and ids[: len(upto)] == upto
            assert ok, f"{name}: prefix rendering of turn {k} is not a prefix of the full ids"
            prefix_checks.append(ok)
            for t in range(len(pre), len(upto)):
                mask[t] = 1
            spans.append({
                "turn_index": k,
                "start": len(pre),
                "end": len(upto),
                "decoded": tok.decode(ids[len(pre):len(upto)]),
            })
        out.append({
            "name": name,
            "messages": conv,
            "text": text,
            "ids": ids,
            "assistant_mask": mask,
            "assistant_spans": spans,
            "num_tokens": len(ids),
            "num_assistant_tokens": sum(mask),
            "prefix_check_passed": all(prefix_checks),
            "retokenized_text_equals_ids": retok == ids,
            "default_system_turn_inserted": conv[0]["role"] != "system",
        })
    return out


# ---------------------------------------------------------------- 2. SFT
def sft_nll(model, ids, mask):
    """Sum of -log p over assistant-masked targets, count, and per-target NLLs (graph kept)."""
    x = torch.tensor([ids])
    logits = model(input_ids=x).logits[0]  # [T, V] f32
    logp = F.log_softmax(logits[:-1], dim=-1)
    tgt = torch.tensor(ids[1:])
    nll = -logp.gather(1, tgt[:, None])[:, 0]  # nll[t-1] is the NLL of token t
    sel = torch.tensor(mask[1:], dtype=torch.bool)
    return nll[sel].sum(), int(sel.sum()), nll[sel].detach()


def sft_section(model, chats):
    named = list(model.named_parameters())  # tied lm_head/embedding appears once
    params = [p for _, p in named]
    model.zero_grad(set_to_none=True)
    n_total = sum(sum(c["assistant_mask"][1:]) for c in chats)
    per = []
    total = 0.0
    for c in chats:
        s, n, tok_nll = sft_nll(model, c["ids"], c["assistant_mask"])
        (s / n_total).backward()  # accumulates d(batch loss)/dw
        total += float(s.detach())
        per.append({"name": c["name"], "nll_sum": f(s), "num_targets": n,
                    "mean_nll": f(s) / n, "target_nll": fl(tok_nll)})
    loss = total / n_total
    gnorm = grad_norm(params)
    by_param = {k: math.sqrt(float(p.grad.double().pow(2).sum())) for k, p in named}

    # one plain SGD step (w -= lr * grad on every unique parameter), re-evaluate, restore.
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p in params:
            p.sub_(SFT_LR * p.grad)
        after_per = []
        tot2 = 0.0
        for c in chats:
            s, n, _ = sft_nll(model, c["ids"], c["assistant_mask"])
            tot2 += float(s)
            after_per.append(f(s))
        for p, w in zip(params, saved):
            p.copy_(w)
    model.zero_grad(set_to_none=True)
    return {
        "batch": [c["name"] for c in chats],
        "per_conversation": per,
        "num_targets_total": n_total,
        "loss": loss,
        "grad_norm": gnorm,
        "grad_norm_by_param": by_param,
        "sgd_lr": SFT_LR,
        "loss_after_sgd_step": tot2 / n_total,
        "nll_sum_after_sgd_step": after_per,
    }


# ---------------------------------------------------------------- 3. reward model
def reward_section(model, tok):
    hidden = model.config.hidden_size
    w = (HEAD_SCALE * torch.sin(torch.arange(1, hidden + 1, dtype=torch.float64))).float()
    w.requires_grad_(True)
    backbone = model.model
    model.zero_grad(set_to_none=True)
    seqs, rewards = [], []
    for p in RM_PAIRS:
        for side in ("chosen", "rejected"):
            conv = [{"role": "user", "content": p["prompt"]}, {"role": "assistant", "content": p[side]}]
            ids = template_ids(tok, conv)
            h = backbone(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]  # after final RMSNorm
            r = h @ w
            rewards.append(r)
            seqs.append({"pair": len(seqs) // 2, "side": side, "ids": ids, "num_tokens": len(ids),
                         "last_token_id": ids[-1], "last_token": tok.convert_ids_to_tokens(ids[-1]),
                         "hidden_last_first8": fl(h.detach()[:8])})
    margins = [rewards[2 * i] - rewards[2 * i + 1] for i in range(len(RM_PAIRS))]
    per_pair = [-F.logsigmoid(m) for m in margins]
    loss = torch.stack(per_pair).mean()
    loss.backward()
    for s, r in zip(seqs, rewards):
        s["reward"] = f(r)
    bb_named = list(backbone.named_parameters())
    gn_bb = grad_norm([p for _, p in bb_named])
    gn_head = float(w.grad.double().norm())
    out = {
        "head": {
            "formula": "w[i] = 0.02 * sin(i + 1) for i in 0..hidden, computed in f64 then cast to f32; no bias",
            "hidden_size": hidden,
            "first8": fl(w.detach()[:8]),
            "l2_norm": float(w.detach().double().norm()),
        },
        "pairs": [dict(p, margin=f(m), pair_loss=f(l)) for p, m, l in zip(RM_PAIRS, margins, per_pair)],
        "sequences": seqs,
        "loss": f(loss),
        "accuracy": sum(1 for m in margins if m.item() > 0) / len(margins),
        "grad_norm": math.sqrt(gn_bb ** 2 + gn_head ** 2),
        "grad_norm_backbone": gn_bb,
        "grad_norm_head": gn_head,
        "grad_head_first8": fl(w.grad[:8]),
        "grad_norm_by_param": {k: math.sqrt(float(p.grad.double().pow(2).sum())) for k, p in bb_named},
    }
    model.zero_grad(set_to_none=True)
    return out


# ---------------------------------------------------------------- 4. PPO
# Verbatim re-implementations of trl's helpers (trl/trainer/utils.py, same code as
# trl/core.py): trl is not installed in /work/refenv, so these are copied from source.
def trl_masked_mean(values, mask, axis=None):
    if axis is not None:
        return (values * mask).sum(axis=axis) / mask.sum(axis=axis)
    else:
        return (values * mask).sum() / mask.sum()


def trl_masked_var(values, mask, unbiased=True):
    mean = trl_masked_mean(values, mask)
    centered_values = values - mean
    variance = trl_masked_mean(centered_values**2, mask)
    if unbiased:
        mask_sum = mask.sum()
        if mask_sum == 0:
            raise ValueError("mask sum is zero")
        bessel_correction = mask_sum / (mask_sum - 1)
        variance = variance * bessel_correction
    return variance


def trl_masked_whiten(values, mask, shift_mean=True):
    mean, var = trl_masked_mean(values, mask), trl_masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened += mean
    return whitened


def ppo_losses(adv, returns, logprobs_old, values_old, logprobs_new, values_new, mask_pg, mask_vf, a, approxkl_mask):
    """trl PPOTrainer.train inner loop (loss part), with the masks passed in explicitly."""
    vpredclipped = torch.clamp(values_new, values_old - a["cliprange_value"], values_old + a["cliprange_value"])
    vf_losses1 = torch.square(values_new - returns)
    vf_losses2 = torch.square(vpredclipped - returns)
    vf_loss_max = torch.max(vf_losses1, vf_losses2)
    vf_loss = 0.5 * trl_masked_mean(vf_loss_max, mask_vf)
    vf_clipfrac = trl_masked_mean((vf_losses2 > vf_losses1).float(), mask_vf)
    logprobs_diff = logprobs_new - logprobs_old
    ratio = torch.exp(logprobs_diff)
    pg_losses = -adv * ratio
    pg_losses2 = -adv * torch.clamp(ratio, 1.0 - a["cliprange"], 1.0 + a["cliprange"])
    pg_loss_max = torch.max(pg_losses, pg_losses2)
    pg_loss = trl_masked_mean(pg_loss_max, mask_pg)
    loss = pg_loss + a["vf_coef"] * vf_loss
    pg_clipfrac = trl_masked_mean((pg_losses2 > pg_losses).float(), mask_pg)
    if approxkl_mask is None:
        approxkl = 0.5 * (logprobs_diff**2).mean()  # trl: plain mean over all positions
    else:
        approxkl = 0.5 * trl_masked_mean(logprobs_diff**2, approxkl_mask)
    return {
        "ratio": ratio, "pg_losses": pg_losses, "pg_losses2": pg_losses2,
        "vpred_clipped": vpredclipped, "vf_losses1": vf_losses1, "vf_losses2": vf_losses2,
        "pg_loss": pg_loss, "vf_loss": vf_loss, "loss": loss,
        "pg_clipfrac": pg_clipfrac, "vf_clipfrac": vf_clipfrac, "approx_kl": approxkl,
    }


def ppo_primary(a):
    """valuedrift convention: score at the last real token, GAE strictly over real tokens."""
    T = max(a["lengths"])
    B = len(a["lengths"])
    mask = torch.tensor([[1.0 if t < n else 0.0 for t in range(T)] for n in a["lengths"]])
    m = mask.bool()
    lp = torch.tensor(a["logprobs_old"])
    ref = torch.tensor(a["ref_logprobs"])
    v = torch.tensor(a["values_old"])
    scores = torch.tensor(a["scores"])
    zero = torch.zeros(())
    kl = torch.where(m, lp - ref, zero)
    non_score = -a["kl_coef"] * kl
    rewards = non_score.clone()
    last = torch.tensor(a["lengths"]) - 1
    rewards[torch.arange(B), last] += scores
    adv = torch.zeros(B, T)
    for b in range(B):
        lastgaelam = 0.0
        for t in reversed(range(T)):
            if not m[b, t]:
                lastgaelam = 0.0
                continue
            nextv = v[b, t + 1] if (t + 1 < T and m[b, t + 1]) else zero
            delta = rewards[b, t] + a["gamma"] * nextv - v[b, t]
            lastgaelam = delta + a["gamma"] * a["lam"] * lastgaelam
            adv[b, t] = lastgaelam
    returns = torch.where(m, adv + v, zero)
    adv_w = torch.masked_fill(trl_masked_whiten(adv, mask), ~m, 0.0)
    # manual whitening (independent of the trl helper), unbiased variance over real tokens
    sel = adv[m]
    manual = torch.where(m, (adv - sel.mean()) * torch.rsqrt(sel.var(unbiased=True) + 1e-8), zero)
    lp_new = torch.tensor(a["logprobs_new"])
    v_new = torch.tensor(a["values_new"])
    L = ppo_losses(adv_w, returns, lp, v, lp_new, v_new, mask, mask, a, approxkl_mask=mask)

    # Cross-check: trl's own GAE loop (no masking) gives the same advantages once the
    # pad positions carry zero reward and zero value, as they do here.
    v0 = torch.where(m, v, zero)
    lastgaelam = 0
    rev = []
    for t in reversed(range(T)):
        nextvalues = v0[:, t + 1] if t < T - 1 else 0.0
        delta = rewards[:, t] + a["gamma"] * nextvalues - v0[:, t]
        lastgaelam = delta + a["gamma"] * a["lam"] * lastgaelam
        rev.append(lastgaelam)
    adv_trl_loop = torch.where(m, torch.stack(rev[::-1], axis=1), zero)

    checks = {
        "masked_whiten_matches_manual_unbiased": bool(torch.allclose(adv_w, manual, atol=1e-6)),
        "whitened_mean": f(trl_masked_mean(adv_w, mask)),
        "whitened_unbiased_var": f(trl_masked_var(adv_w, mask)),
        "gae_matches_trl_loop_with_zeroed_pads": bool(torch.allclose(adv, adv_trl_loop, atol=1e-7)),
    }
    return {
        "mask": fl(mask),
        "kl": [fl(r) for r in kl],
        "non_score_rewards": [fl(r) for r in non_score],
        "rewards": [fl(r) for r in rewards],
        "advantages_raw": [fl(r) for r in adv],
        "returns": [fl(r) for r in returns],
        "advantages_whitened": [fl(r) for r in adv_w],
        "adv_raw_masked_mean": f(sel.mean()),
        "adv_raw_masked_var_unbiased": f(sel.var(unbiased=True)),
        "ratio": [fl(r) for r in torch.where(m, L["ratio"], zero)],
        "pg_losses": [fl(r) for r in torch.where(m, L["pg_losses"], zero)],
        "pg_losses2": [fl(r) for r in torch.where(m, L["pg_losses2"], zero)],
        "vpred_clipped": [fl(r) for r in torch.where(m, L["vpred_clipped"], zero)],
        "policy_loss": f(L["pg_loss"]),
        "value_loss": f(L["vf_loss"]),
        "total_loss": f(L["loss"]),
        "clipfrac": f(L["pg_clipfrac"]),
        "value_clipfrac": f(L["vf_clipfrac"]),
        "approx_kl": f(L["approx_kl"]),
        "checks": checks,
    }, mask


def ppo_trl_exact(a):
    """Line-for-line trl PPOTrainer (0.11-0.19) behaviour, including its quirks."""
    T = max(a["lengths"])
    B = len(a["lengths"])
    sequence_lengths = torch.tensor(a["lengths"]) - 1  # index of the last real token
    sequence_lengths_p1 = sequence_lengths + 1
    response_idxs = torch.arange(T).repeat(B, 1)
    padding_mask = response_idxs > sequence_lengths.unsqueeze(1)
    padding_mask_p1 = response_idxs > (sequence_lengths_p1.unsqueeze(1))
    logprobs = torch.masked_fill(torch.tensor(a["logprobs_old"]), padding_mask, TRL_INVALID_LOGPROB)
    ref_logprobs = torch.masked_fill(torch.tensor(a["ref_logprobs"]), padding_mask, TRL_INVALID_LOGPROB)
    values = torch.masked_fill(torch.tensor(a["values_old"]), padding_mask_p1, 0)
    scores = torch.tensor(a["scores"])
    kl = logprobs - ref_logprobs
    non_score_reward = -a["kl_coef"] * kl
    rewards = non_score_reward.clone()
    actual_start = torch.arange(rewards.size(0))
    actual_end = torch.where(sequence_lengths_p1 < rewards.size(1), sequence_lengths_p1, sequence_lengths)
    rewards[actual_start, actual_end] += scores
    lastgaelam = 0
    advantages_reversed = []
    for t in reversed(range(T)):
        nextvalues = values[:, t + 1] if t < T - 1 else 0.0
        delta = rewards[:, t] + a["gamma"] * nextvalues - values[:, t]
        lastgaelam = delta + a["gamma"] * a["lam"] * lastgaelam
        advantages_reversed.append(lastgaelam)
    advantages = torch.stack(advantages_reversed[::-1], axis=1)
    returns = advantages + values
    adv_w = trl_masked_whiten(advantages, ~padding_mask)
    adv_w = torch.masked_fill(adv_w, padding_mask, 0)
    new_logprobs = torch.masked_fill(torch.tensor(a["logprobs_new"]), padding_mask, TRL_INVALID_LOGPROB)
    vpred = torch.masked_fill(torch.tensor(a["values_new"]), padding_mask_p1, 0)
    L = ppo_losses(adv_w, returns, logprobs, values, new_logprobs, vpred,
                   ~padding_mask, ~padding_mask_p1, a, approxkl_mask=None)
    return {
        "score_index": [int(i) for i in actual_end],
        "rewards": [fl(r) for r in rewards],
        "advantages_raw": [fl(r) for r in advantages],
        "returns": [fl(r) for r in returns],
        "advantages_whitened": [fl(r) for r in adv_w],
        "policy_loss": f(L["pg_loss"]),
        "value_loss": f(L["vf_loss"]),
        "total_loss": f(L["loss"]),
        "clipfrac": f(L["pg_clipfrac"]),
        "value_clipfrac": f(L["vf_clipfrac"]),
        "approx_kl": f(L["approx_kl"]),
    }


def ppo_section():
    a = PPO_INPUT
    primary, _ = ppo_primary(a)
    exact = ppo_trl_exact(a)
    try:
        import trl  # noqa: F401
        trl_status = f"trl {importlib.metadata.version('trl')} installed but not used; helpers copied verbatim"
    except ImportError:
        trl_status = ("trl is NOT installed in /work/refenv: masked_mean / masked_var / masked_whiten and the "
                      "PPO reward/GAE/loss lines are re-implemented verbatim from trl's source "
                      "(trl/trainer/utils.py, trl/trainer/ppo_trainer.py, versions 0.11-0.19)")
    return {"inputs": a, "valuedrift": primary, "trl_exact": exact, "trl_cross_check": trl_status}


# ---------------------------------------------------------------- 5. schedule
def warmup_steps_from_training_args(total, ratio):
    """Ask transformers' own TrainingArguments.get_warmup_steps, if it can be built here."""
    attempts = []
    with tempfile.TemporaryDirectory() as d:
        # transformers < 5 has warmup_ratio; 5.x removed it and reads warmup_steps < 1 as a ratio.
        for kw in ({"warmup_ratio": ratio}, {"warmup_steps": ratio}):
            try:
                args = transformers.TrainingArguments(output_dir=d, report_to=[], use_cpu=True, **kw)
                attempts.append({"kwargs": kw, "get_warmup_steps": int(args.get_warmup_steps(total))})
                return attempts[-1]["get_warmup_steps"], attempts
            except Exception as e:  # noqa: BLE001
                attempts.append({"kwargs": kw, "error": f"{type(e).__name__}: {e}"})
    return None, attempts


def schedule_section():
    out = []
    for s in SCHEDULES:
        total, ratio = s["num_training_steps"], s["warmup_ratio"]
        warm = math.ceil(total * ratio)  # transformers: math.ceil(num_training_steps * warmup)
        ta_warm, how = warmup_steps_from_training_args(total, ratio)
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=1.0)
        sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=warm, num_training_steps=total)
        mult = []
        for step in range(total + 1):
            mult.append(float(sched.get_last_lr()[0]))
            opt.step()
            sched.step()
        lam = sched.lr_lambdas[0]
        assert all(abs(mult[i] - lam(i)) < 1e-15 for i in range(total + 1))
        out.append({
            "num_training_steps": total,
            "warmup_ratio": ratio,
            "product_total_times_ratio": total * ratio,
            "num_warmup_steps": warm,
            "training_args_get_warmup_steps": ta_warm,
            "training_args_attempts": how,
            "num_cycles": 0.5,
            "lr_multipliers": mult,  # index = optimizer steps taken so far (0..total)
        })
    return out


DEFINITIONS = {
    "general": "All model math in float32 on CPU, model.eval() (no dropout), gradients enabled where needed. "
               "Weights: GGUF q4_1 file dequantized to f32 by transformers (HF layout; lm_head tied to "
               "model.embed_tokens, counted once in every gradient norm and SGD step). Each sequence is run "
               "alone (batch 1, no padding, no attention mask). Gradient norms are the global L2 norm over all "
               "listed parameters, accumulated in f64 from the f32 grads. Floats are full precision.",
    "chat": "ids = tokenizer.apply_chat_template(conversation, tokenize=True) of the full conversation, no "
            "generation prompt. SmolLM2's template inserts a default system turn ('You are a helpful AI "
            "assistant named SmolLM, trained by Hugging Face') when the first message is not a system message; "
            "it is kept. Each turn renders as '<|im_start|>{role}\\n{content}<|im_end|>\\n'. assistant_mask[t]=1 "
            "for tokens in [len(template(conv[:k], add_generation_prompt=True)), len(template(conv[:k+1]))) for "
            "each assistant turn k, i.e. the content, its <|im_end|> and the following '\\n' token; the "
            "'<|im_start|>assistant\\n' header is 0. prefix_check_passed: both renderings are token-prefixes of "
            "ids. retokenized_text_equals_ids: tokenizer(text, add_special_tokens=False) == ids.",
    "sft": "For each conversation (ids, mask from 'chat'): logits = model(ids); position t (t>=1) is a target "
           "iff assistant_mask[t]==1, with nll_t = -log_softmax(logits[t-1])[ids[t]]. nll_sum = sum of nll_t "
           "over targets, num_targets = their count (target_nll lists them in order). loss = sum of nll_sum "
           "over the 3 conversations / num_targets_total (token-weighted mean over the batch). grad_norm = "
           "||d loss / d theta||_2 over all unique parameters (grad_norm_by_param: per HF parameter name). "
           "loss_after_sgd_step: theta <- theta - sgd_lr * grad (every parameter, tied embedding once, no "
           "momentum/weight decay/clipping), then the same loss re-evaluated on the same batch.",
    "reward": "ids = apply_chat_template([user prompt, assistant response]) (full conversation, ends with "
              "<|im_end|> '\\n', so the scored token is the final '\\n', id 198). h = model.model(ids)."
              "last_hidden_state[last position] (after the final RMSNorm, no LM head). reward r = h . w, "
              "w[i] = 0.02*sin(i+1) (f64 -> f32), no bias. margin = r_chosen - r_rejected; loss = mean over the 3 "
              "pairs of -logsigmoid(margin). grad_norm = L2 norm of d loss over all backbone parameters "
              "(model.model.*, which includes the tied embedding) plus the head w; grad_norm_backbone and "
              "grad_norm_head separately.",
    "ppo_valuedrift": "Tiny example, B=2 responses of lengths [4,3] padded to T=4; mask[b,t] = t < length[b]. "
                      "Pad entries in the inputs are garbage and must be ignored. kl = logprobs_old - ref_logprobs "
                      "(0 on pads); non_score_rewards = -kl_coef*kl; rewards = non_score_rewards plus scores[b] "
                      "added at the LAST REAL token (length-1). GAE backwards over real tokens only: "
                      "delta_t = r_t + gamma*V_{t+1} - V_t with V_{t+1}=0 past the last real token; "
                      "A_t = delta_t + gamma*lam*A_{t+1}; pads 0. returns = A + values_old on real tokens (0 on "
                      "pads). advantages_whitened = trl masked_whiten(A, mask, shift_mean=True): "
                      "(A - mean)*rsqrt(var + 1e-8) with mean/var over real tokens and var UNBIASED "
                      "(masked_var: biased masked mean of squares * n/(n-1)), then pads set to 0. "
                      "ratio = exp(logprobs_new - logprobs_old); pg_losses = -adv*ratio; pg_losses2 = "
                      "-adv*clamp(ratio, 1-cliprange, 1+cliprange); policy_loss = masked_mean(max(pg_losses, "
                      "pg_losses2)); clipfrac = masked_mean(pg_losses2 > pg_losses). vpred_clipped = "
                      "clamp(values_new, values_old - cliprange_value, values_old + cliprange_value); value_loss = "
                      "0.5*masked_mean(max((values_new-returns)^2, (vpred_clipped-returns)^2)); value_clipfrac = "
                      "masked_mean((vpred_clipped-returns)^2 > (values_new-returns)^2). total_loss = policy_loss "
                      "+ vf_coef*value_loss. approx_kl = 0.5*masked_mean((logprobs_new-logprobs_old)^2). "
                      "masked_mean(x) = sum(x*mask)/sum(mask) over the whole batch. Per-token arrays are [B][T].",
    "ppo_trl_exact": "Same inputs, but trl PPOTrainer's code line for line: padded logprobs (old, ref, new) filled "
                     "with INVALID_LOGPROB=1.0; values kept one position PAST the last real token "
                     "(padding_mask_p1) and zeroed after; the score is added at index length (one past the last "
                     "real token) when that index < T, else at length-1 (score_index); GAE runs over all T "
                     "positions with no mask; whitening and policy loss/clipfrac over ~padding_mask, value loss "
                     "and value_clipfrac over ~padding_mask_p1; approx_kl = 0.5*mean over ALL B*T positions. "
                     "Differs from 'valuedrift' only for the shorter (padded) response. Informational.",
    "schedule": "transformers.get_cosine_schedule_with_warmup(optimizer(lr=1.0), num_warmup_steps, "
                "num_training_steps, num_cycles=0.5); lr_multipliers[s] = scheduler lr after s optimizer steps, "
                "s = 0..num_training_steps: s < W -> s/max(1,W); else p = (s-W)/max(1,N-W), "
                "max(0, 0.5*(1+cos(pi*num_cycles*2*p))). Warmup steps W = ceil(N * warmup_ratio) as in "
                "TrainingArguments.get_warmup_steps (ratio < 1 -> math.ceil(num_training_steps * ratio), with "
                "the product computed in f64 in that order; an integer >= 1 is used as-is).",
}


def main():
    t0 = time.time()
    path = MODELS / MODEL_FILE
    tok = AutoTokenizer.from_pretrained(MODELS, gguf_file=MODEL_FILE)
    model = AutoModelForCausalLM.from_pretrained(MODELS, gguf_file=MODEL_FILE, dtype=torch.float32)
    model.eval()
    cfg = model.config
    tied = model.lm_head.weight is model.model.embed_tokens.weight
    assert tied, "expected lm_head tied to embed_tokens"
    t_load = time.time() - t0

    chats = chat_section(tok)
    t1 = time.time()
    sft = sft_section(model, chats)
    t_sft = time.time() - t1
    t1 = time.time()
    rm = reward_section(model, tok)
    t_rm = time.time() - t1
    ppo = ppo_section()
    sched = schedule_section()

    sd = model.state_dict()
    data = {
        "about": "Reference numbers for the valuedrift trainers, from scripts/reference/make_train_fixtures.py",
        "model_file": MODEL_FILE,
        "model_sha256": sha256(path),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "gguf": importlib.metadata.version("gguf"),
            "numpy": np.__version__,
        },
        "model": {
            "hidden_size": cfg.hidden_size,
            "num_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads,
            "num_key_value_heads": cfg.num_key_value_heads,
            "vocab_size": cfg.vocab_size,
            "rms_norm_eps": cfg.rms_norm_eps,
            "rope_theta": getattr(cfg, "rope_theta", None) or (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta"),
            "tie_word_embeddings": bool(cfg.tie_word_embeddings),
            "lm_head_is_embed_tokens": tied,
            "attn_implementation": cfg._attn_implementation,
            "num_parameters_unique": sum(p.numel() for p in model.parameters()),
            "weights_probe_hf_layout": {
                k: fl(sd[k].reshape(-1)[:4]) for k in (
                    "model.embed_tokens.weight", "model.norm.weight",
                    "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                    "model.layers.0.mlp.down_proj.weight")
            },
            "special_tokens": {"bos": [tok.bos_token, tok.bos_token_id], "eos": [tok.eos_token, tok.eos_token_id],
                               "pad": [tok.pad_token, tok.pad_token_id]},
        },
        "definitions": DEFINITIONS,
        "chat": chats,
        "sft": sft,
        "reward": rm,
        "ppo": ppo,
        "schedule": sched,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size / 1024:.0f} KiB) in {time.time() - t0:.0f}s "
          f"(load {t_load:.0f}s, sft {t_sft:.0f}s, rm {t_rm:.0f}s), peak RSS {peak:.1f} GiB")
    for c in chats:
        print(f"  chat {c['name']:8s} {c['num_tokens']:3d} tokens, {c['num_assistant_tokens']:2d} assistant, "
              f"prefix ok={c['prefix_check_passed']}, retok ok={c['retokenized_text_equals_ids']}")
    print(f"  sft: loss {sft['loss']:.6f} over {sft['num_targets_total']} targets, grad norm {sft['grad_norm']:.6f}, "
          f"after SGD(lr={SFT_LR}) {sft['loss_after_sgd_step']:.6f}")
    print(f"  rm:  rewards {[round(s['reward'], 5) for s in rm['sequences']]}")
    print(f"       loss {rm['loss']:.6f} (ln2={math.log(2):.6f}), grad norm {rm['grad_norm']:.6f} "
          f"(backbone {rm['grad_norm_backbone']:.6f}, head {rm['grad_norm_head']:.6f})")
    v = ppo["valuedrift"]
    print(f"  ppo: policy {v['policy_loss']:.6f} value {v['value_loss']:.6f} clipfrac {v['clipfrac']:.3f} "
          f"approx_kl {v['approx_kl']:.6f} checks {v['checks']}")
    e = ppo["trl_exact"]
    print(f"       trl_exact: policy {e['policy_loss']:.6f} value {e['value_loss']:.6f} score_index {e['score_index']}")
    for s in sched:
        print(f"  schedule N={s['num_training_steps']} ratio={s['warmup_ratio']}: W={s['num_warmup_steps']} "
              f"(TrainingArguments: {s['training_args_get_warmup_steps']}), "
              f"mult[0..W+1]={[round(x, 4) for x in s['lr_multipliers'][:s['num_warmup_steps'] + 2]]}, "
              f"last={s['lr_multipliers'][-1]}")


if __name__ == "__main__":
    main()
