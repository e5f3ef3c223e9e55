//! The OpenAI API's bodies as the client writes and reads them: chat completions and (legacy)
//! completions, with log-probs in each API's own layout.

use crate::{RemoteError, Result};
use serde_json::{json, Value};
use valuedrift_engine::Message;

/// Which endpoint carries the requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// `/v1/chat/completions`: the server applies its own chat template.
    Chat,
    /// `/v1/completions` with prompts rendered here (the local judge's exact prompt).
    Completions,
}

impl Api {
    pub fn path(self) -> &'static str {
        match self {
            Api::Chat => "/chat/completions",
            Api::Completions => "/completions",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Sampling {
    pub temperature: f64,
    pub max_tokens: usize,
    /// Sent as a signed 64-bit integer (servers parse seeds as int64); the bits are kept.
    pub seed: Option<u64>,
}

/// A chat request for one answer; `top_logprobs` asks for the log-probs of each token's top-k.
pub fn chat_request(model: &str, messages: &[Message], s: &Sampling, top_logprobs: Option<usize>) -> Value {
    let mut body = json!({
        "model": model, "messages": messages, "max_tokens": s.max_tokens, "temperature": s.temperature,
        "top_p": 1.0, "n": 1, "stream": false,
    });
    if let Some(seed) = s.seed {
        body["seed"] = json!(seed as i64);
    }
    if let Some(k) = top_logprobs {
        body["logprobs"] = json!(true);
        body["top_logprobs"] = json!(k);
    }
    body
}

/// A completions request for one prompt text; `logprobs` = k asks for each token's top-k,
/// `echo` for the prompt's own tokens and log-probs too.
pub fn completion_request(model: &str, prompt: &str, s: &Sampling, logprobs: Option<usize>, echo: bool) -> Value {
    let mut body = json!({
        "model": model, "prompt": prompt, "max_tokens": s.max_tokens, "temperature": s.temperature,
        "top_p": 1.0, "n": 1, "stream": false, "echo": echo,
    });
    if let Some(seed) = s.seed {
        body["seed"] = json!(seed as i64);
    }
    if let Some(k) = logprobs {
        body["logprobs"] = json!(k);
    }
    body
}

/// Reads an answer, turning every missing piece into an error that names it and the server.
pub struct Reader<'a> {
    pub url: &'a str,
    pub body: &'a Value,
}

impl<'a> Reader<'a> {
    pub fn new(url: &'a str, body: &'a Value) -> Self {
        Reader { url, body }
    }

    pub fn bad(&self, message: impl Into<String>) -> RemoteError {
        RemoteError::BadAnswer { url: self.url.into(), message: message.into() }
    }

    pub fn choice(&self) -> Result<&'a Value> {
        self.body["choices"].get(0).ok_or_else(|| self.bad("no choices[0]"))
    }

    /// The generated text of the first choice.
    pub fn text(&self, api: Api) -> Result<&'a str> {
        let c = self.choice()?;
        let text = match api {
            Api::Chat => c["message"]["content"].as_str(),
            Api::Completions => c["text"].as_str(),
        };
        text.ok_or_else(|| {
            self.bad(match api {
                Api::Chat => "choices[0].message.content is not a string",
                Api::Completions => "choices[0].text is not a string",
            })
        })
    }

    pub fn finish_reason(&self) -> Result<&'a str> {
        self.choice()?["finish_reason"].as_str().ok_or_else(|| self.bad("choices[0].finish_reason is missing"))
    }

    pub fn completion_tokens(&self) -> Option<u32> {
        self.body["usage"]["completion_tokens"].as_u64().map(|n| n as u32)
    }

    pub fn prompt_tokens(&self) -> Option<usize> {
        self.body["usage"]["prompt_tokens"].as_u64().map(|n| n as usize)
    }

    /// The first generated token and its top-k alternatives, as (token text, log-prob).
    pub fn first_token_alternatives(&self, api: Api) -> Result<Vec<(String, f64)>> {
        let lp = &self.choice()?["logprobs"];
        let mut out = Vec::new();
        match api {
            Api::Chat => {
                let first =
                    lp["content"].get(0).ok_or_else(|| self.bad("choices[0].logprobs.content[0] is missing (does the server support logprobs?)"))?;
                if let (Some(t), Some(l)) = (first["token"].as_str(), first["logprob"].as_f64()) {
                    out.push((t.to_string(), l));
                }
                for alt in first["top_logprobs"].as_array().into_iter().flatten() {
                    if let (Some(t), Some(l)) = (alt["token"].as_str(), alt["logprob"].as_f64()) {
                        out.push((t.to_string(), l));
                    }
                }
            }
            Api::Completions => {
                let top = lp["top_logprobs"]
                    .get(0)
                    .and_then(Value::as_object)
                    .ok_or_else(|| self.bad("choices[0].logprobs.top_logprobs[0] is missing (does the server support logprobs?)"))?;
                out.extend(top.iter().filter_map(|(t, l)| Some((t.clone(), l.as_f64()?))));
            }
        }
        if out.is_empty() {
            return Err(self.bad("the first token's log-probs are empty"));
        }
        Ok(out)
    }

    /// With echo: every token of prompt and completion, and its log-prob (None for the first).
    pub fn echoed(&self) -> Result<(Vec<String>, Vec<Option<f64>>)> {
        let lp = &self.choice()?["logprobs"];
        let tokens: Vec<String> = lp["tokens"]
            .as_array()
            .ok_or_else(|| self.bad("choices[0].logprobs.tokens is missing (does the server support echo?)"))?
            .iter()
            .map(|t| t.as_str().unwrap_or_default().to_string())
            .collect();
        let logps: Vec<Option<f64>> = lp["token_logprobs"]
            .as_array()
            .ok_or_else(|| self.bad("choices[0].logprobs.token_logprobs is missing"))?
            .iter()
            .map(Value::as_f64)
            .collect();
        if tokens.len() != logps.len() {
            return Err(self.bad(format!("{} tokens but {} token log-probs", tokens.len(), logps.len())));
        }
        Ok((tokens, logps))
    }
}
