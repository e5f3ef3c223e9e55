"""Loads Hugging Face directories written by `valuedrift export` with transformers and compares
their tokenizer ids and logits with the fixtures transformers computed from the original GGUF
files (crates/engine/tests/fixtures/reference/*.json). Writes the figures to
crates/engine/tests/fixtures/reference/saved-dirs-transformers.json.
Usage: python scripts/reference/check_saved_dirs.py smollm2=/tmp/export/smollm2... gemma3=... qwen2=..."""
import json, sys, torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

torch.set_num_threads(2)
results = {"torch": torch.__version__, "transformers": transformers.__version__, "models": {}}
for arg in sys.argv[1:]:
    name, path = arg.split("=", 1)
    fx = json.load(open(f"crates/engine/tests/fixtures/reference/{name}.json"))
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()
    tok_ok = sum(tok(c["text"], add_special_tokens=True)["input_ids"] == c["ids"] for c in fx["tokenizer"])
    worst, argmax_ok, positions = 0.0, 0, 0
    for case in fx["logits"]:
        with torch.no_grad():
            logits = model(torch.tensor([case["input_ids"]])).logits[0]
        probe = case["probe"]
        for p in range(logits.shape[0]):
            positions += 1
            argmax_ok += int(logits[p].argmax()) == case["argmax"][p]
            got = logits[p, probe["probe_ids"]]
            worst = max(worst, float((got - torch.tensor(probe["probe_logits"][p])).abs().max()))
    results["models"][name] = {"dir": path, "architectures": model.config.architectures,
                               "tokenizer_strings_matching": f"{tok_ok}/{len(fx['tokenizer'])}",
                               "argmax_matching": f"{argmax_ok}/{positions}", "max_abs_logit_diff": worst}
    print(name, results["models"][name], flush=True)
    del model
json.dump(results, open("crates/engine/tests/fixtures/reference/saved-dirs-transformers.json", "w"), indent=1)
