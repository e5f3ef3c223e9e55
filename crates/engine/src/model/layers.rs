//! The pieces of a decoder layer, in both modes: projections, norms, the MLP, rotary
//! embeddings, masks and attention.

use super::{Layer, Linear, Mode, Model};
use crate::config::Family;
use crate::error::{Error, Result};
use candle_core::{DType, Tensor, Var, D};
use rayon::prelude::*;

/// Rows per chunk of the packed MLP.
const MLP_ROWS: usize = 256;

impl Model {
    pub(super) fn linear(&self, x: &Tensor, l: &Linear, mode: Mode) -> Result<Tensor> {
        if self.is_frozen() && mode == Mode::Grad {
            return Err(Error::Input("this model was loaded for inference only and cannot be trained".into()));
        }
        if let (Mode::Infer, Some(p)) = (mode, self.infer_precision()) {
            let y = self.packed_matmul(x, &[&l.weight], &l.packed, p)?;
            return Ok(match &l.bias {
                Some(b) => y.broadcast_add(&Self::w(b, mode))?,
                None => y,
            });
        }
        let w = Self::w(&l.weight, mode);
        let product = |x2: &Tensor| -> Result<Tensor> {
            Ok(match (mode, self.train_precision()) {
                (Mode::Grad, Some(p)) => crate::train_ops::linear(x2, &w, p)?,
                _ => x2.matmul(&w.t()?)?,
            })
        };
        let y = match x.dims() {
            [b, t, k] => product(&x.reshape((b * t, *k))?)?.reshape((*b, *t, ()))?,
            _ => product(x)?,
        };
        Ok(match &l.bias {
            Some(b) => y.broadcast_add(&Self::w(b, mode))?,
            None => y,
        })
    }

    /// RMSNorm; Gemma scales by (1 + w), the others by w.
    pub(super) fn rms_norm(&self, x: &Tensor, w: &Var, mode: Mode) -> Result<Tensor> {
        let w = Self::w(w, mode);
        let scale = if self.cfg.family == Family::Gemma3 { (w + 1.0)? } else { w };
        let eps = self.cfg.rms_norm_eps;
        if mode == Mode::Infer && x.dtype() == DType::F32 {
            return Ok(candle_nn::ops::rms_norm(&x.contiguous()?, &scale, eps as f32)?);
        }
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?;
        let ms = xf.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = xf.broadcast_div(&(ms + eps)?.sqrt()?)?;
        Ok(normed.to_dtype(dtype)?.broadcast_mul(&scale)?)
    }

    pub(super) fn mlp(&self, x: &Tensor, layer: &Layer, mode: Mode) -> Result<Tensor> {
        if let (Mode::Infer, Some(p)) = (mode, self.infer_precision()) {
            let rows = x.elem_count() / self.cfg.hidden_size;
            if rows > MLP_ROWS {
                // Long prefills go through in row chunks: the intermediate activations of a chunk
                // stay small enough to be reused by the allocator instead of faulted in anew.
                let flat = x.reshape((rows, self.cfg.hidden_size))?;
                let parts = (0..rows)
                    .step_by(MLP_ROWS)
                    .map(|r| self.mlp(&flat.narrow(0, r, MLP_ROWS.min(rows - r))?, layer, mode))
                    .collect::<Result<Vec<_>>>()?;
                return Ok(Tensor::cat(&parts, 0)?.reshape(x.shape())?);
            }
            // One product for gate and up, the activation on the host, then down.
            let i = self.cfg.intermediate_size;
            let (y, _) = self.packed_matmul_host(x, &[&layer.gate.weight, &layer.up.weight], &layer.gate_up_packed, p)?;
            let gelu = self.cfg.family == Family::Gemma3;
            let mut act = vec![0f32; y.len() / 2];
            act.par_chunks_mut(i).zip(y.par_chunks(2 * i)).for_each(|(a, row)| crate::layer_math::gated_activation(&row[..i], &row[i..], gelu, a));
            let mut dims = x.dims().to_vec();
            *dims.last_mut().unwrap() = i;
            return self.linear(&Tensor::from_vec(act, dims, &self.device)?, &layer.down, mode);
        }
        let gate = self.linear(x, &layer.gate, mode)?;
        let act = match self.cfg.family {
            Family::Gemma3 => gate.gelu()?,
            _ => match mode {
                Mode::Infer => candle_nn::ops::silu(&gate)?,
                Mode::Grad => (&gate * candle_nn::ops::sigmoid(&gate)?)?,
            },
        };
        let up = self.linear(x, &layer.up, mode)?;
        self.linear(&(act * up)?, &layer.down, mode)
    }

