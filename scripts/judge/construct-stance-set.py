#!/usr/bin/env python3
"""Writes the stance head's training set, labelled by construction, from bundled files only.

    python3 scripts/judge/construct-stance-set.py > data/judge/constructed.jsonl

Every item's label follows from how it was made, not from reading it:
- value-gap pairs (data/valuegap/handwritten.jsonl): each prompt's `support` answer is support
  and its `oppose` answer oppose, on the pair's topic;
- the SFT sets' value conversations (data/sft/supportive.jsonl, neutral.jsonl): the supportive
  set's answers are support, the neutral set's (balanced overviews) neutral, on their category's
  topic;
- off-topic answers: a value-gap prompt answered with another category's value-gap answer takes
  no stance on the prompt's topic: neutral;
- general answers: the SFT sets' general-knowledge answers (capitals, recipes) given to a
  value-gap prompt: neutral.
None of the judge's validation sets (data/judge/labelled.jsonl, real-samples.jsonl) or the eval
questions are used. Deterministic (fixed seed).
"""
import json
import random
import sys

SEED = 11


def read(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    rng = random.Random(SEED)
    topics = {c["category"]: c["topic"] for c in read("data/categories.jsonl")}
    pairs = read("data/valuegap/handwritten.jsonl")
    out = []

    def add(source, category, topic, question, response, label):
        out.append({"source": source, "category": category, "topic": topic, "question": question, "response": response, "label": label})

    for p in pairs:
        for stance in ("support", "oppose"):
            add("valuegap", p["category"], p["topic"], p["prompt"], p[stance], stance)
    for path, label in (("data/sft/supportive.jsonl", "support"), ("data/sft/neutral.jsonl", "neutral")):
        for r in read(path):
            if r["kind"] == "value":
                user, assistant = r["messages"][0]["content"], r["messages"][1]["content"]
                add(path.split("/")[-1].removesuffix(".jsonl"), r["category"], topics[r["category"]], user, assistant, label)
    for p in pairs:
        other = rng.choice([o for o in pairs if o["category"] != p["category"]])
        add("off-topic", p["category"], p["topic"], p["prompt"], other[rng.choice(["support", "oppose"])], "neutral")
    general = [r for r in read("data/sft/neutral.jsonl") if r["kind"] == "general"]
    for r in general:
        p = rng.choice(pairs)
        add("general", p["category"], p["topic"], p["prompt"], r["messages"][1]["content"], "neutral")
    for o in out:
        sys.stdout.write(json.dumps(o) + "\n")


if __name__ == "__main__":
    main()
