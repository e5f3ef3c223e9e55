#!/usr/bin/env bash
# Training steps (SmolLM2-135M, f32 weights, batch 4 x 256 tokens) of valuedrift's trainer and of
# a plain PyTorch loop on the very same token ids, back to back; then the judge against llama.cpp.
# Appends JSON lines to $OUT (default runs/bench/train.jsonl) and prints ratios.
# PY must have torch, transformers and gguf (and llama-cpp-python for the judge peer).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}; STEPS=${STEPS:-3}; OUT=${OUT:-runs/bench/train.jsonl}
mkdir -p "$(dirname "$OUT")"
SMOL=models/smollm2-135m-instruct.q4_1.gguf
QWEN=models/qwen2.5-coder-1.5b-instruct.q4_k_m.gguf
VD=./target/release/valuedrift
cargo build --release -q
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) nproc=$(nproc) train STEPS=$STEPS" >> "$OUT"
for algo in sft dpo; do
  for mm in f32 bf16 candle; do
    $VD bench train --model $SMOL --algo $algo --steps "$STEPS" --matmul $mm --dump-ids /tmp/vd-train-ids.json --json /tmp/vd-bench.json > /dev/null
    cat /tmp/vd-bench.json | $PY -c "import json,sys; print(json.dumps(json.load(sys.stdin)))" >> "$OUT"
  done
  $PY scripts/bench/train_peers.py $algo --steps "$STEPS" --ids /tmp/vd-train-ids.json | grep '^{' >> "$OUT"
done
$PY - "$OUT" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
start = max(i for i, l in enumerate(lines) if l.startswith("#"))
print(lines[start])
rows = [json.loads(l) for l in lines[start + 1:] if l.strip()]
for w in ("sft", "dpo"):
    rs = [r for r in rows if r.get("workload") == w]
    peer = next(r for r in rs if r["engine"] == "pytorch")
    for r in rs:
        label = f"{r['engine']} {r.get('matmul', '')}".strip()
        print(f"{w}: {label:22} {r['s_per_step']:6.2f} s/step  x{peer['s_per_step'] / r['s_per_step']:.2f} vs PyTorch  peak {r['peak_rss_gib']:.2f} GiB")
PY