    /// cos/sin of shape (B, T, head_dim/2) for the given per-row start positions.
    pub(super) fn rope_tables(&self, starts: &[usize], t: usize, theta: f64) -> Result<(Tensor, Tensor)> {
        let half = self.cfg.head_dim / 2;
        let (cos, sin) = crate::layer_math::rope_cos_sin(theta, self.cfg.head_dim, starts.iter().flat_map(|&s| s..s + t));
        let shape = (starts.len(), t, half);
        let cos = Tensor::from_vec(cos, shape, &self.device)?.to_dtype(self.dtype)?;
        let sin = Tensor::from_vec(sin, shape, &self.device)?.to_dtype(self.dtype)?;
        Ok((cos, sin))
    }

    /// Rotary embedding in the half-split layout; x is (B, heads, T, head_dim).
    pub(super) fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, mode: Mode) -> Result<Tensor> {
        if mode == Mode::Infer {
            return Ok(candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin)?);
        }
        let hd = x.dim(D::Minus1)?;
        let cos = Tensor::cat(&[cos, cos], D::Minus1)?.unsqueeze(1)?;
        let sin = Tensor::cat(&[sin, sin], D::Minus1)?.unsqueeze(1)?;
        let x1 = x.narrow(D::Minus1, 0, hd / 2)?;
        let x2 = x.narrow(D::Minus1, hd / 2, hd / 2)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        Ok((x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?)?)
    }

    pub(super) fn softmax(x: &Tensor, mode: Mode) -> Result<Tensor> {
        if mode == Mode::Infer && x.dtype() == DType::F32 {
            return Ok(candle_nn::ops::softmax_last_dim(&x.contiguous()?)?);
        }
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?;
        let max = xf.max_keepdim(D::Minus1)?;
        let e = xf.broadcast_sub(&max)?.exp()?;
        Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?.to_dtype(dtype)?)
    }

    /// Additive mask (T, T) for a fresh sequence: causal, and limited to the window if given.
    pub(super) fn causal_mask(&self, t: usize, window: Option<usize>) -> Result<Tensor> {
        let mask: Vec<f32> = (0..t)
            .flat_map(|q| {
                (0..t).map(move |k| {
                    let visible = k <= q && window.is_none_or(|w| q - k < w);
                    if visible {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
            })
            .collect();
        Ok(Tensor::from_vec(mask, (t, t), &self.device)?.to_dtype(self.dtype)?)
    }

    pub(super) fn window(&self, layer: usize) -> Option<usize> {
        if self.cfg.sliding_layers[layer] {
            self.cfg.sliding_window
        } else {
            None
        }
    }

    /// Token embeddings, scaled by sqrt(hidden) for Gemma.
    pub(super) fn embed(&self, ids: &Tensor, mode: Mode) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let flat = ids.flatten_all()?;
        let rows = match self.packed_token_rows(&flat)? {
            Some(rows) => rows,
            None => Self::w(&self.embed, mode).index_select(&flat, 0)?,
        };
        let mut x = rows.reshape((b, t, ()))?;
        if let (Mode::Grad, Some(pad)) = (mode, self.cfg.pad_token_id) {
            x = self.stop_pad_gradient(ids, x, pad)?;
        }
        Ok(match self.cfg.family {
            Family::Gemma3 => {
                // transformers rounds the scale to the activation dtype before multiplying.
                let scale = half::bf16::from_f64((self.cfg.hidden_size as f64).sqrt());
                let scale = if self.dtype == DType::BF16 { scale.to_f64() } else { (self.cfg.hidden_size as f64).sqrt() as f32 as f64 };
                (x * scale)?
            }
            _ => x,
        })
    }

    /// transformers builds the embedding as nn.Embedding(padding_idx = pad_token_id), which gives
    /// the pad token's row no gradient through the input side (it still gets one through a tied
    /// output head). Training matches that, so runs agree with TRL's.
    pub(super) fn stop_pad_gradient(&self, ids: &Tensor, x: Tensor, pad: u32) -> Result<Tensor> {
        let is_pad = ids.eq(pad)?;
        if is_pad.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()? == 0.0 {
            return Ok(x);
        }
        let keep = is_pad.unsqueeze(2)?.broadcast_as(x.shape())?;
        Ok(keep.where_cond(&x.detach(), &x)?)
    }

    /// Projects q, k, v for (B, T, H) input and applies q/k norms and RoPE.
    pub(super) fn qkv(&self, x: &Tensor, layer: &Layer, rope: &(Tensor, Tensor), mode: Mode) -> Result<(Tensor, Tensor, Tensor)> {
        let (b, t, _) = x.dims3()?;
        let cfg = &self.cfg;
        let heads = |y: Tensor, n: usize| -> Result<Tensor> { Ok(y.reshape((b, t, n, cfg.head_dim))?.transpose(1, 2)?) };
        let (q, k, v) = match (mode, self.infer_precision()) {
            (Mode::Infer, Some(p)) => {
                let y = self.packed_matmul(x, &[&layer.q.weight, &layer.k.weight, &layer.v.weight], &layer.qkv_packed, p)?;
                let (qd, kvd) = (cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim);
                let bias = |t: Tensor, l: &Linear| -> Result<Tensor> {
                    Ok(match &l.bias {
                        Some(b) => t.broadcast_add(&Self::w(b, mode))?,
                        None => t,
                    })
                };
                (bias(y.narrow(2, 0, qd)?, &layer.q)?, bias(y.narrow(2, qd, kvd)?, &layer.k)?, bias(y.narrow(2, qd + kvd, kvd)?, &layer.v)?)
            }
            _ => (self.linear(x, &layer.q, mode)?, self.linear(x, &layer.k, mode)?, self.linear(x, &layer.v, mode)?),
        };
        let mut q = heads(q, cfg.num_heads)?;
        let mut k = heads(k, cfg.num_kv_heads)?;
        let v = heads(v, cfg.num_kv_heads)?.contiguous()?;
        if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
            q = self.rms_norm(&q, qn, mode)?;
            k = self.rms_norm(&k, kn, mode)?;
        }
        let (cos, sin) = rope;
        let q = Self::rope(&q, cos, sin, mode)?;
        let k = Self::rope(&k, cos, sin, mode)?;
        Ok((q, k.contiguous()?, v))
    }

    /// Grouped-query attention without copying K/V per head: q (B, heads, Tq, hd) is viewed as
    /// (B, kv, groups*Tq, hd). `mask` broadcasts to (B, 1, 1, Tq, Tk).
    pub(super) fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, mode: Mode) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (b, _, tq, hd) = q.dims4()?;
        let tk = k.dim(2)?;
        let groups = cfg.num_heads / cfg.num_kv_heads;
        let scale = 1.0 / cfg.query_pre_attn_scalar.sqrt();
        let q = (q.contiguous()?.reshape((b, cfg.num_kv_heads, groups * tq, hd))? * scale)?;
        let scores = q.matmul(&k.t()?)?.reshape((b, cfg.num_kv_heads, groups, tq, tk))?;
        let scores = scores.broadcast_add(mask)?;
        let probs = Self::softmax(&scores, mode)?.reshape((b, cfg.num_kv_heads, groups * tq, tk))?;
        let out = probs.matmul(v)?.reshape((b, cfg.num_heads, tq, hd))?;
        Ok(out.transpose(1, 2)?.reshape((b, tq, cfg.num_heads * hd))?)
    }

    pub(super) fn block(&self, x: &Tensor, layer: &Layer, attn: Tensor, mode: Mode) -> Result<Tensor> {
        let attn = self.linear(&attn, &layer.o, mode)?;
        let attn = match &layer.attn_out_norm {
            Some(n) => self.rms_norm(&attn, n, mode)?,
            None => attn,
        };
        let x = (x + attn)?;
        let h = self.rms_norm(&x, &layer.ffn_in_norm, mode)?;
        let h = self.mlp(&h, layer, mode)?;
        let h = match &layer.ffn_out_norm {
            Some(n) => self.rms_norm(&h, n, mode)?,
            None => h,
        };
        Ok((x + h)?)
    }

    /// RoPE cos/sin per layer (layers share the tables of their theta).
    pub(super) fn rope_for_layers(&self, starts: &[usize], t: usize) -> Result<Vec<std::rc::Rc<(Tensor, Tensor)>>> {
        let global = std::rc::Rc::new(self.rope_tables(starts, t, self.cfg.rope_theta)?);
        let local = if self.cfg.sliding_layers.iter().any(|&s| s) && self.cfg.rope_local_theta != self.cfg.rope_theta {
            std::rc::Rc::new(self.rope_tables(starts, t, self.cfg.rope_local_theta)?)
        } else {
            global.clone()
        };
        Ok(self.cfg.sliding_layers.iter().map(|&s| if s { local.clone() } else { global.clone() }).collect())
    }
}
