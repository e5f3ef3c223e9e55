#!/usr/bin/env bash
# The default judge validated on both bundled labelled sets at two weight precisions (default:
# the q8 default against bf16, the default before it), same binary, same items; then the paired
# comparison of scripts/judge/compare-precisions.py (accuracies with Wilson intervals, exact
# McNemar test on the items one gets right and the other wrong, distance between probabilities).
# Usage: scripts/judge/validate-precisions.sh [OUT_DIR]   (PRECISIONS="q8 bf16" by default)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/judge-precisions}
PRECISIONS=${PRECISIONS:-"q8 bf16"}
mkdir -p "$OUT"
cargo build --release -q
for set in labelled real-samples; do
  for mm in $PRECISIONS; do
    /usr/bin/time -f "peak_kb %M wall_s %e" ./target/release/valuedrift judge --validate "data/judge/$set.jsonl" \
      --matmul "$mm" --output "$OUT/$set-$mm.jsonl" > "$OUT/$set-$mm.txt" 2> "$OUT/$set-$mm.log"
    grep -E 'peak_kb' "$OUT/$set-$mm.log" | sed "s/^/$set $mm: /"
  done
  # shellcheck disable=SC2086
  python3 scripts/judge/compare-precisions.py $(for mm in $PRECISIONS; do echo "$OUT/$set-$mm.jsonl"; done)
done
