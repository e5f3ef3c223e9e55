//! Batched sampling with a KV cache. Prompts of different lengths share one batch of cache
//! slots; a finished sequence's slot is refilled with the next waiting prompt, so the batch stays
//! full. Each request draws from its own seeded RNG, so its output does not depend on which other
//! requests share its batch.

use crate::error::{Error, Result};
use crate::kv::{KvBatch, KvShape, KvStore};
use crate::model::{Mode, Model};
use candle_core::{Tensor, D};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy decoding.
    pub temperature: f64,
    pub top_p: f64,
    pub max_new_tokens: usize,
    pub seed: u64,
}

impl Default for SamplingParams {
    /// The paper's evaluation settings.
    fn default() -> Self {
        SamplingParams { temperature: 0.7, top_p: 1.0, max_new_tokens: 256, seed: 0 }
    }
}

#[derive(Clone, Debug)]
pub struct Request {
    pub prompt: Vec<u32>,
    /// Distinguishes requests in the RNG seed (e.g. question index and sample number).
    pub seed_key: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// Ended with this stop token (not included in `tokens`).
    Stop(u32),
    /// Reached max_new_tokens.
    Length,
}

#[derive(Clone, Debug)]
pub struct Completion {
    /// Index of the request in the input slice.
    pub request: usize,
    pub tokens: Vec<u32>,
    pub finish: Finish,
}

