//! Tokenizers: `tokenizer.json` when a model directory has one, otherwise rebuilt from GGUF
//! metadata for the three styles the supported families use (SmolLM2 "smollm" BPE, Qwen2 BPE,
//! Gemma SentencePiece-BPE with byte fallback).

use crate::error::{Error, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::path::Path;

/// GGUF token types (llama.cpp's llama_token_type).
const TOKEN_CONTROL: i32 = 3;
const TOKEN_USER_DEFINED: i32 = 4;

const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

impl Tokenizer {
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| Error::bad_model(path, format!("unreadable tokenizer.json ({e})")))?;
        Ok(Tokenizer { inner })
    }

    /// Rebuilds the tokenizer from `tokenizer.ggml.*` metadata.
    pub fn from_gguf(path: &Path, content: &Content) -> Result<Self> {
        let json = gguf_tokenizer_json(path, content)?;
        let inner = tokenizers::Tokenizer::from_bytes(serde_json::to_vec(&json).expect("json"))
            .map_err(|e| Error::bad_model(path, format!("cannot build tokenizer from GGUF metadata ({e})")))?;
        Ok(Tokenizer { inner })
    }

    /// Token ids; `add_special` adds what the model's tokenizer adds itself (Gemma's BOS).
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        Ok(self.inner.encode(text, add_special).map_err(tok_err)?.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(tok_err)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner.save(path, false).map_err(tok_err)
    }
}

fn md_strings<'a>(path: &Path, md: &'a HashMap<String, Value>, key: &str) -> Result<Vec<&'a str>> {
    let v = md.get(key).ok_or_else(|| Error::bad_model(path, format!("GGUF metadata lacks {key}")))?;
    let arr = v.to_vec().map_err(|_| Error::bad_model(path, format!("{key} is not an array")))?;
    arr.iter().map(|x| x.to_string().map(|s| s.as_str()).map_err(|_| Error::bad_model(path, format!("{key} holds a non-string")))).collect()
}

fn md_numbers(md: &HashMap<String, Value>, key: &str, f: impl Fn(&Value) -> Option<f64>) -> Option<Vec<f64>> {
    md.get(key)?.to_vec().ok()?.iter().map(f).collect()
}

/// The tokenizer.json that transformers would write for this GGUF vocabulary.
fn gguf_tokenizer_json(path: &Path, content: &Content) -> Result<Json> {
    let md = &content.metadata;
    let model = md.get("tokenizer.ggml.model").and_then(|v| v.to_string().ok()).map(String::as_str).unwrap_or("");
    let pre = md.get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).map(String::as_str).unwrap_or("default");
    let tokens = md_strings(path, md, "tokenizer.ggml.tokens")?;
    let types = md_numbers(md, "tokenizer.ggml.token_type", |v| v.to_i32().ok().map(|x| x as f64)).unwrap_or_else(|| vec![1.0; tokens.len()]);
    let is_special = |i: usize| matches!(types.get(i).map(|&t| t as i32), Some(TOKEN_CONTROL) | Some(TOKEN_USER_DEFINED));
    let added: Vec<Json> = (0..tokens.len())
        .filter(|&i| is_special(i))
        .map(|i| {
            json!({
                "id": i, "content": tokens[i], "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": types[i] as i32 == TOKEN_CONTROL,
            })
        })
        .collect();
    let vocab: serde_json::Map<String, Json> = tokens.iter().enumerate().map(|(i, t)| (t.to_string(), json!(i))).collect();
    let flag = |key: &str| md.get(key).and_then(|v| v.to_bool().ok());
    let bos = md.get("tokenizer.ggml.bos_token_id").and_then(|v| v.to_u32().ok());
    let add_bos = flag("tokenizer.ggml.add_bos_token").unwrap_or(false);
    let post = match (add_bos, bos) {
        (true, Some(id)) => {
            let tok = tokens.get(id as usize).copied().unwrap_or("<bos>");
            json!({"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": tok, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": tok, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {tok: {"id": tok, "ids": [id], "tokens": [tok]}}})
        }
        _ => Json::Null,
    };
    let byte_level = |prefix: bool, regex: bool| json!({"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": false, "use_regex": regex});
    let (normalizer, pre_tokenizer, decoder, model_json) = match model {
        "gpt2" => {
            let merges = md_strings(path, md, "tokenizer.ggml.merges")?;
            let pre_tok = match pre {
                "qwen2" => json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": false},
                    byte_level(false, false)]}),
                "smollm" => json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Digits", "individual_digits": true}, byte_level(false, true)]}),
                "default" | "gpt-2" => byte_level(false, true),
                other => return Err(Error::bad_model(path, format!("unsupported BPE pre-tokenizer '{other}' (supported: smollm, qwen2, gpt-2)"))),
            };
            let normalizer = if pre == "qwen2" { json!({"type": "NFC"}) } else { Json::Null };
            let model = json!({"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab, "merges": merges});
            (normalizer, pre_tok, byte_level(true, true), model)
        }
        "llama" => {
            let scores = md_numbers(md, "tokenizer.ggml.scores", |v| v.to_f32().ok().map(|x| x as f64))
                .ok_or_else(|| Error::bad_model(path, "SentencePiece vocabulary without tokenizer.ggml.scores"))?;
            let unk = md.get("tokenizer.ggml.unknown_token_id").and_then(|v| v.to_u32().ok()).and_then(|i| tokens.get(i as usize).copied());
            let merges = sentencepiece_merges(&tokens, &scores, &types);
            let add_prefix = flag("tokenizer.ggml.add_space_prefix").unwrap_or(true);
            let mut norm = vec![json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"})];
            if add_prefix {
                norm.insert(0, json!({"type": "Prepend", "prepend": "\u{2581}"}));
            }
            let model = json!({"type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                "vocab": vocab, "merges": merges});
            let mut dec = vec![
                json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
                json!({"type": "ByteFallback"}),
                json!({"type": "Fuse"}),
            ];
            if add_prefix {
                dec.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
            }
            (json!({"type": "Sequence", "normalizers": norm}), Json::Null, json!({"type": "Sequence", "decoders": dec}), model)
        }
        other => return Err(Error::bad_model(path, format!("unsupported tokenizer model '{other}' (supported: gpt2, llama)"))),
    };
    Ok(json!({"version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": normalizer, "pre_tokenizer": pre_tokenizer, "post_processor": post,
        "decoder": decoder, "model": model_json}))
}

/// BPE merges equivalent to a SentencePiece BPE vocabulary: every split of a normal piece into
/// two pieces of the vocabulary is a merge, ranked by the merged piece's score (highest first).
fn sentencepiece_merges(tokens: &[&str], scores: &[f64], types: &[f64]) -> Vec<(String, String)> {
    const NORMAL: f64 = 1.0;
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let mut merges: Vec<(f64, usize, usize, usize)> = Vec::new();
    for (i, piece) in tokens.iter().enumerate() {
        if types.get(i).copied().unwrap_or(NORMAL) != NORMAL {
            continue;
        }
        let mut local = Vec::new();
        for (cut, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(cut);
            if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                local.push((li, ri));
            }
        }
        local.sort();
        merges.extend(local.into_iter().map(|(l, r)| (scores.get(i).copied().unwrap_or(0.0), i, l, r)));
    }
    // Stable: equal scores keep vocabulary order, as transformers' converter does.
    merges.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal).then(a.1.cmp(&b.1)));
    merges.into_iter().map(|(_, _, l, r)| (tokens[l].to_string(), tokens[r].to_string())).collect()
}
