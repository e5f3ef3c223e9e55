#!/usr/bin/env bash
# The main job on the built-in defaults: install the default models, build, and measure the small
# instruct model's values on the quick subset of the bundled questions (5 per category,
# 11 categories): 3 samples per question at the paper's temperature 0.7 (128 new tokens instead
# of 256, to stay within a few minutes here), judged by the default judge with its option order
# rotated, then v(T) per category with 95% intervals. Re-running resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-models.sh models smollm2-135m-instruct qwen2.5-coder-1.5b-instruct
cargo build --release
./target/release/valuedrift eval --model models/smollm2-135m-instruct.q4_1.gguf \
  --judge models/qwen2.5-coder-1.5b-instruct.q4_k_m.gguf \
  --quick --samples 3 --max-new-tokens 128 --seed 0 --out runs/quickstart
echo "samples, judgments and values: runs/quickstart/"
