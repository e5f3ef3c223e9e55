#!/usr/bin/env bash
# Writes the unlabelled items of data/judge/real-samples.jsonl: answers the bundled models
# actually write to bundled questions, as a trace samples them (temperature 0.7, up to 256 new
# tokens): SmolLM2-135M-Instruct with its chat template, Gemma 3 270M (base) with the paper's
# base prompt. Six questions per category, every eighth non-quick question in file order.
# Labels are added by hand afterwards (docs/judge.md, "Real samples").
#   bash scripts/judge/sample-answers.sh OUT.jsonl
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?usage: sample-answers.sh OUT.jsonl}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work/questions.jsonl" <<'PY'
import json, sys, collections
rows = [json.loads(l) for l in open("data/eval/questions.jsonl")]
picked, seen = [], collections.Counter()
for r in rows:
    if r.get("quick"):
        continue
    seen[r["category"]] += 1
    if seen[r["category"]] % 8 == 1 and sum(p["category"] == r["category"] for p in picked) < 6:
        picked.append(r)
with open(sys.argv[1], "w") as f:
    for r in picked:
        f.write(json.dumps(r) + "\n")
PY
cargo build --release -q -p valuedrift
vd=target/release/valuedrift
common=(--input "$work/questions.jsonl" --samples 1 --temperature 0.7 --max-new-tokens 256 --seed 7)
$vd generate --model models/smollm2-135m-instruct.q4_1.gguf --output "$work/smollm2.jsonl" "${common[@]}"
$vd generate --model models/gemma3-270m.q4_k_m.gguf --base-prompt --output "$work/gemma3.jsonl" "${common[@]}"
python3 - "$work" "$out" <<'PY'
import json, sys
work, out = sys.argv[1], sys.argv[2]
with open(out, "w") as f:
    for model, name in [("smollm2-135m-instruct", "smollm2"), ("gemma3-270m-base", "gemma3")]:
        for r in map(json.loads, open(f"{work}/{name}.jsonl")):
            item = {"id": f"{r['id']}-{name}", "category": r["category"], "topic": r["topic"], "question": r["question"],
                    "response": r["response"], "model": model, "finish_reason": r["finish_reason"]}
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
PY
echo "wrote $(wc -l < "$out") items to $out"
