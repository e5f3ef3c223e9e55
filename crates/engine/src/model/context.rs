//! Prefix caching and decoding: passes that continue sequences already run, from a `KvContext`
//! (judging) or a `KvBatch` (generation). Inference only.

use super::{Mode, Model};
use crate::error::{Error, Result};
use crate::kv::KvBatch;
use candle_core::Tensor;

/// Keys and values of sequences already run (per layer, (B, kv_heads, columns, head_dim)), with
/// the position each column holds per row (None: padding), for `Model::forward_context`.
#[derive(Clone)]
pub struct KvContext {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    positions: Vec<Vec<Option<usize>>>,
}

impl KvContext {
    /// The position row i's next token takes.
    pub fn next_position(&self, i: usize) -> usize {
        self.positions[i].iter().flatten().max().map_or(0, |p| p + 1)
    }

    /// A context whose row r is this context's row `rows[r]` (rows may repeat).
    pub fn select(&self, rows: &[usize]) -> Result<KvContext> {
        let idx = Tensor::from_vec(rows.iter().map(|&r| r as u32).collect::<Vec<_>>(), rows.len(), self.keys[0].device())?;
        let pick = |ts: &[Tensor]| ts.iter().map(|t| t.index_select(&idx, 0)).collect::<candle_core::Result<Vec<_>>>();
        Ok(KvContext { keys: pick(&self.keys)?, values: pick(&self.values)?, positions: rows.iter().map(|&r| self.positions[r].clone()).collect() })
    }
}

impl Model {
    /// Final hidden states (B, T, H) of right-padded rows (`lens` real tokens each) that continue
    /// the sequences held in `context` row by row (or start fresh without one), and the context
    /// extended by these tokens. This is prefix caching: a judge instruction shared by every
    /// prompt, or an item shared by several option orders, is computed once and continued many
    /// times. Inference only.
    pub fn forward_context(&self, ids: &Tensor, lens: &[usize], context: Option<&KvContext>) -> Result<(Tensor, KvContext)> {
        let (hidden, _, context) = self.forward_context_capturing(ids, lens, context, &[])?;
        Ok((hidden, context))
    }

    /// `forward_context`, also returning the residual stream after each layer in `capture`
    /// (0-based, returned in layer order), passed through the final norm: what a probe of
    /// intermediate layers reads.
    pub fn forward_context_capturing(
        &self,
        ids: &Tensor,
        lens: &[usize],
        context: Option<&KvContext>,
        capture: &[usize],
    ) -> Result<(Tensor, Vec<Tensor>, KvContext)> {
        let mode = Mode::Infer;
        if let Some(&bad) = capture.iter().find(|&&l| l >= self.layers.len()) {
            return Err(Error::Input(format!("layer {bad} does not exist (the model has {})", self.layers.len())));
        }
        let mut captured = Vec::with_capacity(capture.len());
        let (b, t) = ids.dims2()?;
        if context.is_some_and(|c| c.positions.len() != b) || lens.len() != b {
            return Err(Error::Input("forward_context: one context row and one length per input row".into()));
        }
        let starts: Vec<usize> = (0..b).map(|i| context.map_or(0, |c| c.next_position(i))).collect();
        let positions: Vec<Vec<Option<usize>>> = (0..b)
            .map(|i| {
                let mut p = context.map_or(Vec::new(), |c| c.positions[i].clone());
                p.extend((0..t).map(|j| (j < lens[i]).then_some(starts[i] + j)));
                p
            })
            .collect();
        let global = self.context_mask(&positions, &starts, lens, t, None)?;
        let local = match self.cfg.sliding_window {
            Some(w) if self.cfg.sliding_layers.iter().any(|&s| s) => Some(self.context_mask(&positions, &starts, lens, t, Some(w))?),
            _ => None,
        };
        let rope = self.rope_for_layers(&starts, t)?;
        let mut x = self.embed(ids, mode)?;
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        for (l, layer) in self.layers.iter().enumerate() {
            let h = self.rms_norm(&x, &layer.attn_in_norm, mode)?;
            let (q, k, v) = self.qkv(&h, layer, &rope[l], mode)?;
            let (k, v) = match context {
                Some(c) => (Tensor::cat(&[&c.keys[l], &k], 2)?, Tensor::cat(&[&c.values[l], &v], 2)?),
                None => (k, v),
            };
            let mask = match (&local, self.window(l)) {
                (Some(m), Some(_)) => m,
                _ => &global,
            };
            let attn = self.attend(&q, &k, &v, mask, mode)?;
            x = self.block(&x, layer, attn, mode)?;
            keys.push(k);
            values.push(v);
            if capture.contains(&l) {
                captured.push(self.rms_norm(&x, &self.norm, mode)?);
            }
        }
        Ok((self.rms_norm(&x, &self.norm, mode)?, captured, KvContext { keys, values, positions }))
    }

    /// Additive mask (B, 1, 1, T, columns): row i's query j (at position starts[i] + j) sees the
    /// columns holding positions up to its own (within the window, if given). Padding queries
    /// see only themselves, so no row is empty (an all -inf row would turn into NaN).
    pub(super) fn context_mask(
        &self,
        positions: &[Vec<Option<usize>>],
        starts: &[usize],
        lens: &[usize],
        t: usize,
        window: Option<usize>,
    ) -> Result<Tensor> {
        let cols = positions[0].len();
        let offset = cols - t;
        let mut mask = Vec::with_capacity(positions.len() * t * cols);
        for (i, row) in positions.iter().enumerate() {
            for j in 0..t {
                let q = starts[i] + j;
                for (c, p) in row.iter().enumerate() {
                    let visible = if j < lens[i] { p.is_some_and(|p| p <= q && window.is_none_or(|w| q - p < w)) } else { c == offset + j };
                    mask.push(if visible { 0f32 } else { f32::NEG_INFINITY });
                }
            }
        }
        Ok(Tensor::from_vec(mask, (positions.len(), 1, 1, t, cols), &self.device)?.to_dtype(self.dtype)?)
    }

    /// One decode step: `ids` holds one new token per cache slot, at position `kv.lens()[slot]`.
    /// Returns the final hidden states (S, H) and advances every slot by one.
    pub fn decode_step(&self, ids: &Tensor, kv: &mut KvBatch) -> Result<Tensor> {
        let mode = Mode::Infer;
        let s = ids.dim(0)?;
        let starts = kv.lens().to_vec();
        let rope = self.rope_for_layers(&starts, 1)?;
        let mut x = self.embed(&ids.reshape((s, 1))?, mode)?;
        let scale = 1.0 / self.cfg.query_pre_attn_scalar.sqrt();
        for (l, layer) in self.layers.iter().enumerate() {
            let h = self.rms_norm(&x, &layer.attn_in_norm, mode)?;
            let (q, k, v) = self.qkv(&h, layer, &rope[l], mode)?;
            let attn = kv.step_attention(l, &q, &k, &v, self.window(l), scale)?;
            x = self.block(&x, layer, attn, mode)?;
        }
        kv.advance();
        self.rms_norm(&x, &self.norm, mode)?.squeeze(1).map_err(Into::into)
    }
}
