#!/usr/bin/env bash
# The whole pipeline on a GPU: a tiny experiment (SFT then DPO from it, each checkpoint traced
# and judged, the datasets audited, the report written) with `valuedrift run --device cuda`,
# then generation throughput on the GPU against this machine's CPU cores.
# Usage: pipeline-on-device.sh VALUEDRIFT_BINARY MODELS_DIR OUT_DIR
# MODELS_DIR needs smollm2-135m-instruct.q4_1.gguf and all-minilm-l6-v2/ (the GPU machine takes
# 64 MiB per transfer, so SmolLM2 serves as base, policy and judge here).
set -euo pipefail
bin=$(realpath "$1"); models=$(realpath "$2"); out=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
for d in /usr/local/cuda/lib64 $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, "cu13/lib") for p in nvidia.__path__))' 2>/dev/null); do
  [ -d "$d" ] && export LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}
done
smol=$models/smollm2-135m-instruct.q4_1.gguf
cat > "$out/tiny.toml" <<TOML
name = "tiny-cuda"
base = "$smol"

[eval]
categories = ["immigration", "abortion"]
questions_per_category = 4
samples = 4
max_new_tokens = 48

[judge]
model = "$smol"
orders = 3

[audit]
embedder = "$models/all-minilm-l6-v2"
max_items = 40

[[phase]]
name = "sft"
algo = "sft"
data = "$root/data/sft/supportive.jsonl"
save_every = 2
hyper = { lr = 5e-5, global_batch = 8, max_steps = 4, max_len = 256 }

[[phase]]
name = "dpo"
algo = "dpo"
from = "sft"
data = "$root/data/valuegap/handwritten.jsonl"
label_setup = "support"
save_every = 2
hyper = { lr = 2e-5, global_batch = 8, max_steps = 4, max_len = 256, warmup_ratio = 0.0 }
TOML
start=$(date +%s)
"$bin" run "$out/tiny.toml" --out "$out/run" --device cuda 2>&1 | grep -v "^\s*$" | tail -25
echo "run --device cuda: $(( $(date +%s) - start )) s"
for f in report/report.html report/drift.md audit/handwritten/summary.json sft/checkpoint-4 dpo/checkpoint-4; do
  [ -e "$out/run/$f" ] && echo "ok  $f" || { echo "MISSING $f"; exit 1; }
done
"$bin" dump --store "$out/run/trace.sqlite" --run tiny-cuda | wc -l | sed 's/^/stored samples: /'
cp "$out/run/report/drift.md" "$out/drift.md"
# Generation throughput, GPU then this machine's CPU (same model, same work).
for dev in cuda cpu; do
  "$bin" bench generate --model "$smol" --device "$dev" --num-questions 32 --samples 2 --max-new-tokens 128 \
    --questions "$root/data/eval/questions.jsonl" --json "$out/bench-$dev.json" 2>&1 | tail -2
done
