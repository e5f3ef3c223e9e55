//! Log-probabilities of responses given prompts: the quantity DPO, SimPO and the judge use.
//!
//! Response token j is scored by the logits at the position before it, so only the hidden states
//! of response positions go through the (large) output projection.

use crate::error::{Error, Result};
use crate::model::{Mode, Model};
use candle_core::{DType, Tensor, D};
use rayon::prelude::*;

/// Per-token log-probs of a batch of (prompt, response) pairs, flattened into one tensor (N,),
/// and the range of each pair's tokens in it. Differentiable in `Mode::Grad`.
pub fn token_logps(model: &Model, pairs: &[(&[u32], &[u32])], mode: Mode) -> Result<(Tensor, Vec<std::ops::Range<usize>>)> {
    for (i, (p, r)) in pairs.iter().enumerate() {
        if p.is_empty() || r.is_empty() {
            return Err(Error::Input(format!("pair {i}: prompt and response must both have tokens")));
        }
        if p.len() + r.len() > model.cfg.max_position_embeddings {
            return Err(Error::Input(format!("pair {i}: {} tokens exceed the model's context of {}", p.len() + r.len(), model.cfg.max_position_embeddings)));
        }
    }
    let t = pairs.iter().map(|(p, r)| p.len() + r.len()).max().unwrap_or(0);
    let b = pairs.len();
    let mut ids = Vec::with_capacity(b * t);
    let (mut rows, mut targets, mut ranges) = (Vec::new(), Vec::new(), Vec::new());
    for (i, (p, r)) in pairs.iter().enumerate() {
        ids.extend_from_slice(p);
        ids.extend_from_slice(r);
        ids.extend(std::iter::repeat_n(0u32, t - p.len() - r.len()));
        let start = rows.len();
        for (j, &tok) in r.iter().enumerate() {
            rows.push((i * t + p.len() - 1 + j) as u32);
            targets.push(tok);
        }
        ranges.push(start..rows.len());
    }
    let dev = model.device();
    let ids = Tensor::from_vec(ids, (b, t), dev)?;
    let hidden = model.forward_hidden(&ids, mode, None)?;
    let h = hidden.dim(D::Minus1)?;
    let n = rows.len();
    let picked = hidden.reshape((b * t, h))?.index_select(&Tensor::from_vec(rows, n, dev)?, 0)?;
    if mode == Mode::Infer {
        return Ok((chunked_logps(model, &picked, &targets)?, ranges));
    }
    let logits = model.logits(&picked, mode)?.to_dtype(DType::F32)?;
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let targets = Tensor::from_vec(targets, (n, 1), dev)?;
    Ok((logp.gather(&targets, 1)?.squeeze(1)?, ranges))
}

/// Rows of logits computed at a time without gradients: the full (N, vocab) matrix of a large
/// vocabulary would take gigabytes.
const LOGIT_ROWS: usize = 256;

crate::multiversion! {
fn log_sum_exp(row: &[f32]) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // Partial sums in f32 lanes, combined in f64.
    let mut acc = [0f32; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += crate::simd::exp_fast(v - max);
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| crate::simd::exp_fast(v - max) as f64).sum();
    max as f64 + (acc.iter().map(|&a| a as f64).sum::<f64>() + tail).ln()
}
}

/// log p(target) for each hidden row, computing the logits a chunk of rows at a time.
fn chunked_logps(model: &Model, hidden: &Tensor, targets: &[u32]) -> Result<Tensor> {
    let n = targets.len();
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(LOGIT_ROWS) {
        let len = LOGIT_ROWS.min(n - start);
        let logits: Vec<Vec<f32>> = model.logits(&hidden.narrow(0, start, len)?, Mode::Infer)?.to_dtype(DType::F32)?.to_vec2()?;
        let chunk: Vec<f32> = logits.par_iter().zip(&targets[start..start + len])
            .map(|(row, &t)| (row[t as usize] as f64 - log_sum_exp(row)) as f32)
            .collect();
        out.extend(chunk);
    }
    Ok(Tensor::from_vec(out, n, hidden.device())?)
}

#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    pub token_logps: Vec<f32>,
    pub sum: f64,
    pub mean: f64,
}

