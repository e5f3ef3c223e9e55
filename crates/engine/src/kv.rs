//! Key/value cache for a batch of independent sequences ("slots").
//!
//! Slots have their own lengths, so a finished sequence's slot can be refilled with a new prompt
//! while the others keep decoding. On the CPU the cache is plain memory and one decode step's
//! attention is a direct loop (parallel over slots): candle's generic ops would spend most of the
//! step on tiny matmuls and copies. Other devices keep the cache in tensors and use candle ops.

use crate::error::{Error, Result};
use crate::simd;
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

/// Shape of the cache and of the attention it serves.
#[derive(Clone, Copy, Debug)]
pub struct KvShape {
    pub layers: usize,
    pub kv_heads: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub capacity: usize,
}

enum Store {
    /// Per layer, keys as [slot][kv_head][head_dim][position] (transposed, so that scores for
    /// all positions come from vector operations along positions) and values as
    /// [slot][kv_head][position][head_dim].
    Host { keys: Vec<Vec<f32>>, values: Vec<Vec<f32>> },
    /// Per layer, tensors (S, kv_heads, capacity, head_dim).
    Device { keys: Vec<Tensor>, values: Vec<Tensor> },
}

/// Where the cache lives: host memory with the direct CPU attention loop, or device tensors with
/// candle ops (any device; the only choice off the CPU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvStore {
    Host,
    Tensor,
}

impl KvStore {
    pub fn for_device(device: &Device) -> Self {
        if device.is_cpu() {
            KvStore::Host
        } else {
            KvStore::Tensor
        }
    }
}

pub struct KvBatch {
    shape: KvShape,
    store: Store,
    lens: Vec<usize>,
    device: Device,
}

impl KvBatch {
    pub fn new(shape: KvShape, slots: usize, kind: KvStore, dtype: DType, device: &Device) -> Result<Self> {
        let per_layer = slots * shape.kv_heads * shape.capacity * shape.head_dim;
        let store = if kind == KvStore::Host && device.is_cpu() {
            Store::Host { keys: vec![vec![0.0; per_layer]; shape.layers], values: vec![vec![0.0; per_layer]; shape.layers] }
        } else {
            let zeros = || Tensor::zeros((slots, shape.kv_heads, shape.capacity, shape.head_dim), dtype, device);
            Store::Device {
                keys: (0..shape.layers).map(|_| zeros()).collect::<candle_core::Result<_>>()?,
                values: (0..shape.layers).map(|_| zeros()).collect::<candle_core::Result<_>>()?,
            }
        };
        Ok(KvBatch { shape, store, lens: vec![0; slots], device: device.clone() })
    }

    pub fn lens(&self) -> &[usize] {
        &self.lens
    }

    fn slot_stride(&self) -> usize {
        self.shape.kv_heads * self.shape.capacity * self.shape.head_dim
    }

