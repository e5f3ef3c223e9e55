//! The stance judge through a server. Prompts are the local judge's (`prompt_messages`), asked
//! once per option order, and the three option log-probs are combined exactly as locally. Two
//! ways to read the log-probs:
//!
//! - top-k (`top`): the first answer token's `top_logprobs`, as the paper did with GPT-4o. With
//!   a local copy of the judge's tokenizer, an option matches only the listed token that is
//!   exactly its word's first token (the token the local judge reads), so the numbers are the
//!   local judge's. Without one (a hosted model), an option matches the listed token that is the
//!   longest prefix of its word (`support`, `sup`, ...; case and spacing as written): then a
//!   shorter prefix may be another token than the model's own first token of the word. An
//!   option missing from the list gets the lowest log-prob listed (a bound: it ranked below all
//!   of them), the three are renormalized, and the judgment is flagged `floored`.
//! - echo (`echo`): the completions endpoint scores the prompt followed by each option word and
//!   returns the prompt's log-probs; the option word's first token is read exactly. Needs prompts
//!   rendered here (a local copy of the judge's chat template) and a server that echoes.

use crate::client::{Client, Failure};
use crate::wire::{chat_request, completion_request, Api, Reader, Sampling};
use crate::{RemoteError, Result};
use std::sync::Arc;
use valuedrift_engine::ChatFormat;
use valuedrift_trace::judge::{self, combine, prompt_messages, Item, Judgment};
use valuedrift_trace::Stance;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogprobMode {
    Top,
    Echo,
}

pub struct RemoteJudge {
    pub client: Arc<Client>,
    pub model: String,
    pub orders: Vec<[Stance; 3]>,
    pub api: Api,
    pub mode: LogprobMode,
    /// How many alternatives to ask for (OpenAI allows up to 20).
    pub top_logprobs: usize,
    /// The judge's chat format, for prompts rendered here (completions API).
    pub format: Option<ChatFormat>,
    /// Each option word's first token as the judge's tokenizer writes it, in Stance order, when a
    /// local copy of the tokenizer is at hand: top-k lists are then matched exactly.
    pub option_tokens: Option<[String; 3]>,
}

/// The three option log-probs of one (item, order), and whether any was floored.
struct OptionLogps {
    logps: [f64; 3],
    floored: bool,
}

impl RemoteJudge {
    pub fn new(client: Arc<Client>, model: &str, orders: Vec<[Stance; 3]>, api: Api, mode: LogprobMode, format: Option<ChatFormat>) -> Result<Self> {
        if api == Api::Completions && format.is_none() {
            return Err(RemoteError::Config(
                "a judge on the completions API needs the judge's chat template (`template`: a local copy of the model)".into(),
            ));
        }
        if mode == LogprobMode::Echo && api != Api::Completions {
            return Err(RemoteError::Config("echo log-probs need the completions API (`api = \"completions\"`)".into()));
        }
        Ok(RemoteJudge { client, model: model.into(), orders, api, mode, top_logprobs: 20, format, option_tokens: None })
    }

    /// The prompt text of the completions API: the local judge's conversation, rendered here.
    fn rendered(&self, item: &Item, order: &[Stance; 3]) -> Result<String> {
        let format = self.format.as_ref().expect("checked in new");
        Ok(format.render(&prompt_messages(item, order), true)?)
    }

    fn ask(&self, item: &Item, order: &[Stance; 3]) -> Result<OptionLogps> {
        match self.mode {
            LogprobMode::Top => self.ask_top(item, order),
            LogprobMode::Echo => self.ask_echo(item, order),
        }
    }

    fn ask_top(&self, item: &Item, order: &[Stance; 3]) -> Result<OptionLogps> {
        let greedy = Sampling { temperature: 0.0, max_tokens: 1, seed: Some(0) };
        let body = match self.api {
            Api::Chat => chat_request(&self.model, &prompt_messages(item, order), &greedy, Some(self.top_logprobs)),
            Api::Completions => completion_request(&self.model, &self.rendered(item, order)?, &greedy, Some(self.top_logprobs), false),
        };
        let (url, answer) = self.client.post(self.api.path(), &body)?;
        let listed = Reader::new(&url, &answer).first_token_alternatives(self.api)?;
        Ok(options_from_top(&listed, self.option_tokens.as_ref()))
    }

    fn ask_echo(&self, item: &Item, order: &[Stance; 3]) -> Result<OptionLogps> {
        let prompt = self.rendered(item, order)?;
        let mut logps = [0.0; 3];
        for (slot, stance) in logps.iter_mut().zip(Stance::ALL) {
            let word = stance.name();
            let body = completion_request(
                &self.model,
                &format!("{prompt}{word}"),
                &Sampling { temperature: 0.0, max_tokens: 1, seed: Some(0) },
                Some(1),
                true,
            );
            let (url, answer) = self.client.post(Api::Completions.path(), &body)?;
            let r = Reader::new(&url, &answer);
            let (tokens, token_logps) = r.echoed()?;
            // The echo ends with the generated tokens; servers differ in whether it starts with
            // the special tokens they add, so the prompt is found from the end.
            let prompt_len = r
                .completion_tokens()
                .and_then(|n| tokens.len().checked_sub(n as usize))
                .ok_or_else(|| r.bad("usage.completion_tokens is missing or exceeds the echoed tokens"))?;
            let first = word_start(&tokens[..prompt_len], word).ok_or_else(|| {
                r.bad(format!(
                    "the echoed prompt does not end in tokens that spell '{word}' (its tokenizer merges the option with the text before it)"
                ))
            })?;
            *slot = token_logps[first].ok_or_else(|| r.bad(format!("no log-prob for the token of '{word}'")))?;
        }
        Ok(OptionLogps { logps, floored: false })
    }
}

