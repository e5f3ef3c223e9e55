"""Chooses and measures the P(Yes) threshold of `valuedrift curate`'s log-prob value filter from
a curation directory whose prompts carry labels (prompts.jsonl) and whose filter ran in log-prob
mode (filter.jsonl).

  choose DIR             the threshold with the best balanced accuracy (on-topic passed, off-topic
                         dropped) on DIR, with the ROC AUC; run it on the tuning mix only
                         (make_filter_tuning_mix.py)
  measure DIR --threshold T [--skip-tuned]
                         pass rates with Wilson 95% intervals; --skip-tuned leaves out the on-topic
                         questions the tuning mix holds (even positions within a category)
"""
import argparse
import json
import math
from collections import defaultdict
from pathlib import Path


def load(directory, off_topic):
    labels = {}
    for line in open(Path(directory) / "prompts.jsonl"):
        p = json.loads(line)
        labels[p["id"]] = p.get("label")
    rows = []
    for line in open(Path(directory) / "filter.jsonl"):
        if not line.strip():
            continue
        a = json.loads(line)
        if a.get("p_yes") is None:
            raise SystemExit(f"{directory}/filter.jsonl: {a['id']} has no p_yes (not a log-prob filter run)")
        label = labels[a["id"]]
        rows.append((a["id"], label, label != off_topic, a["p_yes"]))
    return rows


def tuned_ids():
    seen, ids = defaultdict(int), set()
    for line in open("data/eval/questions.jsonl"):
        q = json.loads(line)
        if seen[q["category"]] % 2 == 0:
            ids.add(q["id"])
        seen[q["category"]] += 1
    return ids


def auc(rows):
    pos = [p for _, _, on, p in rows if on]
    neg = [p for _, _, on, p in rows if not on]
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def balanced(rows, t):
    on = [p >= t for _, _, o, p in rows if o]
    off = [p < t for _, _, o, p in rows if not o]
    return 0.5 * (sum(on) / len(on) + sum(off) / len(off))


def choose(rows):
    scores = sorted({p for *_, p in rows})
    cuts = [0.5 * (a + b) for a, b in zip(scores, scores[1:])] or scores
    best = max(balanced(rows, t) for t in cuts)
    tied = [t for t in cuts if balanced(rows, t) == best]
    return tied[len(tied) // 2], best


def wilson(k, n):
    if n == 0:
        return (float("nan"),) * 2
    z, p = 1.959964, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def report(name, k, n):
    lo, hi = wilson(k, n)
    print(f"{name}: {k}/{n} = {k / n:.3f} (95% {lo:.3f}-{hi:.3f})")


ap = argparse.ArgumentParser()
ap.add_argument("action", choices=["choose", "measure"])
ap.add_argument("dir")
ap.add_argument("--threshold", type=float)
ap.add_argument("--skip-tuned", action="store_true")
ap.add_argument("--off-topic-label", default="off-topic")
a = ap.parse_args()
rows = load(a.dir, a.off_topic_label)
if a.skip_tuned:
    skip = tuned_ids()
    rows = [r for r in rows if r[0] not in skip]
print(f"{len(rows)} judged prompts ({sum(r[2] for r in rows)} on-topic), ROC AUC {auc(rows):.3f}")
if a.action == "choose":
    t, b = choose(rows)
    print(f"threshold {t:.4f}: balanced accuracy {b:.3f}")
else:
    t = a.threshold
    report("on-topic passed", sum(p >= t for _, _, o, p in rows if o), sum(r[2] for r in rows))
    report("off-topic dropped", sum(p < t for _, _, o, p in rows if not o), sum(not r[2] for r in rows))
    per = defaultdict(lambda: [0, 0])
    for _, label, on, p in rows:
        per[label][0] += (p >= t) if on else (p < t)
        per[label][1] += 1
    for label, (k, n) in sorted(per.items()):
        print(f"  {label}: {'passed' if label != a.off_topic_label else 'dropped'} {k}/{n}")
