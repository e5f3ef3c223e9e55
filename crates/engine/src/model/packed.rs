//! The packed-weight cache: projections packed for the CPU kernels on first use, dropped after
//! each weight update, or kept as the only copy of a model frozen for inference.

use super::{Kernels, Model, PackedSlot};
use crate::error::Result;
use crate::matmul::{PackedWeight, Precision};
use candle_core::{DType, Tensor, Var};

impl Model {
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
        self.kernels = Kernels::Frozen(p);
        Ok(true)
    }

    /// Packs the row-wise concatenation of `ws` (all with the same input size).
    pub(super) fn pack(ws: &[&Var], p: Precision) -> Result<PackedWeight> {
        let k = ws[0].dim(1)?;
        let mut data: Vec<f32> = Vec::new();
        for w in ws {
            data.extend(w.as_detached_tensor().to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(PackedWeight::pack(&data, data.len() / k, k, p))
    }

    /// Drops the packed copies of the weights (they are repacked on next use).
    pub fn weights_updated(&self) {
        if self.is_frozen() {
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
    pub(super) fn packed_matmul(&self, x: &Tensor, ws: &[&Var], slot: &PackedSlot, p: Precision) -> Result<Tensor> {
        let (y, n) = self.packed_matmul_host(x, ws, slot, p)?;
        let mut dims = x.dims().to_vec();
        *dims.last_mut().unwrap() = n;
        Ok(Tensor::from_vec(y, dims, &self.device)?)
    }

    /// The packed product as host memory (rows of n), for callers that post-process on the host.
    pub(super) fn packed_matmul_host(&self, x: &Tensor, ws: &[&Var], slot: &PackedSlot, p: Precision) -> Result<(Vec<f32>, usize)> {
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
}
