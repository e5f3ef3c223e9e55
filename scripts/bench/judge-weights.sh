#!/usr/bin/env bash
# The judge at each weight precision (f32, bf16, q8), back to back on this machine: judgments per
# minute, peak memory, accuracy on labelled items, and how far each precision's probabilities
# move from the f32 judge's on the same items (mean and largest absolute difference, and how
# often the top stance changes). Items: every EVERY-th line of each SETS file (default: a fifth
# of the hand-written labelled set and half of the real samples' set).
# PEER_BIN=path: also run that valuedrift binary (say, an earlier commit's build) with its
# default judge settings on the same items, as the row "peer", for a same-run comparison.
# Appends JSON lines to $OUT (default runs/bench/judge-weights.jsonl) and prints a table.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/bench/judge-weights.jsonl}
SETS=${SETS:-"data/judge/labelled.jsonl:5 data/judge/real-samples.jsonl:2"}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$(dirname "$OUT")"
cargo build --release -q
VD=./target/release/valuedrift
for spec in $SETS; do
  awk -v every="${spec##*:}" '(NR - 1) % every == 0' "${spec%%:*}" >> "$WORK/items.jsonl"
done
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) nproc=$(nproc) commit=$(git rev-parse --short HEAD) items=$(wc -l < "$WORK/items.jsonl") ($SETS)" >> "$OUT"
ROWS="f32 bf16 q8"
if [ -n "${PEER_BIN:-}" ]; then
  ROWS="$ROWS peer"
  echo "# peer: $PEER_BIN ($("$PEER_BIN" --version 2>/dev/null || echo unknown version)), its default judge" >> "$OUT"
fi
for mm in $ROWS; do
  case $mm in
    peer) cmd=("$PEER_BIN" judge) ;;
    *) cmd=("$VD" judge --matmul "$mm") ;;
  esac
  /usr/bin/time -f "peak_kb %M" "${cmd[@]}" --input "$WORK/items.jsonl" --output "$WORK/$mm.jsonl" 2> "$WORK/$mm.log"
  grep -E '^loaded|judgments in' "$WORK/$mm.log"
done
python3 - "$WORK" "$OUT" $ROWS <<'PY'
import json, re, sys
work, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
read = lambda p: [json.loads(l) for l in open(p) if l.strip()]
stances = ("support", "neutral", "oppose")
probs = lambda r: [r[f"p_{s}"] for s in stances]
top = lambda r: max(stances, key=lambda s: r[f"p_{s}"])
ref = read(f"{work}/f32.jsonl")
rows = []
for mm in names:
    got, log = read(f"{work}/{mm}.jsonl"), open(f"{work}/{mm}.log").read()
    assert len(got) == len(ref) and all(a["id"] == b["id"] for a, b in zip(got, ref)), "items out of step"
    diffs = [abs(x - y) for a, b in zip(got, ref) for x, y in zip(probs(a), probs(b))]
    row = {
        "bench": "judge-weights", "matmul": mm, "items": len(got),
        "judgments_per_minute": float(re.search(r"\(([\d.]+) per minute", log).group(1)),
        "peak_rss_gib": int(re.search(r"peak_kb (\d+)", log).group(1)) * 1024 / 2**30,
        "weights_gb": float(re.search(r"([\d.]+) GB of weights", log).group(1)),
        "accuracy": sum(top(r) == r["label"] for r in got) / len(got),
        "mean_abs_diff_vs_f32": sum(diffs) / len(diffs), "max_abs_diff_vs_f32": max(diffs),
        "top_stance_changed_vs_f32": sum(top(a) != top(b) for a, b in zip(got, ref)),
    }
    rows.append(row)
    print(json.dumps(row), file=open(out, "a"))
f32 = rows[0]
peer = next((r for r in rows if r["matmul"] == "peer"), None)
for r in rows:
    vs_peer = f", x{r['judgments_per_minute'] / peer['judgments_per_minute']:.2f} vs peer" if peer else ""
    print(f"{r['matmul']:5} {r['judgments_per_minute']:6.1f}/min (x{r['judgments_per_minute'] / f32['judgments_per_minute']:.2f} vs f32{vs_peer})"
          f"  peak {r['peak_rss_gib']:.2f} GiB ({r['peak_rss_gib'] * 2**30 / 1e9:.2f} GB)"
          f"  weights {r['weights_gb']:.2f} GB  accuracy {r['accuracy']:.3f}  |dp| vs f32 mean {r['mean_abs_diff_vs_f32']:.4f} max {r['max_abs_diff_vs_f32']:.4f}"
          f"  top stance changed {r['top_stance_changed_vs_f32']}/{r['items']}")
PY
