//! One decoder-only transformer that covers the Llama, Qwen2 and Gemma 3 families.
//!
//! Weights live in `Var`s so every one of them can be trained. The same code runs in two modes:
//! `Grad` builds the autograd graph from composite ops (each has a backward pass); `Infer` uses
//! detached weights and candle's fused kernels (RMSNorm, RoPE, softmax), which have none.

mod build;
mod context;
mod forward;
mod layers;
mod packed;

pub use build::Build;
pub use context::KvContext;

use crate::config::{Family, ModelConfig};
use crate::matmul::{PackedWeight, Precision};
use crate::weights::TensorMap;
use candle_core::{DType, Device, Tensor, Var};

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
pub struct Model {
    pub cfg: ModelConfig,
    embed: Var,
    lm_head: Option<Var>,
    norm: Var,
    layers: Vec<Layer>,
    params: Vec<(String, Var)>,
    device: Device,
    dtype: DType,
    kernels: Kernels,
    lm_head_packed: PackedSlot,
    /// The token table of a frozen model, read row by row (`embed` is then empty): int8, or a
    /// tied f32 head (which holds the table exactly); for tied embeddings, the head itself.
    embed_packed: Option<std::sync::Arc<PackedWeight>>,
    /// False for a probe (`Build::Probe`): the first layers only, no logits.
    output_head: bool,
}

/// How the weights are held, and so which kernels each mode runs. One value, so that no
/// combination the model cannot honour (training a frozen model) can be set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernels {
    /// Every weight a trainable `Var`; packed copies are a cache, dropped after each update.
    Trainable {
        /// Packed CPU kernels in `Mode::Infer` (None: candle's matmul).
        infer: Option<Precision>,
        /// Packed CPU kernels for the projections and the output head in `Mode::Grad` (None:
        /// candle's matmul and full logits).
        train: Option<Precision>,
        /// Whether `Mode::Grad` on the CPU runs the hand-written decoder pass (`decoder_grad`)
        /// where it applies, rather than candle's autograd graph.
        hand_grad: bool,
    },
    /// A model built frozen for inference (`from_tensors`): the projections exist only packed,
    /// in this precision.
    Frozen(Precision),
}

impl Model {
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
        assert!(!self.is_frozen(), "a model frozen for inference has dropped its projection weights");
        self.params.iter().map(|(n, v)| (n.clone(), v.as_detached_tensor())).collect()
    }

    fn w(v: &Var, mode: Mode) -> Tensor {
        match mode {
            Mode::Grad => v.as_tensor().clone(),
            Mode::Infer => v.as_detached_tensor(),
        }
    }

    /// Chooses the precision of inference matmuls on the CPU: `Bf16` rounds inputs to bf16 and
    /// accumulates in f32 (about twice as fast on CPUs with AVX512-BF16; half the weight memory
    /// on any); `None` uses candle's.
    /// Returns false (and changes nothing) where the CPU lacks the kernel.
    pub fn set_infer_precision(&mut self, p: Option<Precision>) -> bool {
        if !self.kernel_runs(p) {
            return false;
        }
        match &mut self.kernels {
            Kernels::Frozen(held) => return p == Some(*held),
            Kernels::Trainable { infer, .. } => *infer = p,
        }
        self.weights_updated();
        true
    }

    /// Whether the packed kernels of precision `p` (if any) can run for this model.
    fn kernel_runs(&self, p: Option<Precision>) -> bool {
        p.is_none_or(|p| self.device.is_cpu() && self.dtype == DType::F32 && crate::matmul::supported(p))
    }

    /// Whether the model has its output head (a probe has not: it gives hidden states only).
    pub fn has_output_head(&self) -> bool {
        self.output_head
    }

    pub fn is_frozen(&self) -> bool {
        matches!(self.kernels, Kernels::Frozen(_))
    }

    /// The packed kernels' precision in `Mode::Infer` (None: candle's matmul).
    pub fn infer_precision(&self) -> Option<Precision> {
        match self.kernels {
            Kernels::Trainable { infer, .. } => infer,
            Kernels::Frozen(p) => Some(p),
        }
    }

    /// Chooses the training matmuls on the CPU: the packed kernels in f32, or with bf16 products
    /// and f32 accumulation (mixed precision, about twice as fast with AVX512-BF16); None uses
    /// candle's. Returns false (and changes nothing) where the CPU lacks the kernel, and for
    /// int8 weights, which are for inference only.
    /// A frozen model cannot be trained: it accepts only None.
    pub fn set_train_precision(&mut self, p: Option<Precision>) -> bool {
        if !self.kernel_runs(p) || p == Some(Precision::Q8) {
            return false;
        }
        match &mut self.kernels {
            Kernels::Frozen(_) => p.is_none(),
            Kernels::Trainable { train, .. } => {
                *train = p;
                true
            }
        }
    }

    /// The packed kernels' precision in `Mode::Grad` (None: candle's matmul and full logits).
    pub fn train_precision(&self) -> Option<Precision> {
        match self.kernels {
            Kernels::Trainable { train, .. } => train,
            Kernels::Frozen(_) => None,
        }
    }

    /// Turns the hand-written training pass off (candle's autograd graph instead) or back on;
    /// both give the same gradients, the hand-written pass faster and in less memory.
    pub fn set_hand_grad(&mut self, on: bool) {
        if let Kernels::Trainable { hand_grad, .. } = &mut self.kernels {
            *hand_grad = on;
        }
    }

    /// The precision of the hand-written training pass if it applies to this model: the
    /// packed CPU kernels are on, weights are f32 on the CPU, and the family is Llama or Qwen2
    /// without sliding windows (Gemma 3's extra norms go through candle's graph).
    fn hand_grad_precision(&self) -> Option<Precision> {
        let plain_decoder = self.cfg.family != Family::Gemma3 && !self.cfg.sliding_layers.iter().any(|&s| s);
        match self.kernels {
            Kernels::Trainable { train, hand_grad: true, .. } if plain_decoder && self.device.is_cpu() && self.dtype == DType::F32 => train,
            _ => None,
        }
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
}
