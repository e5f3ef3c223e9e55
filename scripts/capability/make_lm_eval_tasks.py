#!/usr/bin/env python3
"""Writes what lm-eval needs to evaluate the capability fixtures through a server: the model's
tokenizer (read from its GGUF file by transformers) and task configs that include the harness's
own MMLU, ARC, HellaSwag and PIQA configs with their data pointed at the local fixture files.

Usage: make_lm_eval_tasks.py MODEL.gguf WORKDIR  ->  WORKDIR/tokenizer/, WORKDIR/tasks/*.yaml
"""
import sys
from pathlib import Path

import lm_eval
from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "crates/trace/tests/fixtures/capability"
TASKS = Path(lm_eval.__file__).parent / "tasks"


def task(name, include, data, extra):
    return f"include: {include}\ntask: {name}\ndataset_path: json\ndataset_name: null\ndataset_kwargs:\n  data_files:\n{data}\n{extra}"


def main():
    model, work = Path(sys.argv[1]), Path(sys.argv[2])
    AutoTokenizer.from_pretrained(model.parent, gguf_file=model.name).save_pretrained(work / "tokenizer")
    tasks = work / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    configs = {
        "vd_mmlu": task("vd_mmlu", TASKS / "mmlu/default/_default_template_yaml", f"    test: {FIX / 'mmlu.jsonl'}",
                        'description: "The following are multiple choice questions (with answers) about general knowledge.\\n\\n"\n'
                        "test_split: test\nfewshot_split: null\nvalidation_split: null\n"),
        "vd_arc": task("vd_arc", TASKS / "arc/arc_easy.yaml", f"    test: {FIX / 'arc.jsonl'}", "test_split: test\ntraining_split: null\nvalidation_split: null\n"),
        "vd_hellaswag": task("vd_hellaswag", TASKS / "hellaswag/hellaswag.yaml", f"    validation: {FIX / 'hellaswag.jsonl'}", "training_split: null\n"),
        "vd_piqa": task("vd_piqa", TASKS / "piqa/piqa.yaml", f"    validation: {FIX / 'piqa.jsonl'}", "training_split: null\n"),
    }
    for name, text in configs.items():
        (tasks / f"{name}.yaml").write_text(text)


if __name__ == "__main__":
    main()
