//! Supervised fine-tuning: cross-entropy on the assistant tokens only, normalized over all answer
//! tokens of the global batch.

use crate::tokenize::{sft_tokens, SftTokens};
use crate::trainer::Objective;
use crate::Result;
use candle_core::Tensor;
use valuedrift_data::SftExample;
use valuedrift_engine::score::masked_token_logps;
use valuedrift_engine::{ChatFormat, LanguageModel, Mode, Model};

pub struct SftObjective {
    pub data: Vec<SftTokens>,
}

impl SftObjective {
    /// Tokenizes the examples; those with nothing to learn within `max_len` are dropped and counted.
    pub fn new(lm: &LanguageModel, chat: &ChatFormat, examples: &[SftExample], max_len: usize) -> Result<(Self, usize)> {
        let mut data = Vec::with_capacity(examples.len());
        for ex in examples {
            if let Some(t) = sft_tokens(lm, chat, ex, max_len)? {
                data.push(t);
            }
        }
        let dropped = examples.len() - data.len();
        Ok((SftObjective { data }, dropped))
    }

    /// Summed answer-token NLL and token count per sequence (no gradients): for checks and evals.
    pub fn nll(model: &Model, data: &[SftTokens]) -> Result<Vec<(f64, usize)>> {
        let seqs: Vec<(&[u32], &[bool])> = data.iter().map(|t| (t.ids.as_slice(), t.targets.as_slice())).collect();
        let (logps, ranges) = masked_token_logps(model, &seqs, Mode::Infer)?;
        let logps: Vec<f32> = logps.to_vec1()?;
        Ok(ranges.into_iter().map(|r| (-logps[r.clone()].iter().map(|&x| x as f64).sum::<f64>(), r.len())).collect())
    }
}

impl Objective for SftObjective {
    fn len(&self) -> usize {
        self.data.len()
    }

    fn tokens(&self, i: usize) -> usize {
        self.data[i].ids.len()
    }

    fn weight(&self, i: usize) -> f64 {
        self.data[i].target_count() as f64
    }

    fn micro_loss(&mut self, model: &Model, batch: &[usize], denominator: f64) -> Result<(Tensor, Vec<(&'static str, f64)>)> {
        let seqs: Vec<(&[u32], &[bool])> = batch.iter().map(|&i| (self.data[i].ids.as_slice(), self.data[i].targets.as_slice())).collect();
        let (logps, _) = masked_token_logps(model, &seqs, Mode::Grad)?;
        let tokens = logps.dim(0)? as f64;
        let loss = (logps.sum_all()?.neg()? / denominator)?;
        Ok((loss, vec![("answer_tokens", tokens)]))
    }
}
