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
    }
    let seqs: Vec<(Vec<u32>, Vec<bool>)> = pairs
        .iter()
        .map(|(p, r)| {
            let ids = [*p, *r].concat();
            let targets = (0..ids.len()).map(|j| j >= p.len()).collect();
            (ids, targets)
        })
        .collect();
    let refs: Vec<(&[u32], &[bool])> = seqs.iter().map(|(i, t)| (i.as_slice(), t.as_slice())).collect();
    masked_token_logps(model, &refs, mode)
}

/// Per-token log-probs of the marked tokens of whole sequences (`targets[j]` marks token j as
/// scored, predicted from position j - 1; token 0 cannot be marked): the loss positions of
/// multi-turn SFT, where every assistant turn counts. Flattened into one tensor (N,) with each
/// sequence's range in it; differentiable in `Mode::Grad`.
pub fn masked_token_logps(model: &Model, seqs: &[(&[u32], &[bool])], mode: Mode) -> Result<(Tensor, Vec<std::ops::Range<usize>>)> {
    masked_token_logps_at(model, seqs, mode, 1.0)
}

/// `masked_token_logps` of the distribution with logits divided by `temperature` (what PPO
/// scores its samples with, as TRL does).
pub fn masked_token_logps_at(
    model: &Model,
    seqs: &[(&[u32], &[bool])],
    mode: Mode,
    temperature: f64,
) -> Result<(Tensor, Vec<std::ops::Range<usize>>)> {
    let (picked, wanted, ranges) = scored_hidden(model, seqs, mode)?;
    let inv_t = 1.0 / temperature;
    if mode == Mode::Infer {
        return Ok((chunked_logps(model, &picked, &wanted, inv_t)?.0, ranges));
    }
    Ok((model.head_logps(&picked, &wanted, inv_t, mode)?, ranges))
}

/// Per-token log-probs and next-token entropies of scored sequences, with each sequence's range.
pub struct TokenStats {
    pub logps: Vec<f32>,
    pub entropy: Vec<f32>,
    pub ranges: Vec<std::ops::Range<usize>>,
}

/// Log-probs (as `masked_token_logps_at`, no gradients) and the entropy of each scored
/// position's next-token distribution.
pub fn token_logps_and_entropy(model: &Model, seqs: &[(&[u32], &[bool])], temperature: f64) -> Result<TokenStats> {
    let (picked, wanted, ranges) = scored_hidden(model, seqs, Mode::Infer)?;
    let (logps, entropy) = chunked_logps(model, &picked, &wanted, 1.0 / temperature)?;
    Ok(TokenStats { logps: logps.to_vec1()?, entropy, ranges })
}

/// Final hidden states of the positions that predict the marked tokens, those tokens, and each
/// sequence's range among them.
#[allow(clippy::type_complexity)]
fn scored_hidden(model: &Model, seqs: &[(&[u32], &[bool])], mode: Mode) -> Result<(Tensor, Vec<u32>, Vec<std::ops::Range<usize>>)> {
    for (i, (ids, targets)) in seqs.iter().enumerate() {
        if ids.len() != targets.len() {
            return Err(Error::Input(format!("sequence {i}: {} tokens but {} target flags", ids.len(), targets.len())));
        }
        if targets.first() == Some(&true) || !targets.contains(&true) {
            return Err(Error::Input(format!("sequence {i}: needs at least one scored token after the first")));
        }
        if ids.len() > model.cfg.max_position_embeddings {
            return Err(Error::Input(format!(
                "sequence {i}: {} tokens exceed the model's context of {}",
                ids.len(),
                model.cfg.max_position_embeddings
            )));
        }
    }
    let t = seqs.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0);
    let b = seqs.len();
    let mut padded = Vec::with_capacity(b * t);
    let (mut rows, mut wanted, mut ranges) = (Vec::new(), Vec::new(), Vec::new());
    for (i, (ids, targets)) in seqs.iter().enumerate() {
        padded.extend_from_slice(ids);
        padded.extend(std::iter::repeat_n(0u32, t - ids.len()));
        let start = rows.len();
        for (j, (&tok, _)) in ids.iter().zip(targets.iter()).enumerate().filter(|(_, (_, &m))| m) {
            rows.push((i * t + j - 1) as u32);
            wanted.push(tok);
        }
        ranges.push(start..rows.len());
    }
    let dev = model.device();
    let hidden = model.forward_hidden(&Tensor::from_vec(padded, (b, t), dev)?, mode, None)?;
    let h = hidden.dim(D::Minus1)?;
    let n = rows.len();
    let picked = hidden.reshape((b * t, h))?.index_select(&Tensor::from_vec(rows, n, dev)?, 0)?;
    Ok((picked, wanted, ranges))
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

