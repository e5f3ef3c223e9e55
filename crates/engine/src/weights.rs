//! Reading and writing model weights: GGUF files (dequantized) and Hugging Face directories.
//!
//! Tensors are kept under their Hugging Face names and layouts, so a model loaded from GGUF saves
//! as a directory transformers reads, and back.

use crate::config::{Family, ModelConfig};
use crate::error::{Error, Result};
use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

pub type TensorMap = HashMap<String, Tensor>;

/// Maps a GGUF tensor name to its Hugging Face name.
fn hf_name(family: Family, gguf: &str) -> Option<String> {
    let simple = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(s) = simple {
        return Some(s.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, tail) = rest.split_once('.')?;
    let (base, kind) = tail.rsplit_once('.')?;
    let module = match (base, family) {
        ("attn_norm", _) => "input_layernorm",
        ("attn_q", _) => "self_attn.q_proj",
        ("attn_k", _) => "self_attn.k_proj",
        ("attn_v", _) => "self_attn.v_proj",
        ("attn_output", _) => "self_attn.o_proj",
        ("attn_q_norm", _) => "self_attn.q_norm",
        ("attn_k_norm", _) => "self_attn.k_norm",
        ("ffn_gate", _) => "mlp.gate_proj",
        ("ffn_up", _) => "mlp.up_proj",
        ("ffn_down", _) => "mlp.down_proj",
        ("ffn_norm", Family::Gemma3) => "pre_feedforward_layernorm",
        ("ffn_norm", _) => "post_attention_layernorm",
        ("post_attention_norm", _) => "post_attention_layernorm",
        ("post_ffw_norm", _) => "post_feedforward_layernorm",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{module}.{kind}"))
}

/// llama.cpp's converter interleaves the rotary halves of Q and K rows for llama-arch models;
/// this restores the Hugging Face (half-split) row order.
fn unpermute_qk(w: &Tensor, n_head: usize) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    Ok(w.reshape((n_head, out / n_head / 2, 2, inp))?.transpose(1, 2)?.reshape((out, inp))?)
}

/// Loads and dequantizes every tensor of a GGUF file to f32 under Hugging Face names.
pub fn load_gguf(path: &Path, device: &Device) -> Result<(ModelConfig, TensorMap, gguf_file::Content)> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| Error::bad_model(path, format!("not a readable GGUF file ({e})")))?;
    let mut cfg = ModelConfig::from_gguf(path, &content.metadata)?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut tensors = TensorMap::new();
    for (name, info) in content.tensor_infos.iter() {
        let Some(hf) = hf_name(cfg.family, name) else { continue };
        let end = content.tensor_data_offset + info.offset + tensor_bytes(info) as u64;
        if end > file_len {
            return Err(Error::bad_model(path, format!("file is truncated: tensor '{name}' ends at byte {end}, file has {file_len}")));
        }
        let q = content.tensor(&mut file, name, &Device::Cpu).map_err(|e| Error::bad_model(path, format!("cannot read tensor '{name}': {e}")))?;
        let mut t = q.dequantize(&Device::Cpu)?.to_dtype(DType::F32)?;
        if cfg.family == Family::Llama && name.ends_with("attn_q.weight") {
            t = unpermute_qk(&t, cfg.num_heads)?;
        } else if cfg.family == Family::Llama && name.ends_with("attn_k.weight") {
            t = unpermute_qk(&t, cfg.num_kv_heads)?;
        }
        if cfg.family == Family::Gemma3 && name.ends_with("norm.weight") {
            // llama.cpp stores Gemma's RMSNorm scale as (1 + w); Hugging Face stores w.
            t = (t - 1.0)?;
        }
        // Made a variable now, one tensor at a time, so building the model later copies nothing
        // and loading never holds two full copies of the weights.
        tensors.insert(hf, candle_core::Var::from_tensor(&t.to_device(device)?)?.into_inner());
    }
    cfg.tie_word_embeddings = !tensors.contains_key("lm_head.weight");
    Ok((cfg, tensors, content))
}

fn tensor_bytes(info: &gguf_file::TensorInfo) -> usize {
    let elems = info.shape.elem_count();
    let bs = info.ggml_dtype.block_size();
    elems / bs * info.ggml_dtype.type_size()
}

/// Loads a Hugging Face model directory: config.json and one or more *.safetensors files.
pub fn load_hf_dir(dir: &Path, device: &Device) -> Result<(ModelConfig, TensorMap)> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::bad_model(&cfg_path, format!("invalid JSON: {e}")))?;
    let cfg = ModelConfig::from_hf_json(&cfg_path, &json)?;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        // model.safetensors or model-0000N-of-0000M.safetensors; other safetensors files (heads,
        // optimizer state) are not part of the language model.
        .filter(|p| {
            p.extension().is_some_and(|x| x == "safetensors") && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("model"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::bad_model(dir, "no model*.safetensors file"));
    }
    let mut tensors = TensorMap::new();
    for f in files {
        let loaded = candle_core::safetensors::load(&f, &Device::Cpu).map_err(|e| Error::bad_model(&f, format!("unreadable safetensors ({e})")))?;
        for (name, t) in loaded {
            // Multimodal Gemma 3 checkpoints nest the text model under language_model.
            let name = name.replace("model.language_model.", "model.").replace("language_model.model.", "model.");
            tensors.insert(name, candle_core::Var::from_tensor(&t.to_dtype(DType::F32)?.to_device(device)?)?.into_inner());
        }
    }
    Ok((cfg, tensors))
}

/// Writes tensors as one `model.safetensors` file (f32 or the tensors' own dtype).
pub fn save_safetensors(path: &Path, tensors: &TensorMap) -> Result<()> {
    let tmp = path.with_extension("safetensors.tmp");
    candle_core::safetensors::save(tensors, &tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The writer creates the file private; checkpoints are meant to be shared.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}
