//! The judge with a stance head: the judge model reads the same prompt as the paper's judge,
//! and a head fitted on its hidden state at the answer position (`stance_head.rs`) gives the
//! stance, instead of the log-probs of the three option words. The bundled head was fitted on
//! the default judge model; see docs/judge.md for its data and figures.

use crate::judge::{mean_rows, order_spread, Item, Judge, JudgeError, Judgment, LocalJudge, Result};
use crate::stance_head::StanceHead;
use sha2::{Digest, Sha256};

/// The head fitted on the default judge model (`valuedrift judge fit-head` rebuilds it),
/// compiled in so that every run can use it from any directory.
pub const BUNDLED_HEAD: &str = include_str!("../../../data/judge/stance-head.json");
pub const BUNDLED_HEAD_FILE: &str = "data/judge/stance-head.json";

/// A head with the SHA-256 of the file it was read from (its identity in stores).
#[derive(Clone, Debug)]
pub struct LoadedHead {
    pub head: StanceHead,
    pub sha256: String,
}

impl LoadedHead {
    pub fn parse(path: &str, text: &str) -> Result<Self> {
        let head = StanceHead::from_json(path, text).map_err(|e| JudgeError::Input(e.to_string()))?;
        Ok(LoadedHead { head, sha256: sha256_hex(text.as_bytes()) })
    }

    pub fn bundled() -> Self {
        Self::parse(BUNDLED_HEAD_FILE, BUNDLED_HEAD).expect("the bundled stance head is valid")
    }

    /// The name a store records: the head's hash, short.
    pub fn short_hash(&self) -> &str {
        &self.sha256[..12]
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

pub struct HeadJudge {
    pub local: LocalJudge,
    pub head: LoadedHead,
}

impl HeadJudge {
    /// Refuses a head fitted on another model's hidden states (their sizes differ, or the
    /// model file names do).
    pub fn new(local: LocalJudge, head: LoadedHead) -> Result<Self> {
        let model = local.model.source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let size = local.model.model.cfg.hidden_size;
        let layers_exist = head.head.layers.iter().all(|&l| l < local.layer_count());
        if head.head.mean.len() != size * head.head.layers.len() || head.head.judge_model != model || !layers_exist {
            return Err(JudgeError::Input(format!(
                "the stance head was fitted on {} ({} features); the judge is {model} (hidden size {size}): use --judge-mode paper, or fit a head on this judge (valuedrift judge fit-head)",
                head.head.judge_model,
                head.head.mean.len()
            )));
        }
        if local.orders.len() != head.head.orders {
            return Err(JudgeError::Input(format!(
                "the stance head was fitted on the mean over {} option orders; this judge asks {} (--orders {})",
                head.head.orders,
                local.orders.len(),
                head.head.orders
            )));
        }
        Ok(HeadJudge { local, head })
    }
}

impl Judge for HeadJudge {
    /// The head's probabilities on the hidden state averaged over option orders; the order
    /// spread compares the head on each order's hidden state alone.
    fn judge(&self, items: &[Item]) -> Result<Vec<Judgment>> {
        let head = &self.head.head;
        Ok(self
            .local
            .answer_hidden(items, &head.layers)?
            .iter()
            .map(|per_order| {
                let each: Vec<[f64; 3]> = per_order.iter().map(|h| head.probabilities(h)).collect();
                Judgment { p: head.probabilities(&mean_rows(per_order)), order_spread: order_spread(&each), floored: false }
            })
            .collect())
    }

    /// The audit frames whole conversations, which the head was not fitted on: it asks the
    /// option words (paper mode) of the same model, if this judge holds all of it (a judge
    /// loaded up to the head's layers has no output head, so no option words).
    fn into_local(self: Box<Self>) -> Option<LocalJudge> {
        self.local.model.model.has_output_head().then_some(self.local)
    }
}
