#!/usr/bin/env bash
# Builds the engine's test binary with --features cuda on a machine without a GPU or a CUDA
# installation, from NVIDIA's PyPI wheels (CUDA 13.0: nvcc, nvvm, runtime, cublas, curand, nvrtc,
# cccl). The driver library is only needed at run time; a stub with the driver's soname and the
# symbols the binary uses stands in for it at link time. Output: target-cuda/engine-tests, or
# with `bin` the valuedrift binary itself: target-cuda/valuedrift.
# Usage: scripts/cuda/build-here.sh [COMPUTE_CAP] [tests|bin] (default 90, Hopper; tests)
set -euo pipefail
cd "$(dirname "$0")/../.."
cap=${1:-90}
what=${2:-tests}
root=${CUDA_WHEELS_DIR:-/tmp/valuedrift-cuda}
tk=$root/nvidia/cu13
if [ ! -x "$tk/bin/nvcc" ]; then
  mkdir -p "$root/wheels"
  python3 -m pip download -q --no-deps -d "$root/wheels" "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-runtime==13.0.*" \
    "nvidia-cuda-nvrtc==13.0.*" "nvidia-cuda-crt==13.0.*" "nvidia-curand==10.4.0.*" "nvidia-cublas==13.0.*" \
    "nvidia-nvvm==13.0.*" "nvidia-cuda-cccl==13.0.*"
  for w in "$root"/wheels/*.whl; do python3 -m zipfile -e "$w" "$root"; done
  chmod +x "$tk"/bin/* "$tk"/nvvm/bin/*
  # The layout nvcc.profile expects: lib64 and targets/x86_64-linux beside bin.
  ln -sfn lib "$tk/lib64"; mkdir -p "$tk/targets"; ln -sfn .. "$tk/targets/x86_64-linux"
  (cd "$tk/lib" && for l in cublas cublasLt cudart nvrtc; do ln -sf lib$l.so.13 lib$l.so; done && ln -sf libcurand.so.10 libcurand.so)
fi
export CUDA_HOME=$tk CUDA_PATH=$tk CUDA_ROOT=$tk PATH=$tk/bin:$PATH CUDA_COMPUTE_CAP=$cap
stub=$tk/lib/stubs
mkdir -p "$stub"
build() {
  if [ "$what" = bin ]; then
    cargo build --release -p valuedrift --features cuda --target-dir target-cuda 2>&1
  else
    cargo test --release -p valuedrift-engine --features cuda --target-dir target-cuda --no-run --test engine 2>&1
  fi
}
if [ ! -f "$stub/libcuda.so" ]; then
  # Every driver entry point cudarc declares, as empty functions: enough for the linker.
  cargo fetch -q
  sys=$(ls -d "$HOME"/.cargo/registry/src/*/cudarc-*/src/driver/sys/mod.rs | tail -1)
  grep -oE "pub unsafe fn cu[A-Za-z0-9_]+" "$sys" | sed 's/pub unsafe fn //' | sort -u \
    | awk '{print "void " $1 "(void) {}"}' > "$stub/libcuda-stub.c"
  echo "driver symbols in stub: $(wc -l < "$stub/libcuda-stub.c")"
  gcc -shared -o "$stub/libcuda.so" -Wl,-soname,libcuda.so.1 "$stub/libcuda-stub.c"
fi
export LIBRARY_PATH=$stub:$tk/lib
build | tail -5
if [ "$what" = bin ]; then
  cp target-cuda/release/valuedrift target-cuda/valuedrift && strip target-cuda/valuedrift
  ls -la target-cuda/valuedrift
else
  bin=$(ls -t target-cuda/release/deps/engine-* | grep -v '\.d$' | head -1)
  cp "$bin" target-cuda/engine-tests && strip target-cuda/engine-tests
  ls -la target-cuda/engine-tests
fi
