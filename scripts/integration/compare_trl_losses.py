#!/usr/bin/env python3
"""Compares the training loss valuedrift's own trainer logged with the one TRL logged, phase by
phase, at the given steps: `ALGO-builtin` against `ALGO-trl` in an experiment output directory.

Usage: compare_trl_losses.py [--report] RUN_DIR ALGO:STEP [ALGO:STEP ...]
Exit 1 if any differs by more than 1e-3, unless --report (print only).
"""
import glob
import json
import os
import sys

TOLERANCE = 1e-3


def losses(phase_dir):
    """step -> loss from the phase's final trainer_state.json (else its newest checkpoint's)."""
    path = os.path.join(phase_dir, "trainer_state.json")
    if not os.path.exists(path):
        path = max(glob.glob(os.path.join(phase_dir, "checkpoint-*", "trainer_state.json")),
                   key=lambda p: int(p.split("checkpoint-")[-1].split(os.sep)[0]))
    with open(path) as f:
        history = json.load(f)["log_history"]
    return {h["step"]: h["loss"] for h in history if "loss" in h}


def main():
    args = sys.argv[1:]
    report_only = args[0] == "--report"
    if report_only:
        args = args[1:]
    run, checks = args[0], args[1:]
    worst = 0.0
    for check in checks:
        algo, step = check.split(":")
        ours = losses(os.path.join(run, f"{algo}-builtin"))[int(step)]
        trl = losses(os.path.join(run, f"{algo}-trl"))[int(step)]
        worst = max(worst, abs(ours - trl))
        print(f"{algo} step {step}: valuedrift {ours:.6f}, TRL {trl:.6f}, |difference| {abs(ours - trl):.2e}")
    if worst > TOLERANCE and not report_only:
        print(f"largest difference {worst:.2e} > {TOLERANCE}")
        sys.exit(1)


if __name__ == "__main__":
    main()
