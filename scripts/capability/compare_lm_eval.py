#!/usr/bin/env python3
"""Compares lm-eval's per-item log-likelihoods (its --log_samples output) with `valuedrift
capability` items.jsonl and with the transformers reference fixture; exits 1 on a disagreement.

Usage: compare_lm_eval.py LM_EVAL_OUTPUT_DIR ITEMS.jsonl REFERENCE.json
"""
import glob
import json
import sys

TASKS = {"vd_mmlu": "mmlu/general_knowledge", "vd_arc": "arc", "vd_hellaswag": "hellaswag", "vd_piqa": "piqa"}
TOL = 5e-4


def lm_eval_samples(out_dir, task):
    files = glob.glob(f"{out_dir}/**/samples_{task}_*.jsonl", recursive=True)
    assert files, f"no samples for {task} under {out_dir}"
    rows = [json.loads(l) for l in open(sorted(files)[-1])]
    return sorted(rows, key=lambda r: r["doc_id"])


def main():
    out_dir, items_path, ref_path = sys.argv[1:4]
    ours = {}
    for line in open(items_path):
        r = json.loads(line)
        ours.setdefault(r["task"], []).append(r)
    ref = json.load(open(ref_path))["zero_shot"]
    failures, n = 0, 0
    for task, our_task in TASKS.items():
        served = lm_eval_samples(out_dir, task)
        worst_ours = worst_ref = 0.0
        acc_served = acc_ours = 0
        for s, o, t in zip(served, ours[our_task], ref[task]["items"]):
            lls = [float(r[0]) for r in s["filtered_resps"]]
            worst_ours = max(worst_ours, *(abs(a - b) for a, b in zip(lls, o["logliks"])))
            worst_ref = max(worst_ref, *(abs(a - b) for a, b in zip(lls, t["logliks"])))
            acc_served += int(s["acc"])
            acc_ours += int(max(range(len(o["logliks"])), key=lambda i: (o["logliks"][i], -i)) == o["gold"])
            n += 1
        ok = worst_ours <= TOL and worst_ref <= TOL and acc_served == acc_ours and len(served) == len(ours[our_task]) > 0
        failures += not ok
        print(f"{task}: {len(served)} items; lm-eval via serve vs capability max |dll| {worst_ours:.2e}, "
              f"vs transformers {worst_ref:.2e}; acc {acc_served}/{len(served)} vs {acc_ours}/{len(served)} {'ok' if ok else 'DIFFERENT'}")
    print(f"{n} items compared; {'all agree' if failures == 0 else f'{failures} task(s) disagree'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
