//! Log-likelihoods of the continuations, tokenized as lm-evaluation-harness tokenizes a
//! (context, continuation) pair, and the accuracies they give.

use std::collections::BTreeMap;

use valuedrift_engine::score::score;
use valuedrift_engine::LanguageModel;

use super::read::CapabilityError;
use super::{McItem, Request};
use crate::significance::wilson_interval;

/// One item's outcome: the summed log-probability of each continuation's tokens given the context.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ItemResult {
    pub task: String,
    pub id: String,
    pub gold: usize,
    pub logliks: Vec<f64>,
    pub n_tokens: Vec<usize>,
    /// Characters of each choice (without the delimiter): acc_norm divides by them.
    pub choice_chars: Vec<usize>,
}

impl ItemResult {
    /// The highest log-likelihood is the gold choice (ties go to the first, as numpy's argmax).
    pub fn correct(&self) -> bool {
        argmax(self.logliks.iter().copied()) == self.gold
    }

    /// The same per character of the choice (the harness's acc_norm).
    pub fn correct_norm(&self) -> bool {
        argmax(self.logliks.iter().zip(&self.choice_chars).map(|(l, &c)| l / c.max(1) as f64)) == self.gold
    }
}

fn argmax(values: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// The harness's pair encoding: trailing spaces of the context move to the continuation, the
/// context is encoded alone, and the continuation's tokens are what encoding context +
/// continuation adds after as many tokens as the context alone has.
pub fn encode_pair(lm: &LanguageModel, context: &str, continuation: &str) -> Result<(Vec<u32>, Vec<u32>), CapabilityError> {
    let trimmed = context.trim_end_matches(' ');
    let moved = &context[trimmed.len()..];
    let continuation = format!("{moved}{continuation}");
    let ctx = lm.tokenizer.encode(trimmed, true)?;
    let whole = lm.tokenizer.encode(&format!("{trimmed}{continuation}"), true)?;
    if ctx.is_empty() || whole.len() <= ctx.len() {
        return Err(CapabilityError::File {
            path: "<request>".into(),
            message: format!("context {trimmed:?} or continuation {continuation:?} encodes to no tokens"),
        });
    }
    let cont = whole[ctx.len()..].to_vec();
    Ok((ctx, cont))
}

/// Scores every continuation of every request (items and requests in the same order).
pub fn score_requests(lm: &LanguageModel, items: &[McItem], requests: &[Request], batch_tokens: usize) -> Result<Vec<ItemResult>, CapabilityError> {
    let mut pairs = Vec::new();
    for r in requests {
        for c in &r.continuations {
            pairs.push(encode_pair(lm, &r.context, c)?);
        }
    }
    let scored = score(&lm.model, &pairs, batch_tokens)?;
    let mut scored = scored.into_iter();
    Ok(items
        .iter()
        .map(|item| {
            let s: Vec<_> = scored.by_ref().take(item.choices.len()).collect();
            ItemResult {
                task: item.task.clone(),
                id: item.id.clone(),
                gold: item.gold,
                logliks: s.iter().map(|x| x.sum).collect(),
                n_tokens: s.iter().map(|x| x.token_logps.len()).collect(),
                choice_chars: item.choices.iter().map(|c| c.chars().count()).collect(),
            }
        })
        .collect())
}

/// Accuracy of one task (or a group of tasks: `mmlu` gathers every `mmlu/SUBJECT`, weighting
/// items equally) with Wilson 95% intervals.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskSummary {
    pub task: String,
    pub n: usize,
    pub correct: usize,
    pub correct_norm: usize,
    /// The accuracy that guessing uniformly gets (mean of 1 / choices).
    pub chance: f64,
}

impl TaskSummary {
    pub fn acc(&self) -> f64 {
        self.correct as f64 / self.n as f64
    }
    pub fn acc_norm(&self) -> f64 {
        self.correct_norm as f64 / self.n as f64
    }
    pub fn acc_interval(&self) -> (f64, f64) {
        wilson_interval(self.correct, self.n)
    }
    pub fn acc_norm_interval(&self) -> (f64, f64) {
        wilson_interval(self.correct_norm, self.n)
    }
}

/// One summary per task and per task group, sorted by name.
pub fn summarize(results: &[ItemResult]) -> Vec<TaskSummary> {
    let mut by: BTreeMap<String, (usize, usize, usize, f64)> = BTreeMap::new();
    for r in results {
        let mut names = vec![r.task.clone()];
        if let Some((group, _)) = r.task.split_once('/') {
            names.push(group.to_string());
        }
        for name in names {
            let e = by.entry(name).or_default();
            e.0 += 1;
            e.1 += r.correct() as usize;
            e.2 += r.correct_norm() as usize;
            e.3 += 1.0 / r.logliks.len() as f64;
        }
    }
    by.into_iter().map(|(task, (n, c, cn, chance))| TaskSummary { task, n, correct: c, correct_norm: cn, chance: chance / n as f64 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(task: &str, logliks: Vec<f64>, chars: Vec<usize>, gold: usize) -> ItemResult {
        let n = logliks.len();
        ItemResult { task: task.into(), id: "x".into(), gold, logliks, n_tokens: vec![1; n], choice_chars: chars }
    }

    #[test]
    fn acc_and_acc_norm_by_hand() {
        // Raw: choice 0 wins (-4 > -6); per character: choice 1 wins (-6/12 = -0.5 > -4/2 = -2).
        let r = result("t", vec![-4.0, -6.0], vec![2, 12], 1);
        assert!(!r.correct());
        assert!(r.correct_norm());
        let s = summarize(&[r, result("t", vec![-1.0, -2.0, -3.0], vec![1, 1, 1], 0)]);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].n, s[0].correct, s[0].correct_norm), (2, 1, 2));
        assert!((s[0].chance - (0.5 + 1.0 / 3.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn subjects_are_summarized_alone_and_as_their_group() {
        let s = summarize(&[result("mmlu/a", vec![0.0, -1.0], vec![1, 1], 0), result("mmlu/b", vec![0.0, -1.0], vec![1, 1], 1)]);
        let names: Vec<_> = s.iter().map(|t| (t.task.as_str(), t.n, t.correct)).collect();
        assert_eq!(names, vec![("mmlu", 2, 1), ("mmlu/a", 1, 1), ("mmlu/b", 1, 0)]);
    }
}
