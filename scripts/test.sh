#!/usr/bin/env bash
# The test suite: installs the models the tests run on (idempotent), then runs every test.
# Tests use real models and release builds (tensor code in debug builds is far too slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-models.sh models smollm2-135m-instruct gemma3-270m qwen2.5-coder-1.5b-instruct all-minilm-l6-v2 all-mpnet-base-v2
cargo test --release --workspace "$@"