/// log p(target) for each hidden row with logits scaled by `scale`, and each row's entropy,
/// computing the logits a chunk of rows at a time.
fn chunked_logps(model: &Model, hidden: &Tensor, targets: &[u32], scale: f64) -> Result<(Tensor, Vec<f32>)> {
    let n = targets.len();
    let (mut out, mut entropy) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for start in (0..n).step_by(LOGIT_ROWS) {
        let len = LOGIT_ROWS.min(n - start);
        let mut logits = model.logits(&hidden.narrow(0, start, len)?, Mode::Infer)?.to_dtype(DType::F32)?;
        if scale != 1.0 {
            logits = (logits * scale)?;
        }
        let logits: Vec<Vec<f32>> = logits.to_vec2()?;
        let chunk: Vec<(f32, f32)> = logits
            .par_iter()
            .zip(&targets[start..start + len])
            .map(|(row, &t)| {
                let lse = log_sum_exp(row);
                let mean_logit: f64 = row.iter().map(|&x| ((x as f64 - lse).exp()) * x as f64).sum();
                ((row[t as usize] as f64 - lse) as f32, (lse - mean_logit) as f32)
            })
            .collect();
        out.extend(chunk.iter().map(|c| c.0));
        entropy.extend(chunk.iter().map(|c| c.1));
    }
    Ok((Tensor::from_vec(out, n, hidden.device())?, entropy))
}

#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    pub token_logps: Vec<f32>,
    pub sum: f64,
    pub mean: f64,
}

