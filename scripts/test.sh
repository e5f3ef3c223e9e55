#!/usr/bin/env bash
# The test suite: installs the models the tests run on (idempotent), then runs every test.
# Tests use real models and release builds (tensor code in debug builds is far too slow).
#
# Every test runs even when one fails (--no-fail-fast). The packed kernels carry generation,
# scoring and training in one of two families, AVX-512 or AVX2+FMA, chosen by the CPU; on a CPU
# with AVX-512 a second pass runs the tests of those paths with the kernels capped at AVX2
# (VALUEDRIFT_KERNELS=avx2), as on an AVX2-only machine. Arguments are passed to the first pass;
# with arguments, or with VALUEDRIFT_KERNELS already set (the first pass ran that family), the
# second pass is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-models.sh models smollm2-135m-instruct gemma3-270m qwen2.5-coder-1.5b-instruct all-minilm-l6-v2 all-mpnet-base-v2
status=0
# Every pass is also written to a log; on failure its failure reports are printed again at the
# end, so the tail of the output (all a CI excerpt may keep) names the failing test and its panic.
log=$(mktemp -t valuedrift-test.XXXXXX)
trap 'rm -f "$log"' EXIT
cargo test --release --workspace --no-fail-fast "$@" 2>&1 | tee "$log" || status=1
if [ $# -eq 0 ] && [ -z "${VALUEDRIFT_KERNELS:-}" ] && grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
    echo "== the same paths with the kernels capped at AVX2 (VALUEDRIFT_KERNELS=avx2)"
    # --workspace keeps the first pass's feature set, so nothing is rebuilt; the targets: every
    # library's unit tests (the kernels of both families against each other), the engine's
    # generation/scoring/training tests against transformers, the trainers' parity with
    # PyTorch/TRL and the learning tests of `valuedrift train`.
    VALUEDRIFT_KERNELS=avx2 cargo test --release --workspace --no-fail-fast --lib --test engine --test parity --test train 2>&1 | tee -a "$log" || status=1
fi
if [ $status -ne 0 ]; then
    echo "== failures, repeated from above"
    # cargo's per-binary "failures:" section (each failing test's output and panic), up to its
    # "test result:" line, and the closing list of failed targets.
    awk '/^failures:$/ {on=1} on {print} /^test result:/ {on=0}
         /^error: [0-9]+ targets? failed/ {t=1; print; next} t && /^    / {print; next} {t=0}' "$log"
fi
exit $status
