//! Building a model from named tensors (as read from GGUF or safetensors), checking each.

use super::{Kernels, Layer, Linear, Model};
use crate::config::{Family, ModelConfig};
use crate::error::{Error, Result};
use crate::matmul::{PackedWeight, Precision};
use crate::weights::TensorSource;
use candle_core::{DType, Device, Tensor, Var};
use std::path::Path;

/// Rows of a large table (embeddings, output head) read at a time when it is packed.
const TABLE_PIECE_ROWS: usize = 4096;

/// Reads tensors from a source into variables, checking names and shapes, and keeps the list of
/// the model's parameters.
struct Loader<'a> {
    tensors: &'a mut dyn TensorSource,
    params: Vec<(String, Var)>,
    dtype: DType,
    device: &'a Device,
    source: &'a Path,
}

impl Loader<'_> {
    fn check_shape(&self, name: &str, got: &[usize], expected: &[usize]) -> Result<()> {
        if got != expected {
            return Err(Error::TensorShape { path: self.source.into(), name: name.into(), got: got.to_vec(), expected: expected.to_vec() });
        }
        Ok(())
    }

    fn missing(&self, name: &str) -> Error {
        Error::MissingTensor { path: self.source.into(), name: name.into() }
    }

    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Var> {
        let t = self.tensors.read(name)?.ok_or_else(|| self.missing(name))?;
        self.check_shape(name, t.dims(), shape)?;
        let var = Var::from_tensor(&t.to_dtype(self.dtype)?.to_device(self.device)?)?;
        self.params.push((name.to_string(), var.clone()));
        Ok(var)
    }

    /// Packs the table `name` piece by piece, never holding it whole in f32.
    fn pack_table(&mut self, name: &str, shape: &[usize], p: Precision) -> Result<PackedWeight> {
        let got = self.tensors.shape(name).ok_or_else(|| self.missing(name))?;
        self.check_shape(name, &got, shape)?;
        let tensors = &mut *self.tensors;
        PackedWeight::pack_in_pieces(shape[0], shape[1], p, TABLE_PIECE_ROWS, |r0, count| tensors.read_rows(name, r0, count).map(Into::into))
    }

    /// Forgets the parameters a frozen model no longer holds as variables (its projections).
    fn drop_packed_params(&mut self) {
        self.params.retain(|(n, _)| Model::kept_when_frozen(n));
    }
}

/// What a model is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// Every weight a trainable variable.
    Trainable,
    /// Frozen for inference, in this precision (an f32 model on a CPU whose kernels run it):
    /// each layer's projections are packed as soon as they are read and their originals dropped,
    /// and the tables are packed piece by piece, so loading never holds the whole f32 model.
    Frozen(Precision),
    /// Frozen, with only the first `depth` layers and the final norm, and no output head: what a
    /// probe of hidden states (a stance head) reads. Layers past the probe are never read, so
    /// they cost neither memory nor time; the model gives hidden states, never logits.
    Probe { precision: Precision, depth: usize },
}

impl Build {
    fn freeze(self) -> Option<Precision> {
        match self {
            Build::Trainable => None,
            Build::Frozen(p) | Build::Probe { precision: p, .. } => Some(p),
        }
    }
}