/// Groups item indices into batches of at most `tokens_per_batch` padded tokens (at least one item
/// each), longest first so that a batch holds items of similar length.
pub fn length_batches(lens: &[usize], tokens_per_batch: usize) -> Vec<Vec<usize>> {
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
    check_candidates(model, candidates)?;
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

fn check_candidates(model: &Model, candidates: &[u32]) -> Result<()> {
    match candidates.iter().find(|&&c| c as usize >= model.cfg.vocab_size) {
        Some(&bad) => Err(Error::Input(format!("candidate token {bad} is outside the vocabulary of {}", model.cfg.vocab_size))),
        None => Ok(()),
    }
}

/// Length of the longest common prefix of token sequences.
fn common_prefix(seqs: &[&[u32]]) -> usize {
    let Some(first) = seqs.first() else { return 0 };
    (0..first.len()).find(|&i| seqs.iter().any(|s| s.get(i) != Some(&first[i]))).unwrap_or(first.len())
}

/// Right-pads rows into a (B, T) id tensor (T at least 1) and returns it with the real lengths.
fn padded(rows: &[&[u32]], device: &candle_core::Device) -> Result<(Tensor, Vec<usize>)> {
    let t = rows.iter().map(|r| r.len()).max().unwrap_or(0).max(1);
    let mut ids = Vec::with_capacity(rows.len() * t);
    for r in rows {
        ids.extend_from_slice(r);
        ids.extend(std::iter::repeat_n(0u32, t - r.len()));
    }
    Ok((Tensor::from_vec(ids, (rows.len(), t), device)?, rows.iter().map(|r| r.len()).collect()))
}

/// `next_token_logps` for groups of prompts (a judge's items, each asked under several option
/// orders), computing shared prefixes once: the prefix common to every prompt (the instruction)
/// is run once, each group's common prefix (the item) once per group, and only the rest (the
/// order-specific question) per prompt. Results equal `next_token_logps` up to float rounding.
pub fn next_token_logps_grouped(model: &Model, groups: &[Vec<Vec<u32>>], candidates: &[u32], tokens_per_batch: usize) -> Result<Vec<Vec<Vec<f32>>>> {
    check_candidates(model, candidates)?;
    let mut out: Vec<Vec<Vec<f32>>> = groups.iter().map(|g| vec![Vec::new(); g.len()]).collect();
    for_each_next_token_row(model, groups, tokens_per_batch, |g, k, row| {
        let lse = log_sum_exp(row);
        out[g][k] = candidates.iter().map(|&c| (row[c as usize] as f64 - lse) as f32).collect();
    })?;
    Ok(out)
}

/// The whole next-token log-probability distribution after each prompt of each group (a
/// server answering one-token requests with top log-probs), with the prefix sharing of
/// `next_token_logps_grouped`.
pub fn next_token_distributions_grouped(model: &Model, groups: &[Vec<Vec<u32>>], tokens_per_batch: usize) -> Result<Vec<Vec<Vec<f32>>>> {
    let mut out: Vec<Vec<Vec<f32>>> = groups.iter().map(|g| vec![Vec::new(); g.len()]).collect();
    for_each_next_token_row(model, groups, tokens_per_batch, |g, k, row| {
        let lse = log_sum_exp(row) as f32;
        out[g][k] = row.iter().map(|&x| x - lse).collect();
    })?;
    Ok(out)
}

/// Runs the grouped prompts with shared prefixes computed once and hands each prompt's
/// next-token logits to `each(group, index in group, logits)`.
fn for_each_next_token_row(
    model: &Model,
    groups: &[Vec<Vec<u32>>],
    tokens_per_batch: usize,
    mut each: impl FnMut(usize, usize, &[f32]),
) -> Result<()> {
    for_each_answer_hidden_batch(model, groups, tokens_per_batch, &[], |rows, hidden| {
        let logits: Vec<Vec<f32>> = model.logits(&hidden[0], Mode::Infer)?.to_dtype(DType::F32)?.to_vec2()?;
        for (&(g, k), row) in rows.iter().zip(&logits) {
            each(g, k, row);
        }
        Ok(())
    })
}

/// The hidden state at the answer position of each prompt of each group, with the prefix
/// sharing of `next_token_logps_grouped`: the residual stream after each layer of `layers`
/// (0-based, ascending; the last layer's is the state the option logits are read from), each
/// through the final norm, concatenated. What a stance head reads.
pub fn answer_hidden_grouped(model: &Model, groups: &[Vec<Vec<u32>>], tokens_per_batch: usize, layers: &[usize]) -> Result<Vec<Vec<Vec<f32>>>> {
    if layers.is_empty() || layers.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::Input(format!("layers {layers:?}: expected at least one, ascending")));
    }
    let mut out: Vec<Vec<Vec<f32>>> = groups.iter().map(|g| vec![Vec::new(); g.len()]).collect();
    for_each_answer_hidden_batch(model, groups, tokens_per_batch, layers, |rows, hidden| {
        let per_layer: Vec<Vec<Vec<f32>>> = hidden[1..].iter().map(|h| h.to_dtype(DType::F32)?.to_vec2()).collect::<candle_core::Result<_>>()?;
        for (r, &(g, k)) in rows.iter().enumerate() {
            out[g][k] = per_layer.iter().flat_map(|layer| layer[r].iter().copied()).collect();
        }
        Ok(())
    })?;
    Ok(out)
}

