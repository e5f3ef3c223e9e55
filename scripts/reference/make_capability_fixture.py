#!/usr/bin/env python3
"""Reference figures for `valuedrift capability`, from lm-evaluation-harness itself.

The bundled smoke set (data/capability/smoke.jsonl, written for this project) is rewritten into
the published formats the harness's own tasks read: its "facts" items as MMLU rows (subject
"general_knowledge", with three "science" items as the dev split for 2-shot), "science" as ARC,
"completion" as HellaSwag and "physical" as PIQA. Those files go to
crates/trace/tests/fixtures/capability/. Each is then evaluated by lm-eval's own task config
(mmlu default template, arc_easy, hellaswag, piqa), only with its dataset pointed at the local
file, using lm-eval's Hugging Face backend on SmolLM2-135M (the GGUF file dequantized to f32 by
transformers). The fixture records, per item: the context and continuations lm-eval built, the
log-likelihood of each, and its acc / acc_norm.

Usage (repo root, a venv with scripts/capability/requirements.txt):
    python scripts/reference/make_capability_fixture.py
Output: crates/trace/tests/fixtures/capability/{*.jsonl, reference.json}
"""
import json
import os
import tempfile
from pathlib import Path

import lm_eval
import torch
import transformers
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from transformers import AutoModelForCausalLM, AutoTokenizer

torch.set_num_threads(2)
ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/trace/tests/fixtures/capability"
GGUF = "smollm2-135m-instruct.q4_1.gguf"
TASKS_DIR = Path(lm_eval.__file__).parent / "tasks"


def smoke():
    rows = [json.loads(l) for l in open(ROOT / "data/capability/smoke.jsonl")]
    by = {}
    for r in rows:
        by.setdefault(r["task"], []).append(r)
    return by


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_format_files(by):
    OUT.mkdir(parents=True, exist_ok=True)
    mmlu = lambda r: {"id": r["id"], "question": r["question"], "subject": "general_knowledge", "choices": r["choices"], "answer": r["answer"]}
    write_jsonl(OUT / "mmlu.jsonl", [mmlu(r) for r in by["facts"]])
    write_jsonl(OUT / "mmlu-dev.jsonl", [mmlu(r) for r in by["science"][:3]])
    letters = "ABCD"
    write_jsonl(OUT / "arc.jsonl", [
        {"id": r["id"], "question": r["question"], "choices": {"text": r["choices"], "label": list(letters[: len(r["choices"])])}, "answerKey": letters[r["answer"]]}
        for r in by["science"]
    ])
    # HellaSwag's context is split into ctx_a and ctx_b (capitalized by the task); keep a
    # bracketed tag in one item so the cleanup is exercised.
    hs = []
    for i, r in enumerate(by["completion"]):
        words = r["context"].split(" ")
        ctx_a, ctx_b = " ".join(words[: len(words) // 2]), " ".join(words[len(words) // 2:])
        if i == 0:
            ctx_a = "[header] " + ctx_a
        hs.append({"ind": i, "activity_label": "Everyday life", "ctx_a": ctx_a, "ctx_b": ctx_b, "ctx": ctx_a + " " + ctx_b, "endings": r["choices"], "label": str(r["answer"]), "split": "val"})
    write_jsonl(OUT / "hellaswag.jsonl", hs)
    write_jsonl(OUT / "piqa.jsonl", [{"id": r["id"], "goal": r["question"], "sol1": r["choices"][0], "sol2": r["choices"][1], "label": r["answer"]} for r in by["physical"]])


def task_yaml(name, include, data, extra=""):
    return f"""include: {include}
task: {name}
dataset_path: json
dataset_name: null
dataset_kwargs:
  data_files:
{data}
{extra}"""


def write_task_configs(d):
    f = lambda name: str(OUT / name)
    configs = {
        "vd_mmlu": task_yaml(
            "vd_mmlu", TASKS_DIR / "mmlu/default/_default_template_yaml",
            f"    test: {f('mmlu.jsonl')}\n    dev: {f('mmlu-dev.jsonl')}",
            'description: "The following are multiple choice questions (with answers) about general knowledge.\\n\\n"\n'
            "test_split: test\nfewshot_split: dev\nvalidation_split: null\n",
        ),
        "vd_arc": task_yaml("vd_arc", TASKS_DIR / "arc/arc_easy.yaml", f"    test: {f('arc.jsonl')}", "test_split: test\ntraining_split: null\nvalidation_split: null\n"),
        "vd_hellaswag": task_yaml("vd_hellaswag", TASKS_DIR / "hellaswag/hellaswag.yaml", f"    validation: {f('hellaswag.jsonl')}", "training_split: null\n"),
        "vd_piqa": task_yaml("vd_piqa", TASKS_DIR / "piqa/piqa.yaml", f"    validation: {f('piqa.jsonl')}", "training_split: null\n"),
    }
    for name, text in configs.items():
        (d / f"{name}.yaml").write_text(text)
    return list(configs)


def evaluate(lm, include_dir, tasks, shots):
    results = lm_eval.simple_evaluate(
        model=lm,
        tasks=tasks,
        num_fewshot=shots,
        log_samples=True,
        task_manager=TaskManager(include_path=str(include_dir)),
    )
    out = {}
    for task in tasks:
        items = []
        for s in sorted(results["samples"][task], key=lambda s: s["doc_id"]):
            args = [a["arguments"] if isinstance(a, dict) else a for a in s["arguments"]]
            ctx = [a[0] if isinstance(a, (list, tuple)) else a["arg_0"] for a in args]
            cont = [a[1] if isinstance(a, (list, tuple)) else a["arg_1"] for a in args]
            assert len(set(ctx)) == 1, "one context per item"
            items.append({
                "doc_id": s["doc_id"],
                "context": ctx[0],
                "continuations": cont,
                "logliks": [float(r[0]) for r in s["filtered_resps"]],
                "acc": float(s["acc"]),
                "acc_norm": float(s["acc_norm"]) if "acc_norm" in s else None,
            })
        out[task] = {"acc": results["results"][task]["acc,none"], "items": items}
    return out


def main():
    write_format_files(smoke())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # transformers cannot save a model it read from GGUF: lm-eval gets the model object.
        tok = AutoTokenizer.from_pretrained(ROOT / "models", gguf_file=GGUF)
        model = AutoModelForCausalLM.from_pretrained(ROOT / "models", gguf_file=GGUF, dtype=torch.float32)
        lm = HFLM(pretrained=model, tokenizer=tok, batch_size=1, device="cpu")
        include = tmp / "tasks"
        include.mkdir()
        tasks = write_task_configs(include)
        zero = evaluate(lm, include, tasks, 0)
        two = evaluate(lm, include, ["vd_mmlu"], 2)
    reference = {
        "model": GGUF,
        "lm_eval": lm_eval.__version__ if hasattr(lm_eval, "__version__") else "0.4.13",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "zero_shot": zero,
        "mmlu_two_shot": two["vd_mmlu"],
    }
    (OUT / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")
    for task, r in zero.items():
        print(f"{task}: acc {r['acc']:.3f} over {len(r['items'])} items")
    print(f"vd_mmlu 2-shot: acc {two['vd_mmlu']['acc']:.3f}")


if __name__ == "__main__":
    main()