    /// Stores the keys/values of a prefill batch (B, kv, T, hd) in `slots`; row i holds
    /// `lens[i]` real tokens (the rest is padding and is not stored).
    pub fn write_prefill(&mut self, layer: usize, k: &Tensor, v: &Tensor, slots: &[usize], lens: &[usize]) -> Result<()> {
        let (_, h, t, d) = k.dims4()?;
        let cap = self.shape.capacity;
        if t > cap {
            return Err(Error::Input(format!("prompt of {t} tokens exceeds the cache capacity {cap}")));
        }
        let stride = self.slot_stride();
        match &mut self.store {
            Store::Host { keys, values } => {
                let host = |x: &Tensor| -> Result<Vec<f32>> { Ok(x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?) };
                let (new_k, new_v) = (host(k)?, host(v)?);
                let (kc, vc) = (&mut keys[layer], &mut values[layer]);
                for (i, (&slot, &n)) in slots.iter().zip(lens).enumerate() {
                    for head in 0..h {
                        let src = ((i * h + head) * t) * d;
                        let base = slot * stride + head * cap * d;
                        vc[base..base + n * d].copy_from_slice(&new_v[src..src + n * d]);
                        for p in 0..n {
                            for j in 0..d {
                                kc[base + j * cap + p] = new_k[src + p * d + j];
                            }
                        }
                    }
                }
            }
            Store::Device { keys, values } => {
                // Padding positions must enter the cache as zeros: decode steps add into it.
                let valid: Vec<f32> = lens.iter().flat_map(|&n| (0..t).map(move |p| if p < n { 1.0 } else { 0.0 })).collect();
                let valid = Tensor::from_vec(valid, (lens.len(), 1, t, 1), &self.device)?.to_dtype(k.dtype())?;
                for (cache, new) in [(&keys[layer], k), (&values[layer], v)] {
                    let new = &new.broadcast_mul(&valid)?;
                    let padded = if t < cap {
                        Tensor::cat(&[new, &Tensor::zeros((new.dim(0)?, h, cap - t, d), new.dtype(), &self.device)?], 2)?
                    } else {
                        new.clone()
                    };
                    for (i, &slot) in slots.iter().enumerate() {
                        cache.slice_set(&padded.narrow(0, i, 1)?.contiguous()?, 0, slot)?;
                    }
                }
            }
        }
        if layer == 0 {
            for (&slot, &n) in slots.iter().zip(lens) {
                self.lens[slot] = n;
            }
        }
        Ok(())
    }