/// Runs the grouped prompts with shared prefixes computed once and hands each batch's
/// answer-position hidden states to `each(rows, hidden)`: `hidden[0]` the final (N, H), then
/// one (N, H) per layer of `capture`; row i is prompt `rows[i] = (group, index in group)`.
fn for_each_answer_hidden_batch(
    model: &Model,
    groups: &[Vec<Vec<u32>>],
    tokens_per_batch: usize,
    capture: &[usize],
    mut each: impl FnMut(&[(usize, usize)], &[Tensor]) -> Result<()>,
) -> Result<()> {
    let all: Vec<&[u32]> = groups.iter().flatten().map(Vec::as_slice).collect();
    if all.iter().any(|p| p.is_empty()) || groups.iter().any(Vec::is_empty) {
        return Err(Error::Input("empty prompt or group".into()));
    }
    let shortest = all.iter().map(|p| p.len()).min().unwrap_or(1);
    // Each prompt keeps at least its last token out of every shared part.
    let shared = common_prefix(&all).min(shortest - 1);
    let dev = model.device();
    let root =
        if shared > 0 { Some(model.forward_context(&Tensor::from_slice(&all[0][..shared], (1, shared), dev)?, &[shared], None)?.1) } else { None };
    let group_prefix: Vec<usize> = groups
        .iter()
        .map(|g| {
            let refs: Vec<&[u32]> = g.iter().map(Vec::as_slice).collect();
            let min = refs.iter().map(|p| p.len()).min().unwrap();
            common_prefix(&refs).min(min - 1).max(shared)
        })
        .collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.iter().map(Vec::len).sum::<usize>()).collect();
    for chunk in length_batches(&lens, tokens_per_batch) {
        // The groups' own prefixes, continuing the shared one.
        let bodies: Vec<&[u32]> = chunk.iter().map(|&g| &groups[g][0][shared..group_prefix[g]]).collect();
        let (ids, body_lens) = padded(&bodies, dev)?;
        let root_rows = match &root {
            Some(r) => Some(r.select(&vec![0; chunk.len()])?),
            None => None,
        };
        let (_, items) = model.forward_context(&ids, &body_lens, root_rows.as_ref())?;
        // Every prompt's own tail, continuing its group.
        let mut rows = Vec::new();
        let mut tails: Vec<&[u32]> = Vec::new();
        for (r, &g) in chunk.iter().enumerate() {
            for (k, p) in groups[g].iter().enumerate() {
                rows.push((r, g, k));
                tails.push(&p[group_prefix[g]..]);
            }
        }
        let (ids, tail_lens) = padded(&tails, dev)?;
        let ctx = items.select(&rows.iter().map(|&(r, _, _)| r).collect::<Vec<_>>())?;
        let (hidden, captured, _) = model.forward_context_capturing(&ids, &tail_lens, Some(&ctx), capture)?;
        let (n, t, h) = hidden.dims3()?;
        let last = Tensor::from_vec(tail_lens.iter().enumerate().map(|(i, &l)| (i * t + l - 1) as u32).collect(), n, dev)?;
        let picked: Vec<Tensor> =
            std::iter::once(&hidden).chain(&captured).map(|x| x.reshape((n * t, h))?.index_select(&last, 0)).collect::<candle_core::Result<_>>()?;
        let prompts: Vec<(usize, usize)> = rows.iter().map(|&(_, g, k)| (g, k)).collect();
        each(&prompts, &picked)?;
    }
    Ok(())
}

/// The next token's log-probability distribution at the given positions of one sequence
/// (row i predicts token `positions[i] + 1`), each row handed to `visit(i, row)` and reduced
/// there (to a token's log-prob and its top alternatives, as a server reports them): only
/// `LOGIT_ROWS` rows of the vocabulary exist at a time, however long the sequence.
pub fn map_position_distributions<T>(model: &Model, ids: &[u32], positions: &[usize], mut visit: impl FnMut(usize, &[f32]) -> T) -> Result<Vec<T>> {
    if ids.is_empty() || ids.len() > model.cfg.max_position_embeddings {
        return Err(Error::Input(format!("a sequence of {} tokens cannot be scored (context {})", ids.len(), model.cfg.max_position_embeddings)));
    }
    if let Some(bad) = positions.iter().find(|&&p| p >= ids.len()) {
        return Err(Error::Input(format!("position {bad} is outside a sequence of {} tokens", ids.len())));
    }
    if positions.is_empty() {
        return Ok(Vec::new());
    }
    let dev = model.device();
    let hidden = model.forward_hidden(&Tensor::from_slice(ids, (1, ids.len()), dev)?, Mode::Infer, None)?;
    let h = hidden.dim(D::Minus1)?;
    let rows: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
    let picked = hidden.reshape((ids.len(), h))?.index_select(&Tensor::from_vec(rows, positions.len(), dev)?, 0)?;
    let mut out = Vec::with_capacity(positions.len());
    for start in (0..positions.len()).step_by(LOGIT_ROWS) {
        let len = LOGIT_ROWS.min(positions.len() - start);
        let logits: Vec<Vec<f32>> = model.logits(&picked.narrow(0, start, len)?, Mode::Infer)?.to_dtype(DType::F32)?.to_vec2()?;
        for (i, mut row) in logits.into_iter().enumerate() {
            let lse = log_sum_exp(&row) as f32;
            row.iter_mut().for_each(|x| *x -= lse);
            out.push(visit(start + i, &row));
        }
    }
    Ok(out)
}
