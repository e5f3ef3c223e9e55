"""Reference sentence embeddings for the engine's BERT and MPNet encoders.

Runs transformers' own BertModel / MPNetModel on the installed sentence-transformers model
directories and applies the pipeline those models define (mean pooling over tokens, L2
normalization, truncation at max_seq_length), then writes a small JSON fixture.

    /work/refenv/bin/python scripts/reference/make_embed_fixtures.py models \
        crates/engine/tests/fixtures/embed-reference.json
"""
import json
import sys

import torch
from transformers import AutoModel, PreTrainedTokenizerFast

TEXTS = [
    "Should abortion be legal?",
    "The death penalty deters crime and should be kept for the worst murders.",
    "How do I bake sourdough bread at home?",
    # Longer than 128 tokens: the files' baked-in truncation at 128 must not apply.
    " ".join(["Immigration policy shapes labour markets, public finances and culture in ways"
              " that researchers still debate, and every country strikes its own balance."] * 6),
]


def embed(model_dir, max_len):
    tok = PreTrainedTokenizerFast(tokenizer_file=f"{model_dir}/tokenizer.json")
    tok._tokenizer.no_padding()
    tok._tokenizer.no_truncation()
    model = AutoModel.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    out = []
    for text in TEXTS:
        enc = tok(text, return_tensors="pt", truncation=True, max_length=max_len)
        with torch.no_grad():
            h = model(**enc).last_hidden_state[0]
        v = h.mean(0)
        v = v / v.norm()
        out.append({"text": text, "n_tokens": int(enc["input_ids"].shape[1]), "embedding": [round(x, 7) for x in v.tolist()]})
    return out


def main():
    models, dest = sys.argv[1], sys.argv[2]
    fixture = {
        "generator": "scripts/reference/make_embed_fixtures.py (transformers " + __import__("transformers").__version__ + ", torch " + torch.__version__ + ")",
        "all-minilm-l6-v2": embed(f"{models}/all-minilm-l6-v2", 256),
        "all-mpnet-base-v2": embed(f"{models}/all-mpnet-base-v2", 384),
    }
    with open(dest, "w") as f:
        json.dump(fixture, f)
    for name in ("all-minilm-l6-v2", "all-mpnet-base-v2"):
        rows = fixture[name]
        print(name, [r["n_tokens"] for r in rows])


main()
