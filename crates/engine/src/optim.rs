//! AdamW that updates weights in place (one fused pass per tensor on CPU; composite tensor ops on
//! other devices), and global-norm gradient clipping. Matches torch.optim.AdamW.

use crate::error::Result;
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, Layout, Tensor, Var};
use rayon::prelude::*;
use std::sync::Mutex;

#[derive(Clone, Debug, PartialEq)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { lr: 1e-5, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

enum Moments {
    Host { m: Vec<f32>, v: Vec<f32> },
    Device { m: Tensor, v: Tensor },
}

pub struct AdamW {
    pub cfg: AdamWConfig,
    params: Vec<Var>,
    moments: Vec<Moments>,
    step: u64,
}

/// The per-element AdamW update, applied to a weight in place with m and v held on the host.
struct FusedStep<'a> {
    m: Mutex<&'a mut [f32]>,
    v: Mutex<&'a mut [f32]>,
    lr: f32,
    b1: f32,
    b2: f32,
    eps: f32,
    decay: f32,
    bc1: f32,
    bc2_sqrt: f32,
    grad_scale: f32,
}

impl candle_core::InplaceOp2 for FusedStep<'_> {
    fn name(&self) -> &'static str {
        "fused-adamw"
    }

    fn cpu_fwd(&self, dst: &mut CpuStorage, dst_l: &Layout, grad: &CpuStorage, grad_l: &Layout) -> candle_core::Result<()> {
        let (CpuStorage::F32(w), CpuStorage::F32(g)) = (dst, grad) else { candle_core::bail!("fused AdamW needs f32 weights and gradients") };
        let (Some((w0, w1)), Some((g0, g1))) = (dst_l.contiguous_offsets(), grad_l.contiguous_offsets()) else {
            candle_core::bail!("fused AdamW needs contiguous tensors")
        };
        let (w, g) = (&mut w[w0..w1], &g[g0..g1]);
        let mut m = self.m.lock().unwrap();
        let mut v = self.v.lock().unwrap();
        const CHUNK: usize = 1 << 16;
        w.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|(((w, g), m), v)| adamw_chunk(w, g, m, v, self));
        Ok(())
    }
}

crate::multiversion! {
/// The AdamW update of one chunk (elementwise, so chunks run in parallel and vectorize).
fn adamw_chunk(w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: &FusedStep) {
    let step_size = c.lr / c.bc1;
    for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let gi = g * c.grad_scale;
        *m = c.b1 * *m + (1.0 - c.b1) * gi;
        *v = c.b2 * *v + (1.0 - c.b2) * gi * gi;
        let denom = v.sqrt() / c.bc2_sqrt + c.eps;
        *w = *w * c.decay - step_size * *m / denom;
    }
}
}

