//! `valuedrift bench`: throughput and peak memory of evaluation sampling and of scoring.
//! Peers (transformers, llama.cpp) are measured by scripts/bench/peers.py on the same inputs.

use crate::cli::{BenchArgs, BenchCommand, BenchGenerateArgs, BenchJudgeArgs, BenchScoreArgs, BenchServeArgs, BenchTrainArgs, DTypeArg};
use crate::jsonl;
use anyhow::{bail, Result};
use serde_json::json;
use std::time::Instant;
use valuedrift_engine::generate::{generate, Request, SamplingParams};
use valuedrift_engine::score::score;
use valuedrift_engine::Message;
use valuedrift_train::presets::Algo;

pub fn run(args: BenchArgs) -> Result<()> {
    match args.which {
        BenchCommand::Generate(a) => bench_generate(a),
        BenchCommand::Score(a) => bench_score(a),
        BenchCommand::Train(a) => bench_train(a),
        BenchCommand::Judge(a) => bench_judge(a),
        BenchCommand::Serve(a) => bench_serve(a),
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
    report(
        a.json.as_deref(),
        json!({
            "bench": "generate", "engine": "valuedrift", "model": a.model.model.display().to_string(),
            "sequences": requests.len(), "batch_size": a.batch_size, "max_new_tokens": a.max_new_tokens,
            "generated_tokens": tokens, "seconds": secs, "tokens_per_second": tokens as f64 / secs,
            "peak_rss_bytes": super::peak_rss_bytes(),
        }),
    )
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
        let lines: Vec<String> =
            pairs.iter().map(|(p, r)| serde_json::to_string(&[p.as_slice(), r.as_slice()].concat())).collect::<Result<_, _>>()?;
        std::fs::write(path, lines.join("\n") + "\n")?;
    }
    let started = Instant::now();
    score(&lm.model, &pairs, a.batch_tokens)?;
    let secs = started.elapsed().as_secs_f64();
    report(
        a.json.as_deref(),
        json!({
            "bench": "score", "engine": "valuedrift", "model": a.model.model.display().to_string(),
            "items": pairs.len(), "tokens": total, "seconds": secs, "tokens_per_second": total as f64 / secs,
            "peak_rss_bytes": super::peak_rss_bytes(),
        }),
    )
}

/// Consecutive windows of `len` tokens from the assistant answers of an SFT file.
fn token_windows(lm: &valuedrift_engine::LanguageModel, text: &std::path::Path, len: usize, count: usize) -> Result<Vec<Vec<u32>>> {
    let examples = valuedrift_data::load_sft(text, valuedrift_data::SftFormat::Auto, valuedrift_data::OnMalformed::Error)?.items;
    let answers: Vec<&str> =
        examples.iter().flat_map(|e| e.messages.iter().filter(|m| m.role == valuedrift_data::Role::Assistant).map(|m| m.content.as_str())).collect();
    let ids = lm.tokenizer.encode(&answers.join("\n\n"), false)?;
    if ids.len() < len * count {
        bail!("{}: {} tokens, fewer than the {} needed", text.display(), ids.len(), len * count);
    }
    Ok(ids.chunks(len).take(count).map(<[u32]>::to_vec).collect())
}

