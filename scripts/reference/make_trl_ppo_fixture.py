#!/usr/bin/env python3
"""Runs TRL's own PPOTrainer (trl 1.12.0, the last release with trl.experimental.ppo; pinned in
scripts/reference/requirements-trl-ppo.txt) for one rollout and two PPO epochs on tiny seeded
Llama models, and records what its train loop computed, by wrapping the module-level helpers the
loop calls (nothing of TRL is re-implemented here):

- `selective_log_softmax`: the policy's and the reference's rollout log-probs, and the new
  log-probs of each PPO epoch;
- `get_reward`: the value model's rollout values and the reward model's scores;
- `forward`: the value head's new values in each epoch;
- `masked_whiten`: GAE advantages before and after whitening (returns = advantages + values);
- `masked_mean`: per epoch, the value loss, value clip fraction, policy loss and policy clip
  fraction, in the order the loop computes them.

Both rows are checked to run to the full response length without an EOS or pad token: there
TRL's conventions and valuedrift's agree (score on the last token, values and losses over the
real tokens), so every number must match. Where they differ (a response that ends early: TRL
adds the score one position after the EOS and keeps one padding position in the value loss)
the Rust test pins valuedrift's choice separately.

Usage: python make_trl_ppo_fixture.py OUT.json
"""
import json
import os
import sys
import tempfile

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from datasets import Dataset  # noqa: E402
from tokenizers import Tokenizer, models  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, PreTrainedTokenizerFast  # noqa: E402
from trl.experimental.ppo import PPOConfig, PPOTrainer  # noqa: E402
from trl.experimental.ppo import ppo_trainer as loop  # noqa: E402

VOCAB, PAD, EOS = 64, 0, 1
RESPONSE_LENGTH = 6
PROMPTS = [[5, 6, 7, 8], [9, 10, 11, 12]]


def tokenizer():
    vocab = {"[PAD]": PAD, "[EOS]": EOS, **{f"w{i}": i for i in range(2, VOCAB)}}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="w2")))
    tok.pad_token, tok.eos_token = "[PAD]", "[EOS]"
    return tok


def config(labels=None):
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, max_position_embeddings=64, pad_token_id=PAD, eos_token_id=EOS, bos_token_id=None)
    if labels:
        cfg.num_labels = labels
    return cfg


def models_for(seed):
    torch.manual_seed(seed)
    policy = LlamaForCausalLM(config())
    # Another initialization than the policy's, so the KL term of the rewards is not zero.
    ref = LlamaForCausalLM(config())
    value = LlamaForSequenceClassification(config(1))
    reward = LlamaForSequenceClassification(config(1))
    return policy, ref, value, reward


class Recorder:
    def __init__(self):
        self.calls = {name: [] for name in ["selective_log_softmax", "get_reward", "forward", "masked_whiten", "masked_mean"]}
        self.returned = 0  # calls returned so far, over all wrapped helpers

    def wrap(self, name):
        original = getattr(loop, name)

        def wrapped(*args, **kwargs):
            out = original(*args, **kwargs)
            self.returned += 1
            self.calls[name].append((args, self.returned, out))
            return out

        setattr(loop, name, wrapped)


