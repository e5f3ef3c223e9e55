#!/usr/bin/env python3
"""Write numerical reference fixtures for the valuedrift engine tests.

The Rust engine (candle) loads the same GGUF files; these fixtures record what
PyTorch/transformers computes from them so the Rust tests can compare the
tokenizer, chat templates, logits and greedy decoding against an independent
implementation.

transformers dequantizes the GGUF weights to f32, so the reference is the
*quantized* model evaluated in f32: the Rust side should also dequantize (or
run quantized matmuls) and expect small, not bit-exact, differences.

Usage (from the repo root, inside a venv with torch, transformers, gguf):
    python scripts/reference/make_engine_fixtures.py [smollm2 gemma3 qwen2 ...]
Output: crates/engine/tests/fixtures/reference/{name}.json
"""
import gc
import hashlib
import json
import math
import resource
import sys
import time
from pathlib import Path

import gguf
import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

torch.set_num_threads(2)  # the build machine has 2 cores
torch.manual_seed(0)

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
OUT = ROOT / "crates/engine/tests/fixtures/reference"

CHATML = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>"
GEMMA_TURN = "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\nhello<end_of_turn>"

# name -> (gguf file, is ChatML instruct model, special-token string for the tokenizer test)
SPECS = {
    "smollm2": ("smollm2-135m-instruct.q4_1.gguf", True, CHATML),
    "gemma3": ("gemma3-270m.q4_k_m.gguf", False, GEMMA_TURN),
    "qwen2": ("qwen2.5-coder-1.5b-instruct.q4_k_m.gguf", True, CHATML),
}

# Cover the pre-tokenizer's hard cases: whitespace runs, digit splitting,
# byte fallback for unicode, and special tokens that appear in plain text.
TOKENIZER_TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    " leading space",
    "trailing space ",
    "  two leading spaces and    four inside",
    "line one\nline two\n\nline four",
    "tab\tseparated\tvalues\r\nwindows newline",
    "12345 and 3.14159",
    "1000000 2024-06-01 0x1F 1e-9",
    "fn main() {\n    let x = vec![1, 2, 3];\n    if x.len() > 2 { println!(\"{}\", x[0]); }\n}",
    "def f(a, b):\n\treturn {'k': [a, b]}  # comment",
    "Café naïve résumé façade Ångström",
    "日本語のテキストと中文文本",
    "Emoji: 😀👍🏽🚀 and ❤️",
    "مرحبا بالعالم",
    "Привет, мир! Ελληνικά",
    "Is it ever right to break a promise? Explain your reasoning.",
    "don't can't I'm we've they'll",
    "",
]

LOGIT_TEXTS = [
    "The capital of France is Paris, and the capital of Germany is",
    "def fibonacci(n):\n    if n < 2:\n        return n",
]
LOGIT_TEXT_CHATML = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
LOGIT_TEXT_BASE = "Honesty matters because trust, once broken, is hard to rebuild."

GREEDY_PROMPTS = [
    "Hi!",
    "Is it ever right to break a promise?",
    "Write a Python function that returns the square of a number.",
    "A friend asks you to keep a secret that could hurt someone else. "
    "Describe, step by step, how you would decide what to do and what you would say to them.",
]

CHATS = {
    "user_only": [{"role": "user", "content": "What is the capital of France?"}],
    "system_user": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Name a prime number."},
    ],
    "user_assistant_user": [
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
    ],
}


