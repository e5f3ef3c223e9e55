#!/usr/bin/env bash
# One kernel family against candle's kernels and plain PyTorch, back to back on this machine:
# training steps (SmolLM2-135M, batch 4 x 256 tokens; PyTorch on the very same token ids),
# evaluation sampling (SmolLM2-135M) and the judge (Qwen2.5-Coder-1.5B, judgments per minute and
# peak memory). FAMILY caps valuedrift's kernels (VALUEDRIFT_KERNELS) and PyTorch's (ATen, MKL,
# oneDNN) alike, so an AVX2-only CPU can be stood in for on an AVX-512 one.
# PY must have torch, transformers and gguf (scripts/bench/setup-peers.sh).
# Appends JSON lines to $OUT (default runs/bench/family.jsonl) and prints ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}; FAMILY=${FAMILY:-avx2}; STEPS=${STEPS:-3}; OUT=${OUT:-runs/bench/family.jsonl}
NQ=${NQ:-32}; MAXNEW=${MAXNEW:-128}; NI=${NI:-48}
mkdir -p "$(dirname "$OUT")"
SMOL=models/smollm2-135m-instruct.q4_1.gguf
VD=./target/release/valuedrift
cargo build --release -q
export VALUEDRIFT_KERNELS=$FAMILY
upper=$(echo "$FAMILY" | tr a-z A-Z)
case $FAMILY in
  avx2) export ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 DNNL_MAX_CPU_ISA=AVX2 ;;
  avx512|avx512bf16) export ATEN_CPU_CAPABILITY=avx512 ;;
  *) echo "FAMILY=$FAMILY: only avx2, avx512 and avx512bf16 have peers set here" >&2; exit 2 ;;
esac
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) nproc=$(nproc) family=$FAMILY ($upper) commit=$(git rev-parse --short HEAD) STEPS=$STEPS NQ=$NQ MAXNEW=$MAXNEW NI=$NI" >> "$OUT"
tag() { $PY -c "import json,sys; d=json.load(open('/tmp/vd-bench.json')); d.update(family='$FAMILY', matmul='$1'); print(json.dumps(d))" >> "$OUT"; }
for algo in sft dpo; do
  for mm in f32 bf16 candle; do
    $VD bench train --model $SMOL --algo $algo --steps "$STEPS" --matmul $mm --dump-ids /tmp/vd-train-ids.json --json /tmp/vd-bench.json > /dev/null
    tag $mm
  done
  $PY scripts/bench/train_peers.py $algo --steps "$STEPS" --ids /tmp/vd-train-ids.json | grep '^{' >> "$OUT"
done
for mm in f32 bf16 candle; do
  $VD bench generate --model $SMOL --num-questions "$NQ" --samples 1 --max-new-tokens "$MAXNEW" --batch-size 32 --matmul $mm --json /tmp/vd-bench.json > /dev/null
  tag $mm
done
for mm in bf16 f32 candle; do
  $VD bench judge --num-items "$NI" --judge-matmul $mm --json /tmp/vd-bench.json > /dev/null
  tag $mm
done
$PY - "$OUT" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
start = max(i for i, l in enumerate(lines) if l.startswith("#"))
print(lines[start])
rows = [json.loads(l) for l in lines[start + 1:] if l.strip()]
gib = lambda r: (r.get("peak_rss_gib") or (r.get("peak_rss_bytes") or 0) / 2**30)
for w in ("sft", "dpo"):
    rs = [r for r in rows if r.get("workload") == w]
    peer = next(r for r in rs if r["engine"] == "pytorch")
    for r in rs:
        label = f"{r['engine']} {r.get('matmul', '')}".strip()
        print(f"{w}: {label:22} {r['s_per_step']:6.2f} s/step  x{peer['s_per_step'] / r['s_per_step']:.2f} vs PyTorch  peak {gib(r):.2f} GiB")
for bench, key in (("generate", "tokens_per_second"), ("judge", "judgments_per_minute_prefix_cache")):
    rs = [r for r in rows if r.get("bench") == bench]
    base = next(r for r in rs if r["matmul"] == "candle")
    for r in rs:
        print(f"{bench}: valuedrift {r['matmul']:8} {r[key]:8.1f} {key}  x{r[key] / base[key]:.2f} vs candle's kernels  peak {gib(r):.2f} GiB")
PY
