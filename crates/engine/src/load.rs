//! A loaded language model: weights, tokenizer and chat format, from a GGUF file or a Hugging
//! Face directory; and saving as a Hugging Face directory.

use crate::chat::{ChatFormat, Message};
use crate::config::{Family, ModelConfig};
use crate::error::{Error, Result};
use crate::model::{Build, Model};
use crate::tokenizer::Tokenizer;
use crate::weights;
use candle_core::{DType, Device};
use serde_json::json;
use std::path::{Path, PathBuf};

pub struct LanguageModel {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub chat: ChatFormat,
    pub source: PathBuf,
}

impl LanguageModel {
    /// Loads a `.gguf` file or a directory with config.json, *.safetensors and tokenizer.json.
    pub fn load(path: &Path, device: &Device, dtype: DType) -> Result<Self> {
        Self::load_as(path, device, dtype, Build::Trainable)
    }

    /// Loads for inference only: on CPUs whose packed kernels run `precision`, the model is built
    /// frozen (`Model::from_tensors`): its projection weights exist only packed, which saves
    /// memory and time, and loading never holds the whole f32 model. Elsewhere a plain f32 load;
    /// `model.is_frozen()` tells which.
    pub fn load_for_inference(path: &Path, device: &Device, precision: crate::matmul::Precision) -> Result<Self> {
        let build = if Self::kernels_run(device, precision) { Build::Frozen(precision) } else { Build::Trainable };
        Self::load_as(path, device, DType::F32, build)
    }

    /// Loads the first `depth` layers only, for reading hidden states (a stance head), never
    /// logits (`Build::Probe`), where the packed kernels run `precision`; elsewhere the whole
    /// model, as `load_for_inference` does.
    pub fn load_probe(path: &Path, device: &Device, precision: crate::matmul::Precision, depth: usize) -> Result<Self> {
        let build = if Self::kernels_run(device, precision) { Build::Probe { precision, depth } } else { Build::Trainable };
        Self::load_as(path, device, DType::F32, build)
    }

    fn kernels_run(device: &Device, precision: crate::matmul::Precision) -> bool {
        device.is_cpu() && crate::matmul::supported(precision)
    }

    fn load_as(path: &Path, device: &Device, dtype: DType, build: Build) -> Result<Self> {
        if !path.exists() {
            return Err(Error::bad_model(path, "no such file or directory"));
        }
        if path.is_dir() {
            Self::load_hf_dir(path, device, dtype, build)
        } else {
            Self::load_gguf(path, device, dtype, build)
        }
    }

    fn load_gguf(path: &Path, device: &Device, dtype: DType, build: Build) -> Result<Self> {
        let (cfg, mut tensors) = weights::open_gguf(path)?;
        let tokenizer = Tokenizer::from_gguf(path, &tensors.content)?;
        let chat = gguf_chat_format(&tensors.content, &tokenizer);
        let model = Model::from_tensors(cfg, &mut tensors, dtype, device, path, build)?;
        Ok(LanguageModel { model, tokenizer, chat, source: path.into() })
    }

