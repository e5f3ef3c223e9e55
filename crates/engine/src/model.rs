//! One decoder-only transformer that covers the Llama, Qwen2 and Gemma 3 families.
//!
//! Weights live in `Var`s so every one of them can be trained. The same code runs in two modes:
//! `Grad` builds the autograd graph from composite ops (each has a backward pass); `Infer` uses
//! detached weights and candle's fused kernels (RMSNorm, RoPE, softmax), which have none.

use crate::config::{Family, ModelConfig};
use crate::error::{Error, Result};
use crate::kv::KvBatch;
use crate::matmul::{PackedWeight, Precision};
use crate::weights::TensorMap;
use candle_core::{DType, Device, Tensor, Var, D};
use rayon::prelude::*;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Record the autograd graph (training).
    Grad,
    /// No graph, fused kernels (generation, scoring).
    Infer,
}

struct Linear {
    weight: Var,
    bias: Option<Var>,
    /// The weight packed for the CPU inference kernel, made on first use.
    packed: PackedSlot,
}

type PackedSlot = std::sync::RwLock<Option<std::sync::Arc<PackedWeight>>>;

struct Layer {
    attn_in_norm: Var,
    /// Gemma 3 normalizes the attention output before the residual add.
    attn_out_norm: Option<Var>,
    ffn_in_norm: Var,
    ffn_out_norm: Option<Var>,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<Var>,
    k_norm: Option<Var>,
    gate: Linear,
    up: Linear,
    down: Linear,
    /// Packed [q; k; v] and [gate; up] for the CPU inference kernel: one matmul each.
    qkv_packed: PackedSlot,
    gate_up_packed: PackedSlot,
}

/// A causal LM whose every weight is a trainable `Var`, named as in Hugging Face checkpoints.
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

pub struct Model {
    pub cfg: ModelConfig,
    embed: Var,
    lm_head: Option<Var>,
    norm: Var,
    layers: Vec<Layer>,
    params: Vec<(String, Var)>,
    device: Device,
    dtype: DType,
    /// Compute precision of the packed CPU kernels in `Mode::Infer` (None: candle's matmul).
    infer_precision: Option<Precision>,
    lm_head_packed: PackedSlot,
    /// Set by `freeze_for_inference`: projection weights exist only in packed form.
    frozen: bool,
    /// Precision of the packed CPU kernels for the projections and the output head in
    /// `Mode::Grad` (None: candle's matmul and full logits).
    train_precision: Option<Precision>,
    /// Whether `Mode::Grad` on the CPU runs the hand-written decoder pass (`decoder_grad`)
    /// where it applies, rather than candle's autograd graph.
    hand_grad: bool,
}