impl AdamW {
    pub fn new(params: Vec<Var>, cfg: AdamWConfig) -> Result<Self> {
        let moments = params
            .iter()
            .map(|p| {
                let t = p.as_tensor();
                Ok(if t.device().is_cpu() && t.dtype() == DType::F32 {
                    Moments::Host { m: vec![0.0; t.elem_count()], v: vec![0.0; t.elem_count()] }
                } else {
                    Moments::Device { m: t.zeros_like()?.to_dtype(DType::F32)?, v: t.zeros_like()?.to_dtype(DType::F32)? }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AdamW { cfg, params, moments, step: 0 })
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// The first and second moments of every parameter, in parameter order (to save a resumable
    /// checkpoint).
    pub fn moments(&self) -> Result<Vec<(Tensor, Tensor)>> {
        self.params
            .iter()
            .zip(&self.moments)
            .map(|(p, mom)| {
                Ok(match mom {
                    Moments::Host { m, v } => {
                        let shape = p.as_tensor().shape().clone();
                        (Tensor::from_slice(m, shape.clone(), &candle_core::Device::Cpu)?, Tensor::from_slice(v, shape, &candle_core::Device::Cpu)?)
                    }
                    Moments::Device { m, v } => (m.clone(), v.clone()),
                })
            })
            .collect()
    }

    /// Restores moments saved by `moments` and the number of steps taken (bias correction).
    pub fn restore(&mut self, moments: Vec<(Tensor, Tensor)>, steps_taken: u64) -> Result<()> {
        if moments.len() != self.params.len() {
            return Err(crate::Error::Input(format!("optimizer state has {} parameters, the model {}", moments.len(), self.params.len())));
        }
        for ((p, slot), (m, v)) in self.params.iter().zip(self.moments.iter_mut()).zip(moments) {
            if m.dims() != p.as_tensor().dims() || v.dims() != p.as_tensor().dims() {
                return Err(crate::Error::Input(format!("optimizer state shape {:?} does not fit parameter {:?}", m.dims(), p.as_tensor().dims())));
            }
            *slot = match slot {
                Moments::Host { .. } => {
                    Moments::Host { m: m.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?, v: v.to_dtype(DType::F32)?.flatten_all()?.to_vec1()? }
                }
                Moments::Device { .. } => {
                    let dev = p.as_tensor().device();
                    Moments::Device { m: m.to_dtype(DType::F32)?.to_device(dev)?, v: v.to_dtype(DType::F32)?.to_device(dev)? }
                }
            };
        }
        self.step = steps_taken;
        Ok(())
    }

    /// One update from `grads`, with gradients multiplied by `grad_scale` first (clipping).
    /// Weights without a gradient are left as they are.
    pub fn step(&mut self, grads: &GradStore, grad_scale: f64) -> Result<()> {
        self.step += 1;
        let c = &self.cfg;
        let bc1 = 1.0 - c.beta1.powi(self.step as i32);
        let bc2 = 1.0 - c.beta2.powi(self.step as i32);
        for (p, mom) in self.params.iter().zip(self.moments.iter_mut()) {
            let Some(g) = grads.get(p.as_tensor()) else { continue };
            match mom {
                Moments::Host { m, v } => {
                    let op = FusedStep {
                        m: Mutex::new(m),
                        v: Mutex::new(v),
                        lr: c.lr as f32,
                        b1: c.beta1 as f32,
                        b2: c.beta2 as f32,
                        eps: c.eps as f32,
                        decay: (1.0 - c.lr * c.weight_decay) as f32,
                        bc1: bc1 as f32,
                        bc2_sqrt: bc2.sqrt() as f32,
                        grad_scale: grad_scale as f32,
                    };
                    p.as_tensor().inplace_op2(&g.contiguous()?, &op)?;
                }
                Moments::Device { m, v } => {
                    let g = (g.to_dtype(DType::F32)? * grad_scale)?;
                    *m = ((&*m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
                    *v = ((&*v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
                    let denom = ((v.sqrt()? / bc2.sqrt())? + c.eps)?;
                    let w = p.as_tensor().to_dtype(DType::F32)?;
                    let w = ((w * (1.0 - c.lr * c.weight_decay))? - ((&*m / denom)? * (c.lr / bc1))?)?;
                    p.set(&w.to_dtype(p.dtype())?)?;
                }
            }
        }
        crate::matmul::weights_changed();
        Ok(())
    }
}

/// The L2 norm over all gradients of `params`.
pub fn grad_norm(params: &[Var], grads: &GradStore) -> Result<f64> {
    let mut total = 0.0f64;
    for p in params {
        if let Some(g) = grads.get(p.as_tensor()) {
            total += if g.device().is_cpu() && g.dtype() == DType::F32 && g.is_contiguous() {
                // On the host without a squared copy: f32 partial sums per chunk, added in order.
                crate::train_ops::with_host(g, |v| {
                    v.par_chunks(1 << 16).map(|c| crate::simd::sum_squares(c) as f64).collect::<Vec<_>>().iter().sum::<f64>()
                })?
            } else {
                g.to_dtype(DType::F32)?.sqr()?.sum_all()?.to_scalar::<f32>()? as f64
            };
        }
    }
    Ok(total.sqrt())
}

/// The factor torch's clip_grad_norm_ multiplies gradients by: min(1, max_norm / (norm + 1e-6)).
pub fn clip_scale(norm: f64, max_norm: Option<f64>) -> f64 {
    match max_norm {
        Some(max) if norm > max => max / (norm + 1e-6),
        _ => 1.0,
    }
}

/// Plain SGD step w -= lr * g (used for parity checks against reference implementations).
pub fn sgd_step(params: &[Var], grads: &GradStore, lr: f64) -> Result<()> {
    for p in params {
        if let Some(g) = grads.get(p.as_tensor()) {
            p.set(&(p.as_tensor() - (g * lr)?)?)?;
        }
    }
    crate::matmul::weights_changed();
    Ok(())
}
