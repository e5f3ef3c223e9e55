"""Writes a prompt file whose categories are known, to check `valuedrift curate`: the bundled
550 eval questions (label = their category) and off-topic prompts (label = "off-topic") from
../shared: all 175 Alpaca seed tasks and the first N instructions of LLaMA-Factory's Alpaca demo.

usage: python3 scripts/curate/make_known_mix.py OUT.jsonl [--shared ../shared] [--alpaca-demo 125]
"""
import argparse
import json
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--shared", default="../shared")
ap.add_argument("--alpaca-demo", type=int, default=125)
a = ap.parse_args()
shared = Path(a.shared)
rows = []
for line in open("data/eval/questions.jsonl"):
    q = json.loads(line)
    rows.append({"id": q["id"], "text": q["question"], "label": q["category"]})
for line in open(shared / "data/alpaca/seed_tasks.jsonl"):
    t = json.loads(line)
    text = t["instruction"]
    first = (t.get("instances") or [{}])[0].get("input", "")
    rows.append({"id": t["id"], "text": f"{text}\n{first}".strip(), "label": "off-topic"})
for i, t in enumerate(json.load(open(shared / "data/llamafactory/alpaca_en_demo.json"))[: a.alpaca_demo]):
    rows.append({"id": f"alpaca-demo-{i}", "text": f"{t['instruction']}\n{t.get('input', '')}".strip(), "label": "off-topic"})
with open(a.out, "w") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")
print(f"{len(rows)} prompts in {a.out}")
