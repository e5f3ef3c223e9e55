//! The packed-weight cache: projections packed for the CPU kernels on first use, dropped after
//! each weight update, or kept as the only copy of a model frozen for inference (built frozen
//! as it loads: `from_tensors`).

use super::{Layer, Model, PackedSlot};
use crate::error::Result;
use crate::matmul::{PackedWeight, Precision};
use candle_core::{DType, Device, Tensor, Var};

impl Model {
    /// Packs a layer's projections in precision `p` ([q; k; v] and [gate; up] fused) and drops
    /// the unpacked originals: the layer of a model frozen for inference.
    pub(super) fn freeze_layer(l: &mut Layer, p: Precision, dtype: DType, device: &Device) -> Result<()> {
        let pin = |pw: PackedWeight| Some(std::sync::Arc::new(pw.pinned()));
        *l.qkv_packed.write().unwrap() = pin(Self::pack(&[&l.q.weight, &l.k.weight, &l.v.weight], p)?);
        *l.gate_up_packed.write().unwrap() = pin(Self::pack(&[&l.gate.weight, &l.up.weight], p)?);
        *l.o.packed.write().unwrap() = pin(Self::pack(&[&l.o.weight], p)?);
        *l.down.packed.write().unwrap() = pin(Self::pack(&[&l.down.weight], p)?);
        for lin in [&mut l.q, &mut l.k, &mut l.v, &mut l.o, &mut l.gate, &mut l.up, &mut l.down] {
            lin.weight = super::build::empty(dtype, device)?;
        }
        Ok(())
    }

    /// Whether a frozen model keeps parameter `name` as a variable (embeddings, norms, biases);
    /// projections and the output head exist only packed.
    pub(super) fn kept_when_frozen(name: &str) -> bool {
        name == "model.embed_tokens.weight" || name.contains("norm") || name.ends_with(".bias")
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

    /// Bytes of weights the model holds: its tensors and their packed copies.
    pub fn weight_bytes(&self) -> usize {
        let tensors: usize = self.params.iter().map(|(_, v)| v.elem_count() * v.dtype().size_in_bytes()).sum();
        let slot = |s: &PackedSlot| s.read().unwrap().as_ref().map_or(0, |p| p.bytes());
        let packed: usize = self
            .layers
            .iter()
            .flat_map(|l| {
                [&l.qkv_packed, &l.gate_up_packed, &l.q.packed, &l.k.packed, &l.v.packed, &l.o.packed, &l.gate.packed, &l.up.packed, &l.down.packed]
            })
            .map(slot)
            .sum();
        let table = match (&self.embed_packed, self.lm_head_packed.read().unwrap().as_ref()) {
            (Some(t), Some(head)) if std::sync::Arc::ptr_eq(t, head) => 0,
            (Some(t), _) => t.bytes(),
            (None, _) => 0,
        };
        tensors + packed + slot(&self.lm_head_packed) + table
    }

    /// Rows of the packed token table for `ids`, as (ids.len(), hidden); None where the table
    /// is an f32 variable.
    pub(super) fn packed_token_rows(&self, ids: &Tensor) -> Result<Option<Tensor>> {
        let Some(table) = &self.embed_packed else { return Ok(None) };
        let ids = ids.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        let rows: Vec<f32> = ids.iter().flat_map(|&id| table.row(id as usize)).collect();
        Ok(Some(Tensor::from_vec(rows, (ids.len(), table.k), &self.device)?))
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
