#!/usr/bin/env bash
# Runs the engine's tests on a GPU machine with the binary from scripts/cuda/build-here.sh.
# Expects the SmolLM2 GGUF in $MODELS (default /tmp/vd-models) and the TRL fixture under
# $VALUEDRIFT_SHARED/fixtures. Usage: run-on-device.sh BINARY [TEST FILTER...]
set -uo pipefail
bin=$1; shift
export VALUEDRIFT_MODELS=${MODELS:-/tmp/vd-models} VALUEDRIFT_TEST_DEVICE=cuda
export VALUEDRIFT_FIXTURES=$(cd "$(dirname "$0")/../.." && pwd)/crates/engine/tests/fixtures
# CUDA 13 libraries: the system toolkit, or the ones PyTorch's wheels bring.
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, "cu13/lib") for p in nvidia.__path__))' 2>/dev/null); do
  [ -d "$d" ] && export LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}
done
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
ldd "$bin" | grep -E "cuda|cublas|curand|nvrtc"
"$bin" --test-threads 1 "$@"
