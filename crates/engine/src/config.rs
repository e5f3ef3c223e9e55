//! Model hyperparameters for the three supported families, read from GGUF metadata or a
//! Hugging Face `config.json`, and written back as `config.json`.

use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Llama,
    Qwen2,
    Gemma3,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Qwen2 => "qwen2",
            Family::Gemma3 => "gemma3",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    /// RoPE base of global-attention layers.
    pub rope_theta: f64,
    /// RoPE base of sliding-window layers (Gemma 3); equal to `rope_theta` elsewhere.
    pub rope_local_theta: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry biases (Qwen2).
    pub attention_bias: bool,
    pub sliding_window: Option<usize>,
    /// Per layer: true where attention is limited to the sliding window.
    pub sliding_layers: Vec<bool>,
    /// Attention scores are scaled by `query_pre_attn_scalar^-0.5`.
    pub query_pre_attn_scalar: f64,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
}

/// Gemma 3 alternates five sliding-window layers with one global layer.
const GEMMA3_SLIDING_PATTERN: usize = 6;
const GEMMA3_LOCAL_ROPE_THETA: f64 = 10_000.0;

fn gemma3_sliding_layers(n: usize) -> Vec<bool> {
    (0..n).map(|i| (i + 1) % GEMMA3_SLIDING_PATTERN != 0).collect()
}

impl ModelConfig {
    pub fn num_params(&self) -> usize {
        let (h, kv, hd) = (self.hidden_size, self.num_kv_heads, self.head_dim);
        let q = self.num_heads * hd;
        let attn = h * q + 2 * h * kv * hd + q * h + if self.attention_bias { q + 2 * kv * hd } else { 0 };
        let mlp = 3 * h * self.intermediate_size;
        let norms = match self.family {
            Family::Gemma3 => 4 * h + 2 * hd,
            _ => 2 * h,
        };
        let embed = self.vocab_size * h * if self.tie_word_embeddings { 1 } else { 2 };
        self.num_layers * (attn + mlp + norms) + embed + h
    }

    /// Reads the hyperparameters from GGUF metadata (`<arch>.block_count` and friends).
    pub fn from_gguf(path: &Path, md: &std::collections::HashMap<String, candle_core::quantized::gguf_file::Value>) -> Result<Self> {
        let get = |key: &str| md.get(key);
        let arch = get("general.architecture")
            .and_then(|v| v.to_string().ok().cloned())
            .ok_or_else(|| Error::bad_model(path, "GGUF metadata lacks general.architecture"))?;
        let family = match arch.as_str() {
            "llama" => Family::Llama,
            "qwen2" => Family::Qwen2,
            "gemma3" => Family::Gemma3,
            other => return Err(Error::UnknownArchitecture { path: path.into(), arch: other.into() }),
        };
        let req_u = |key: &str| -> Result<usize> {
            let full = format!("{arch}.{key}");
            let v = get(&full).ok_or_else(|| Error::bad_model(path, format!("GGUF metadata lacks {full}")))?;
            v.to_u32()
                .map(|x| x as usize)
                .or_else(|_| v.to_u64().map(|x| x as usize))
                .map_err(|_| Error::bad_model(path, format!("GGUF metadata {full} is not an integer")))
        };
        let opt_f = |key: &str| get(&format!("{arch}.{key}")).and_then(|v| v.to_f32().ok()).map(|x| x as f64);
        let opt_u = |key: &str| req_u(key).ok();
        let tok_u = |key: &str| get(&format!("tokenizer.ggml.{key}")).and_then(|v| v.to_u32().ok());
        let hidden = req_u("embedding_length")?;
        let heads = req_u("attention.head_count")?;
        let layers = req_u("block_count")?;
        let head_dim = opt_u("attention.key_length").unwrap_or(hidden / heads);
        let vocab = match opt_u("vocab_size") {
            Some(v) => v,
            None => match get("tokenizer.ggml.tokens") {
                Some(t) => t.to_vec().map(|v| v.len()).map_err(|_| Error::bad_model(path, "tokenizer.ggml.tokens is not an array"))?,
                None => return Err(Error::bad_model(path, "cannot tell the vocabulary size")),
            },
        };
        let rope_theta = opt_f("rope.freq_base").unwrap_or(10_000.0);
        let gemma = family == Family::Gemma3;
        Ok(ModelConfig {
            family,
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: req_u("feed_forward_length")?,
            num_layers: layers,
            num_heads: heads,
            num_kv_heads: opt_u("attention.head_count_kv").unwrap_or(heads),
            head_dim,
            rms_norm_eps: opt_f("attention.layer_norm_rms_epsilon").unwrap_or(1e-6),
            rope_theta,
            rope_local_theta: if gemma { GEMMA3_LOCAL_ROPE_THETA } else { rope_theta },
            max_position_embeddings: opt_u("context_length").unwrap_or(2048),
            // Tied unless the file carries a separate output matrix; the loader fixes this up.
            tie_word_embeddings: true,
            attention_bias: family == Family::Qwen2,
            sliding_window: if gemma { opt_u("attention.sliding_window") } else { None },
            sliding_layers: if gemma { gemma3_sliding_layers(layers) } else { vec![false; layers] },
            query_pre_attn_scalar: head_dim as f64,
            bos_token_id: tok_u("bos_token_id"),
            eos_token_ids: tok_u("eos_token_id").into_iter().collect(),
            pad_token_id: tok_u("padding_token_id"),
        })
    }

