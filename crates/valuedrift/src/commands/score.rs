//! `valuedrift score`: log-probs of responses given prompts, as DPO/SimPO count them.

use crate::cli::ScoreArgs;
use crate::jsonl;
use anyhow::{bail, Result};
use serde_json::{json, Value};
use valuedrift_engine::score::score;
use valuedrift_engine::Message;

pub fn run(args: ScoreArgs) -> Result<()> {
    let rows = jsonl::read(&args.input)?;
    if rows.is_empty() {
        bail!("{}: no pairs", args.input.display());
    }
    let lm = super::load_model(&args.model)?;
    let mut pairs = Vec::with_capacity(rows.len());
    for row in &rows {
        let prompt = row.str_field(&args.input, "prompt")?;
        let response = row.str_field(&args.input, "response")?;
        let (p, r) = if args.raw {
            (lm.encode_prompt_text(prompt)?, lm.tokenizer.encode(response, false)?)
        } else {
            // Response tokens are those the conversation adds after the prompt, end of turn included.
            let r = format!("{response}{}", lm.chat.end_of_turn());
            (lm.prompt_ids(&[Message::user(prompt)])?, lm.tokenizer.encode(&r, false)?)
        };
        pairs.push((p, r));
    }
    let scored = score(&lm.model, &pairs, args.batch_tokens)?;
    let mut out = jsonl::Appender::open(&args.output)?;
    for (row, s) in rows.iter().zip(scored) {
        let mut v = Value::Object(row.fields.clone());
        v["logp_sum"] = json!(s.sum);
        v["logp_mean"] = json!(s.mean);
        v["n_tokens"] = json!(s.token_logps.len());
        if args.per_token {
            v["token_logps"] = json!(s.token_logps);
        }
        out.write(&v)?;
    }
    eprintln!("scored {} pairs into {}", rows.len(), args.output.display());
    Ok(())
}
