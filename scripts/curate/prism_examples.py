"""Writes the example opening prompts of PRISM's published clustering (../shared/data/prism,
opening_prompt_cluster_df_original.csv: five `top_texts` per cluster) as a prompt file for
`valuedrift curate`, each labelled with PRISM's cluster description, so that a curation of these
real prompts can be compared with PRISM's clusters (rephrasing included). The outlier cluster
(-1) is left out. The prompts stay in ../shared; this writes them to OUT only.

usage: python3 scripts/curate/prism_examples.py OUT.jsonl [--shared ../shared]
"""
import argparse
import ast
import csv
import json
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--shared", default="../shared")
a = ap.parse_args()
path = Path(a.shared) / "data/prism/opening_prompt_cluster_df_original.csv"
rows = []
for line, r in enumerate(csv.DictReader(open(path, newline="")), start=2):
    if r["cluster_id"] == "-1":
        continue
    label = r["gpt_description"].strip().strip('"')
    texts = ast.literal_eval(r["top_texts"])
    if not isinstance(texts, list):
        raise SystemExit(f"{path}:{line}: top_texts is not a list")
    for k, text in enumerate(texts):
        rows.append({"id": f"prism-{r['cluster_id']}-{k}", "text": text, "label": label})
with open(a.out, "w") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")
print(f"{len(rows)} prompts from {len({r['label'] for r in rows})} PRISM clusters in {a.out}")
