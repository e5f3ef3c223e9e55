//! Answers in the OpenAI layouts: chat completions (log-probs as `content` entries) and legacy
//! completions (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`).

use super::request::ApiError;
use super::sampled::{Choice, Prepared, TokenLogprob};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use valuedrift_engine::LanguageModel;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A token's text as the tokenizer writes it (special tokens included).
fn piece(lm: &LanguageModel, id: u32) -> String {
    lm.tokenizer.decode(&[id], false).unwrap_or_default()
}

/// The decoded text, cut at the first stop string; whether it was cut.
fn cut_at_stop(text: String, stops: &[String]) -> (String, bool) {
    match stops.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min() {
        Some(at) => (text[..at].to_string(), true),
        None => (text, false),
    }
}

pub fn render(lm: &LanguageModel, model: &str, p: &Prepared, choices: Vec<Choice>, echoes: Option<Vec<Vec<Option<TokenLogprob>>>>) -> Value {
    let prompt_tokens: usize = p.ids.iter().map(Vec::len).sum();
    // A one-token answer that hit a stop token reports that token's log-probs (the judge's top
    // list); counting it keeps usage.completion_tokens equal to the generated tokens an echo ends with.
    let completion_tokens: usize = choices.iter().map(|c| c.logprobs.as_ref().map_or(c.tokens.len(), |l| l.len().max(c.tokens.len()))).sum();
    let rendered: Vec<Value> = choices
        .into_iter()
        .map(|c| {
            let (text, cut) = cut_at_stop(lm.tokenizer.decode(&c.tokens, true).unwrap_or_default(), &p.parsed.stop);
            let finish = if cut { "stop" } else { c.finish };
            if p.parsed.chat {
                json!({"index": c.index, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                   "logprobs": c.logprobs.as_ref().map(|l| chat_logprobs(lm, l))})
            } else {
                let echo = echoes.as_ref().map(|e| (&p.ids[c.prompt], &e[c.prompt]));
                completion_choice(lm, &c, text, finish, echo)
            }
        })
        .collect();
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    json!({
        "id": format!("{}-{id}", if p.parsed.chat { "chatcmpl" } else { "cmpl" }),
        "object": if p.parsed.chat { "chat.completion" } else { "text_completion" },
        "created": now(), "model": model, "choices": rendered,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
    })
}

fn chat_entry(lm: &LanguageModel, id: u32, logprob: f32) -> Value {
    let text = piece(lm, id);
    json!({"token": text, "logprob": logprob, "bytes": text.as_bytes()})
}

fn chat_logprobs(lm: &LanguageModel, tokens: &[TokenLogprob]) -> Value {
    let content: Vec<Value> = tokens
        .iter()
        .map(|t| {
            let mut e = chat_entry(lm, t.id, t.logprob);
            e["top_logprobs"] = t.top.iter().map(|&(id, lp)| chat_entry(lm, id, lp)).collect();
            e
        })
        .collect();
    json!({"content": content})
}

fn completion_choice(lm: &LanguageModel, c: &Choice, text: String, finish: &str, echo: Option<(&Vec<u32>, &Vec<Option<TokenLogprob>>)>) -> Value {
    let prompt_text = echo.map(|(ids, _)| lm.tokenizer.decode(ids, false).unwrap_or_default()).unwrap_or_default();
    let full_text = format!("{prompt_text}{text}");
    let Some(generated) = &c.logprobs else {
        return json!({"index": c.index, "text": full_text, "finish_reason": finish, "logprobs": null});
    };
    let (mut tokens, mut logps, mut tops, mut offsets) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut offset = 0usize;
    let mut push = |id: u32, lp: Option<&TokenLogprob>| {
        let text = piece(lm, id);
        offsets.push(offset);
        offset += text.len();
        tokens.push(text);
        logps.push(lp.map(|t| t.logprob));
        tops.push(lp.map(|t| {
            let mut m = Map::new();
            for &(alt, l) in &t.top {
                m.insert(piece(lm, alt), json!(l));
            }
            Value::Object(m)
        }));
    };
    if let Some((ids, lps)) = echo {
        for (&id, lp) in ids.iter().zip(lps) {
            push(id, lp.as_ref());
        }
    }
    for t in generated {
        push(t.id, Some(t));
    }
    json!({"index": c.index, "text": full_text, "finish_reason": finish,
           "logprobs": {"tokens": tokens, "token_logprobs": logps, "top_logprobs": tops, "text_offset": offsets}})
}

/// An error in OpenAI's layout.
pub fn error_body(e: &ApiError) -> Value {
    let kind = if e.status < 500 { "invalid_request_error" } else { "server_error" };
    json!({"error": {"message": e.message, "type": kind, "code": e.status}})
}

/// An answer's JSON body, or its error's.
pub fn body(answer: Result<Value, ApiError>) -> Value {
    answer.unwrap_or_else(|e| error_body(&e))
}
