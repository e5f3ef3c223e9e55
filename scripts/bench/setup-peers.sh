#!/usr/bin/env bash
# Installs the peer engines the benchmarks compare against into .venv-bench: PyTorch (CPU use;
# installed without its CUDA dependencies), transformers, gguf and llama-cpp-python (built from
# source). Only the benchmarks and the reference scripts need these; the tests do not.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -m venv .venv-bench
py=.venv-bench/bin/python
$py -m pip install -q --no-deps "torch==2.15.*"
$py -m pip install -q filelock typing-extensions sympy networkx jinja2 fsspec numpy \
  "transformers==5.24.*" gguf sentencepiece protobuf safetensors accelerate
$py -m pip install -q "llama-cpp-python==0.3.36"
$py -c "import torch, transformers, llama_cpp; print('peers ready:', torch.__version__, transformers.__version__, llama_cpp.__version__)"
