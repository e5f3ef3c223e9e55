//! What the engine makes of a request: its prompts as token ids, and the sampled choices with
//! their log-probs, for `batch` to fill and `respond` to render.

use super::request::Parsed;

/// A request with its prompts as token ids.
pub struct Prepared {
    pub parsed: Parsed,
    pub ids: Vec<Vec<u32>>,
    pub stop_ids: Vec<u32>,
}

/// A token with its log-prob and the most likely alternatives at its position.
#[derive(Clone, Debug)]
pub struct TokenLogprob {
    pub id: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

/// One sampled continuation: choice `index` of its request, for prompt `prompt`.
#[derive(Clone, Debug)]
pub struct Choice {
    pub index: usize,
    pub prompt: usize,
    pub tokens: Vec<u32>,
    pub finish: &'static str,
    pub logprobs: Option<Vec<TokenLogprob>>,
}
