//! Key/value cache for a batch of independent sequences ("slots").
//!
//! Each layer holds one tensor (S, kv_heads, capacity, head_dim) for keys and one for values.
//! Slots have their own lengths, so a finished sequence's slot can be refilled with a new prompt
//! while the others keep decoding; masks hide each slot's unused positions.

use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};

pub struct KvBatch {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    lens: Vec<usize>,
    capacity: usize,
    device: Device,
}

impl KvBatch {
    pub fn new(layers: usize, slots: usize, kv_heads: usize, capacity: usize, head_dim: usize, dtype: DType, device: &Device) -> Result<Self> {
        let zeros = || Tensor::zeros((slots, kv_heads, capacity, head_dim), dtype, device);
        let keys = (0..layers).map(|_| zeros()).collect::<candle_core::Result<Vec<_>>>()?;
        let values = (0..layers).map(|_| zeros()).collect::<candle_core::Result<Vec<_>>>()?;
        Ok(KvBatch { keys, values, lens: vec![0; slots], capacity, device: device.clone() })
    }

    pub fn slots(&self) -> usize {
        self.lens.len()
    }

    pub fn lens(&self) -> &[usize] {
        &self.lens
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Writes the keys/values of a prefill batch (B, kv, T, hd) into `slots`; row i holds
    /// `lens[i]` real tokens. The rest of each slot is zeroed, as `append` adds into it.
    pub fn write_prefill(&mut self, layer: usize, k: &Tensor, v: &Tensor, slots: &[usize], lens: &[usize]) -> Result<()> {
        let t = k.dim(2)?;
        if t > self.capacity {
            return Err(Error::Input(format!("prompt of {t} tokens exceeds the cache capacity {}", self.capacity)));
        }
        let valid: Vec<f32> = lens.iter().flat_map(|&n| (0..t).map(move |p| if p < n { 1.0 } else { 0.0 })).collect();
        let valid = Tensor::from_vec(valid, (lens.len(), 1, t, 1), &self.device)?.to_dtype(k.dtype())?;
        for (cache, new) in [(&self.keys[layer], k), (&self.values[layer], v)] {
            let new = new.broadcast_mul(&valid)?;
            let (b, h, _, d) = new.dims4()?;
            let padded = if t < self.capacity {
                Tensor::cat(&[&new, &Tensor::zeros((b, h, self.capacity - t, d), new.dtype(), &self.device)?], 2)?
            } else {
                new
            };
            for (i, &slot) in slots.iter().enumerate() {
                cache.slice_set(&padded.narrow(0, i, 1)?.contiguous()?, 0, slot)?;
            }
        }
        if layer == 0 {
            for (&slot, &n) in slots.iter().zip(lens) {
                self.lens[slot] = n;
            }
        }
        Ok(())
    }

    /// Adds one new key/value per slot (S, kv, 1, hd) at each slot's current length.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let (s, h, _, d) = k.dims4()?;
        if let Some(&full) = self.lens.iter().find(|&&n| n >= self.capacity) {
            return Err(Error::Input(format!("sequence of {full} tokens reached the cache capacity")));
        }
        let idx: Vec<u32> = self.lens.iter().flat_map(|&n| std::iter::repeat_n(n as u32, h * d)).collect();
        let idx = Tensor::from_vec(idx, (s, h, 1, d), &self.device)?;
        self.keys[layer].scatter_add_set(&idx, &k.contiguous()?, 2)?;
        self.values[layer].scatter_add_set(&idx, &v.contiguous()?, 2)?;
        Ok(())
    }

    /// Number of positions attention must look at after the current step's append.
    pub fn span_after_step(&self) -> usize {
        self.lens.iter().max().copied().unwrap_or(0) + 1
    }

    pub fn view(&self, layer: usize, span: usize) -> Result<(Tensor, Tensor)> {
        Ok((self.keys[layer].narrow(2, 0, span)?, self.values[layer].narrow(2, 0, span)?))
    }

    /// Additive mask (S, 1, 1, 1, span) for the step's query at position lens[s].
    pub fn decode_mask(&self, window: Option<usize>, dtype: DType) -> Result<Tensor> {
        let span = self.span_after_step();
        let mask: Vec<f32> = self.lens.iter()
            .flat_map(|&q| (0..span).map(move |k| {
                let visible = k <= q && window.is_none_or(|w| q - k < w);
                if visible { 0.0 } else { f32::NEG_INFINITY }
            }))
            .collect();
        Ok(Tensor::from_vec(mask, (self.lens.len(), 1, 1, 1, span), &self.device)?.to_dtype(dtype)?)
    }

    pub fn advance(&mut self) {
        for n in &mut self.lens {
            *n += 1;
        }
    }

    /// Keeps only the given slots, in that order (drops finished sequences when no work waits).
    pub fn retain(&mut self, keep: &[usize]) -> Result<()> {
        let idx = Tensor::from_vec(keep.iter().map(|&i| i as u32).collect::<Vec<_>>(), keep.len(), &self.device)?;
        for t in self.keys.iter_mut().chain(self.values.iter_mut()) {
            *t = t.index_select(&idx, 0)?;
        }
        self.lens = keep.iter().map(|&i| self.lens[i]).collect();
        Ok(())
    }
}