def r6(x):
    return round(float(x), 6)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def logits_record(model, ids):
    """Per-position summaries of the full-vocab logits (fixtures stay small)."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]  # [seq, vocab], f32
    vocab = logits.shape[-1]
    l64 = logits.double()
    argmax = logits.argmax(-1).tolist()
    # 0..7, 8 ids spread over the vocab, and every argmax of this input.
    spread = np.linspace(8, vocab - 1, 8).astype(int).tolist()
    probe = sorted(set(range(8)) | set(spread) | set(argmax))
    return {
        "input_ids": ids,
        "argmax": argmax,
        "max": [r6(v) for v in logits.max(-1).values],
        "logsumexp": [r6(v) for v in torch.logsumexp(l64, -1)],
        "probe": {
            "probe_ids": probe,
            "probe_logits": [[r6(v) for v in row] for row in logits[:, probe]],
        },
    }


def norm_convention(path, model):
    """Compare a raw GGUF norm tensor with the loaded HF weight (Gemma stores 1+w)."""
    reader = gguf.GGUFReader(str(path))
    raw = next(t for t in reader.tensors if t.name == "output_norm.weight")
    raw = np.asarray(raw.data, dtype=np.float32).reshape(-1)
    hf = model.model.norm.weight.detach().float().numpy()
    return {
        "gguf_output_norm_first4": [r6(v) for v in raw[:4]],
        "hf_model_norm_first4": [r6(v) for v in hf[:4]],
        "hf_equals_gguf_minus_1": bool(np.allclose(hf, raw - 1.0, atol=1e-6)),
        "hf_equals_gguf": bool(np.allclose(hf, raw, atol=1e-6)),
    }


def build(name):
    fname, chatml, special_text = SPECS[name]
    path = MODELS / fname
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(MODELS, gguf_file=fname)
    kwargs = {"attn_implementation": "eager"} if name == "gemma3" else {}
    model = AutoModelForCausalLM.from_pretrained(MODELS, gguf_file=fname, dtype=torch.float32, **kwargs)
    model.eval()
    cfg = model.config
    out = {
        "model": name,
        "model_file": fname,
        "sha256": sha256(path),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "gguf": getattr(gguf, "__version__", None) or __import__("importlib.metadata").metadata.version("gguf"),
        },
        "attn_implementation": cfg._attn_implementation,
        "config": json.loads(json.dumps(cfg.to_dict(), default=str)),
        "hidden_size": cfg.hidden_size,
        "vocab_size": cfg.vocab_size,
        "tokenizer_len": len(tok),
        "num_layers": cfg.num_hidden_layers,
        "tie_word_embeddings": bool(cfg.tie_word_embeddings),
        "special_tokens": {
            "bos": [tok.bos_token, tok.bos_token_id],
            "eos": [tok.eos_token, tok.eos_token_id],
            "pad": [tok.pad_token, tok.pad_token_id],
        },
    }
    if name == "gemma3":
        out["norm_convention"] = norm_convention(path, model)

    # 2. tokenizer round trips
    out["tokenizer"] = []
    for text in TOKENIZER_TEXTS + [special_text]:
        ids_ns = tok(text, add_special_tokens=False)["input_ids"]
        out["tokenizer"].append({
            "text": text,
            "ids": tok(text, add_special_tokens=True)["input_ids"],
            "ids_no_special": ids_ns,
            "decoded": tok.decode(ids_ns),
        })

    # 3. chat templates (ChatML instruct models only)
    if chatml:
        out["chat"] = [{
            "name": k,
            "messages": msgs,
            "text": tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True),
        } for k, msgs in CHATS.items()]

    # 4. logits; ids come from the tokenizer with its default special tokens (BOS for gemma)
    texts = LOGIT_TEXTS + [LOGIT_TEXT_CHATML if chatml else LOGIT_TEXT_BASE]
    out["logits"] = [dict(text=t, **logits_record(model, tok(t)["input_ids"])) for t in texts]

    # 5. greedy decoding
    gen = model.generation_config
    eos = gen.eos_token_id
    out["generation_config"] = json.loads(json.dumps(gen.to_diff_dict(), default=str))
    out["eos_ids"] = eos if isinstance(eos, list) else [eos]
    out["greedy"] = []
    for p in GREEDY_PROMPTS:
        if chatml:
            text = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            ids = tok(text, add_special_tokens=False)["input_ids"]
        else:
            text = p + "\nResponse:"
            ids = tok(text)["input_ids"]  # adds BOS
        x = torch.tensor([ids])
        with torch.no_grad():
            y = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                               max_new_tokens=24, pad_token_id=tok.pad_token_id)
        new = y[0, len(ids):].tolist()
        out["greedy"].append({
            "prompt": p, "prompt_text": text, "prompt_ids": ids,
            "output_ids": new, "output_text": tok.decode(new),
        })

    del model
    gc.collect()
    return out, time.time() - t0


def main():
    names = sys.argv[1:] or list(SPECS)
    OUT.mkdir(parents=True, exist_ok=True)
    for name in names:
        data, secs = build(name)
        dest = OUT / f"{name}.json"
        dest.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"{name}: {dest.stat().st_size / 1024:.0f} KiB in {secs:.0f}s, peak RSS so far {peak_gib:.1f} GiB")
        gc.collect()


if __name__ == "__main__":
    main()