impl Model {
    /// Builds the model from named tensors, checking that each expected tensor is present with
    /// the right shape. `source` names the file in error messages; `build` says what for.
    pub fn from_tensors(
        mut cfg: ModelConfig,
        tensors: &mut dyn TensorSource,
        dtype: DType,
        device: &Device,
        source: &Path,
        build: Build,
    ) -> Result<Self> {
        let freeze = build.freeze();
        let probe = matches!(build, Build::Probe { .. });
        if let Build::Probe { depth, .. } = build {
            if depth == 0 || depth > cfg.num_layers {
                return Err(Error::Input(format!("{}: a probe of {depth} layers, but the model has {}", source.display(), cfg.num_layers)));
            }
            cfg.num_layers = depth;
            cfg.sliding_layers.truncate(depth);
        }
        let mut ld = Loader { tensors, params: Vec::new(), dtype, device, source };
        let (h, hd, i) = (cfg.hidden_size, cfg.head_dim, cfg.intermediate_size);
        let (qd, kvd) = (cfg.num_heads * hd, cfg.num_kv_heads * hd);
        let table = [cfg.vocab_size, h];
        // A trainable model lists the embeddings first, as checkpoints and optimizer state expect.
        let embed_first = if freeze.is_none() { Some(ld.take("model.embed_tokens.weight", &table)?) } else { None };
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let mut layer = Self::read_layer(&mut ld, &cfg, l, (h, hd, i, qd, kvd))?;
            if let Some(p) = freeze {
                Self::freeze_layer(&mut layer, p, dtype, device)?;
                ld.drop_packed_params();
            }
            layers.push(layer);
        }
        let norm = ld.take("model.norm.weight", &[h])?;
        let lm_head_packed = super::PackedSlot::default();
        let mut embed_packed = None;
        let tied = cfg.tie_word_embeddings;
        let (embed, lm_head) = match (embed_first, freeze) {
            (Some(embed), _) => (embed, if tied { None } else { Some(ld.take("lm_head.weight", &table)?) }),
            (None, Some(p)) => {
                let embed_name = "model.embed_tokens.weight";
                let head = match probe {
                    true => None,
                    false => Some(std::sync::Arc::new(ld.pack_table(if tied { embed_name } else { "lm_head.weight" }, &table, p)?.pinned())),
                };
                *lm_head_packed.write().unwrap() = head.clone();
                // Token rows are read from a packed table where that holds them exactly (a tied
                // f32 head) or is the point (int8; a tied table is the head itself); a bf16 model
                // keeps its f32 table, as the kernels' inputs are f32.
                let embed = if p == Precision::Q8 || (p == Precision::F32 && tied) {
                    embed_packed = Some(match head.filter(|_| tied) {
                        Some(head) => head,
                        None => std::sync::Arc::new(ld.pack_table(embed_name, &table, p)?.pinned()),
                    });
                    empty(dtype, device)?
                } else {
                    ld.take(embed_name, &table)?
                };
                (embed, if tied { None } else { Some(empty(dtype, device)?) })
            }
            (None, None) => unreachable!("the embeddings are read first unless frozen"),
        };
        // The packed f32 kernels wherever they run, for inference and training alike.
        let packed = (device.is_cpu() && dtype == DType::F32 && crate::matmul::supported(Precision::F32)).then_some(Precision::F32);
        let kernels = match freeze {
            Some(p) => Kernels::Frozen(p),
            None => Kernels::Trainable { infer: packed, train: packed, hand_grad: true },
        };
        Ok(Model {
            cfg,
            embed,
            lm_head,
            norm,
            layers,
            params: ld.params,
            device: device.clone(),
            dtype,
            kernels,
            lm_head_packed,
            embed_packed,
            output_head: !probe,
        })
    }

    /// Reads layer `l`: projections (with biases where the config has them) and norms.
    fn read_layer(ld: &mut Loader, cfg: &ModelConfig, l: usize, (h, hd, i, qd, kvd): (usize, usize, usize, usize, usize)) -> Result<Layer> {
        let p = format!("model.layers.{l}.");
        let lin = |ld: &mut Loader, name: &str, out: usize, inp: usize, bias: bool| -> Result<Linear> {
            let weight = ld.take(&format!("{p}{name}.weight"), &[out, inp])?;
            let bias = if bias { Some(ld.take(&format!("{p}{name}.bias"), &[out])?) } else { None };
            Ok(Linear { weight, bias, packed: Default::default() })
        };
        let b = cfg.attention_bias;
        let q = lin(ld, "self_attn.q_proj", qd, h, b)?;
        let k = lin(ld, "self_attn.k_proj", kvd, h, b)?;
        let v = lin(ld, "self_attn.v_proj", kvd, h, b)?;
        let o = lin(ld, "self_attn.o_proj", h, qd, false)?;
        let gate = lin(ld, "mlp.gate_proj", i, h, false)?;
        let up = lin(ld, "mlp.up_proj", i, h, false)?;
        let down = lin(ld, "mlp.down_proj", h, i, false)?;
        let mut norm = |name: &str, n: usize| ld.take(&format!("{p}{name}.weight"), &[n]);
        let gemma = cfg.family == Family::Gemma3;
        let (attn_in_norm, attn_out_norm, ffn_in_norm, ffn_out_norm, q_norm, k_norm) = if gemma {
            (
                norm("input_layernorm", h)?,
                Some(norm("post_attention_layernorm", h)?),
                norm("pre_feedforward_layernorm", h)?,
                Some(norm("post_feedforward_layernorm", h)?),
                Some(norm("self_attn.q_norm", hd)?),
                Some(norm("self_attn.k_norm", hd)?),
            )
        } else {
            (norm("input_layernorm", h)?, None, norm("post_attention_layernorm", h)?, None, None, None)
        };
        Ok(Layer {
            attn_in_norm,
            attn_out_norm,
            ffn_in_norm,
            ffn_out_norm,
            q_norm,
            k_norm,
            q,
            k,
            v,
            o,
            gate,
            up,
            down,
            qkv_packed: Default::default(),
            gate_up_packed: Default::default(),
        })
    }
}

/// A placeholder for a weight that exists only packed.
pub(super) fn empty(dtype: DType, device: &Device) -> Result<Var> {
    Ok(Var::from_tensor(&Tensor::zeros(0, dtype, device)?)?)
}