fn bench_train(a: BenchTrainArgs) -> Result<()> {
    use valuedrift_train::preference::{pair_logps, PreferenceLoss, PreferenceObjective};
    use valuedrift_train::sft::SftObjective;
    use valuedrift_train::tokenize::{PairTokens, SftTokens};
    use valuedrift_train::trainer::update_step;
    if a.steps == 0 {
        bail!("--steps must be at least 1: step 0 is the untimed warm-up");
    }
    let dtype = if matches!(a.dtype, DTypeArg::Bf16) { candle_core::DType::BF16 } else { candle_core::DType::F32 };
    let dev = candle_core::Device::Cpu;
    let mut lm = valuedrift_engine::LanguageModel::load(&a.model, &dev, dtype)?;
    super::set_train_matmul(&mut lm, a.matmul);
    let windows = token_windows(&lm, &a.text, a.seq_len, 3 * a.batch)?;
    let half = a.seq_len / 2;
    let pairs: Vec<PairTokens> = (0..a.batch)
        .map(|i| PairTokens {
            prompt: windows[i][..half].to_vec(),
            chosen: windows[a.batch + i][..a.seq_len - half].to_vec(),
            rejected: windows[2 * a.batch + i][..a.seq_len - half].to_vec(),
        })
        .collect();
    if let Some(path) = &a.dump_ids {
        std::fs::write(
            path,
            serde_json::to_string(&json!({"sequences": &windows[..a.batch], "pairs": pairs.iter().map(|p| json!({
            "prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected})).collect::<Vec<_>>()}))?,
        )?;
    }
    let params: Vec<candle_core::Var> = lm.model.params().iter().map(|(_, v)| v.clone()).collect();
    let mut opt = valuedrift_engine::optim::AdamW::new(params.clone(), valuedrift_engine::optim::AdamWConfig::default())?;
    let batch: Vec<usize> = (0..a.batch).collect();
    let mut times = Vec::new();
    let mut timed = |step: usize, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        let started = Instant::now();
        f()?;
        if step > 0 {
            times.push(started.elapsed().as_secs_f64());
        }
        Ok(())
    };
    match a.algo {
        Algo::Sft => {
            let data = windows[..a.batch].iter().map(|w| SftTokens { ids: w.clone(), targets: (0..w.len()).map(|j| j > 0).collect() }).collect();
            let mut objective = SftObjective { data };
            for step in 0..=a.steps {
                timed(step, &mut || {
                    update_step(&lm, &mut objective, &params, &mut opt, &batch, 1e-5, Some(1.0), usize::MAX)?;
                    Ok(())
                })?;
            }
        }
        Algo::Dpo => {
            let reference = valuedrift_engine::LanguageModel::load_for_inference(&a.model, &dev, valuedrift_engine::matmul::Precision::F32)?;
            let mut objective = PreferenceObjective { pairs, reference: None, loss: PreferenceLoss::Dpo { beta: 0.1 } };
            for step in 0..=a.steps {
                timed(step, &mut || {
                    // The peer recomputes the reference every step; so does this measurement.
                    objective.reference = Some(pair_logps(&reference.model, &objective.pairs, 4096)?);
                    update_step(&lm, &mut objective, &params, &mut opt, &batch, 1e-5, Some(1.0), usize::MAX)?;
                    Ok(())
                })?;
            }
        }
        other => bail!("bench train measures sft and dpo, not {other:?}"),
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let tokens = a.batch * a.seq_len * if matches!(a.algo, Algo::Dpo) { 2 } else { 1 };
    report(
        a.json.as_deref(),
        json!({
            "bench": "train", "engine": "valuedrift", "workload": format!("{:?}", a.algo).to_lowercase(), "dtype": format!("{:?}", a.dtype).to_lowercase(), "matmul": format!("{:?}", a.matmul).to_lowercase(),
            "batch": a.batch, "seq_len": a.seq_len, "s_per_step": median, "tok_per_s": tokens as f64 / median,
            "peak_rss_gib": super::peak_rss_bytes().map(|b| b as f64 / (1u64 << 30) as f64), "steps": times.len(),
        }),
    )
}

fn bench_judge(a: BenchJudgeArgs) -> Result<()> {
    use valuedrift_trace::judge::Item;
    let rows = jsonl::read(&a.items)?;
    let items: Vec<Item> = rows
        .iter()
        .take(a.num_items)
        .map(|r| {
            Ok(Item {
                question: r.str_field(&a.items, "question")?.to_string(),
                response: r.str_field(&a.items, "response")?.to_string(),
                topic: r.str_field(&a.items, "topic")?.to_string(),
            })
        })
        .collect::<Result<_>>()?;
    let judge = super::engines::load_judge(&a.judge.choice(), "cpu")?;
    if let Some(path) = &a.dump_ids {
        let mut lines = Vec::new();
        for item in &items {
            for ids in judge.prompt_ids(item)? {
                lines.push(serde_json::to_string(&ids)?);
            }
        }
        std::fs::write(path, lines.join("\n") + "\n")?;
    }
    let timed = |f: &dyn Fn() -> Result<()>| -> Result<f64> {
        let started = Instant::now();
        f()?;
        Ok(started.elapsed().as_secs_f64())
    };
    let cached = timed(&|| {
        judge.judge(&items)?;
        Ok(())
    })?;
    let whole = timed(&|| {
        judge.judge_uncached(&items)?;
        Ok(())
    })?;
    let prompt_tokens: usize = items.iter().map(|i| judge.prompt_ids(i).map(|p| p.iter().map(Vec::len).sum::<usize>()).unwrap_or(0)).sum();
    report(
        a.json.as_deref(),
        json!({
            "bench": "judge", "engine": "valuedrift", "model": a.judge.judge.display().to_string(), "items": items.len(),
            "orders": a.judge.orders, "prompt_tokens": prompt_tokens,
            "judgments_per_minute_prefix_cache": items.len() as f64 * 60.0 / cached,
            "judgments_per_minute_whole_prompts": items.len() as f64 * 60.0 / whole,
            "seconds_prefix_cache": cached, "seconds_whole_prompts": whole,
            "peak_rss_bytes": super::peak_rss_bytes(),
        }),
    )
}

/// One concurrency level of the serve load test.
fn serve_level(a: &BenchServeArgs, questions: &[String], concurrency: usize) -> Result<serde_json::Value> {
    use valuedrift_remote::client::{Client, EndpointOptions, Failure};
    use valuedrift_remote::wire::{chat_request, Reader, Sampling};
    let client = Client::new(EndpointOptions { urls: vec![a.url.clone()], concurrency, retries: 0, ..EndpointOptions::default() })?;
    let model = client.get("/models").ok().and_then(|(_, v)| v["data"][0]["id"].as_str().map(str::to_string)).unwrap_or_else(|| "model".into());
    let items: Vec<usize> = (0..a.requests).collect();
    let started = Instant::now();
    let (mut latencies, mut tokens) = (Vec::new(), 0u64);
    let outcome = client.run_all(
        &items,
        |&i| {
            if started.elapsed().as_secs_f64() > a.max_seconds {
                return Ok(None);
            }
            let sent = Instant::now();
            let body = chat_request(
                &model,
                &[valuedrift_engine::Message::user(&questions[i % questions.len()])],
                &Sampling { temperature: 0.7, max_tokens: a.max_tokens, seed: Some(i as u64) },
                None,
            );
            let (url, answer) = client.post("/chat/completions", &body)?;
            Ok(Some((sent.elapsed().as_secs_f64(), Reader::new(&url, &answer).completion_tokens().unwrap_or(0))))
        },
        |_, done| {
            if let Some((secs, n)) = done {
                latencies.push(secs);
                tokens += n as u64;
            }
            Ok::<(), anyhow::Error>(())
        },
    );
    match outcome {
        Err(Failure::Remote(e)) => return Err(e.into()),
        Err(Failure::Caller(e)) => return Err(e),
        Ok(()) => {}
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies.get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f64::NAN);
    eprintln!(
        "concurrency {concurrency:3}: {:4} requests, {:7.1} tokens/s, {:5.2} requests/s, latency p50 {:.2}s p90 {:.2}s p99 {:.2}s",
        latencies.len(),
        tokens as f64 / secs,
        latencies.len() as f64 / secs,
        pct(0.5),
        pct(0.9),
        pct(0.99)
    );
    Ok(json!({"concurrency": concurrency, "requests": latencies.len(), "seconds": secs, "completion_tokens": tokens,
        "tokens_per_second": tokens as f64 / secs, "requests_per_second": latencies.len() as f64 / secs,
        "latency_p50": pct(0.5), "latency_p90": pct(0.9), "latency_p99": pct(0.99)}))
}

fn bench_serve(a: BenchServeArgs) -> Result<()> {
    let questions: Vec<String> = valuedrift_trace::evalset::load_bundled()?.into_iter().map(|q| q.question).collect();
    let levels: Vec<serde_json::Value> = a.concurrency.iter().map(|&c| serve_level(&a, &questions, c)).collect::<Result<_>>()?;
    report(a.json.as_deref(), json!({"bench": "serve", "url": a.url, "max_tokens": a.max_tokens, "levels": levels}))
}
