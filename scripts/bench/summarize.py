"""Prints the last benchmark run of a results file (scripts/bench/compare.sh) with ratios."""
import json, sys

lines = open(sys.argv[1]).read().splitlines()
start = max(i for i, l in enumerate(lines) if l.startswith("#"))
print(lines[start])
rows = [json.loads(l) for l in lines[start + 1:] if l.strip()]
gib = lambda b: f"{b / 2**30:.2f} GiB" if b else "?"
for bench in ("generate", "score"):
    rs = [r for r in rows if r["bench"] == bench]
    peers = [r for r in rs if r["engine"] != "valuedrift"]
    if not peers:
        continue
    best = max(peers, key=lambda r: r["tokens_per_second"])
    print(f"\n{bench}: best peer {best['engine']} (batch {best.get('batch_size', '-')}) {best['tokens_per_second']:.1f} tok/s")
    for r in rs:
        label = f"{r['engine']} {r.get('matmul', '')} batch={r.get('batch_size', '-')}".strip()
        print(f"  {label:32} {r['tokens_per_second']:8.1f} tok/s  x{r['tokens_per_second'] / best['tokens_per_second']:.2f}"
              f"  peak {gib(r.get('peak_rss_bytes'))}  ({r.get('generated_tokens', r.get('tokens'))} tokens, {r['seconds']:.1f} s)")
