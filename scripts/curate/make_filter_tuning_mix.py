"""Writes the prompt mix that `valuedrift curate`'s log-prob value filter threshold is chosen
on, disjoint from what it is then measured on (make_known_mix.py):
- on-topic: the bundled eval questions at even positions within their category (275); the
  known-answer figures for on-topic prompts are reported on the odd ones only;
- off-topic: LLaMA-Factory's Alpaca demo instructions after the first 125 (which the known mix
  uses), N of them (default 300); the Alpaca seed tasks are left to the known mix.

usage: python3 scripts/curate/make_filter_tuning_mix.py OUT.jsonl [--shared ../shared] [--off-topic 300]
"""
import argparse
import json
from collections import defaultdict
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--shared", default="../shared")
ap.add_argument("--off-topic", type=int, default=300)
a = ap.parse_args()
rows = []
seen = defaultdict(int)
for line in open("data/eval/questions.jsonl"):
    q = json.loads(line)
    position = seen[q["category"]]
    seen[q["category"]] += 1
    if position % 2 == 0:
        rows.append({"id": q["id"], "text": q["question"], "label": q["category"]})
demo = json.load(open(Path(a.shared) / "data/llamafactory/alpaca_en_demo.json"))
for i, t in list(enumerate(demo))[125 : 125 + a.off_topic]:
    rows.append({"id": f"alpaca-demo-{i}", "text": f"{t['instruction']}\n{t.get('input', '')}".strip(), "label": "off-topic"})
with open(a.out, "w") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")
print(f"{len(rows)} prompts in {a.out}")