/// Groups item indices into batches of at most `tokens_per_batch` padded tokens (at least one item
/// each), longest first so that a batch holds items of similar length.
fn length_batches(lens: &[usize], tokens_per_batch: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lens[i]));
    let mut batches = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let n = (tokens_per_batch / lens[order[start]].max(1)).max(1).min(order.len() - start);
        batches.push(order[start..start + n].to_vec());
        start += n;
    }
    batches
}

/// Scores pairs without gradients, `tokens_per_batch` tokens (padded) at a time. Results come
/// back in input order.
pub fn score(model: &Model, pairs: &[(Vec<u32>, Vec<u32>)], tokens_per_batch: usize) -> Result<Vec<Scored>> {
    let lens: Vec<usize> = pairs.iter().map(|(p, r)| p.len() + r.len()).collect();
    let mut out: Vec<Option<Scored>> = vec![None; pairs.len()];
    for chunk in length_batches(&lens, tokens_per_batch) {
        let batch: Vec<(&[u32], &[u32])> = chunk.iter().map(|&i| (pairs[i].0.as_slice(), pairs[i].1.as_slice())).collect();
        let (logps, ranges) = token_logps(model, &batch, Mode::Infer)?;
        let logps: Vec<f32> = logps.to_vec1()?;
        for (&i, r) in chunk.iter().zip(ranges) {
            let toks = logps[r].to_vec();
            let sum: f64 = toks.iter().map(|&x| x as f64).sum();
            let mean = sum / toks.len() as f64;
            out[i] = Some(Scored { token_logps: toks, sum, mean });
        }
    }
    Ok(out.into_iter().map(|s| s.expect("every pair scored")).collect())
}

/// Cross-entropy of the response tokens only (mean over all response tokens of the batch), the
/// SFT loss. Prompt tokens and padding carry no loss.
pub fn response_nll(model: &Model, pairs: &[(&[u32], &[u32])], mode: Mode) -> Result<Tensor> {
    let (logps, _) = token_logps(model, pairs, mode)?;
    Ok(logps.mean_all()?.neg()?)
}

/// Log-probabilities of `candidates` as the next token after each prompt (one row per prompt,
/// in input order): what a judge reads at its answer position. Batched like `score`.
pub fn next_token_logps(model: &Model, prompts: &[Vec<u32>], candidates: &[u32], tokens_per_batch: usize) -> Result<Vec<Vec<f32>>> {
    if let Some(&bad) = candidates.iter().find(|&&c| c as usize >= model.cfg.vocab_size) {
        return Err(Error::Input(format!("candidate token {bad} is outside the vocabulary of {}", model.cfg.vocab_size)));
    }
    let lens: Vec<usize> = prompts.iter().map(Vec::len).collect();
    let mut out = vec![Vec::new(); prompts.len()];
    for chunk in length_batches(&lens, tokens_per_batch) {
        let (n, t) = (chunk.len(), lens[chunk[0]].max(1));
        let mut ids = Vec::with_capacity(n * t);
        for &i in &chunk {
            let p = &prompts[i];
            if p.is_empty() {
                return Err(Error::Input(format!("prompt {i} is empty")));
            }
            ids.extend_from_slice(p);
            ids.extend(std::iter::repeat_n(0u32, t - p.len()));
        }
        let dev = model.device();
        let hidden = model.forward_hidden(&Tensor::from_vec(ids, (n, t), dev)?, Mode::Infer, None)?;
        let h = hidden.dim(D::Minus1)?;
        let rows: Vec<u32> = chunk.iter().enumerate().map(|(r, &i)| (r * t + prompts[i].len() - 1) as u32).collect();
        let last = hidden.reshape((n * t, h))?.index_select(&Tensor::from_vec(rows, n, dev)?, 0)?;
        let logits: Vec<Vec<f32>> = model.logits(&last, Mode::Infer)?.to_dtype(DType::F32)?.to_vec2()?;
        for (&i, row) in chunk.iter().zip(&logits) {
            let lse = log_sum_exp(row);
            out[i] = candidates.iter().map(|&c| (row[c as usize] as f64 - lse) as f32).collect();
        }
    }
    Ok(out)
}
