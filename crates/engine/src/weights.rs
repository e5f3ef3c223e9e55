//! Reading and writing model weights: GGUF files (dequantized) and Hugging Face directories,
//! read tensor by tensor.
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

/// A model's tensors under their Hugging Face names, read one at a time as f32 on the CPU, so
/// that a model packed as it loads never holds all of its f32 weights at once.
pub trait TensorSource {
    /// The shape of tensor `name`, if the source has it.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// Tensor `name` as f32 (None if absent); each tensor is read once.
    fn read(&mut self, name: &str) -> Result<Option<Tensor>>;
    /// Rows r0..r0+count of the matrix `name` as f32, row-major: a large table is packed in
    /// pieces this way.
    fn read_rows(&mut self, name: &str, r0: usize, count: usize) -> Result<Vec<f32>>;
}

/// Tensors already in memory (built in tests, or converted).
impl TensorSource for TensorMap {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.get(name).map(|t| t.dims().to_vec())
    }

    fn read(&mut self, name: &str) -> Result<Option<Tensor>> {
        self.remove(name).map(|t| Ok(t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?)).transpose()
    }

    fn read_rows(&mut self, name: &str, r0: usize, count: usize) -> Result<Vec<f32>> {
        let t = self.get(name).ok_or_else(|| Error::Input(format!("no tensor '{name}'")))?;
        Ok(t.narrow(0, r0, count)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?)
    }
}

/// The tensors of a GGUF file, dequantized to f32 as they are read.
pub struct GgufTensors {
    path: std::path::PathBuf,
    file: std::fs::File,
    pub content: gguf_file::Content,
    /// Hugging Face name -> GGUF name.
    names: HashMap<String, String>,
    family: Family,
    heads: (usize, usize),
}

/// Opens a GGUF file: its config and its tensors, checked to lie inside the file.
pub fn open_gguf(path: &Path) -> Result<(ModelConfig, GgufTensors)> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| Error::bad_model(path, format!("not a readable GGUF file ({e})")))?;
    let mut cfg = ModelConfig::from_gguf(path, &content.metadata)?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut names = HashMap::new();
    for (name, info) in content.tensor_infos.iter() {
        let Some(hf) = hf_name(cfg.family, name) else { continue };
        let end = content.tensor_data_offset + info.offset + tensor_bytes(info) as u64;
        if end > file_len {
            return Err(Error::bad_model(path, format!("file is truncated: tensor '{name}' ends at byte {end}, file has {file_len}")));
        }
        names.insert(hf, name.clone());
    }
    cfg.tie_word_embeddings = !names.contains_key("lm_head.weight");
    let heads = (cfg.num_heads, cfg.num_kv_heads);
    Ok((cfg.clone(), GgufTensors { path: path.into(), file, content, names, family: cfg.family, heads }))
}

impl GgufTensors {
    fn info(&self, hf: &str) -> Option<(&String, &gguf_file::TensorInfo)> {
        let name = self.names.get(hf)?;
        Some((name, &self.content.tensor_infos[name]))
    }
}

impl TensorSource for GgufTensors {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.info(name).map(|(_, i)| i.shape.dims().to_vec())
    }

    fn read(&mut self, hf: &str) -> Result<Option<Tensor>> {
        let Some(name) = self.names.remove(hf) else { return Ok(None) };
        let path = &self.path;
        let q = self
            .content
            .tensor(&mut self.file, &name, &Device::Cpu)
            .map_err(|e| Error::bad_model(path, format!("cannot read tensor '{name}': {e}")))?;
        let mut t = q.dequantize(&Device::Cpu)?.to_dtype(DType::F32)?;
        if self.family == Family::Llama && name.ends_with("attn_q.weight") {
            t = unpermute_qk(&t, self.heads.0)?;
        } else if self.family == Family::Llama && name.ends_with("attn_k.weight") {
            t = unpermute_qk(&t, self.heads.1)?;
        }
        if self.family == Family::Gemma3 && name.ends_with("norm.weight") {
            // llama.cpp stores Gemma's RMSNorm scale as (1 + w); Hugging Face stores w.
            t = (t - 1.0)?;
        }
        Ok(Some(t))
    }

    fn read_rows(&mut self, hf: &str, r0: usize, count: usize) -> Result<Vec<f32>> {
        use std::io::{Read, Seek, SeekFrom};
        let (name, info) = self.info(hf).ok_or_else(|| Error::Input(format!("no tensor '{hf}'")))?;
        // Only tables are read in rows; the projections that `read` reorders never are.
        assert!(!name.contains("attn_") && !name.ends_with("norm.weight"), "'{name}' is read whole");
        let (name, dtype, k) = (name.clone(), info.ggml_dtype, info.shape.dims()[1]);
        let row_bytes = k / dtype.block_size() * dtype.type_size();
        let start = self.content.tensor_data_offset + info.offset + (r0 * row_bytes) as u64;
        let mut raw = vec![0u8; count * row_bytes];
        let path = &self.path;
        let io = |e| Error::io(path, e);
        self.file.seek(SeekFrom::Start(start)).map_err(io)?;
        self.file.read_exact(&mut raw).map_err(io)?;
        let q = candle_core::quantized::ggml_file::qtensor_from_ggml(dtype, &raw, vec![count, k], &Device::Cpu)
            .map_err(|e| Error::bad_model(path, format!("cannot read rows of tensor '{name}': {e}")))?;
        Ok(q.dequantize(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?)
    }
}

