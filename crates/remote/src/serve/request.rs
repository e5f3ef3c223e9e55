//! Reading OpenAI requests into what the engine needs, with 400s that name the field at fault.

use serde_json::Value;
use valuedrift_engine::Message;

#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn bad(message: impl Into<String>) -> Self {
        ApiError { status: 400, message: message.into() }
    }
    pub fn server(message: impl Into<String>) -> Self {
        ApiError { status: 500, message: message.into() }
    }
}

type Result<T> = std::result::Result<T, ApiError>;

#[derive(Clone, Debug)]
pub enum Prompt {
    Text(String),
    Ids(Vec<u32>),
    Chat(Vec<Message>),
}

/// Most alternatives a request may ask for per token (OpenAI's limit is 20).
pub const MAX_ALTERNATIVES: usize = 20;

#[derive(Clone, Debug)]
pub struct Parsed {
    pub chat: bool,
    pub prompts: Vec<Prompt>,
    /// Samples per prompt.
    pub n: usize,
    pub max_tokens: usize,
    pub temperature: f64,
    pub top_p: f64,
    /// Sample i of a prompt draws from an RNG seeded with `seed + i`.
    pub seed: u64,
    pub stop: Vec<String>,
    /// Log-probs wanted, with this many alternatives per token.
    pub logprobs: Option<usize>,
    pub echo: bool,
}

pub fn parse(body: &Value, chat: bool) -> Result<Parsed> {
    if !body.is_object() {
        return Err(ApiError::bad("the body must be a JSON object"));
    }
    if body["stream"].as_bool() == Some(true) {
        return Err(ApiError::bad("'stream': streaming is not supported by valuedrift serve"));
    }
    let prompts = if chat { vec![Prompt::Chat(messages(&body["messages"])?)] } else { completion_prompts(&body["prompt"])? };
    let max_key = if chat && body.get("max_completion_tokens").is_some() { "max_completion_tokens" } else { "max_tokens" };
    let default_max = if chat { 512 } else { 16 };
    let logprobs = if chat {
        match (body["logprobs"].as_bool().unwrap_or(false), opt_uint(body, "top_logprobs")?) {
            (true, k) => Some(k.unwrap_or(0)),
            (false, Some(_)) => return Err(ApiError::bad("'top_logprobs' needs 'logprobs': true")),
            (false, None) => None,
        }
    } else {
        opt_uint(body, "logprobs")?
    };
    if logprobs.is_some_and(|k| k > MAX_ALTERNATIVES) {
        return Err(ApiError::bad(format!("at most {MAX_ALTERNATIVES} log-prob alternatives per token")));
    }
    let seed = match &body["seed"] {
        Value::Null => rand::random::<u64>(),
        v => v.as_i64().map(|s| s as u64).or_else(|| v.as_u64()).ok_or_else(|| ApiError::bad("'seed' must be an integer"))?,
    };
    let parsed = Parsed {
        chat,
        prompts,
        n: opt_uint(body, "n")?.unwrap_or(1),
        max_tokens: opt_uint(body, max_key)?.unwrap_or(default_max),
        temperature: opt_number(body, "temperature")?.unwrap_or(1.0),
        top_p: opt_number(body, "top_p")?.unwrap_or(1.0),
        seed,
        stop: stops(&body["stop"])?,
        logprobs,
        echo: !chat && body["echo"].as_bool().unwrap_or(false),
    };
    if parsed.n == 0 || parsed.n > 128 {
        return Err(ApiError::bad("'n' must be between 1 and 128"));
    }
    if parsed.temperature < 0.0 || !(parsed.top_p > 0.0 && parsed.top_p <= 1.0) {
        return Err(ApiError::bad("'temperature' must be >= 0 and 'top_p' in (0, 1]"));
    }
    if parsed.max_tokens == 0 && !parsed.echo {
        return Err(ApiError::bad("'max_tokens' must be at least 1 (0 only with 'echo')"));
    }
    Ok(parsed)
}

fn opt_uint(body: &Value, key: &str) -> Result<Option<usize>> {
    match &body[key] {
        Value::Null => Ok(None),
        v => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| ApiError::bad(format!("'{key}' must be a non-negative integer"))),
    }
}

fn opt_number(body: &Value, key: &str) -> Result<Option<f64>> {
    match &body[key] {
        Value::Null => Ok(None),
        v => v.as_f64().map(Some).ok_or_else(|| ApiError::bad(format!("'{key}' must be a number"))),
    }
}

fn messages(v: &Value) -> Result<Vec<Message>> {
    let list = v.as_array().filter(|l| !l.is_empty()).ok_or_else(|| ApiError::bad("'messages' must be a non-empty array"))?;
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let role = m["role"].as_str().ok_or_else(|| ApiError::bad(format!("messages[{i}].role must be a string")))?;
            let content = match &m["content"] {
                Value::String(s) => s.clone(),
                // Content parts: the text parts, joined (images and audio are not supported).
                Value::Array(parts) => parts
                    .iter()
                    .map(|p| match (p["type"].as_str(), p["text"].as_str()) {
                        (Some("text"), Some(t)) => Ok(t),
                        _ => Err(ApiError::bad(format!("messages[{i}].content: only text parts are supported"))),
                    })
                    .collect::<Result<Vec<&str>>>()?
                    .concat(),
                _ => return Err(ApiError::bad(format!("messages[{i}].content must be a string or text parts"))),
            };
            Ok(Message::new(role, &content))
        })
        .collect()
}

fn completion_prompts(v: &Value) -> Result<Vec<Prompt>> {
    let ids = |v: &Value| -> Option<Vec<u32>> { v.as_array()?.iter().map(|x| x.as_u64().map(|n| n as u32)).collect() };
    let prompts = match v {
        Value::String(s) => vec![Prompt::Text(s.clone())],
        Value::Array(items) if items.iter().all(Value::is_u64) => vec![Prompt::Ids(ids(v).unwrap_or_default())],
        Value::Array(items) => items
            .iter()
            .map(|p| match p {
                Value::String(s) => Ok(Prompt::Text(s.clone())),
                other => ids(other).map(Prompt::Ids).ok_or_else(|| ApiError::bad("'prompt' items must be strings or token id arrays")),
            })
            .collect::<Result<_>>()?,
        _ => return Err(ApiError::bad("'prompt' must be a string, a token id array, or an array of those")),
    };
    if prompts.is_empty() || prompts.iter().any(|p| matches!(p, Prompt::Text(t) if t.is_empty()) || matches!(p, Prompt::Ids(i) if i.is_empty())) {
        return Err(ApiError::bad("'prompt' is empty"));
    }
    Ok(prompts)
}

fn stops(v: &Value) -> Result<Vec<String>> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => {
            items.iter().map(|s| s.as_str().map(str::to_string).ok_or_else(|| ApiError::bad("'stop' items must be strings"))).collect()
        }
        _ => Err(ApiError::bad("'stop' must be a string or an array of strings")),
    }
}
