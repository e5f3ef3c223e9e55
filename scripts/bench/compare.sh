#!/usr/bin/env bash
# Runs valuedrift's benchmarks and the peer engines back to back on the same inputs and machine,
# appending one JSON object per measurement to $OUT (default runs/bench/results.jsonl), then
# prints the ratios. Peers need a Python with torch, transformers, gguf and llama-cpp-python:
# set PY (default python3). Sizes: NQ questions x SAMPLES samples x MAXNEW tokens; NI judge items.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}; NQ=${NQ:-64}; SAMPLES=${SAMPLES:-5}; MAXNEW=${MAXNEW:-256}; NI=${NI:-64}
OUT=${OUT:-runs/bench/results.jsonl}
mkdir -p "$(dirname "$OUT")"
SMOL=models/smollm2-135m-instruct.q4_1.gguf
QWEN=models/qwen2.5-coder-1.5b-instruct.q4_k_m.gguf
VD=./target/release/valuedrift
cargo build --release -q
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) nproc=$(nproc) NQ=$NQ SAMPLES=$SAMPLES MAXNEW=$MAXNEW NI=$NI" >> "$OUT"
for mm in f32 bf16; do
  $VD bench generate --model $SMOL --num-questions "$NQ" --samples "$SAMPLES" --max-new-tokens "$MAXNEW" \
    --batch-size 64 --matmul $mm --json /tmp/vd-bench.json > /dev/null
  $PY -c "import json; d=json.load(open('/tmp/vd-bench.json')); d['matmul']='$mm'; print(json.dumps(d))" >> "$OUT"
done
$PY scripts/bench/peers.py generate --model $SMOL --num-questions "$NQ" --samples "$SAMPLES" \
  --max-new-tokens "$MAXNEW" --batch-sizes 32,64,128 | grep '^{' >> "$OUT"
for mm in f32 bf16; do
  $VD bench score --model $QWEN --num-items "$NI" --matmul $mm --dump-ids /tmp/vd-ids.jsonl --json /tmp/vd-bench.json > /dev/null
  $PY -c "import json; d=json.load(open('/tmp/vd-bench.json')); d['matmul']='$mm'; print(json.dumps(d))" >> "$OUT"
done
$PY scripts/bench/peers.py score --engine llama.cpp --model $QWEN --ids /tmp/vd-ids.jsonl | grep '^{' >> "$OUT"
$PY scripts/bench/summarize.py "$OUT"
