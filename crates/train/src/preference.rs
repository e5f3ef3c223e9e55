//! DPO and SimPO on (prompt, chosen, rejected) pairs. DPO's reference log-probs are computed once
//! from the starting policy before the first update and kept in `OUT/reference_logps.json`, so
//! no reference model stays in memory and a resumed run uses the same numbers.

use crate::losses;
use crate::tokenize::PairTokens;
use crate::trainer::Objective;
use crate::{file_err, Result};
use candle_core::{DType, Tensor};
use std::path::Path;
use valuedrift_engine::score::{score, token_logps};
use valuedrift_engine::{Mode, Model};

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "loss", rename_all = "lowercase")]
pub enum PreferenceLoss {
    Dpo { beta: f64 },
    Simpo { beta: f64, gamma: f64 },
}

pub struct PreferenceObjective {
    pub pairs: Vec<PairTokens>,
    /// Summed reference log-probs (chosen, rejected) per pair; DPO only.
    pub reference: Option<Vec<(f64, f64)>>,
    pub loss: PreferenceLoss,
}

/// Summed log-probs (chosen, rejected) of each pair under `model`, without gradients.
pub fn pair_logps(model: &Model, pairs: &[PairTokens], tokens_per_batch: usize) -> Result<Vec<(f64, f64)>> {
    let seqs: Vec<(Vec<u32>, Vec<u32>)> =
        pairs.iter().flat_map(|p| [(p.prompt.clone(), p.chosen.clone()), (p.prompt.clone(), p.rejected.clone())]).collect();
    let scored = score(model, &seqs, tokens_per_batch)?;
    Ok(scored.chunks(2).map(|c| (c[0].sum, c[1].sum)).collect())
}

/// The reference log-probs: read from `OUT/reference_logps.json` when present (a resumed run),
/// else computed from `model` (the starting policy) and written there.
pub fn reference_logps(out: &Path, model: &Model, pairs: &[PairTokens], tokens_per_batch: usize) -> Result<Vec<(f64, f64)>> {
    let path = out.join("reference_logps.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let cached: Vec<(f64, f64)> = serde_json::from_str(&text).map_err(|e| file_err(&path, e))?;
        if cached.len() == pairs.len() {
            return Ok(cached);
        }
    }
    let computed = pair_logps(model, pairs, tokens_per_batch)?;
    std::fs::create_dir_all(out).map_err(|e| file_err(out, e))?;
    std::fs::write(&path, serde_json::to_string(&computed).expect("json")).map_err(|e| file_err(&path, e))?;
    Ok(computed)
}

/// Per-sequence sums of a flat token tensor, as (B,).
fn sums(logps: &Tensor, ranges: &[std::ops::Range<usize>]) -> Result<Tensor> {
    let parts: Vec<Tensor> = ranges.iter().map(|r| logps.narrow(0, r.start, r.len())?.sum_all()).collect::<candle_core::Result<_>>()?;
    Ok(Tensor::stack(&parts, 0)?)
}

impl PreferenceObjective {
    /// Per-pair losses and (chosen, rejected) implicit rewards for a batch, with gradients.
    pub fn losses(&self, model: &Model, batch: &[usize], mode: Mode) -> Result<(Tensor, Tensor, Tensor)> {
        let mut seqs: Vec<(&[u32], &[u32])> = batch.iter().map(|&i| (self.pairs[i].prompt.as_slice(), self.pairs[i].chosen.as_slice())).collect();
        seqs.extend(batch.iter().map(|&i| (self.pairs[i].prompt.as_slice(), self.pairs[i].rejected.as_slice())));
        let (logps, ranges) = token_logps(model, &seqs, mode)?;
        let all = sums(&logps, &ranges)?;
        let n = batch.len();
        let (pc, pr) = (all.narrow(0, 0, n)?, all.narrow(0, n, n)?);
        let dev = model.device();
        match self.loss {
            PreferenceLoss::Dpo { beta } => {
                let reference = self.reference.as_ref().expect("DPO needs reference log-probs");
                let rc = Tensor::from_vec(batch.iter().map(|&i| reference[i].0 as f32).collect::<Vec<_>>(), n, dev)?;
                let rr = Tensor::from_vec(batch.iter().map(|&i| reference[i].1 as f32).collect::<Vec<_>>(), n, dev)?;
                let loss = losses::dpo(&pc, &pr, &rc, &rr, beta)?;
                Ok((loss, ((&pc - &rc)? * beta)?, ((&pr - &rr)? * beta)?))
            }
            PreferenceLoss::Simpo { beta, gamma } => {
                let lens =
                    |f: fn(&PairTokens) -> usize| Tensor::from_vec(batch.iter().map(|&i| f(&self.pairs[i]) as f32).collect::<Vec<_>>(), n, dev);
                let (lc, lr) = (lens(|p| p.chosen.len())?, lens(|p| p.rejected.len())?);
                let loss = losses::simpo(&pc, &pr, &lc, &lr, beta, gamma)?;
                Ok((loss, ((&pc / &lc)? * beta)?, ((&pr / &lr)? * beta)?))
            }
        }
    }
}

impl Objective for PreferenceObjective {
    fn len(&self) -> usize {
        self.pairs.len()
    }

    fn tokens(&self, i: usize) -> usize {
        // Chosen and rejected go through together.
        2 * (self.pairs[i].prompt.len() + self.pairs[i].chosen.len().max(self.pairs[i].rejected.len()))
    }

    fn weight(&self, _: usize) -> f64 {
        1.0
    }

    fn micro_loss(&mut self, model: &Model, batch: &[usize], denominator: f64) -> Result<(Tensor, Vec<(&'static str, f64)>)> {
        let (loss, rc, rr) = self.losses(model, batch, Mode::Grad)?;
        let rc: Vec<f32> = rc.detach().to_dtype(DType::F32)?.to_vec1()?;
        let rr: Vec<f32> = rr.detach().to_dtype(DType::F32)?.to_vec1()?;
        let accurate = rc.iter().zip(&rr).filter(|(c, r)| c > r).count() as f64;
        let margin: f64 = rc.iter().zip(&rr).map(|(c, r)| (c - r) as f64).sum();
        let metrics = vec![
            ("rewards/chosen", rc.iter().map(|&x| x as f64).sum()),
            ("rewards/rejected", rr.iter().map(|&x| x as f64).sum()),
            ("rewards/accuracy", accurate),
            ("rewards/margin", margin),
        ];
        Ok(((loss.sum_all()? / denominator)?, metrics))
    }
}
