//! Training ops on the CPU with the packed kernels (AVX-512 or AVX2; f32, or bf16 products with f32
//! accumulation), each with its own backward pass:
//! - `linear`: y = x Wᵀ, with dx = dy W and dW = dyᵀ x;
//! - `head_logps`: log p(target) of each row under softmax(h Wᵀ / T), computed a chunk of rows
//!   at a time, so the (tokens × vocabulary) logits never exist whole, neither forward nor
//!   backward (the backward recomputes each chunk's logits).
//!
//! candle's own CPU matmul runs AVX2 kernels and the full logits of a 256-token batch of four
//! take hundreds of megabytes per copy; these two ops are most of a training step.

use crate::matmul::{transpose, PackedWeight, Precision};
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

/// a (m × k) · bᵀ where b is (n × k): the product of the packed kernel.
fn gemm_nt(a: &[f32], m: usize, k: usize, b: &[f32], n: usize, p: Precision) -> Vec<f32> {
    if m == 0 || n == 0 {
        return vec![0.0; m * n];
    }
    PackedWeight::pack(b, n, k, p).matmul(a, m)
}

fn host(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("{what}: packed training ops need f32 tensors") };
    let Some((a, b)) = l.contiguous_offsets() else { candle_core::bail!("{what}: packed training ops need contiguous tensors") };
    Ok(&v[a..b])
}

/// y = x Wᵀ for x (M, K) and W (N, K).
struct Linear(Precision);

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "packed-linear"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ws: &CpuStorage, wl: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, k) = xl.shape().dims2()?;
        let (n, _) = wl.shape().dims2()?;
        let y = gemm_nt(slice(xs, xl, "x")?, m, k, slice(ws, wl, "weight")?, n, self.0);
        Ok((CpuStorage::F32(y), Shape::from((m, n))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _: &Tensor, dy: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let ((m, k), (n, _)) = (x.dims2()?, w.dims2()?);
        let (xv, dyv) = (host(x)?, host(dy)?);
        // dx (M × K) = dy · W, with Wᵀ packed straight from W
        let dx = with_host(w, |wv| PackedWeight::pack_transposed(wv, n, k, self.0).matmul(&dyv, m))?;
        // dW (N × K) = dyᵀ · x
        let dw = PackedWeight::pack_transposed(&xv, m, k, self.0).matmul(&transpose(&dyv, m, n), n);
        Ok((Some(Tensor::from_vec(dx, (m, k), x.device())?), Some(Tensor::from_vec(dw, (n, k), w.device())?)))
    }
}

/// x (M, K) Wᵀ with W (N, K), differentiable in both.
pub fn linear(x: &Tensor, w: &Tensor, p: Precision) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op2(&w.contiguous()?, Linear(p))
}

/// Rows of logits materialized at a time (even, so bf16 row pairs never straddle chunks).
const HEAD_ROWS: usize = 128;

/// log p(targets[i]) under softmax(hidden[i] · Wᵀ · scale).
struct HeadLogps {
    targets: Vec<u32>,
    scale: f32,
    precision: Precision,
    /// The head packed by the forward, reused by the backward (weights do not change between).
    packed: std::sync::Mutex<Option<std::sync::Arc<PackedWeight>>>,
}

impl HeadLogps {
    fn head(&self, w: &[f32], vocab: usize, hidden: usize) -> std::sync::Arc<PackedWeight> {
        let mut slot = self.packed.lock().unwrap();
        slot.get_or_insert_with(|| std::sync::Arc::new(PackedWeight::pack(w, vocab, hidden, self.precision))).clone()
    }

    /// Calls `each(first_row, rows, logits)` per chunk of rows, logits scaled.
    fn chunks(&self, h: &[f32], hidden: usize, head: &PackedWeight, mut each: impl FnMut(usize, usize, &mut [f32])) {
        let n = h.len() / hidden;
        for r0 in (0..n).step_by(HEAD_ROWS) {
            let rows = HEAD_ROWS.min(n - r0);
            let mut logits = head.matmul(&h[r0 * hidden..(r0 + rows) * hidden], rows);
            if self.scale != 1.0 {
                logits.par_iter_mut().for_each(|v| *v *= self.scale);
            }
            each(r0, rows, &mut logits);
        }
    }
}

crate::multiversion! {
/// The log-sum-exp of a row (f32 with the vectorized exp: rows are vocabulary-long).
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    // Sixteen partial sums, one per lane, keep the rounding of a long sum small.
    let mut lanes = [0f32; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += crate::simd::exp_fast(v - max);
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|&v| crate::simd::exp_fast(v - max)).sum();
    max + (lanes.iter().sum::<f32>() + tail).ln()
}
}

crate::multiversion! {
/// The row's logits replaced by d logp(target) / d logits, times the incoming gradient `g`
/// and the logit scale: g·scale·(onehot - softmax).
fn logp_grad_row(row: &mut [f32], target: usize, lse: f32, g: f32) {
    for v in row.iter_mut() {
        *v = -g * crate::simd::exp_fast(*v - lse);
    }
    row[target] += g;
}
}

/// Runs `f` on the contents of a contiguous f32 CPU tensor, without copying it.
pub(crate) fn with_host<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else { candle_core::bail!("packed training ops run on the CPU") };
    Ok(f(slice(cpu, layout, "tensor")?))
}

