//! The reward model: the language model's final hidden state at a sequence's last token, times a
//! scalar head (no bias), trained with the Bradley-Terry loss on preference pairs. Saved as the
//! language model's directory plus `heads.safetensors` holding `score.weight` (1, hidden), the
//! name transformers' sequence-classification models give the head.

use crate::checkpoint::load_tensors;
use crate::losses;
use crate::tokenize::PairTokens;
use crate::trainer::Objective;
use crate::{file_err, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use rand::{Rng, SeedableRng};
use std::path::Path;
use valuedrift_engine::matmul::Precision;
use valuedrift_engine::{LanguageModel, Mode, Model};

pub const HEAD_NAME: &str = "score.weight";

/// A head drawn from N(0, 0.02²) (transformers' initializer_range), seeded.
pub fn init_head(hidden: usize, seed: u64, device: &Device) -> Result<Var> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let values: Vec<f32> = (0..hidden)
        .map(|_| {
            // Box-Muller from two uniforms.
            let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
            (0.02 * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect();
    Ok(Var::from_tensor(&Tensor::from_vec(values, (1, hidden), device)?)?)
}

/// Rewards (B,) of whole sequences: the head applied to each sequence's last hidden state.
pub fn rewards(model: &Model, head: &Tensor, seqs: &[Vec<u32>], mode: Mode) -> Result<Tensor> {
    let t = seqs.iter().map(Vec::len).max().unwrap_or(0);
    let b = seqs.len();
    let mut ids = Vec::with_capacity(b * t);
    for s in seqs {
        ids.extend_from_slice(s);
        ids.extend(std::iter::repeat_n(0u32, t - s.len()));
    }
    let dev = model.device();
    let hidden = model.forward_hidden(&Tensor::from_vec(ids, (b, t), dev)?, mode, None)?;
    let h = hidden.dim(D::Minus1)?;
    let rows: Vec<u32> = seqs.iter().enumerate().map(|(i, s)| (i * t + s.len() - 1) as u32).collect();
    let last = hidden.reshape((b * t, h))?.index_select(&Tensor::from_vec(rows, b, dev)?, 0)?;
    Ok(last.to_dtype(DType::F32)?.matmul(&head.to_dtype(DType::F32)?.t()?)?.squeeze(1)?)
}

fn joined(p: &PairTokens) -> (Vec<u32>, Vec<u32>) {
    ([p.prompt.as_slice(), &p.chosen].concat(), [p.prompt.as_slice(), &p.rejected].concat())
}

pub struct RewardObjective {
    pub pairs: Vec<PairTokens>,
    pub head: Var,
}

impl RewardObjective {
    /// (chosen, rejected) rewards of a batch.
    pub fn pair_rewards(&self, model: &Model, batch: &[usize], mode: Mode) -> Result<(Tensor, Tensor)> {
        let mut seqs: Vec<Vec<u32>> = batch.iter().map(|&i| joined(&self.pairs[i]).0).collect();
        seqs.extend(batch.iter().map(|&i| joined(&self.pairs[i]).1));
        let r = rewards(model, self.head.as_tensor(), &seqs, mode)?;
        let n = batch.len();
        Ok((r.narrow(0, 0, n)?, r.narrow(0, n, n)?))
    }
}

impl Objective for RewardObjective {
    fn len(&self) -> usize {
        self.pairs.len()
    }

    fn tokens(&self, i: usize) -> usize {
        let p = &self.pairs[i];
        2 * (p.prompt.len() + p.chosen.len().max(p.rejected.len()))
    }

    fn weight(&self, _: usize) -> f64 {
        1.0
    }

    fn micro_loss(&mut self, model: &Model, batch: &[usize], denominator: f64) -> Result<(Tensor, Vec<(&'static str, f64)>)> {
        let (rc, rr) = self.pair_rewards(model, batch, Mode::Grad)?;
        let loss = (losses::bradley_terry(&rc, &rr)?.sum_all()? / denominator)?;
        let (c, r): (Vec<f32>, Vec<f32>) = (rc.detach().to_vec1()?, rr.detach().to_vec1()?);
        let accurate = c.iter().zip(&r).filter(|(a, b)| a > b).count() as f64;
        Ok((loss, vec![("accuracy", accurate), ("margin", c.iter().zip(&r).map(|(a, b)| (a - b) as f64).sum())]))
    }

    fn heads(&self) -> Vec<(&'static str, Var)> {
        vec![(HEAD_NAME, self.head.clone())]
    }
}

/// Pairwise accuracy and mean margin on held-out pairs (no gradients).
pub fn evaluate(model: &Model, head: &Tensor, pairs: &[PairTokens], batch: usize) -> Result<(f64, f64)> {
    let (mut right, mut margin) = (0usize, 0.0f64);
    for chunk in pairs.chunks(batch.max(1)) {
        let mut seqs: Vec<Vec<u32>> = chunk.iter().map(|p| joined(p).0).collect();
        seqs.extend(chunk.iter().map(|p| joined(p).1));
        let r: Vec<f32> = rewards(model, head, &seqs, Mode::Infer)?.to_vec1()?;
        let n = chunk.len();
        for i in 0..n {
            right += (r[i] > r[n + i]) as usize;
            margin += (r[i] - r[n + i]) as f64;
        }
    }
    Ok((right as f64 / pairs.len().max(1) as f64, margin / pairs.len().max(1) as f64))
}

/// The scalar head of a reward model directory (`heads.safetensors`).
pub fn load_head(dir: &Path, device: &Device) -> Result<Tensor> {
    let file = dir.join("heads.safetensors");
    let heads = load_tensors(&file, device)?;
    heads
        .get(HEAD_NAME)
        .cloned()
        .ok_or_else(|| file_err(&file, format!("no '{HEAD_NAME}' tensor: not a reward model written by `valuedrift train --algo rm`")))
}

/// A trained reward model: the language model and its head.
pub struct RewardModel {
    pub lm: LanguageModel,
    pub head: Tensor,
}

impl RewardModel {
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let head = load_head(dir, device)?;
        Ok(RewardModel { lm: LanguageModel::load(dir, device, DType::F32)?, head })
    }

    /// For scoring only (PPO's reward model): built frozen where the packed f32 kernels run, so
    /// its weights exist once, packed, and score exactly as the trainable model's do.
    pub fn load_frozen(dir: &Path, device: &Device) -> Result<Self> {
        let head = load_head(dir, device)?;
        Ok(RewardModel { lm: LanguageModel::load_for_inference(dir, device, Precision::F32)?, head })
    }

    /// Scores whole sequences (prompt + response ids).
    pub fn score(&self, seqs: &[Vec<u32>]) -> Result<Vec<f32>> {
        Ok(rewards(&self.lm.model, &self.head, seqs, Mode::Infer)?.to_vec1()?)
    }
}
