#!/usr/bin/env bash
# Phases trained by TRL through recipes/trl/train.py, for real, on this CPU (docs/scale.md):
#   1. the loss TRL logs equals what valuedrift's own trainer computes on the same batch
#      (SFT at steps 1 and 2, within 1e-3; SimPO at step 1 shown);
#   2. scripts/integration/trl-cpu.toml: SFT, DPO, SimPO, a reward model and PPO on SmolLM2-135M,
#      a few updates each; the SFT trainer is killed after its first checkpoint and the re-run
#      resumes it from there; every checkpoint is traced and the report written.
# Installs torch (CPU), transformers and TRL into .venv-trl (pinned in recipes/trl/requirements.txt).
# Not part of scripts/test.sh: it takes about 10 minutes on a 2-core CPU, plus the install.
set -euo pipefail
cd "$(dirname "$0")/../.."
fail() { echo "trl.sh: FAILED: $*" >&2; exit 1; }

if ! .venv-trl/bin/python -c "import trl" 2>/dev/null; then
  python3 -m venv .venv-trl
  # The CPU run needs none of torch's CUDA wheels.
  .venv-trl/bin/pip install -q --no-deps "$(grep '^torch==' recipes/trl/requirements.txt)"
  .venv-trl/bin/pip install -q filelock typing-extensions sympy networkx jinja2 fsspec numpy safetensors \
    $(grep -v -e '^#' -e '^torch==' recipes/trl/requirements.txt)
fi
bash scripts/install-models.sh models smollm2-135m-instruct qwen2.5-coder-1.5b-instruct
cargo build --release -q
vd=target/release/valuedrift
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== 1. loss at the first updates: valuedrift's trainer and TRL on the same batch"
head -n 4 data/sft/supportive.jsonl > "$work/sft4.jsonl"
head -n 4 data/valuegap/handwritten.jsonl > "$work/pairs4.jsonl"
{
  echo 'name = "trl-loss"'
  echo 'base = "models/smollm2-135m-instruct.q4_1.gguf"'
  echo '[trainer.trl]'
  echo 'command = ".venv-trl/bin/python recipes/trl/train.py {config} --micro-batch 2 --threads 2"'
  for trainer in builtin trl; do
    echo "[[phase]]"
    echo "name = \"sft-$trainer\"; algo = \"sft\"; trainer = \"$trainer\"; data = \"$work/sft4.jsonl\""
    echo 'hyper = { lr = 1e-4, global_batch = 4, max_steps = 2, max_len = 256, warmup_ratio = 0.0 }'
    echo "[[phase]]"
    echo "name = \"simpo-$trainer\"; algo = \"simpo\"; trainer = \"$trainer\"; data = \"$work/pairs4.jsonl\"; label_setup = \"support\""
    echo 'hyper = { lr = 2e-5, global_batch = 4, max_steps = 1, max_len = 256, warmup_ratio = 0.0 }'
  done
} | sed 's/; /\n/g' > "$work/loss.toml"
$vd run "$work/loss.toml" --out "$work/loss" --train-only
python3 scripts/integration/compare_trl_losses.py "$work/loss" sft:1 sft:2 || fail "SFT losses differ"
# SimPO is shown, not asserted: TRL's CPO trainer counts one more token per answer (it appends EOS
# after the chat template's own end of turn), which moves the length-normalized loss by ~1e-3.
python3 scripts/integration/compare_trl_losses.py --report "$work/loss" simpo:1

echo "== 2. every phase through TRL, traced; the SFT trainer killed and resumed"
out=$work/run
setsid $vd run scripts/integration/trl-cpu.toml --out "$out" > "$work/first.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  [ -f "$out/sft/checkpoint-2/trainer_state.json" ] && break
  kill -0 $pid 2>/dev/null || { tail -30 "$work/first.log"; fail "the run ended before the first checkpoint"; }
  sleep 1
done
[ -f "$out/sft/checkpoint-2/trainer_state.json" ] || fail "no checkpoint-2 after 10 minutes"
kill -- -$pid
wait $pid || true
[ ! -f "$out/sft/trainer_state.json" ] || fail "SFT finished before it could be killed"
$vd run scripts/integration/trl-cpu.toml --out "$out"
grep -q "resuming from .*checkpoint-2" "$out/sft/trainer.log" || fail "the re-run did not resume SFT from checkpoint-2"
python3 - "$out" <<'EOF' || fail "checkpoints missing from the store"
import sqlite3, sys
db = sqlite3.connect(f"{sys.argv[1]}/trace.sqlite")
traced = {}
for phase, step, n in db.execute(
        "SELECT c.phase, c.step, COUNT(j.sample) FROM checkpoints c JOIN judgments j ON j.run = c.run AND j.checkpoint = c.id "
        "GROUP BY c.run, c.id"):
    traced.setdefault(phase, []).append((step, n))
expected = {"sft": [0, 2, 4], "dpo": [0, 1, 2], "simpo": [0, 1, 2], "ppo": [0, 1, 2]}
for phase, steps in expected.items():
    got = sorted(traced.get(phase, []))
    print(f"{phase}: traced steps {[s for s, _ in got]}, judgments {[n for _, n in got]}")
    assert [s for s, _ in got] == steps and all(n > 0 for _, n in got), f"{phase}: expected steps {steps}"
EOF
[ -s "$out/report/report.html" ] && [ -s "$out/report/drift.csv" ] || fail "no report"
echo "trl.sh: passed"