fn tensor_bytes(info: &gguf_file::TensorInfo) -> usize {
    let elems = info.shape.elem_count();
    let bs = info.ggml_dtype.block_size();
    elems / bs * info.ggml_dtype.type_size()
}

/// The tensors of a Hugging Face directory's model*.safetensors files, held as the files'
/// bytes and converted to f32 as they are read.
pub struct SafetensorsFiles {
    files: Vec<(std::path::PathBuf, Vec<u8>)>,
    /// Hugging Face name -> (file, name stored there).
    names: HashMap<String, (usize, String)>,
}

impl SafetensorsFiles {
    fn view(&self, hf: &str) -> Result<Option<(&Path, safetensors::tensor::TensorView<'_>)>> {
        let Some((i, stored)) = self.names.get(hf) else { return Ok(None) };
        let (path, bytes) = &self.files[*i];
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| Error::bad_model(path, format!("unreadable safetensors ({e})")))?;
        // The view borrows `bytes`, not `st`.
        let view = st.tensor(stored).map_err(|e| Error::bad_model(path, format!("cannot read tensor '{stored}': {e}")))?;
        Ok(Some((path, view)))
    }
}

/// f32 values of raw little-endian tensor bytes.
fn to_f32(path: &Path, name: &str, dtype: safetensors::Dtype, data: &[u8]) -> Result<Vec<f32>> {
    use safetensors::Dtype;
    let pairs = || data.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    Ok(match dtype {
        Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::BF16 => pairs().map(|b| f32::from_bits((b as u32) << 16)).collect(),
        Dtype::F16 => pairs().map(|b| half::f16::from_bits(b).to_f32()).collect(),
        other => return Err(Error::bad_model(path, format!("tensor '{name}' has dtype {other:?}; weights must be f32, bf16 or f16"))),
    })
}

impl TensorSource for SafetensorsFiles {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.view(name).ok().flatten().map(|(_, v)| v.shape().to_vec())
    }

    fn read(&mut self, name: &str) -> Result<Option<Tensor>> {
        let Some((path, view)) = self.view(name)? else { return Ok(None) };
        let values = to_f32(path, name, view.dtype(), view.data())?;
        let t = Tensor::from_vec(values, view.shape(), &Device::Cpu)?;
        self.names.remove(name);
        Ok(Some(t))
    }

    fn read_rows(&mut self, name: &str, r0: usize, count: usize) -> Result<Vec<f32>> {
        let (path, view) = self.view(name)?.ok_or_else(|| Error::Input(format!("no tensor '{name}'")))?;
        let row_bytes = view.data().len() / view.shape()[0];
        to_f32(path, name, view.dtype(), &view.data()[r0 * row_bytes..(r0 + count) * row_bytes])
    }
}

/// Opens a Hugging Face model directory: config.json and one or more model*.safetensors files.
pub fn open_hf_dir(dir: &Path) -> Result<(ModelConfig, SafetensorsFiles)> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::bad_model(&cfg_path, format!("invalid JSON: {e}")))?;
    let cfg = ModelConfig::from_hf_json(&cfg_path, &json)?;
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        // model.safetensors or model-0000N-of-0000M.safetensors; other safetensors files (heads,
        // optimizer state) are not part of the language model.
        .filter(|p| {
            p.extension().is_some_and(|x| x == "safetensors") && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("model"))
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(Error::bad_model(dir, "no model*.safetensors file"));
    }
    let (mut files, mut names) = (Vec::new(), HashMap::new());
    for path in paths {
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| Error::bad_model(&path, format!("unreadable safetensors ({e})")))?;
        for stored in st.names() {
            // Multimodal Gemma 3 checkpoints nest the text model under language_model.
            let hf = stored.replace("model.language_model.", "model.").replace("language_model.model.", "model.");
            names.insert(hf, (files.len(), stored.to_string()));
        }
        files.push((path, bytes));
    }
    Ok((cfg, SafetensorsFiles { files, names }))
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
