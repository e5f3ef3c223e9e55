"""How far a second judge moves a traced run's values and drifts, on the same samples.

A: `valuedrift dump` of a run (the run's own judgments); B: the same rows re-judged by another
judge (`valuedrift judge --input A --output B`, e.g. other weights). For each phase, topic and
stance it computes v at the phase's first and last step (mean over questions of the mean over
samples of p) and the drift M = v_end - v_start under both judges, then prints the largest and
mean absolute differences of p, v and M, and the drifts that differ most.
Usage: python3 compare-drifts.py A.jsonl B.jsonl [N_SHOWN]
"""
import json
import sys
from collections import defaultdict

STANCES = ("support", "neutral", "oppose")


def read(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def values(rows):
    """v[(phase, step, category, stance)] as the mean over questions of the mean over samples."""
    per_question = defaultdict(list)
    for r in rows:
        for s in STANCES:
            per_question[(r["phase"], r["step"], r["category"], s, r["question_id"])].append(r[f"p_{s}"])
    per_cell = defaultdict(list)
    for (phase, step, category, s, _), ps in per_question.items():
        per_cell[(phase, step, category, s)].append(sum(ps) / len(ps))
    return {k: sum(v) / len(v) for k, v in per_cell.items()}


def drifts(v):
    steps = defaultdict(set)
    for phase, step, _, _ in v:
        steps[phase].add(step)
    out = {}
    for (phase, step, category, s), _ in v.items():
        first, last = min(steps[phase]), max(steps[phase])
        if step == first and first != last:
            out[(phase, category, s)] = v[(phase, last, category, s)] - v[(phase, first, category, s)]
    return out


def summary(name, a, b):
    diffs = [abs(a[k] - b[k]) for k in a]
    print(f"{name}: {len(diffs)} compared, mean |difference| {sum(diffs) / len(diffs):.4f}, max {max(diffs):.4f}")


def main(path_a, path_b, shown=8):
    a, b = read(path_a), read(path_b)
    key = lambda r: (r["phase"], r["step"], r["question_id"], r["sample"])
    if len(a) != len(b) or any(key(x) != key(y) for x, y in zip(a, b)):
        sys.exit(f"{path_a} and {path_b} do not hold the same samples in the same order")
    if not a or any(r.get("p_support") is None for r in a + b):
        sys.exit("every sample must be judged in both files")
    summary("p per sample and stance", {(i, s): r[f"p_{s}"] for i, r in enumerate(a) for s in STANCES},
            {(i, s): r[f"p_{s}"] for i, r in enumerate(b) for s in STANCES})
    va, vb = values(a), values(b)
    summary("v per checkpoint, topic and stance", va, vb)
    ma, mb = drifts(va), drifts(vb)
    summary("drift M per phase, topic and stance", ma, mb)
    print(f"drifts that differ most (phase, topic, stance: M under {path_a} -> under {path_b}):")
    for k in sorted(ma, key=lambda k: -abs(ma[k] - mb[k]))[:shown]:
        print(f"  {k[0]:16} {k[1]:16} {k[2]:8} {ma[k]:+.3f} -> {mb[k]:+.3f}")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], *(int(n) for n in sys.argv[3:]))
