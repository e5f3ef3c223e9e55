#!/usr/bin/env bash
# Writes crates/trace/tests/fixtures/head-subset.jsonl: the bundled stance head's judgments
# (f32 matmuls) of every 15th item of data/judge/labelled.jsonl, which
# `bundled_head_reproduces_its_fixture_on_a_fixed_subset` compares against. Rerun after
# `valuedrift fit-head` writes a new data/judge/stance-head.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
awk 'NR % 15 == 1' data/judge/labelled.jsonl > "$tmp/subset.jsonl"
cargo run --release -q -- judge --input "$tmp/subset.jsonl" --output "$tmp/judged.jsonl" --matmul f32 --judge-mode head
python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(json.dumps({k: r[k] for k in ("id", "label", "p_support", "p_neutral", "p_oppose")}))
' "$tmp/judged.jsonl" > crates/trace/tests/fixtures/head-subset.jsonl
wc -l crates/trace/tests/fixtures/head-subset.jsonl
