#!/usr/bin/env bash
# The main job on the built-in defaults: install the default models, build, and sample answers
# of the small instruct model to the quick subset of the bundled value-laden questions
# (5 per category, 3 samples each, the paper's temperature 0.7).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-models.sh models smollm2-135m-instruct
cargo build --release
mkdir -p runs/quickstart
python3 -c "
import json
rows = [json.loads(l) for l in open('data/eval/questions.jsonl')]
with open('runs/quickstart/questions.jsonl', 'w') as f:
    for r in rows:
        if r['quick']:
            f.write(json.dumps(r) + '\n')
"
./target/release/valuedrift generate --model models/smollm2-135m-instruct.q4_1.gguf \
  --input runs/quickstart/questions.jsonl --output runs/quickstart/answers.jsonl \
  --samples 3 --temperature 0.7 --max-new-tokens 128 --seed 0
echo "answers: runs/quickstart/answers.jsonl"
python3 -c "
import json
for r in list(map(json.loads, open('runs/quickstart/answers.jsonl')))[:3]:
    print('\n[' + r['category'] + '] ' + r['question'] + '\n-> ' + r['response'][:300])
"
