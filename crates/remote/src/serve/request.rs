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

/// Most samples one request may ask for (prompts × `n`): each is a sequence the engine decodes
/// and an answer held until the whole request is done.
pub const MAX_SEQUENCES: usize = 1024;

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
    if parsed.prompts.len() * parsed.n > MAX_SEQUENCES {
        return Err(ApiError::bad(format!(
            "{} prompts × 'n' {} asks for more than {MAX_SEQUENCES} samples in one request: split it",
            parsed.prompts.len(),
            parsed.n
        )));
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

/// A token id array as u32 ids; ids that do not fit are named (the vocabulary check comes later).
fn token_ids(items: &[Value]) -> Result<Vec<u32>> {
    items
        .iter()
        .map(|x| match x.as_u64() {
            Some(n) => u32::try_from(n).map_err(|_| ApiError::bad(format!("'prompt': token id {n} is not a token id (above {})", u32::MAX))),
            None => Err(ApiError::bad(format!("'prompt': token ids must be non-negative integers, not {x}"))),
        })
        .collect()
}

fn completion_prompts(v: &Value) -> Result<Vec<Prompt>> {
    let prompts = match v {
        Value::String(s) => vec![Prompt::Text(s.clone())],
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_number) => vec![Prompt::Ids(token_ids(items)?)],
        Value::Array(items) => items
            .iter()
            .map(|p| match p {
                Value::String(s) => Ok(Prompt::Text(s.clone())),
                Value::Array(ids) => token_ids(ids).map(Prompt::Ids),
                _ => Err(ApiError::bad("'prompt' items must be strings or token id arrays")),
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use serde_json::json;

    /// Every way a field can be wrong: other types, huge, negative, fractional, empty, unicode.
    fn random_value(rng: &mut StdRng, depth: u32) -> Value {
        match rng.random_range(0..14) {
            0 => Value::Null,
            1 => json!(rng.random::<bool>()),
            2 => json!(rng.random_range(0..40u64)),
            3 => json!(u64::MAX - rng.random_range(0..3u64)),
            4 => json!(-rng.random_range(1..1_000_000i64)),
            5 => json!(rng.random::<f64>() * 3.0),
            6 => json!(f64::MAX),
            7 => json!(1u64 << 32 | rng.random_range(0..5u64)),
            8 => json!(""),
            9 => json!(["naïve ✓ 日本語 🙂", "\u{0}", "\u{202e}rtl"][rng.random_range(0..3)]),
            10 => json!("Should voting be compulsory?"),
            11 if depth < 3 => Value::Array((0..rng.random_range(0..5)).map(|_| random_value(rng, depth + 1)).collect()),
            12 if depth < 3 => {
                json!({"role": random_value(rng, depth + 1), "content": random_value(rng, depth + 1), "type": "text", "text": random_value(rng, depth + 1)})
            }
            _ => json!([1, 2, 3]),
        }
    }

    /// A plausible value for `key`, so that many bodies get past the first checks.
    fn plausible(key: &str, rng: &mut StdRng) -> Value {
        match key {
            "prompt" => [json!("Is tax fair?"), json!([5, 6, 7])][rng.random_range(0..2)].clone(),
            "messages" => json!([{"role": "user", "content": "Is tax fair?"}]),
            "n" | "max_tokens" | "max_completion_tokens" | "top_logprobs" | "logprobs" => json!(rng.random_range(0..30u64)),
            "temperature" | "top_p" => json!(rng.random::<f64>()),
            "seed" => json!(rng.random::<i64>()),
            "stop" => json!(["\n", "."]),
            _ => json!(rng.random::<bool>()),
        }
    }

    const KEYS: [&str; 13] = [
        "prompt",
        "messages",
        "n",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "seed",
        "stop",
        "logprobs",
        "top_logprobs",
        "echo",
        "stream",
    ];

    #[test]
    fn any_body_parses_to_a_sound_request_or_a_400() {
        let mut rng = StdRng::seed_from_u64(7);
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..20_000 {
            let mut body = serde_json::Map::new();
            for key in KEYS {
                if rng.random_bool(0.5) {
                    let value = if rng.random_bool(0.7) { plausible(key, &mut rng) } else { random_value(&mut rng, 0) };
                    body.insert(key.into(), value);
                }
            }
            let body = if rng.random_bool(0.02) { random_value(&mut rng, 0) } else { Value::Object(body) };
            match parse(&body, rng.random_bool(0.5)) {
                Ok(p) => {
                    accepted += 1;
                    assert!((1..=128).contains(&p.n) && p.prompts.len() * p.n <= MAX_SEQUENCES, "{body}");
                    assert!(!p.prompts.is_empty() && p.temperature >= 0.0 && p.top_p > 0.0 && p.top_p <= 1.0, "{body}");
                    assert!(p.logprobs.is_none_or(|k| k <= MAX_ALTERNATIVES) && (p.max_tokens > 0 || p.echo), "{body}");
                }
                Err(e) => {
                    refused += 1;
                    assert!(e.status == 400 && !e.message.is_empty(), "{body}: {e:?}");
                }
            }
        }
        // Both outcomes occur, so the generator reaches past the first check.
        assert!(accepted > 100 && refused > 100, "accepted {accepted}, refused {refused}");
    }

    #[test]
    fn token_ids_past_u32_are_named_not_wrapped() {
        let err = parse(&json!({"prompt": [1, 4294967297u64]}), false).unwrap_err();
        assert!(err.message.contains("4294967297"), "{}", err.message);
        let err = parse(&json!({"prompt": [[5], [1.5]]}), false).unwrap_err();
        assert!(err.message.contains("1.5"), "{}", err.message);
        let ok = parse(&json!({"prompt": [[5, 6], "text"]}), false).unwrap();
        assert!(matches!(&ok.prompts[0], Prompt::Ids(ids) if ids == &[5, 6]));
    }

    #[test]
    fn a_request_for_too_many_samples_is_refused() {
        let prompts: Vec<&str> = vec!["a"; 9];
        let err = parse(&json!({"prompt": prompts, "n": 128}), false).unwrap_err();
        assert!(err.message.contains("1024"), "{}", err.message);
        let eight: Vec<&str> = vec!["a"; 8];
        assert!(parse(&json!({"prompt": eight, "n": 128}), false).is_ok());
    }
}
