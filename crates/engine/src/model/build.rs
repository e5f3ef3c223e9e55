//! Building a model from named tensors (as loaded from GGUF or safetensors), checking each.

use super::{Kernels, Layer, Linear, Model};
use crate::config::{Family, ModelConfig};
use crate::error::{Error, Result};
use crate::matmul::Precision;
use crate::weights::TensorMap;
use candle_core::{DType, Device, Var};
use std::path::Path;

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
        // The packed f32 kernels wherever they run, for inference and training alike.
        let packed = (device.is_cpu() && dtype == DType::F32 && crate::matmul::supported(Precision::F32)).then_some(Precision::F32);
        Ok(Model {
            cfg,
            embed,
            lm_head,
            norm,
            layers,
            params,
            device: device.clone(),
            dtype,
            kernels: Kernels::Trainable { infer: packed, train: packed, hand_grad: true },
            lm_head_packed: Default::default(),
        })
    }
}
