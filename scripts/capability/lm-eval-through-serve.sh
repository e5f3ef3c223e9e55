#!/usr/bin/env bash
# lm-evaluation-harness run against `valuedrift serve`: the harness's own MMLU, ARC, HellaSwag
# and PIQA task configs over the local fixture files, through its `local-completions` model
# (token-id prompts, echo, log-probs), compared item by item with `valuedrift capability` and
# with the transformers figures of crates/trace/tests/fixtures/capability/reference.json.
# Also the documented way to run any lm-eval task on a checkpoint (docs/capability.md).
#
# Needs a venv with scripts/capability/requirements.txt installed (PYTHON=path/to/its/python)
# and the installed models. Usage: bash scripts/capability/lm-eval-through-serve.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
WORK=${1:-$(mktemp -d)}
MODEL=models/smollm2-135m-instruct.q4_1.gguf
FIX=crates/trace/tests/fixtures/capability
PORT=${PORT:-8765}
mkdir -p "$WORK"
cargo build --release -q -p valuedrift
BIN=target/release/valuedrift
export HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1

# The harness tokenizes itself (token-id prompts): it needs the model's tokenizer as transformers reads it.
"$PY" scripts/capability/make_lm_eval_tasks.py "$MODEL" "$WORK"

$BIN serve --model "$MODEL" --matmul f32 --port "$PORT" --name smollm2 >"$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.5; done

start=$(date +%s)
"$PY" -m lm_eval --model local-completions \
  --model_args "model=smollm2,base_url=http://127.0.0.1:$PORT/v1/completions,tokenizer=$WORK/tokenizer,tokenized_requests=True,num_concurrent=1,max_retries=1" \
  --tasks vd_mmlu,vd_arc,vd_hellaswag,vd_piqa --include_path "$WORK/tasks" --num_fewshot 0 \
  --log_samples --output_path "$WORK/lm-eval" >"$WORK/lm-eval.log" 2>&1 || { tail -30 "$WORK/lm-eval.log"; exit 1; }
echo "lm-eval through serve: $(( $(date +%s) - start )) s"

$BIN capability --model "$MODEL" --matmul f32 --out "$WORK/capability" \
  --task mmlu=$FIX/mmlu.jsonl --task arc=$FIX/arc.jsonl --task hellaswag=$FIX/hellaswag.jsonl --task piqa=$FIX/piqa.jsonl >/dev/null
"$PY" scripts/capability/compare_lm_eval.py "$WORK/lm-eval" "$WORK/capability/items.jsonl" "$FIX/reference.json"