impl CustomOp2 for HeadLogps {
    fn name(&self) -> &'static str {
        "chunked-head-logps"
    }

    fn cpu_fwd(&self, hs: &CpuStorage, hl: &Layout, ws: &CpuStorage, wl: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, hidden) = hl.shape().dims2()?;
        let (vocab, _) = wl.shape().dims2()?;
        let head = self.head(slice(ws, wl, "head")?, vocab, hidden);
        let mut out = vec![0f32; n];
        self.chunks(slice(hs, hl, "hidden")?, hidden, &head, |r0, rows, logits| {
            let lp: Vec<f32> =
                logits.par_chunks(vocab).zip(&self.targets[r0..r0 + rows]).map(|(row, &t)| row[t as usize] - log_sum_exp(row)).collect();
            out[r0..r0 + rows].copy_from_slice(&lp);
        });
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    /// dh = dlogits · W chunk by chunk; dW = dlogitsᵀ · h as one product over all rows, with
    /// dlogits gathered into the packed layout as the chunks go (its transpose is never built).
    fn bwd(&self, h: &Tensor, w: &Tensor, _: &Tensor, dlp: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let ((n, hidden), (vocab, _)) = (h.dims2()?, w.dims2()?);
        let (hv, g) = (host(h)?, host(dlp)?);
        let (head, head_t) = with_host(w, |wv| (self.head(wv, vocab, hidden), PackedWeight::pack_transposed(wv, vocab, hidden, self.precision)))?;
        let mut dh = vec![0f32; n * hidden];
        let mut dlogits_t = PackedWeight::zeros(vocab, n, self.precision);
        self.chunks(&hv, hidden, &head, |r0, rows, logits| {
            logits.par_chunks_mut(vocab).zip(&self.targets[r0..r0 + rows]).zip(&g[r0..r0 + rows]).for_each(|((row, &t), &gi)| {
                let lse = log_sum_exp(row);
                logp_grad_row(row, t as usize, lse, gi * self.scale);
            });
            dh[r0 * hidden..(r0 + rows) * hidden].copy_from_slice(&head_t.matmul(logits, rows));
            dlogits_t.fill_transposed(logits, r0, rows);
        });
        *self.packed.lock().unwrap() = None;
        // dWᵀ (hidden × vocab) = hᵀ · dlogits, then transposed once.
        let dw = transpose(&dlogits_t.matmul(&transpose(&hv, n, hidden), hidden), hidden, vocab);
        Ok((Some(Tensor::from_vec(dh, (n, hidden), h.device())?), Some(Tensor::from_vec(dw, (vocab, hidden), w.device())?)))
    }
}

/// log p(targets) of each row of `hidden` (N, H) under the head `w` (V, H) at temperature
/// 1 / `scale`, differentiable in both, without materializing all logits.
pub fn head_logps(hidden: &Tensor, w: &Tensor, targets: Vec<u32>, scale: f64, p: Precision) -> candle_core::Result<Tensor> {
    hidden.contiguous()?.apply_op2(&w.contiguous()?, HeadLogps { targets, scale: scale as f32, precision: p, packed: Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    fn rand(shape: (usize, usize), seed: u64) -> Tensor {
        let (r, c) = shape;
        let v: Vec<f32> = (0..r * c).map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 500.0 - 1.0) * 0.5).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
    }

    #[test]
    fn linear_and_its_gradients_match_candle() {
        if !crate::matmul::supported(Precision::F32) {
            return;
        }
        let (x, w) = (Var::from_tensor(&rand((37, 70), 1)).unwrap(), Var::from_tensor(&rand((45, 70), 2)).unwrap());
        let ours = linear(&x, &w, Precision::F32).unwrap();
        let theirs = x.matmul(&w.t().unwrap()).unwrap();
        assert!(max_diff(&ours, &theirs) < 1e-4);
        let weight = rand((37, 45), 3);
        let g1 = (ours * &weight).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &weight).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &w] {
            assert!(max_diff(g1.get(v).unwrap(), g2.get(v).unwrap()) < 1e-4);
        }
    }

    #[test]
    fn chunked_head_matches_full_log_softmax() {
        if !crate::matmul::supported(Precision::F32) {
            return;
        }
        // More rows than one chunk, a vocabulary that is not a multiple of the panel width.
        let (h, w) = (Var::from_tensor(&rand((300, 24), 4)).unwrap(), Var::from_tensor(&rand((101, 24), 5)).unwrap());
        let targets: Vec<u32> = (0..300).map(|i| (i * 7 % 101) as u32).collect();
        let ours = head_logps(&h, &w, targets.clone(), 1.0 / 0.7, Precision::F32).unwrap();
        let logits = (h.matmul(&w.t().unwrap()).unwrap() * (1.0 / 0.7)).unwrap();
        let t = Tensor::from_vec(targets, (300, 1), &Device::Cpu).unwrap();
        let theirs = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap().gather(&t, 1).unwrap().squeeze(1).unwrap();
        assert!(max_diff(&ours, &theirs) < 1e-4);
        let weight = rand((300, 1), 6).squeeze(1).unwrap();
        let g1 = (ours * &weight).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &weight).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&h, &w] {
            assert!(max_diff(g1.get(v).unwrap(), g2.get(v).unwrap()) < 1e-4, "{}", max_diff(g1.get(v).unwrap(), g2.get(v).unwrap()));
        }
    }
}
