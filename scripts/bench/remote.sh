#!/usr/bin/env bash
# Remote-engine benchmarks on loopback (docs/benchmarks.md, "Remote engines"):
#  1. load test of `valuedrift serve` at concurrency 1..32 (throughput, latency percentiles);
#  2. overhead: the same trace on the local engine and through `valuedrift serve` (generator and
#     judge), back to back, ROUNDS times each, alternating.
# Usage: bash scripts/bench/remote.sh   (after cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/release/valuedrift}
MODEL=${MODEL:-models/smollm2-135m-instruct.q4_1.gguf}
ROUNDS=${ROUNDS:-2}
WORK=$(mktemp -d /tmp/valuedrift-bench-remote.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" serve --model "$MODEL" --port "$PORT" --matmul f32 2>"$WORK/serve.log" &
SERVER=$!
trap 'rm -rf "$WORK"; kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; do sleep 0.2; done
URL="http://127.0.0.1:$PORT/v1"

echo "== load test: $BIN bench serve --url $URL"
"$BIN" bench serve --url "$URL" --concurrency 1,2,4,8,16,32 --requests 32 --max-tokens 64 --json "$WORK/load.json" >/dev/null

TRACE=(trace "base=$MODEL@0" --categories immigration,death_penalty,abortion --per-category 4 --samples 5
       --max-new-tokens 64 --seed 1 --judge "$MODEL" --orders 3 --judge-matmul f32 --matmul f32)
seconds() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>"$WORK/last.log" || { cat "$WORK/last.log"; exit 1; }; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
echo "== overhead: ${TRACE[*]}"
for r in $(seq "$ROUNDS"); do
  l=$(seconds "$BIN" "${TRACE[@]}" --out "$WORK/local-$r")
  m=$(seconds "$BIN" "${TRACE[@]}" --out "$WORK/remote-$r" --generator-engine "$URL" --judge-engine "$URL")
  echo "round $r: local $l s, through serve $m s, ratio $(echo "scale=3; $m / $l" | bc)"
done
