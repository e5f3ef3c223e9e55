//! `valuedrift bench`: throughput and peak memory of evaluation sampling and of scoring.
//! Peers (transformers, llama.cpp) are measured by scripts/bench/peers.py on the same inputs.

use crate::cli::{BenchArgs, BenchCommand, BenchGenerateArgs, BenchScoreArgs};
use crate::jsonl;
use anyhow::{bail, Result};
use serde_json::json;
use std::time::Instant;
use valuedrift_engine::generate::{generate, Request, SamplingParams};
use valuedrift_engine::score::score;
use valuedrift_engine::Message;

pub fn run(args: BenchArgs) -> Result<()> {
    match args.which {
        BenchCommand::Generate(a) => bench_generate(a),
        BenchCommand::Score(a) => bench_score(a),
    }
}

fn report(json_path: Option<&std::path::Path>, v: serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(&v)?);
    if let Some(p) = json_path {
        std::fs::write(p, serde_json::to_string_pretty(&v)?)?;
    }
    Ok(())
}

fn bench_generate(a: BenchGenerateArgs) -> Result<()> {
    let rows = jsonl::read(&a.questions)?;
    if rows.is_empty() {
        bail!("{}: no questions", a.questions.display());
    }
    let lm = super::load_model(&a.model)?;
    let mut requests = Vec::new();
    for (i, row) in rows.iter().take(a.num_questions).enumerate() {
        let msgs = super::generate::row_messages(&a.questions, row, None)?;
        let ids = lm.prompt_ids(&msgs)?;
        for k in 0..a.samples {
            requests.push(Request { prompt: ids.clone(), seed_key: ((i as u64) << 20) | k as u64 });
        }
    }
    let params = SamplingParams { temperature: 0.7, top_p: 1.0, max_new_tokens: a.max_new_tokens, seed: 0 };
    let started = Instant::now();
    let mut tokens = 0usize;
    generate(&lm.model, &requests, &params, &lm.stop_ids(), a.batch_size, |c| {
        tokens += c.tokens.len() + matches!(c.finish, valuedrift_engine::generate::Finish::Stop(_)) as usize;
        Ok(())
    })?;
    let secs = started.elapsed().as_secs_f64();
    report(a.json.as_deref(), json!({
        "bench": "generate", "engine": "valuedrift", "model": a.model.model.display().to_string(),
        "sequences": requests.len(), "batch_size": a.batch_size, "max_new_tokens": a.max_new_tokens,
        "generated_tokens": tokens, "seconds": secs, "tokens_per_second": tokens as f64 / secs,
        "peak_rss_bytes": super::peak_rss_bytes(),
    }))
}

fn bench_score(a: BenchScoreArgs) -> Result<()> {
    let rows = jsonl::read(&a.items)?;
    let lm = super::load_model(&a.model)?;
    let mut pairs = Vec::new();
    for row in rows.iter().take(a.num_items) {
        let q = row.str_field(&a.items, "question").or_else(|_| row.str_field(&a.items, "prompt"))?;
        let r = row.str_field(&a.items, "response")?;
        pairs.push((lm.prompt_ids(&[Message::user(q)])?, lm.tokenizer.encode(r, false)?));
    }
    let total: usize = pairs.iter().map(|(p, r)| p.len() + r.len()).sum();
    if let Some(path) = &a.dump_ids {
        let lines: Vec<String> = pairs.iter().map(|(p, r)| serde_json::to_string(&[p.as_slice(), r.as_slice()].concat())).collect::<Result<_, _>>()?;
        std::fs::write(path, lines.join("\n") + "\n")?;
    }
    let started = Instant::now();
    score(&lm.model, &pairs, a.batch_tokens)?;
    let secs = started.elapsed().as_secs_f64();
    report(a.json.as_deref(), json!({
        "bench": "score", "engine": "valuedrift", "model": a.model.model.display().to_string(),
        "items": pairs.len(), "tokens": total, "seconds": secs, "tokens_per_second": total as f64 / secs,
        "peak_rss_bytes": super::peak_rss_bytes(),
    }))
}