    /// Reads a Hugging Face `config.json` (Llama, Qwen2, Gemma 3 text models).
    pub fn from_hf_json(path: &Path, v: &Value) -> Result<Self> {
        let v = v.get("text_config").filter(|t| t.is_object()).unwrap_or(v);
        let model_type = v["model_type"].as_str().unwrap_or_default();
        let family = match model_type {
            "llama" | "mistral" => Family::Llama,
            "qwen2" => Family::Qwen2,
            "gemma3" | "gemma3_text" => Family::Gemma3,
            other => return Err(Error::UnknownArchitecture { path: path.into(), arch: other.into() }),
        };
        let req = |key: &str| -> Result<usize> {
            v[key].as_u64().map(|x| x as usize).ok_or_else(|| Error::bad_model(path, format!("config field '{key}' missing or not an integer")))
        };
        let f = |key: &str, d: f64| v[key].as_f64().unwrap_or(d);
        let ids = |key: &str| -> Vec<u32> {
            match &v[key] {
                Value::Number(n) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
                Value::Array(a) => a.iter().filter_map(|x| x.as_u64().map(|x| x as u32)).collect(),
                _ => vec![],
            }
        };
        let hidden = req("hidden_size")?;
        let heads = req("num_attention_heads")?;
        let layers = req("num_hidden_layers")?;
        let head_dim = v["head_dim"].as_u64().map(|x| x as usize).unwrap_or(hidden / heads);
        let gemma = family == Family::Gemma3;
        let sliding_layers = match v["layer_types"].as_array() {
            Some(types) => types.iter().map(|t| t.as_str() == Some("sliding_attention")).collect(),
            None if gemma => gemma3_sliding_layers(layers),
            None => vec![false; layers],
        };
        let rope_theta = hf_rope_theta(v, "full_attention").unwrap_or(10_000.0);
        let local_theta = v["rope_local_base_freq"].as_f64().or_else(|| hf_rope_theta(v, "sliding_attention"));
        Ok(ModelConfig {
            family,
            vocab_size: req("vocab_size")?,
            hidden_size: hidden,
            intermediate_size: req("intermediate_size")?,
            num_layers: layers,
            num_heads: heads,
            num_kv_heads: v["num_key_value_heads"].as_u64().map(|x| x as usize).unwrap_or(heads),
            head_dim,
            rms_norm_eps: f("rms_norm_eps", 1e-6),
            rope_theta,
            rope_local_theta: if gemma { local_theta.unwrap_or(GEMMA3_LOCAL_ROPE_THETA) } else { rope_theta },
            max_position_embeddings: v["max_position_embeddings"].as_u64().unwrap_or(2048) as usize,
            tie_word_embeddings: v["tie_word_embeddings"].as_bool().unwrap_or(gemma),
            attention_bias: v["attention_bias"].as_bool().unwrap_or(family == Family::Qwen2),
            sliding_window: if gemma { v["sliding_window"].as_u64().map(|x| x as usize) } else { None },
            sliding_layers,
            query_pre_attn_scalar: f("query_pre_attn_scalar", head_dim as f64),
            bos_token_id: ids("bos_token_id").first().copied(),
            eos_token_ids: ids("eos_token_id"),
            pad_token_id: ids("pad_token_id").first().copied(),
        })
    }