    /// Appends this step's key/value (S, kv, 1, hd) at each slot's length and attends with the
    /// queries q (S, heads, 1, hd) over positions 0..=len (limited to `window` if given).
    /// Returns (S, 1, heads * hd).
    pub fn step_attention(&mut self, layer: usize, q: &Tensor, k: &Tensor, v: &Tensor, window: Option<usize>, scale: f64) -> Result<Tensor> {
        let KvShape { kv_heads, heads, head_dim: d, capacity: cap, .. } = self.shape;
        let s = self.lens.len();
        if let Some(&full) = self.lens.iter().find(|&&n| n >= cap) {
            return Err(Error::Input(format!("sequence of {full} tokens reached the cache capacity")));
        }
        let stride = self.slot_stride();
        let lens = self.lens.clone();
        match &mut self.store {
            Store::Host { keys, values } => {
                let out_dtype = q.dtype();
                let host = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?) };
                let (q, k, v) = (host(q)?, host(k)?, host(v)?);
                let (kc, vc) = (&mut keys[layer], &mut values[layer]);
                for (slot, &n) in lens.iter().enumerate() {
                    for g in 0..kv_heads {
                        let base = slot * stride + g * cap * d;
                        let src = (slot * kv_heads + g) * d;
                        vc[base + n * d..base + (n + 1) * d].copy_from_slice(&v[src..src + d]);
                        for j in 0..d {
                            kc[base + j * cap + n] = k[src + j];
                        }
                    }
                }
                let (kc, vc) = (&*kc, &*vc);
                let groups = heads / kv_heads;
                let mut out = vec![0f32; s * heads * d];
                out.par_chunks_mut(heads * d).enumerate().for_each(|(slot, out)| {
                    let n = lens[slot] + 1;
                    let first = window.map_or(0, |w| n.saturating_sub(w));
                    let mut scores = vec![0f32; n];
                    for h in 0..heads {
                        let g = h / groups;
                        let base = slot * stride + g * cap * d;
                        let qh = &q[(slot * heads + h) * d..][..d];
                        attend_one(
                            qh,
                            &kc[base..base + cap * d],
                            cap,
                            &vc[base..base + n * d],
                            first,
                            scale as f32,
                            &mut scores,
                            &mut out[h * d..(h + 1) * d],
                        );
                    }
                });
                Ok(Tensor::from_vec(out, (s, 1, heads * d), &self.device)?.to_dtype(out_dtype)?)
            }
            Store::Device { keys, values } => {
                let idx: Vec<u32> = lens.iter().flat_map(|&n| std::iter::repeat_n(n as u32, kv_heads * d)).collect();
                let idx = Tensor::from_vec(idx, (s, kv_heads, 1, d), &self.device)?;
                keys[layer].scatter_add_set(&idx, &k.contiguous()?, 2)?;
                values[layer].scatter_add_set(&idx, &v.contiguous()?, 2)?;
                let span = lens.iter().max().copied().unwrap_or(0) + 1;
                let kk = keys[layer].narrow(2, 0, span)?;
                let vv = values[layer].narrow(2, 0, span)?;
                let mask: Vec<f32> = lens
                    .iter()
                    .flat_map(|&qp| {
                        (0..span).map(move |kp| {
                            let visible = kp <= qp && window.is_none_or(|w| qp - kp < w);
                            if visible {
                                0.0
                            } else {
                                f32::NEG_INFINITY
                            }
                        })
                    })
                    .collect();
                let mask = Tensor::from_vec(mask, (s, 1, 1, span), &self.device)?.to_dtype(q.dtype())?;
                let groups = heads / kv_heads;
                let qg = (q.contiguous()?.reshape((s, kv_heads, groups, d))? * scale)?;
                let scores = qg.matmul(&kk.t()?)?.broadcast_add(&mask)?;
                let probs = candle_nn::ops::softmax_last_dim(&scores.contiguous()?)?;
                Ok(probs.matmul(&vv.contiguous()?)?.reshape((s, 1, heads * d))?)
            }
        }
    }

    pub fn advance(&mut self) {
        for n in &mut self.lens {
            *n += 1;
        }
    }

    /// Keeps only the given slots, in that order (drops finished sequences when no work waits).
    pub fn retain(&mut self, keep: &[usize]) -> Result<()> {
        let stride = self.slot_stride();
        match &mut self.store {
            Store::Host { keys, values } => {
                for cache in keys.iter_mut().chain(values.iter_mut()) {
                    let mut packed = Vec::with_capacity(keep.len() * stride);
                    for &slot in keep {
                        packed.extend_from_slice(&cache[slot * stride..(slot + 1) * stride]);
                    }
                    *cache = packed;
                }
            }
            Store::Device { keys, values } => {
                let idx = Tensor::from_vec(keep.iter().map(|&i| i as u32).collect::<Vec<_>>(), keep.len(), &self.device)?;
                for t in keys.iter_mut().chain(values.iter_mut()) {
                    *t = t.index_select(&idx, 0)?;
                }
            }
        }
        self.lens = keep.iter().map(|&i| self.lens[i]).collect();
        Ok(())
    }
}

crate::multiversion! {
/// Softmax attention of one query over positions first..n. `keys_t` is [head_dim][cap]
/// (transposed), `values` is [n][head_dim].
#[allow(clippy::too_many_arguments)]
fn attend_one(q: &[f32], keys_t: &[f32], cap: usize, values: &[f32], first: usize, scale: f32, scores: &mut [f32], out: &mut [f32]) {
    let d = q.len();
    let n = values.len() / d;
    let sc = &mut scores[first..n];
    sc.fill(0.0);
    for (j, &qj) in q.iter().enumerate() {
        let row = &keys_t[j * cap + first..j * cap + n];
        for (s, &k) in sc.iter_mut().zip(row) {
            *s += qj * k;
        }
    }
    let max = sc.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s)) * scale;
    let mut total = 0.0;
    for s in sc.iter_mut() {
        *s = simd::exp_fast(*s * scale - max);
        total += *s;
    }
    out.fill(0.0);
    let inv = 1.0 / total;
    for (p, &w) in (first..n).zip(sc.iter()) {
        let a = w * inv;
        for (o, v) in out.iter_mut().zip(&values[p * d..(p + 1) * d]) {
            *o += a * v;
        }
    }
}
}
