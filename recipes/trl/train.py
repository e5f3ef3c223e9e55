#!/usr/bin/env python3
"""Trains one valuedrift experiment phase with TRL (versions pinned in requirements.txt).

valuedrift runs this through a `[trainer.NAME]` command template (docs/scale.md), e.g.

    [trainer.trl]
    command = "accelerate launch --config_file recipes/trl/zero3.yaml recipes/trl/train.py {config} --micro-batch 4"

and hands it `phase.json`: the algorithm, the starting model (a Hugging Face directory), the
phase's data already converted to TRL's conversational format (SFT: prompt/completion, the loss
on the last assistant turn; RM, DPO and SimPO: prompt/chosen/rejected, the value-gap label setup
applied; PPO: prompt), the resolved hyperparameters, the output directory, the checkpoint
interval and, for PPO, the reward model.

It writes `checkpoint-N/` every `save_every` updates and, when done, the final model and
`trainer_state.json` at the top of the output directory: valuedrift traces the first as they
appear and takes the second as the sign that the phase is finished. Run again after a crash or a
kill, it resumes from the newest complete checkpoint (PPO, which TRL cannot resume, starts over
and removes the checkpoints of the killed attempt first). Optimizer state is kept only in the
newest checkpoint: the one a resume needs.

SFT, RM and DPO use TRL's trainers; SimPO is TRL's CPO trainer with the SimPO loss (cpo_alpha 0);
PPO is trl.experimental.ppo, the last TRL release that has it (1.12); its rollouts stop at the
chat template's end-of-turn token, as valuedrift's own PPO does.
"""
import argparse
import glob
import json
import math
import os
import shutil
import sys

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
import torch  # noqa: E402
from datasets import load_dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback  # noqa: E402

SCHEDULES = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


def training_arguments(cfg, micro_batch):
    """The TrainingArguments every trainer shares, from the phase's resolved settings."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_device = max(1, min(micro_batch, cfg["global_batch"] // world))
    if cfg["global_batch"] % (per_device * world):
        sys.exit(f"global batch {cfg['global_batch']} is not a multiple of micro batch {per_device} x {world} processes")
    return dict(
        output_dir=cfg["out"],
        learning_rate=cfg["lr"],
        num_train_epochs=cfg["epochs"],
        max_steps=cfg["max_steps"],
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=cfg["global_batch"] // (per_device * world),
        # A float below 1 is a ratio of the total steps, rounded up as valuedrift rounds it.
        warmup_steps=cfg["warmup_ratio"],
        lr_scheduler_type=SCHEDULES[cfg["schedule"]],
        weight_decay=cfg["weight_decay"],
        max_grad_norm=cfg["max_grad_norm"],
        save_strategy="steps",
        save_steps=cfg["save_every"],
        logging_steps=1,
        seed=cfg["seed"],
        report_to=[],
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
    )


def numbers(cfg):
    """phase.json holds every value as text (the command template's form)."""
    ints = ["epochs", "max_steps", "global_batch", "max_len", "save_every", "rollout_tokens", "ppo_epochs", "seed"]
    floats = ["lr", "warmup_ratio", "weight_decay", "max_grad_norm", "beta", "gamma", "kl_coef", "missing_eos_penalty"]
    return {**cfg, **{k: int(cfg[k]) for k in ints}, **{k: float(cfg[k]) for k in floats}}


def sft(cfg, args, tokenizer, data):
    from trl import SFTConfig, SFTTrainer

    config = SFTConfig(**args, max_length=cfg["max_len"], completion_only_loss=True)
    return SFTTrainer(model=cfg["model"], args=config, train_dataset=data, processing_class=tokenizer)


def dpo(cfg, args, tokenizer, data):
    from trl import DPOConfig, DPOTrainer

    config = DPOConfig(**args, beta=cfg["beta"], max_length=cfg["max_len"])
    return DPOTrainer(model=cfg["model"], args=config, train_dataset=data, processing_class=tokenizer)


def simpo(cfg, args, tokenizer, data):
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    config = CPOConfig(**args, loss_type="simpo", cpo_alpha=0.0, beta=cfg["beta"], simpo_gamma=cfg["gamma"], max_length=cfg["max_len"])
    model = AutoModelForCausalLM.from_pretrained(cfg["model"])
    return CPOTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer)


def turn_end_id(tokenizer):
    """The token that ends an assistant turn in the chat template (e.g. <|im_end|>, <|eot_id|>),
    which a base model's EOS is not; the tokenizer's EOS where there is no template."""
    if not tokenizer.chat_template:
        return tokenizer.eos_token_id
    turn = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    ids = tokenizer.apply_chat_template(turn, tokenize=True, return_dict=False)
    answer = tokenizer.encode("y", add_special_tokens=False)[-1]
    after = ids[len(ids) - ids[::-1].index(answer):]
    special = set(tokenizer.all_special_ids) | {t for t, a in tokenizer.added_tokens_decoder.items() if a.special}
    return next((t for t in after if t in special), tokenizer.eos_token_id)


