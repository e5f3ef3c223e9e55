"""Paired comparison of two judge outputs on the same labelled items (`judge --output`).

Prints each judge's three-way accuracy with its 95% Wilson interval, the exact two-sided McNemar
test on the items exactly one of them gets right, the mean and largest absolute difference of
their probabilities, and on how many items their top stance differs.
Usage: python3 compare-precisions.py A.jsonl B.jsonl
"""
import json
import math
import sys

STANCES = ("support", "neutral", "oppose")


def read(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def top(row):
    return max(STANCES, key=lambda s: row[f"p_{s}"])


def wilson(right, n, z=1.959964):
    p = right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def mcnemar_exact(only_a, only_b):
    """Two-sided exact p of the discordant split under Binomial(n, 1/2)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)


def main(path_a, path_b):
    a, b = read(path_a), read(path_b)
    if len(a) != len(b) or any(x["id"] != y["id"] for x, y in zip(a, b)):
        sys.exit(f"{path_a} and {path_b} do not hold the same items in the same order")
    right_a = [top(r) == r["label"] for r in a]
    right_b = [top(r) == r["label"] for r in b]
    n = len(a)
    for path, right in ((path_a, right_a), (path_b, right_b)):
        low, high = wilson(sum(right), n)
        print(f"{path}: accuracy {sum(right) / n:.3f} (95% {low:.3f} to {high:.3f}) on {n} items")
    only_a = sum(x and not y for x, y in zip(right_a, right_b))
    only_b = sum(y and not x for x, y in zip(right_a, right_b))
    diffs = [abs(x[f"p_{s}"] - y[f"p_{s}"]) for x, y in zip(a, b) for s in STANCES]
    changed = sum(top(x) != top(y) for x, y in zip(a, b))
    print(f"right only in the first: {only_a}, only in the second: {only_b}; exact McNemar p = {mcnemar_exact(only_a, only_b):.3f}")
    print(f"|p difference|: mean {sum(diffs) / len(diffs):.4f}, max {max(diffs):.4f}; top stance differs on {changed} of {n}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