    fn load_hf_dir(dir: &Path, device: &Device, dtype: DType, build: Build) -> Result<Self> {
        let (mut cfg, mut tensors) = weights::open_hf_dir(dir)?;
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.exists() {
            return Err(Error::bad_model(dir, "no tokenizer.json"));
        }
        let tokenizer = Tokenizer::from_file(&tok_path)?;
        let chat = dir_chat_format(dir);
        if let Ok(gen) = std::fs::read_to_string(dir.join("generation_config.json")) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&gen) {
                let ids = ModelConfig::from_hf_json(
                    dir,
                    &json!({"model_type": "llama", "eos_token_id": v["eos_token_id"],
                    "hidden_size": 1, "num_attention_heads": 1, "num_hidden_layers": 1, "vocab_size": 1, "intermediate_size": 1}),
                )
                .map(|c| c.eos_token_ids)
                .unwrap_or_default();
                for id in ids {
                    if !cfg.eos_token_ids.contains(&id) {
                        cfg.eos_token_ids.push(id);
                    }
                }
            }
        }
        let model = Model::from_tensors(cfg, &mut tensors, dtype, device, dir, build)?;
        Ok(LanguageModel { model, tokenizer, chat, source: dir.into() })
    }

    /// The tokenizer of a model without loading its weights (GGUF metadata, or a directory's
    /// tokenizer.json).
    pub fn read_tokenizer(path: &Path) -> Result<Tokenizer> {
        if path.is_dir() {
            return Tokenizer::from_file(&path.join("tokenizer.json"));
        }
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let content = candle_core::quantized::gguf_file::Content::read(&mut file)
            .map_err(|e| Error::bad_model(path, format!("not a readable GGUF file ({e})")))?;
        Tokenizer::from_gguf(path, &content)
    }

    /// The chat format of a model without loading its weights (to render prompts for a server
    /// that runs the model).
    pub fn read_chat_format(path: &Path) -> Result<ChatFormat> {
        if path.is_dir() {
            return Ok(dir_chat_format(path));
        }
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let content = candle_core::quantized::gguf_file::Content::read(&mut file)
            .map_err(|e| Error::bad_model(path, format!("not a readable GGUF file ({e})")))?;
        Ok(gguf_chat_format(&content, &Tokenizer::from_gguf(path, &content)?))
    }

    pub fn config(&self) -> &ModelConfig {
        &self.model.cfg
    }

    /// Token ids that end generation: the model's EOS ids and its chat end-of-turn token.
    pub fn stop_ids(&self) -> Vec<u32> {
        let mut ids = self.model.cfg.eos_token_ids.clone();
        let eot = self.chat.end_of_turn().trim_end();
        if let Some(id) = (!eot.is_empty()).then(|| self.tokenizer.token_to_id(eot)).flatten() {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    /// Prompt ids for a single user message, formatted for generation.
    pub fn prompt_ids(&self, messages: &[Message]) -> Result<Vec<u32>> {
        let text = self.chat.render(messages, true)?;
        self.encode_prompt_text(&text)
    }

    /// Encodes rendered prompt text. Templates that write the BOS token themselves must not get
    /// a second one from the tokenizer.
    pub fn encode_prompt_text(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.tokenizer.encode(text, true)?;
        if let (Some(bos), [a, b, ..]) = (self.model.cfg.bos_token_id, ids.as_slice()) {
            if *a == bos && *b == bos {
                ids.remove(0);
            }
        }
        Ok(ids)
    }

    /// Saves as a Hugging Face directory: config.json, model.safetensors, tokenizer.json,
    /// tokenizer_config.json (with the chat template) and generation_config.json.
    pub fn save_hf(&self, dir: &Path) -> Result<()> {
        if self.model.is_frozen() {
            return Err(Error::Input("a model loaded for inference only cannot be saved".into()));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let cfg = &self.model.cfg;
        let write = |name: &str, v: &serde_json::Value| {
            let p = dir.join(name);
            std::fs::write(&p, serde_json::to_string_pretty(v).expect("json")).map_err(|e| Error::io(&p, e))
        };
        write("config.json", &cfg.to_hf_json())?;
        weights::save_safetensors(&dir.join("model.safetensors"), &self.model.tensors())?;
        self.tokenizer.save(&dir.join("tokenizer.json"))?;
        let name = |id: Option<u32>| id.and_then(|i| self.tokenizer.id_to_token(i));
        let mut tok_cfg = json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": name(cfg.bos_token_id),
            "eos_token": name(cfg.eos_token_ids.first().copied()),
            "pad_token": name(cfg.pad_token_id),
            "add_bos_token": cfg.family == Family::Gemma3,
            "model_max_length": cfg.max_position_embeddings,
        });
        if let Some(t) = self.chat.template_source() {
            tok_cfg["chat_template"] = json!(t);
        }
        write("tokenizer_config.json", &tok_cfg)?;
        write(
            "generation_config.json",
            &json!({"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_ids, "pad_token_id": cfg.pad_token_id}),
        )
    }
}

/// The chat template stored in GGUF metadata, with the special tokens it may print.
fn gguf_chat_format(content: &candle_core::quantized::gguf_file::Content, tokenizer: &Tokenizer) -> ChatFormat {
    let token = |key: &str| content.metadata.get(key).and_then(|v| v.to_u32().ok()).and_then(|id| tokenizer.id_to_token(id)).unwrap_or_default();
    match content.metadata.get("tokenizer.chat_template").and_then(|v| v.to_string().ok()).cloned() {
        Some(source) => {
            ChatFormat::Template { source, bos_token: token("tokenizer.ggml.bos_token_id"), eos_token: token("tokenizer.ggml.eos_token_id") }
        }
        None => ChatFormat::Base,
    }
}

/// The chat template of a Hugging Face directory (chat_template.jinja or tokenizer_config.json).
fn dir_chat_format(dir: &Path) -> ChatFormat {
    let tok_cfg: serde_json::Value =
        std::fs::read_to_string(dir.join("tokenizer_config.json")).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(json!({}));
    let special = |key: &str| match &tok_cfg[key] {
        serde_json::Value::String(s) => s.clone(),
        v => v["content"].as_str().unwrap_or_default().to_string(),
    };
    let template = std::fs::read_to_string(dir.join("chat_template.jinja")).ok().or_else(|| tok_cfg["chat_template"].as_str().map(str::to_string));
    match template {
        Some(source) => ChatFormat::Template { source, bos_token: special("bos_token"), eos_token: special("eos_token") },
        None => ChatFormat::Base,
    }
}
