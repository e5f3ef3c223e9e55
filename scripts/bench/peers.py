"""Peer engines for `valuedrift bench`, measured on the same inputs: transformers `generate`
(fp32, the GGUF dequantized) and llama.cpp (llama-cpp-python) prompt processing.

Usage (from the repository root, with a Python that has torch, transformers, gguf and
llama-cpp-python; scripts/bench/setup-peers.sh installs them into .venv-bench):
  python scripts/bench/peers.py generate --model models/smollm2-135m-instruct.q4_1.gguf \
      --num-questions 64 --samples 5 --max-new-tokens 256 --batch-sizes 8,32,64
  python scripts/bench/peers.py score --model models/qwen2.5-coder-1.5b-instruct.q4_k_m.gguf --num-items 64
Prints one JSON object per measurement."""
import argparse, json, os, resource, sys, time


def questions(path, n):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    return [r.get("question") or r.get("prompt") for r in rows[:n]]


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def transformers_generate(a):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(a.threads)
    d, f = os.path.split(os.path.abspath(a.model))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32).eval()
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
               for q in questions(a.questions, a.num_questions)]
    seqs = [p for p in prompts for _ in range(a.samples)]
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    for bs in [int(x) for x in a.batch_sizes.split(",")]:
        torch.manual_seed(0)
        tokens, started = 0, time.time()
        for i in range(0, len(seqs), bs):
            enc = tok(seqs[i:i + bs], return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                out = model.generate(**enc, do_sample=True, temperature=0.7, top_p=1.0,
                                     max_new_tokens=a.max_new_tokens, pad_token_id=tok.pad_token_id)
            for row in out[:, enc["input_ids"].shape[1]:].tolist():
                n = 0
                for t in row:
                    n += 1
                    if t in eos:
                        break
                tokens += n
        secs = time.time() - started
        print(json.dumps({"bench": "generate", "engine": "transformers", "torch": torch.__version__,
                          "sequences": len(seqs), "batch_size": bs, "max_new_tokens": a.max_new_tokens,
                          "generated_tokens": tokens, "seconds": secs, "tokens_per_second": tokens / secs,
                          "peak_rss_bytes": peak_rss_bytes()}), flush=True)


def llamacpp_generate(a):
    from llama_cpp import Llama
    llm = Llama(model_path=a.model, n_ctx=2048, n_threads=a.threads, verbose=False, seed=0)
    qs = questions(a.questions, a.num_questions)
    tokens, started = 0, time.time()
    for q in qs:
        for _ in range(a.samples):
            out = llm.create_chat_completion([{"role": "user", "content": q}], temperature=0.7, top_p=1.0,
                                             max_tokens=a.max_new_tokens)
            tokens += out["usage"]["completion_tokens"]
    secs = time.time() - started
    print(json.dumps({"bench": "generate", "engine": "llama.cpp", "sequences": len(qs) * a.samples, "batch_size": 1,
                      "max_new_tokens": a.max_new_tokens, "generated_tokens": tokens, "seconds": secs,
                      "tokens_per_second": tokens / secs, "peak_rss_bytes": peak_rss_bytes()}), flush=True)


def score_items(a, tokenize):
    rows = [json.loads(l) for l in open(a.items) if l.strip()][:a.num_items]
    return [tokenize(r.get("question") or r.get("prompt"), r["response"]) for r in rows]


def llamacpp_score(a):
    from llama_cpp import Llama
    llm = Llama(model_path=a.model, n_ctx=2048, n_batch=512, n_threads=a.threads, verbose=False)
    def tokenize(q, r):
        text = f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n{r}"
        return llm.tokenize(text.encode(), add_bos=False, special=True)
    # The very ids valuedrift scored (`valuedrift bench score --dump-ids`), when given.
    items = [json.loads(l) for l in open(a.ids)] if a.ids else score_items(a, tokenize)
    total, started = 0, time.time()
    for ids in items:
        llm.reset()
        llm.eval(ids)
        total += len(ids)
    secs = time.time() - started
    print(json.dumps({"bench": "score", "engine": "llama.cpp", "items": len(items), "tokens": total,
                      "seconds": secs, "tokens_per_second": total / secs, "peak_rss_bytes": peak_rss_bytes()}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["generate", "score"])
    p.add_argument("--model", required=True)
    p.add_argument("--engine", default="transformers", choices=["transformers", "llama.cpp"])
    p.add_argument("--questions", default="data/eval/questions.jsonl")
    p.add_argument("--items", default="data/judge/labelled.jsonl")
    p.add_argument("--num-questions", type=int, default=256)
    p.add_argument("--num-items", type=int, default=64)
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--batch-sizes", default="8,32,64")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ids", help="JSONL of token id lists to score (from valuedrift bench score --dump-ids)")
    a = p.parse_args()
    if a.what == "generate":
        (transformers_generate if a.engine == "transformers" else llamacpp_generate)(a)
    else:
        llamacpp_score(a)


if __name__ == "__main__":
    sys.exit(main())
