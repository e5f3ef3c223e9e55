//! DPO and SimPO on (prompt, chosen, rejected) pairs. DPO's reference log-probs are computed once
//! from the starting policy before the first update and kept in `OUT/reference_logps.json` under
//! the key of what decided them (`ReferenceKey`), so no reference model stays in memory and a
//! resumed run uses the same numbers, never those of another model or data set.

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

/// What decides a DPO reference: the starting model (its path, size and modification time) and
/// the tokenized pairs (data, tokenizer, chat template and max length, through a hash of every
/// token id). A cache made under another key is never used.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReferenceKey {
    pub model: String,
    pub model_bytes: u64,
    pub model_modified_s: u64,
    pub pairs: usize,
    pub tokens_fnv1a: String,
}

impl ReferenceKey {
    pub fn new(model: &Path, pairs: &[PairTokens]) -> Result<Self> {
        let canonical = model.canonicalize().map_err(|e| file_err(model, e))?;
        let (model_bytes, model_modified_s) = model_fingerprint(&canonical)?;
        let mut hash = Fnv1a::default();
        for p in pairs {
            for part in [&p.prompt, &p.chosen, &p.rejected] {
                hash.ids(part);
            }
        }
        Ok(ReferenceKey {
            model: canonical.display().to_string(),
            model_bytes,
            model_modified_s,
            pairs: pairs.len(),
            tokens_fnv1a: format!("{:016x}", hash.0),
        })
    }
}

/// Total size and latest modification time of a model file, or of a model directory's files.
fn model_fingerprint(path: &Path) -> Result<(u64, u64)> {
    let files: Vec<std::path::PathBuf> = if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| file_err(path, e))?;
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect()
    } else {
        vec![path.to_path_buf()]
    };
    files.iter().try_fold((0, 0), |(bytes, latest), f| {
        let meta = std::fs::metadata(f).map_err(|e| file_err(f, e))?;
        let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs());
        Ok((bytes + meta.len(), latest.max(modified)))
    })
}

/// 64-bit FNV-1a over token ids, each list closed by a separator so that lists cannot run together.
#[derive(Default)]
struct Fnv1a(u64);

impl Fnv1a {
    fn ids(&mut self, ids: &[u32]) {
        if self.0 == 0 {
            self.0 = 0xcbf29ce484222325;
        }
        for byte in ids.iter().flat_map(|i| i.to_le_bytes()).chain(u32::MAX.to_le_bytes()) {
            self.0 = (self.0 ^ byte as u64).wrapping_mul(0x100000001b3);
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CachedReference {
    key: ReferenceKey,
    logps: Vec<(f64, f64)>,
}

/// The file that keeps a phase's reference log-probs.
pub fn reference_path(out: &Path) -> std::path::PathBuf {
    out.join("reference_logps.json")
}

/// The reference log-probs kept in `OUT/reference_logps.json`, if they were made under `key`
/// (a resumed run); None when absent, made under another key or in an older layout.
pub fn cached_reference(out: &Path, key: &ReferenceKey) -> Result<Option<Vec<(f64, f64)>>> {
    let path = reference_path(out);
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
    Ok(serde_json::from_str::<CachedReference>(&text).ok().filter(|c| &c.key == key && c.logps.len() == key.pairs).map(|c| c.logps))
}

/// Computes the reference log-probs with `model` (which must be the starting model the key
/// names) and keeps them under `key`, written atomically (a temporary file, then a rename).
pub fn compute_reference(out: &Path, key: &ReferenceKey, model: &Model, pairs: &[PairTokens], tokens_per_batch: usize) -> Result<Vec<(f64, f64)>> {
    let logps = pair_logps(model, pairs, tokens_per_batch)?;
    std::fs::create_dir_all(out).map_err(|e| file_err(out, e))?;
    let (path, tmp) = (reference_path(out), out.join("reference_logps.json.tmp"));
    let text = serde_json::to_string(&CachedReference { key: key.clone(), logps }).expect("json");
    std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, &path)).map_err(|e| file_err(&path, e))?;
    Ok(cached_reference(out, key)?.expect("just written"))
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
