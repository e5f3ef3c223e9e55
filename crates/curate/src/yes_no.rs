//! The value filter read from log-probabilities: the model is asked the paper's Yes/No
//! question and P(Yes) is its next-token probability of "Yes" against "No", softmaxed over the
//! two words, as the stance judge reads its option words. A greedy answer throws this away:
//! small models answer "Yes" (or "No") to nearly everything, yet still rank questions by how
//! value-laden they are, so a threshold on P(Yes) separates what their answers cannot.

use crate::{CurateError, Result};
use valuedrift_engine::score::next_token_logps_grouped;
use valuedrift_engine::{LanguageModel, Message};

/// Anything that reads P(Yes) after a prompt.
pub trait YesNoScorer {
    /// P(Yes) against P(No) as the next token after each prompt, asked as a user turn.
    fn p_yes(&mut self, prompts: &[String]) -> Result<Vec<f64>>;
}

/// A local model's P(Yes).
pub struct LocalYesNo {
    model: LanguageModel,
    /// First token of "Yes" and of "No".
    ids: [u32; 2],
    tokens_per_batch: usize,
}

impl LocalYesNo {
    pub fn new(model: LanguageModel) -> Result<Self> {
        let first = |word: &str| -> Result<u32> {
            let ids = model.tokenizer.encode(word, false).map_err(|e| CurateError::Input(format!("{}: {e}", model.source.display())))?;
            ids.first().copied().ok_or_else(|| CurateError::Input(format!("{}: '{word}' encodes to no token", model.source.display())))
        };
        let ids = [first("Yes")?, first("No")?];
        if ids[0] == ids[1] {
            return Err(CurateError::Input(format!("{}: 'Yes' and 'No' start with the same token", model.source.display())));
        }
        Ok(LocalYesNo { model, ids, tokens_per_batch: 4096 })
    }
}

impl YesNoScorer for LocalYesNo {
    fn p_yes(&mut self, prompts: &[String]) -> Result<Vec<f64>> {
        let engine = |e: valuedrift_engine::Error| CurateError::Input(format!("{}: {e}", self.model.source.display()));
        // One group per prompt: the part every prompt shares (instruction, examples) runs once.
        let groups: Vec<Vec<Vec<u32>>> =
            prompts.iter().map(|p| Ok(vec![self.model.prompt_ids(&[Message::user(p)])?])).collect::<std::result::Result<_, _>>().map_err(engine)?;
        let logps = next_token_logps_grouped(&self.model.model, &groups, &self.ids, self.tokens_per_batch).map_err(engine)?;
        Ok(logps.iter().map(|lp| two_way_yes(lp[0][0], lp[0][1])).collect())
    }
}

/// P(Yes) from the two words' log-probabilities, renormalized over the two.
pub fn two_way_yes(yes: f32, no: f32) -> f64 {
    1.0 / (1.0 + ((no - yes) as f64).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yes_probability_is_the_two_word_softmax() {
        assert!((two_way_yes(-1.0, -1.0) - 0.5).abs() < 1e-12);
        // ln 3 apart: 3 to 1.
        assert!((two_way_yes(-0.5, -0.5 - 3f32.ln()) - 0.75).abs() < 1e-6);
        assert!(two_way_yes(-30.0, -0.01) < 1e-12);
    }
}