struct Active {
    request: usize,
    tokens: Vec<u32>,
    rng: StdRng,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

crate::multiversion! {
fn softmax_weights(logits: &[f32], max: f32, inv_t: f32) -> Vec<f64> {
    logits.iter().map(|&l| crate::simd::exp_fast((l - max) * inv_t) as f64).collect()
}
}

/// Draws a token from logits with temperature and nucleus (top-p) sampling.
pub fn sample_token(logits: &[f32], params: &SamplingParams, rng: &mut StdRng) -> u32 {
    let argmax = || logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i as u32).unwrap_or(0);
    if params.temperature <= 0.0 {
        return argmax();
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let inv_t = (1.0 / params.temperature) as f32;
    let weights: Vec<f64> = softmax_weights(logits, max, inv_t);
    let total: f64 = weights.iter().sum();
    let mut candidates: Vec<(u32, f64)> = if params.top_p < 1.0 {
        // Tokens below 1e-9 of the mass cannot change which tokens make up the nucleus in practice;
        // skipping them avoids sorting the whole vocabulary.
        let mut c: Vec<(u32, f64)> = weights.iter().enumerate().filter(|(_, &w)| w > total * 1e-9).map(|(i, &w)| (i as u32, w)).collect();
        c.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut cum = 0.0;
        let cut = c
            .iter()
            .position(|&(_, w)| {
                cum += w;
                cum >= params.top_p * total
            })
            .map_or(c.len(), |i| i + 1);
        c.truncate(cut);
        c
    } else {
        weights.iter().enumerate().map(|(i, &w)| (i as u32, w)).collect()
    };
    let mass: f64 = candidates.iter().map(|c| c.1).sum();
    let mut r = rng.random::<f64>() * mass;
    for &(id, w) in &candidates {
        r -= w;
        if r <= 0.0 {
            return id;
        }
    }
    candidates.pop().map(|c| c.0).unwrap_or_else(argmax)
}

/// The seed of a request's own RNG: the run's seed mixed with the request's key.
pub fn request_rng_seed(seed: u64, seed_key: u64) -> u64 {
    splitmix(seed ^ splitmix(seed_key))
}

/// Generates a completion for every request, `batch_size` sequences at a time, calling `on_done`
/// as each one finishes (in completion order).
pub fn generate(
    model: &Model,
    requests: &[Request],
    params: &SamplingParams,
    stop_ids: &[u32],
    batch_size: usize,
    on_done: impl FnMut(Completion) -> Result<()>,
) -> Result<()> {
    let store = KvStore::for_device(model.device());
    generate_with_store(model, requests, params, stop_ids, batch_size, store, on_done)
}

/// `generate` with a chosen KV store (tests run the device store's code on the CPU with this).
pub fn generate_with_store(
    model: &Model,
    requests: &[Request],
    params: &SamplingParams,
    stop_ids: &[u32],
    batch_size: usize,
    store: KvStore,
    on_done: impl FnMut(Completion) -> Result<()>,
) -> Result<()> {
    let seeds: Vec<u64> = requests.iter().map(|r| request_rng_seed(params.seed, r.seed_key)).collect();
    generate_seeded(model, requests, &seeds, params, stop_ids, batch_size, store, on_done)
}

/// `generate_with_store` with each request's RNG seed given outright (`rng_seeds[i]` for request
/// i; `params.seed` and the keys are not used): a server reproducing a client's seeds.
#[allow(clippy::too_many_arguments)]
pub fn generate_seeded(
    model: &Model,
    requests: &[Request],
    rng_seeds: &[u64],
    params: &SamplingParams,
    stop_ids: &[u32],
    batch_size: usize,
    store: KvStore,
    mut on_done: impl FnMut(Completion) -> Result<()>,
) -> Result<()> {
    if rng_seeds.len() != requests.len() {
        return Err(Error::Input(format!("{} seeds for {} requests", rng_seeds.len(), requests.len())));
    }
    if requests.is_empty() {
        return Ok(());
    }
    let cfg = &model.cfg;
    let longest = requests.iter().map(|r| r.prompt.len()).max().unwrap_or(0);
    let capacity = longest + params.max_new_tokens + 1;
    if capacity > cfg.max_position_embeddings {
        return Err(Error::Input(format!(
            "a prompt of {longest} tokens plus {} new tokens exceeds the model's context of {} tokens",
            params.max_new_tokens, cfg.max_position_embeddings
        )));
    }
    if let Some((i, _)) = requests.iter().enumerate().find(|(_, r)| r.prompt.is_empty()) {
        return Err(Error::Input(format!("request {i} has an empty prompt")));
    }
    // Longest first: prefill batches then hold prompts of similar length.
    let mut queue: Vec<usize> = (0..requests.len()).collect();
    queue.sort_by_key(|&i| std::cmp::Reverse(requests[i].prompt.len()));
    queue.reverse();
    let slots_n = batch_size.max(1).min(requests.len());
    let shape = KvShape { layers: cfg.num_layers, kv_heads: cfg.num_kv_heads, heads: cfg.num_heads, head_dim: cfg.head_dim, capacity };
    let mut kv = KvBatch::new(shape, slots_n, store, model.dtype(), model.device())?;
    let mut slots: Vec<Option<Active>> = (0..slots_n).map(|_| None).collect();
    let finish_of = |tok: u32, len: usize| -> Option<Finish> {
        if stop_ids.contains(&tok) {
            Some(Finish::Stop(tok))
        } else if len >= params.max_new_tokens {
            Some(Finish::Length)
        } else {
            None
        }
    };
    loop {
        let free: Vec<usize> = (0..slots.len()).filter(|&s| slots[s].is_none()).collect();
        if !free.is_empty() && !queue.is_empty() {
            let take: Vec<usize> = (0..free.len().min(queue.len())).map(|_| queue.pop().unwrap()).collect();
            let targets = &free[..take.len()];
            let first = prefill(model, &mut kv, requests, &take, targets)?;
            for ((&req, &slot), logits) in take.iter().zip(targets).zip(first) {
                let mut rng = StdRng::seed_from_u64(rng_seeds[req]);
                let tok = sample_token(&logits, params, &mut rng);
                let mut active = Active { request: req, tokens: vec![tok], rng };
                match finish_of(tok, 1) {
                    Some(f) => on_done(finish(&mut active, f))?,
                    None => slots[slot] = Some(active),
                }
            }
            continue;
        }
        let live: Vec<usize> = (0..slots.len()).filter(|&s| slots[s].is_some()).collect();
        if live.is_empty() {
            break;
        }
        if live.len() < slots.len() {
            // Nothing waits: drop the finished slots rather than compute them.
            kv.retain(&live)?;
            slots = live.iter().map(|&s| slots[s].take()).collect();
        }
        let last: Vec<u32> = slots.iter().map(|a| *a.as_ref().unwrap().tokens.last().unwrap()).collect();
        let ids = Tensor::from_vec(last, slots.len(), model.device())?;
        let hidden = model.decode_step(&ids, &mut kv)?;
        let logits: Vec<Vec<f32>> = model.logits(&hidden, Mode::Infer)?.to_dtype(candle_core::DType::F32)?.to_vec2()?;
        slots.par_iter_mut().zip(logits.par_iter()).for_each(|(slot, row)| {
            let a = slot.as_mut().unwrap();
            let tok = sample_token(row, params, &mut a.rng);
            a.tokens.push(tok);
        });
        for slot in slots.iter_mut() {
            let a = slot.as_mut().unwrap();
            let tok = *a.tokens.last().unwrap();
            if let Some(f) = finish_of(tok, a.tokens.len()) {
                on_done(finish(a, f))?;
                *slot = None;
            }
        }
    }
    Ok(())
}

fn finish(a: &mut Active, f: Finish) -> Completion {
    let mut tokens = std::mem::take(&mut a.tokens);
    if matches!(f, Finish::Stop(_)) {
        tokens.pop();
    }
    Completion { request: a.request, tokens, finish: f }
}

/// Runs the prompts of `take` through the model, writes their keys/values into `slots` and
/// returns the logits of each prompt's last token.
fn prefill(model: &Model, kv: &mut KvBatch, requests: &[Request], take: &[usize], slots: &[usize]) -> Result<Vec<Vec<f32>>> {
    let lens: Vec<usize> = take.iter().map(|&r| requests[r].prompt.len()).collect();
    let t = *lens.iter().max().unwrap();
    let mut ids = Vec::with_capacity(take.len() * t);
    for &r in take {
        let p = &requests[r].prompt;
        ids.extend_from_slice(p);
        ids.extend(std::iter::repeat_n(0u32, t - p.len()));
    }
    let ids = Tensor::from_vec(ids, (take.len(), t), model.device())?;
    let hidden = model.forward_hidden(&ids, Mode::Infer, Some((kv, slots, &lens)))?;
    let h = hidden.dim(D::Minus1)?;
    let rows: Vec<u32> = lens.iter().enumerate().map(|(i, &n)| (i * t + n - 1) as u32).collect();
    let rows = Tensor::from_vec(rows, take.len(), model.device())?;
    let last = hidden.reshape((take.len() * t, h))?.index_select(&rows, 0)?;
    Ok(model.logits(&last, Mode::Infer)?.to_dtype(candle_core::DType::F32)?.to_vec2()?)
}
