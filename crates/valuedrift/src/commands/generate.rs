//! `valuedrift generate`: K samples per prompt, written as they finish, resumable.

use crate::cli::GenerateArgs;
use crate::{jsonl, progress};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::Path;
use valuedrift_engine::generate::{generate, Finish, Request, SamplingParams};
use valuedrift_engine::{ChatFormat, LanguageModel, Message};

/// The conversation a row asks for: `messages`, or `prompt`/`question` as one user message.
pub fn row_messages(path: &Path, row: &jsonl::Row, system: Option<&str>) -> Result<Vec<Message>> {
    let mut msgs = Vec::new();
    if let Some(s) = system {
        msgs.push(Message::new("system", s));
    }
    if let Some(m) = row.fields.get("messages") {
        let parsed: Vec<Message> = serde_json::from_value(m.clone())
            .with_context(|| format!("{}:{}: field 'messages' must be a list of {{role, content}}", path.display(), row.line))?;
        if parsed.is_empty() {
            bail!("{}:{}: field 'messages' is empty", path.display(), row.line);
        }
        msgs.extend(parsed);
    } else {
        let key = if row.fields.contains_key("prompt") {
            "prompt"
        } else if row.fields.contains_key("question") {
            "question"
        } else {
            bail!("{}:{}: missing field 'prompt' (or 'question' or 'messages')", path.display(), row.line)
        };
        msgs.push(Message::user(row.str_field(path, key)?));
    }
    Ok(msgs)
}

/// Prompt ids of one row, with the paper's base prompt when asked or when the model has no template.
pub fn prompt_ids(lm: &LanguageModel, msgs: &[Message], base_prompt: bool) -> Result<Vec<u32>> {
    if base_prompt {
        let text = ChatFormat::Base.render(msgs, true)?;
        return Ok(lm.encode_prompt_text(&text)?);
    }
    Ok(lm.prompt_ids(msgs)?)
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let rows = jsonl::read(&args.input)?;
    if rows.is_empty() {
        bail!("{}: no prompts", args.input.display());
    }
    let lm = super::load_model(&args.model)?;
    let done: HashSet<(usize, usize)> = jsonl::read_existing(&args.output)?
        .iter()
        .filter_map(|m| Some((m.get("line")?.as_u64()? as usize, m.get("sample")?.as_u64()? as usize)))
        .collect();
    let mut requests = Vec::new();
    let mut origin = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let msgs = row_messages(&args.input, row, args.system.as_deref())?;
        let ids = prompt_ids(&lm, &msgs, args.base_prompt)?;
        for k in 0..args.samples {
            if done.contains(&(row.line, k)) {
                continue;
            }
            // The seed key depends on the line and the sample only, so a resumed run draws the
            // same samples as an uninterrupted one.
            requests.push(Request { prompt: ids.clone(), seed_key: ((row.line as u64) << 20) | k as u64 });
            origin.push((i, k));
        }
    }
    let skipped = rows.len() * args.samples - requests.len();
    if skipped > 0 {
        eprintln!("resuming {}: {skipped} samples already there", args.output.display());
    }
    let params = SamplingParams { temperature: args.temperature, top_p: args.top_p, max_new_tokens: args.max_new_tokens, seed: args.seed };
    let mut out = jsonl::Appender::open(&args.output)?;
    let pb = progress::bar(requests.len() as u64, "generate");
    let started = std::time::Instant::now();
    let mut tokens = 0usize;
    generate(&lm.model, &requests, &params, &lm.stop_ids(), args.batch_size, |c| {
        let (i, k) = origin[c.request];
        let row = &rows[i];
        let mut v = Value::Object(row.fields.clone());
        v["line"] = json!(row.line);
        v["sample"] = json!(k);
        v["response"] = json!(lm.tokenizer.decode(&c.tokens, true)?);
        v["n_tokens"] = json!(c.tokens.len());
        v["finish_reason"] = json!(match c.finish {
            Finish::Stop(_) => "stop",
            Finish::Length => "length",
        });
        out.write(&v).map_err(|e| valuedrift_engine::Error::Input(e.to_string()))?;
        tokens += c.tokens.len();
        pb.set_message(format!("{:.0} tok/s", tokens as f64 / started.elapsed().as_secs_f64()));
        pb.inc(1);
        Ok(())
    })?;
    pb.finish();
    eprintln!("wrote {} samples ({tokens} tokens) to {}", requests.len(), args.output.display());
    Ok(())
}
