#!/usr/bin/env bash
# The main job on the built-in defaults: install the default models, build, and run the built-in
# experiment (experiments/builtin.toml): SmolLM2-135M-Instruct fine-tuned on each bundled SFT set,
# then DPO, SimPO and PPO on the hand-written value-gap pairs in both label setups, every
# checkpoint traced (sampled and judged by the default judge), drift computed per phase and the
# report written to runs/builtin/report/ (with audits of the three datasets). About 35 to 40 minutes on 2 cores from a fresh clone, build included; re-running resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-models.sh models smollm2-135m-instruct qwen2.5-coder-1.5b-instruct all-minilm-l6-v2
cargo build --release
./target/release/valuedrift run experiments/builtin.toml --out runs/builtin
echo "report: runs/builtin/report/report.html (and drift.md, values.csv, samples.md, plots/; dataset audits in runs/builtin/audit/)"