impl Model {
    /// Builds the model from named tensors, checking that each expected tensor is present with
    /// the right shape. `source` names the file in error messages.
    pub fn from_tensors(cfg: ModelConfig, mut tensors: TensorMap, dtype: DType, device: &Device, source: &Path) -> Result<Self> {
        let mut params = Vec::new();
        let mut take = |name: &str, shape: &[usize]| -> Result<Var> {
            let t = tensors.remove(name).ok_or_else(|| Error::MissingTensor { path: source.into(), name: name.into() })?;
            if t.dims() != shape {
                return Err(Error::TensorShape { path: source.into(), name: name.into(), got: t.dims().to_vec(), expected: shape.to_vec() });
            }
            let var = Var::from_tensor(&t.to_dtype(dtype)?.to_device(device)?)?;
            params.push((name.to_string(), var.clone()));
            Ok(var)
        };
        let (h, hd, i) = (cfg.hidden_size, cfg.head_dim, cfg.intermediate_size);
        let (qd, kvd) = (cfg.num_heads * hd, cfg.num_kv_heads * hd);
        let gemma = cfg.family == Family::Gemma3;
        let embed = take("model.embed_tokens.weight", &[cfg.vocab_size, h])?;
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let p = format!("model.layers.{l}.");
            let mut lin = |name: &str, out: usize, inp: usize, bias: bool| -> Result<Linear> {
                let weight = take(&format!("{p}{name}.weight"), &[out, inp])?;
                let bias = if bias { Some(take(&format!("{p}{name}.bias"), &[out])?) } else { None };
                Ok(Linear { weight, bias, packed: Default::default() })
            };
            let b = cfg.attention_bias;
            let (q, k, v, o) = (
                lin("self_attn.q_proj", qd, h, b)?,
                lin("self_attn.k_proj", kvd, h, b)?,
                lin("self_attn.v_proj", kvd, h, b)?,
                lin("self_attn.o_proj", h, qd, false)?,
            );
            let (gate, up, down) = (lin("mlp.gate_proj", i, h, false)?, lin("mlp.up_proj", i, h, false)?, lin("mlp.down_proj", h, i, false)?);
            let mut norm = |name: &str, n: usize| take(&format!("{p}{name}.weight"), &[n]);
            let layer = if gemma {
                Layer {
                    attn_in_norm: norm("input_layernorm", h)?,
                    attn_out_norm: Some(norm("post_attention_layernorm", h)?),
                    ffn_in_norm: norm("pre_feedforward_layernorm", h)?,
                    ffn_out_norm: Some(norm("post_feedforward_layernorm", h)?),
                    q_norm: Some(norm("self_attn.q_norm", hd)?),
                    k_norm: Some(norm("self_attn.k_norm", hd)?),
                    q,
                    k,
                    v,
                    o,
                    gate,
                    up,
                    down,
                    qkv_packed: Default::default(),
                    gate_up_packed: Default::default(),
                }
            } else {
                Layer {
                    attn_in_norm: norm("input_layernorm", h)?,
                    attn_out_norm: None,
                    ffn_in_norm: norm("post_attention_layernorm", h)?,
                    ffn_out_norm: None,
                    q_norm: None,
                    k_norm: None,
                    q,
                    k,
                    v,
                    o,
                    gate,
                    up,
                    down,
                    qkv_packed: Default::default(),
                    gate_up_packed: Default::default(),
                }
            };
            layers.push(layer);
        }
        let norm = take("model.norm.weight", &[h])?;
        let lm_head = if cfg.tie_word_embeddings { None } else { Some(take("lm_head.weight", &[cfg.vocab_size, h])?) };
        let infer_precision = (device.is_cpu() && dtype == DType::F32 && crate::matmul::supported(Precision::F32)).then_some(Precision::F32);
        Ok(Model {
            cfg,
            embed,
            lm_head,
            norm,
            layers,
            params,
            device: device.clone(),
            dtype,
            infer_precision,
            lm_head_packed: Default::default(),
            frozen: false,
            train_precision: (device.is_cpu() && dtype == DType::F32 && crate::matmul::supported(Precision::F32)).then_some(Precision::F32),
            hand_grad: true,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Every trainable weight with its Hugging Face name (tied embeddings appear once).
    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// The weights as named tensors, in the Hugging Face layout, for saving.
    pub fn tensors(&self) -> TensorMap {
        assert!(!self.frozen, "a model frozen for inference has dropped its projection weights");
        self.params.iter().map(|(n, v)| (n.clone(), v.as_detached_tensor())).collect()
    }

    fn w(v: &Var, mode: Mode) -> Tensor {
        match mode {
            Mode::Grad => v.as_tensor().clone(),
            Mode::Infer => v.as_detached_tensor(),
        }
    }

    /// Chooses the precision of inference matmuls on the CPU: `Bf16` rounds inputs to bf16 and
    /// accumulates in f32 (about twice as fast, on CPUs with AVX512-BF16); `None` uses candle's.
    /// Returns false (and changes nothing) where the CPU lacks the kernel.
    pub fn set_infer_precision(&mut self, p: Option<Precision>) -> bool {
        if self.frozen {
            return p == self.infer_precision;
        }
        if p.is_some_and(|p| !(self.device.is_cpu() && self.dtype == DType::F32 && crate::matmul::supported(p))) {
            return false;
        }
        self.infer_precision = p;
        self.weights_updated();
        true
    }

    /// For inference-only use on the CPU: packs every projection (and an untied output head) in
    /// precision `p` and drops the unpacked originals, so the model holds one copy of its weights.
    /// Afterwards the model cannot be trained or saved. Returns false where the CPU lacks the kernel.
    pub fn freeze_for_inference(&mut self, p: Precision) -> Result<bool> {
        if !self.set_infer_precision(Some(p)) {
            return Ok(false);
        }
        let empty = || Var::from_tensor(&Tensor::zeros(0, self.dtype, &self.device)?);
        // Drop the parameter list's references first, so each original is freed once packed.
        self.params.retain(|(n, _)| n == "model.embed_tokens.weight" || n.contains("norm") || n.ends_with(".bias"));
        for l in &mut self.layers {
            let pin = |pw: PackedWeight| Some(std::sync::Arc::new(pw.pinned()));
            *l.qkv_packed.write().unwrap() = pin(Self::pack(&[&l.q.weight, &l.k.weight, &l.v.weight], p)?);
            *l.gate_up_packed.write().unwrap() = pin(Self::pack(&[&l.gate.weight, &l.up.weight], p)?);
            *l.o.packed.write().unwrap() = pin(Self::pack(&[&l.o.weight], p)?);
            *l.down.packed.write().unwrap() = pin(Self::pack(&[&l.down.weight], p)?);
            for lin in [&mut l.q, &mut l.k, &mut l.v, &mut l.o, &mut l.gate, &mut l.up, &mut l.down] {
                lin.weight = empty()?;
            }
        }
        if let Some(head) = self.lm_head.take() {
            *self.lm_head_packed.write().unwrap() = Some(std::sync::Arc::new(Self::pack(&[&head], p)?.pinned()));
            self.lm_head = Some(empty()?);
        }
        self.frozen = true;
        Ok(true)
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Chooses the training matmuls on the CPU: the packed kernels in f32, or with bf16 products
    /// and f32 accumulation (mixed precision, about twice as fast with AVX512-BF16); None uses
    /// candle's. Returns false (and changes nothing) where the CPU lacks the kernel.
    pub fn set_train_precision(&mut self, p: Option<Precision>) -> bool {
        if p.is_some_and(|p| !(self.device.is_cpu() && self.dtype == DType::F32 && crate::matmul::supported(p))) {
            return false;
        }
        self.train_precision = p;
        true
    }

    pub fn train_precision(&self) -> Option<Precision> {
        self.train_precision
    }

    /// Turns the hand-written training pass off (candle's autograd graph instead) or back on;
    /// both give the same gradients, the hand-written pass faster and in less memory.
    pub fn set_hand_grad(&mut self, on: bool) {
        self.hand_grad = on;
    }

    /// The precision of the hand-written training pass if it applies to this model: the
    /// packed CPU kernels are on, weights are f32 on the CPU, and the family is Llama or Qwen2
    /// without sliding windows (Gemma 3's extra norms go through candle's graph).
    fn hand_grad_precision(&self) -> Option<Precision> {
        let plain_decoder = self.cfg.family != Family::Gemma3 && !self.cfg.sliding_layers.iter().any(|&s| s);
        (self.hand_grad && plain_decoder && !self.frozen && self.device.is_cpu() && self.dtype == DType::F32)
            .then_some(self.train_precision)
            .flatten()
    }

    /// The trainable weights in the layout the hand-written training pass reads.
    pub(crate) fn decoder_vars(&self) -> crate::decoder_grad::DecoderVars {
        use crate::decoder_grad::{DecoderVars, LayerVars};
        let layers = self
            .layers
            .iter()
            .map(|l| LayerVars {
                attn_norm: l.attn_in_norm.clone(),
                ffn_norm: l.ffn_in_norm.clone(),
                q: l.q.weight.clone(),
                k: l.k.weight.clone(),
                v: l.v.weight.clone(),
                o: l.o.weight.clone(),
                q_bias: l.q.bias.clone(),
                k_bias: l.k.bias.clone(),
                v_bias: l.v.bias.clone(),
                gate: l.gate.weight.clone(),
                up: l.up.weight.clone(),
                down: l.down.weight.clone(),
            })
            .collect();
        DecoderVars { embed: self.embed.clone(), norm: self.norm.clone(), layers }
    }

    /// log p(target) of each hidden row (N, H) under the output head at temperature
    /// 1 / `scale`; differentiable in `Mode::Grad` (with the packed kernels, without ever
    /// holding the whole (N, vocabulary) logits).
    pub fn head_logps(&self, hidden: &Tensor, targets: &[u32], scale: f64, mode: Mode) -> Result<Tensor> {
        if let (Mode::Grad, Some(p)) = (mode, self.train_precision) {
            let head = Self::w(self.lm_head.as_ref().unwrap_or(&self.embed), mode);
            return Ok(crate::train_ops::head_logps(hidden, &head, targets.to_vec(), scale, p)?);
        }
        let logits = (self.logits(hidden, mode)?.to_dtype(DType::F32)? * scale)?;
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let t = Tensor::from_vec(targets.to_vec(), (targets.len(), 1), hidden.device())?;
        Ok(logp.gather(&t, 1)?.squeeze(1)?)
    }

    /// Packs the row-wise concatenation of `ws` (all with the same input size).
    fn pack(ws: &[&Var], p: Precision) -> Result<PackedWeight> {
        let k = ws[0].dim(1)?;
        let mut data: Vec<f32> = Vec::new();
        for w in ws {
            data.extend(w.as_detached_tensor().to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(PackedWeight::pack(&data, data.len() / k, k, p))
    }

    /// Drops the packed copies of the weights (they are repacked on next use).
    pub fn weights_updated(&self) {
        if self.frozen {
            return;
        }
        for l in &self.layers {
            for lin in [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down] {
                *lin.packed.write().unwrap() = None;
            }
            *l.qkv_packed.write().unwrap() = None;
            *l.gate_up_packed.write().unwrap() = None;
        }
        *self.lm_head_packed.write().unwrap() = None;
    }

    /// y = x · Wᵀ with the packed CPU kernel (packing W on first use).
    fn packed_matmul(&self, x: &Tensor, ws: &[&Var], slot: &PackedSlot, p: Precision) -> Result<Tensor> {
        let (y, n) = self.packed_matmul_host(x, ws, slot, p)?;
        let mut dims = x.dims().to_vec();
        *dims.last_mut().unwrap() = n;
        Ok(Tensor::from_vec(y, dims, &self.device)?)
    }

    /// The packed product as host memory (rows of n), for callers that post-process on the host.
    fn packed_matmul_host(&self, x: &Tensor, ws: &[&Var], slot: &PackedSlot, p: Precision) -> Result<(Vec<f32>, usize)> {
        let epoch = crate::matmul::weights_epoch();
        let fresh = |pw: &std::sync::Arc<PackedWeight>| pw.precision() == p && (pw.epoch == epoch || pw.epoch == crate::matmul::PINNED);
        let packed = slot.read().unwrap().clone().filter(fresh);
        let packed = match packed {
            Some(pw) => pw,
            None => {
                let pw = std::sync::Arc::new(Self::pack(ws, p)?);
                *slot.write().unwrap() = Some(pw.clone());
                pw
            }
        };
        let k = *x.dims().last().unwrap();
        let m = x.elem_count() / k;
        Ok((packed.matmul(&x.flatten_all()?.to_vec1()?, m), packed.n))
    }

    fn linear(&self, x: &Tensor, l: &Linear, mode: Mode) -> Result<Tensor> {
        if self.frozen && mode == Mode::Grad {
            return Err(Error::Input("this model was loaded for inference only and cannot be trained".into()));
        }
        if let (Mode::Infer, Some(p)) = (mode, self.infer_precision) {
            let y = self.packed_matmul(x, &[&l.weight], &l.packed, p)?;
            return Ok(match &l.bias {
                Some(b) => y.broadcast_add(&Self::w(b, mode))?,
                None => y,
            });
        }
        let w = Self::w(&l.weight, mode);
        let product = |x2: &Tensor| -> Result<Tensor> {
            Ok(match (mode, self.train_precision) {
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
    fn rms_norm(&self, x: &Tensor, w: &Var, mode: Mode) -> Result<Tensor> {
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

    fn mlp(&self, x: &Tensor, layer: &Layer, mode: Mode) -> Result<Tensor> {
        if let (Mode::Infer, Some(p)) = (mode, self.infer_precision) {
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
    fn rope_tables(&self, starts: &[usize], t: usize, theta: f64) -> Result<(Tensor, Tensor)> {
        let half = self.cfg.head_dim / 2;
        let (cos, sin) = crate::layer_math::rope_cos_sin(theta, self.cfg.head_dim, starts.iter().flat_map(|&s| s..s + t));
        let shape = (starts.len(), t, half);
        let cos = Tensor::from_vec(cos, shape, &self.device)?.to_dtype(self.dtype)?;
        let sin = Tensor::from_vec(sin, shape, &self.device)?.to_dtype(self.dtype)?;
        Ok((cos, sin))
    }

    /// Rotary embedding in the half-split layout; x is (B, heads, T, head_dim).
    fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, mode: Mode) -> Result<Tensor> {
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

    fn softmax(x: &Tensor, mode: Mode) -> Result<Tensor> {
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
    fn causal_mask(&self, t: usize, window: Option<usize>) -> Result<Tensor> {
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

    fn window(&self, layer: usize) -> Option<usize> {
        if self.cfg.sliding_layers[layer] {
            self.cfg.sliding_window
        } else {
            None
        }
    }

    /// Token embeddings, scaled by sqrt(hidden) for Gemma.
    fn embed(&self, ids: &Tensor, mode: Mode) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let mut x = Self::w(&self.embed, mode).index_select(&ids.flatten_all()?, 0)?.reshape((b, t, ()))?;
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
    fn stop_pad_gradient(&self, ids: &Tensor, x: Tensor, pad: u32) -> Result<Tensor> {
        let is_pad = ids.eq(pad)?;
        if is_pad.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()? == 0.0 {
            return Ok(x);
        }
        let keep = is_pad.unsqueeze(2)?.broadcast_as(x.shape())?;
        Ok(keep.where_cond(&x.detach(), &x)?)
    }

    /// Projects q, k, v for (B, T, H) input and applies q/k norms and RoPE.
    fn qkv(&self, x: &Tensor, layer: &Layer, rope: &(Tensor, Tensor), mode: Mode) -> Result<(Tensor, Tensor, Tensor)> {
        let (b, t, _) = x.dims3()?;
        let cfg = &self.cfg;
        let heads = |y: Tensor, n: usize| -> Result<Tensor> { Ok(y.reshape((b, t, n, cfg.head_dim))?.transpose(1, 2)?) };
        let (q, k, v) = match (mode, self.infer_precision) {
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
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, mode: Mode) -> Result<Tensor> {
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

    fn block(&self, x: &Tensor, layer: &Layer, attn: Tensor, mode: Mode) -> Result<Tensor> {
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

    /// Final hidden states (B, T, H) of right-padded rows starting at position 0.
    /// Padding needs no mask: with a causal mask, real tokens never attend to later padding.
    /// With `cache`, the rows' keys and values are also written to the given cache slots.
    /// In `Mode::Grad` a loss built on the result must be differentiated with
    /// `crate::backward`, which also runs the hand-written decoder pass where it applies.
    pub fn forward_hidden(&self, ids: &Tensor, mode: Mode, mut cache: Option<(&mut KvBatch, &[usize], &[usize])>) -> Result<Tensor> {
        if let (Mode::Grad, None, Some(p)) = (mode, cache.as_ref(), self.hand_grad_precision()) {
            return crate::decoder_grad::forward(self.decoder_vars(), &self.cfg, ids, p);
        }
        let (b, t) = ids.dims2()?;
        let rope = self.rope_for_layers(&vec![0; b], t)?;
        let mut x = self.embed(ids, mode)?;
        let global_mask = self.causal_mask(t, None)?;
        let local_mask = match self.cfg.sliding_window {
            Some(w) if w < t => Some(self.causal_mask(t, Some(w))?),
            _ => None,
        };
        for (l, layer) in self.layers.iter().enumerate() {
            let h = self.rms_norm(&x, &layer.attn_in_norm, mode)?;
            let (q, k, v) = self.qkv(&h, layer, &rope[l], mode)?;
            if let Some((kv, slots, lens)) = cache.as_mut() {
                kv.write_prefill(l, &k, &v, slots, lens)?;
            }
            let mask = match (&local_mask, self.window(l)) {
                (Some(m), Some(_)) => m,
                _ => &global_mask,
            };
            let attn = self.attend(&q, &k, &v, mask, mode)?;
            x = self.block(&x, layer, attn, mode)?;
        }
        self.rms_norm(&x, &self.norm, mode)
    }

    /// Final hidden states (B, T, H) of right-padded rows (`lens` real tokens each) that continue
    /// the sequences held in `context` row by row (or start fresh without one), and the context
    /// extended by these tokens. This is prefix caching: a judge instruction shared by every
    /// prompt, or an item shared by several option orders, is computed once and continued many
    /// times. Inference only.
    pub fn forward_context(&self, ids: &Tensor, lens: &[usize], context: Option<&KvContext>) -> Result<(Tensor, KvContext)> {
        let mode = Mode::Infer;
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
        }
        Ok((self.rms_norm(&x, &self.norm, mode)?, KvContext { keys, values, positions }))
    }

    /// Additive mask (B, 1, 1, T, columns): row i's query j (at position starts[i] + j) sees the
    /// columns holding positions up to its own (within the window, if given). Padding queries
    /// see only themselves, so no row is empty (an all -inf row would turn into NaN).
    fn context_mask(&self, positions: &[Vec<Option<usize>>], starts: &[usize], lens: &[usize], t: usize, window: Option<usize>) -> Result<Tensor> {
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

    /// RoPE cos/sin per layer (layers share the tables of their theta).
    fn rope_for_layers(&self, starts: &[usize], t: usize) -> Result<Vec<std::rc::Rc<(Tensor, Tensor)>>> {
        let global = std::rc::Rc::new(self.rope_tables(starts, t, self.cfg.rope_theta)?);
        let local = if self.cfg.sliding_layers.iter().any(|&s| s) && self.cfg.rope_local_theta != self.cfg.rope_theta {
            std::rc::Rc::new(self.rope_tables(starts, t, self.cfg.rope_local_theta)?)
        } else {
            global.clone()
        };
        Ok(self.cfg.sliding_layers.iter().map(|&s| if s { local.clone() } else { global.clone() }).collect())
    }

    /// Logits (N, V) for hidden states (N, H).
    pub fn logits(&self, hidden: &Tensor, mode: Mode) -> Result<Tensor> {
        let head_var = self.lm_head.as_ref().unwrap_or(&self.embed);
        if let (Mode::Infer, Some(p)) = (mode, self.infer_precision) {
            return self.packed_matmul(hidden, &[head_var], &self.lm_head_packed, p);
        }
        let head = Self::w(head_var, mode);
        Ok(hidden.matmul(&head.t()?)?)
    }

    /// Full logits (B, T, V); meant for tests and small inputs.
    pub fn forward_logits(&self, ids: &Tensor, mode: Mode) -> Result<Tensor> {
        let hidden = self.forward_hidden(ids, mode, None)?;
        let (b, t, h) = hidden.dims3()?;
        Ok(self.logits(&hidden.reshape((b * t, h))?, mode)?.reshape((b, t, ()))?)
    }
}

/// Rows per chunk of the packed MLP.
const MLP_ROWS: usize = 256;