def run(seed, out_dir):
    rec = Recorder()
    for name in rec.calls:
        rec.wrap(name)
    logged = []

    class Keep(transformers.TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            logged.append(dict(logs or {}))

    policy, ref, value, reward = models_for(seed)
    args = PPOConfig(output_dir=out_dir, per_device_train_batch_size=2, gradient_accumulation_steps=1, num_ppo_epochs=2,
                     num_mini_batches=1, total_episodes=2, response_length=RESPONSE_LENGTH, stop_token="eos", temperature=0.7,
                     kl_coef=0.05, cliprange=0.2, vf_coef=0.1, cliprange_value=0.2, gamma=1.0, lam=0.95, whiten_rewards=False,
                     missing_eos_penalty=None, learning_rate=1e-2, seed=seed, report_to=[], use_cpu=True, logging_steps=1,
                     save_strategy="no", num_sample_generations=0, local_rollout_forward_batch_size=2, kl_estimator="k1")
    trainer = PPOTrainer(args=args, processing_class=tokenizer(), model=policy, ref_model=ref, reward_model=reward,
                         train_dataset=Dataset.from_dict({"input_ids": PROMPTS}), value_model=value, callbacks=[Keep()])
    trainer.train()
    return rec, logged


def rows(t):
    return [[float(x) for x in r] for r in t.detach().cpu().tolist()]


def main():
    out = sys.argv[1]
    torch.set_num_threads(1)
    for seed in range(100):
        with tempfile.TemporaryDirectory() as d:
            rec, logged = run(seed, d)
        (vals_call, score_call) = rec.calls["get_reward"][:2]
        # The rollout's response tokens: the logits' argument of the first selective_log_softmax.
        responses = rec.calls["selective_log_softmax"][0][0][1]
        if bool(((responses == EOS) | (responses == PAD)).any()):
            continue  # an early end: conventions differ there (see the module docs)
        break
    else:
        raise SystemExit("no seed in 0..99 gave two full-length responses")
    context = len(PROMPTS[0])
    s = rec.calls["selective_log_softmax"]
    logprobs_old, ref_logprobs = s[0][2], s[1][2]
    new_logprobs = [c[2] for c in s[2:]]
    values_old = vals_call[2][0][:, context - 1:-1].squeeze(-1)
    scores = score_call[2][1]
    update_forwards = [c for c in rec.calls["forward"] if isinstance(c[2], tuple)]
    values_new = [c[2][1][:, context - 1:-1].squeeze(-1) for c in update_forwards]
    (whiten_args, _, whitened) = rec.calls["masked_whiten"][0]
    advantages_raw = whiten_args[0]
    # Update order: b_inds permutes the rows; recorded in the forward's input.
    orders = []
    for c in update_forwards:
        qr = c[0][1]
        orders.append([next(i for i, p in enumerate(PROMPTS) if qr[r, :context].tolist() == p) for r in range(qr.shape[0])])
    # masked_whiten calls masked_mean itself; the loss means are the ones after it returned.
    whitened_at = rec.calls["masked_whiten"][0][1]
    means = [float(c[2].detach()) for c in rec.calls["masked_mean"] if c[1] > whitened_at][:8]
    means[0::4] = [0.5 * m for m in means[0::4]]  # vf_loss = 0.5 * masked_mean(...)
    logged_means = {"loss/value_avg": np.mean(means[0::4]), "val/clipfrac_avg": np.mean(means[1::4]),
                    "loss/policy_avg": np.mean(means[2::4]), "policy/clipfrac_avg": np.mean(means[3::4])}
    for key, mean in logged_means.items():
        assert abs(mean - float(logged[0][key])) < 1e-6, f"{key}: recorded {mean} vs logged {logged[0][key]}"
    per_epoch = [dict(zip(["value_loss", "value_clipfrac", "policy_loss", "policy_clipfrac"], means[4 * e:4 * e + 4])) for e in range(2)]
    fixture = {
        "about": "TRL's own PPOTrainer (trl.experimental.ppo), one rollout and two PPO epochs on tiny seeded Llama models; "
                 "made by scripts/reference/make_trl_ppo_fixture.py. Rows are in prompt order; epoch inputs in each epoch's row order.",
        "versions": {"trl": trl.__version__, "torch": torch.__version__, "transformers": transformers.__version__},
        "seed": seed,
        "config": {"kl_coef": 0.05, "gamma": 1.0, "lam": 0.95, "cliprange": 0.2, "cliprange_value": 0.2, "temperature": 0.7,
                   "response_length": RESPONSE_LENGTH},
        "responses": responses.tolist(),
        "logprobs_old": rows(logprobs_old),
        "ref_logprobs": rows(ref_logprobs),
        "values_old": rows(values_old),
        "scores": [float(x) for x in scores.tolist()],
        "advantages_raw": rows(advantages_raw),
        "advantages_whitened": rows(whitened),
        "epochs": [{"rows": orders[e], "logprobs_new": rows(new_logprobs[e]), "values_new": rows(values_new[e]), **per_epoch[e]}
                   for e in range(2)],
        "logged": {k: float(v) for k, v in logged[0].items() if k.startswith(("objective/", "policy/", "loss/", "val/"))},
    }
    with open(out, "w") as f:
        json.dump(fixture, f, indent=1)
    print(f"seed {seed}: wrote {out}")


if __name__ == "__main__":
    main()
