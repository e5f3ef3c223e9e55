//! Whole-sequence passes: hidden states of fresh right-padded rows (training, scoring and
//! prefill) and the output head.

use super::{Mode, Model};
use crate::error::{Error, Result};
use crate::kv::KvBatch;
use candle_core::{DType, Tensor, D};

impl Model {
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

    /// Logits (N, V) for hidden states (N, H).
    pub fn logits(&self, hidden: &Tensor, mode: Mode) -> Result<Tensor> {
        if !self.output_head {
            return Err(Error::Input(format!(
                "this model holds only its first {} layers, without the output head (a probe of hidden states): it gives no logits",
                self.layers.len()
            )));
        }
        let head_var = self.lm_head.as_ref().unwrap_or(&self.embed);
        if let (Mode::Infer, Some(p)) = (mode, self.infer_precision()) {
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

    /// log p(target) of each hidden row (N, H) under the output head at temperature
    /// 1 / `scale`; differentiable in `Mode::Grad` (with the packed kernels, without ever
    /// holding the whole (N, vocabulary) logits).
    pub fn head_logps(&self, hidden: &Tensor, targets: &[u32], scale: f64, mode: Mode) -> Result<Tensor> {
        if let (Mode::Grad, Some(p)) = (mode, self.train_precision()) {
            let head = Self::w(self.lm_head.as_ref().unwrap_or(&self.embed), mode);
            return Ok(crate::train_ops::head_logps(hidden, &head, targets.to_vec(), scale, p)?);
        }
        let logits = (self.logits(hidden, mode)?.to_dtype(DType::F32)? * scale)?;
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let t = Tensor::from_vec(targets.to_vec(), (targets.len(), 1), hidden.device())?;
        Ok(logp.gather(&t, 1)?.squeeze(1)?)
    }
}