/// Each option word's first token as `tokenizer` writes it, in Stance order.
pub fn option_tokens(tokenizer: &valuedrift_engine::Tokenizer) -> valuedrift_engine::Result<[String; 3]> {
    let first = |s: Stance| -> valuedrift_engine::Result<String> {
        let ids = tokenizer.encode(s.name(), false)?;
        tokenizer.decode(&ids[..ids.len().min(1)], false)
    };
    Ok([first(Stance::Support)?, first(Stance::Neutral)?, first(Stance::Oppose)?])
}

/// The three option log-probs from a top-k list, with the floor rule (see the module docs).
fn options_from_top(listed: &[(String, f64)], exact: Option<&[String; 3]>) -> OptionLogps {
    let floor = listed.iter().map(|(_, l)| *l).fold(f64::INFINITY, f64::min);
    let mut floored = false;
    let mut logps = [0.0; 3];
    for (i, (slot, stance)) in logps.iter_mut().zip(Stance::ALL).enumerate() {
        let word = stance.name();
        let best = match exact {
            Some(tokens) => listed.iter().find(|(t, _)| !t.is_empty() && *t == tokens[i]),
            None => listed.iter().filter(|(t, _)| !t.is_empty() && word.starts_with(t.as_str())).max_by_key(|(t, _)| t.len()),
        };
        *slot = match best {
            Some((_, l)) => *l,
            None => {
                floored = true;
                floor
            }
        };
    }
    OptionLogps { logps, floored }
}

/// Index of the token where `word` starts, if the last tokens spell exactly `word`.
fn word_start(tokens: &[String], word: &str) -> Option<usize> {
    let mut suffix = String::new();
    for i in (0..tokens.len()).rev() {
        suffix.insert_str(0, &tokens[i]);
        if suffix == word {
            return Some(i);
        }
        if suffix.len() >= word.len() {
            return None;
        }
    }
    None
}

impl judge::Judge for RemoteJudge {
    fn judge(&self, items: &[Item]) -> judge::Result<Vec<Judgment>> {
        let asks: Vec<(usize, usize)> = (0..items.len()).flat_map(|i| (0..self.orders.len()).map(move |o| (i, o))).collect();
        let mut found: Vec<Option<OptionLogps>> = (0..asks.len()).map(|_| None).collect();
        self.client
            .run_all(
                &asks,
                |&(i, o)| self.ask(&items[i], &self.orders[o]),
                |k, logps| {
                    found[k] = Some(logps);
                    Ok::<(), RemoteError>(())
                },
            )
            .map_err(|f| match f {
                Failure::Remote(e) | Failure::Caller(e) => judge::JudgeError::from(e),
            })?;
        let found: Vec<OptionLogps> = found.into_iter().map(|f| f.expect("every ask answered")).collect();
        Ok(found
            .chunks(self.orders.len())
            .map(|per_order| {
                let logps: Vec<Vec<f32>> = per_order.iter().map(|o| o.logps.iter().map(|&l| l as f32).collect()).collect();
                Judgment { floored: per_order.iter().any(|o| o.floored), ..combine(&logps) }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(pairs: &[(&str, f64)]) -> Vec<(String, f64)> {
        pairs.iter().map(|(t, l)| (t.to_string(), *l)).collect()
    }

    #[test]
    fn options_take_the_longest_matching_token_and_a_missing_one_is_floored() {
        let got = options_from_top(&listed(&[("support", -0.1), ("sup", -5.0), ("neutral", -2.5), ("Oppose", -3.0), (" the", -4.0)]), None);
        assert_eq!(got.logps, [-0.1, -2.5, -5.0], "oppose is missing ('Oppose' differs in case): floored to the lowest listed");
        assert!(got.floored);
        let whole = options_from_top(&listed(&[("neut", -1.0), ("opp", -2.0), ("support", -0.5)]), None);
        assert_eq!((whole.logps, whole.floored), ([-0.5, -1.0, -2.0], false));
        // With the judge's own first tokens, only those count: "op" is another token than "opp".
        let tokens = ["support".to_string(), "neutral".to_string(), "opp".to_string()];
        let exact = options_from_top(&listed(&[("support", -0.5), ("neutral", -1.0), ("op", -2.0), ("o", -3.0)]), Some(&tokens));
        assert_eq!((exact.logps, exact.floored), ([-0.5, -1.0, -3.0], true));
    }

    #[test]
    fn the_option_word_is_found_at_the_end_of_the_echoed_tokens() {
        let toks: Vec<String> = ["<|im_start|>", "assistant", "\n", "sup", "port"].iter().map(|s| s.to_string()).collect();
        assert_eq!(word_start(&toks, "support"), Some(3));
        let merged: Vec<String> = ["assistant", ":support"].iter().map(|s| s.to_string()).collect();
        assert_eq!(word_start(&merged, "support"), None);
    }
}
