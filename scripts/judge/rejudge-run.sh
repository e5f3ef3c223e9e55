#!/usr/bin/env bash
# Re-judges every sample of a traced run with the default judge at other weights (default bf16)
# and compares values and drifts with the run's own judgments (scripts/judge/compare-drifts.py):
# how much of a run's numbers the judge's weight precision accounts for.
# Usage: scripts/judge/rejudge-run.sh RUN_DIR [MATMUL] [RUN_NAME]   e.g. runs/builtin bf16 builtin
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=${1:?usage: $0 RUN_DIR [MATMUL] [RUN_NAME]}
MATMUL=${2:-bf16}
NAME=${3:-$(basename "$DIR")}
cargo build --release -q
VD=./target/release/valuedrift
"$VD" dump --store "$DIR/trace.sqlite" --run "$NAME" --out "$DIR/samples.jsonl"
"$VD" judge --input "$DIR/samples.jsonl" --output "$DIR/samples-$MATMUL.jsonl" --matmul "$MATMUL"
python3 scripts/judge/compare-drifts.py "$DIR/samples.jsonl" "$DIR/samples-$MATMUL.jsonl" 10