def scalar_model(path, tokenizer):
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def reward_model(cfg, args, tokenizer, data):
    from trl import RewardConfig, RewardTrainer

    config = RewardConfig(**args, max_length=cfg["max_len"])
    model = scalar_model(cfg["model"], tokenizer)
    return RewardTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer)


def ppo(cfg, args, tokenizer, data):
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    if not cfg["reward_model"]:
        sys.exit("ppo needs a reward model (the phase's reward_model)")
    prompts = data.map(
        lambda row: {"input_ids": tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True, return_dict=False)},
        remove_columns=data.column_names,
    )
    updates = cfg["max_steps"] if cfg["max_steps"] > 0 else cfg["epochs"] * math.ceil(len(prompts) / cfg["global_batch"])
    args = {**args, "max_steps": -1, "num_train_epochs": 1}
    config = PPOConfig(
        **args,
        total_episodes=updates * cfg["global_batch"],
        num_ppo_epochs=cfg["ppo_epochs"],
        num_mini_batches=1,
        response_length=cfg["rollout_tokens"],
        stop_token_id=turn_end_id(tokenizer),
        kl_coef=cfg["kl_coef"],
        missing_eos_penalty=cfg["missing_eos_penalty"] or None,
        num_sample_generations=0,
        local_rollout_forward_batch_size=args["per_device_train_batch_size"],
    )
    policy = AutoModelForCausalLM.from_pretrained(cfg["model"])
    reference = AutoModelForCausalLM.from_pretrained(cfg["model"])
    return PPOTrainer(
        args=config,
        processing_class=tokenizer,
        model=policy,
        ref_model=reference,
        reward_model=scalar_model(cfg["reward_model"], tokenizer),
        value_model=scalar_model(cfg["reward_model"], tokenizer),
        train_dataset=prompts,
    )


TRAINERS = {"sft": sft, "dpo": dpo, "simpo": simpo, "rm": reward_model, "ppo": ppo}
# What a resume needs beside the weights; kept in the newest checkpoint only.
RESUME_STATE = ["optimizer.pt", "scheduler.pt", "rng_state*.pth", "global_step*", "zero_to_fp32.py", "latest"]


def checkpoints(out):
    """The complete checkpoint-N directories (trainer_state.json is written last), oldest first."""
    found = [d for d in glob.glob(os.path.join(out, "checkpoint-*")) if os.path.isfile(os.path.join(d, "trainer_state.json"))]
    return sorted(found, key=lambda d: int(d.rsplit("-", 1)[-1]))


class KeepResumeStateInNewest(TrainerCallback):
    """After each save, drops the optimizer and RNG state of every older checkpoint: an 8B model's
    ZeRO-3 optimizer state is ~100 GB per checkpoint, and only a resume reads it."""

    def __init__(self, out):
        self.out = out

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            for old in checkpoints(self.out)[:-1]:
                for pattern in RESUME_STATE:
                    for path in glob.glob(os.path.join(old, pattern)):
                        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="the phase.json valuedrift wrote")
    parser.add_argument("--micro-batch", type=int, default=8, help="sequences (pairs, prompts) per device and forward pass")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: its default)")
    opts = parser.parse_args()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    with open(opts.config) as f:
        cfg = numbers(json.load(f))
    tokenizer = AutoTokenizer.from_pretrained(cfg["model"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    data = load_dataset("json", data_files=cfg["data"], split="train")
    # As valuedrift's own trainer: max_steps cuts the epochs short but never adds to them.
    if cfg["max_steps"] > 0:
        cfg["max_steps"] = min(cfg["max_steps"], cfg["epochs"] * math.ceil(len(data) / cfg["global_batch"]))
    if cfg["algo"] == "ppo":
        # TRL's PPO cannot resume: a killed attempt's checkpoints would be traced as this run's.
        for old in glob.glob(os.path.join(cfg["out"], "checkpoint-*")):
            shutil.rmtree(old)
    trainer = TRAINERS[cfg["algo"]](cfg, training_arguments(cfg, opts.micro_batch), tokenizer, data)
    trainer.add_callback(KeepResumeStateInNewest(cfg["out"]))
    if cfg["algo"] == "ppo":
        trainer.train()
    else:
        complete = checkpoints(cfg["out"])
        resume = complete[-1] if complete else None
        if resume:
            print(f"resuming from {resume}", flush=True)
        trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(cfg["out"])
    tokenizer.save_pretrained(cfg["out"])
    trainer.save_state()


if __name__ == "__main__":
    main()