    /// The `config.json` transformers needs to load a saved model back.
    pub fn to_hf_json(&self) -> Value {
        let mut v = json!({
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "torch_dtype": "float32",
            "bos_token_id": self.bos_token_id,
            "eos_token_id": if self.eos_token_ids.len() == 1 { json!(self.eos_token_ids[0]) } else { json!(self.eos_token_ids) },
            "pad_token_id": self.pad_token_id,
        });
        let extra = match self.family {
            Family::Llama => json!({
                "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
                "attention_bias": false, "mlp_bias": false,
            }),
            Family::Qwen2 => json!({
                "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu",
                "use_sliding_window": false,
            }),
            Family::Gemma3 => json!({
                "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
                "hidden_activation": "gelu_pytorch_tanh", "rope_local_base_freq": self.rope_local_theta,
                "sliding_window": self.sliding_window,
                // transformers validates this field as an integer.
                "query_pre_attn_scalar": if self.query_pre_attn_scalar.fract() == 0.0 { json!(self.query_pre_attn_scalar as i64) } else { json!(self.query_pre_attn_scalar) },
                "layer_types": self.sliding_layers.iter()
                    .map(|&s| if s { "sliding_attention" } else { "full_attention" }).collect::<Vec<_>>(),
                "final_logit_softcapping": null, "attn_logit_softcapping": null, "rope_scaling": null,
            }),
        };
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }
}

/// The RoPE base of a Hugging Face config: `rope_theta` (transformers 4), or transformers 5's
/// `rope_parameters`, either one table or one per layer type (`full_attention`, ...).
fn hf_rope_theta(v: &Value, layer_type: &str) -> Option<f64> {
    let params = &v["rope_parameters"];
    let top = if layer_type == "full_attention" { v["rope_theta"].as_f64() } else { None };
    top.or_else(|| params["rope_theta"].as_f64()).or_else(|| params[layer_type]["rope_theta"].as_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> ModelConfig {
        let mut base = json!({"model_type": "llama", "vocab_size": 8, "hidden_size": 4, "intermediate_size": 8,
            "num_hidden_layers": 1, "num_attention_heads": 2});
        base.as_object_mut().unwrap().extend(v.as_object().unwrap().clone());
        ModelConfig::from_hf_json(Path::new("config.json"), &base).unwrap()
    }

    #[test]
    fn rope_base_is_read_from_either_transformers_layout() {
        assert_eq!(parse(json!({"rope_theta": 100000.0})).rope_theta, 100000.0);
        let v5 = parse(json!({"rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"}}));
        assert_eq!(v5.rope_theta, 100000.0);
        let gemma = parse(json!({"model_type": "gemma3_text", "rope_parameters": {
            "full_attention": {"rope_theta": 1000000.0}, "sliding_attention": {"rope_theta": 10000.0}}}));
        assert_eq!((gemma.rope_theta, gemma.rope_local_theta), (1000000.0, 10000.0));
    }
}
