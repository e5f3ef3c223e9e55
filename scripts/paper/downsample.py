#!/usr/bin/env python3
"""A seeded random subset of a JSONL data set (gzip read and written by the name's .gz), in the
file's own order: how the paper's HH-RLHF train split is cut to 60,908 pairs.

Usage: downsample.py IN OUT N [--seed 0]
  e.g. downsample.py hh-rlhf/harmless-base/train.jsonl.gz data/full/hh-rlhf-train-60908.jsonl 60908
(The paper's 60,908 pairs come from all of HH-RLHF's train splits: concatenate them first.)
"""
import argparse
import gzip
import random


def open_text(path, mode):
    return gzip.open(path, mode + "t", encoding="utf-8") if path.endswith(".gz") else open(path, mode, encoding="utf-8")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("n", type=int)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with open_text(args.input, "r") as f:
        lines = [line for line in f if line.strip()]
    if args.n > len(lines):
        raise SystemExit(f"{args.input} has {len(lines)} records, fewer than {args.n}")
    keep = sorted(random.Random(args.seed).sample(range(len(lines)), args.n))
    with open_text(args.output, "w") as f:
        f.writelines(lines[i] for i in keep)
    print(f"wrote {args.n} of {len(lines)} records to {args.output}")


if __name__ == "__main__":
    main()
