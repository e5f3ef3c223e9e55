//! Sentence embeddings from encoder models in sentence-transformers layout: BERT
//! (all-MiniLM-L6-v2) and MPNet (all-mpnet-base-v2, the embedder the paper used).
//!
//! An embedding is the mean of the last hidden states over a text's tokens, L2-normalized, as
//! the sentence-transformers pipelines of both models define it (Transformer, mean Pooling,
//! Normalize). The two architectures differ only in their embeddings and attention bias: BERT
//! adds learned absolute positions and a token-type row; MPNet offsets positions past the
//! padding id and adds a bucketed relative-position bias, shared by all layers, to every
//! attention score.

use crate::error::{Error, Result};
use crate::matmul::{PackedWeight, Precision};
use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::{LayerNorm, Linear};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncoderKind {
    Bert,
    Mpnet,
}

#[derive(Debug, serde::Deserialize)]
struct EncoderConfig {
    model_type: String,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    layer_norm_eps: f64,
    #[serde(default)]
    pad_token_id: u32,
    #[serde(default = "default_buckets")]
    relative_attention_num_buckets: usize,
}

fn default_buckets() -> usize {
    32
}

/// A dense layer that uses the engine's packed f32 kernels on CPUs that have them (several
/// times candle's gemm on these shapes) and candle elsewhere.
struct Dense {
    linear: Linear,
    packed: Option<PackedWeight>,
}

impl Dense {
    fn new(linear: Linear) -> Result<Self> {
        let w = linear.weight();
        let packed = match w.device() {
            Device::Cpu if crate::matmul::supported(Precision::F32) => {
                let (n, k) = w.dims2()?;
                Some(PackedWeight::pack(&w.flatten_all()?.to_vec1::<f32>()?, n, k, Precision::F32).pinned())
            }
            _ => None,
        };
        Ok(Dense { linear, packed })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let Some(p) = &self.packed else { return Ok(self.linear.forward(x)?) };
        let (b, t, _) = x.dims3()?;
        let y = p.matmul(&x.flatten_all()?.to_vec1::<f32>()?, b * t);
        let y = Tensor::from_vec(y, (b, t, p.n), x.device())?;
        Ok(y.broadcast_add(self.linear.bias().expect("encoder layers have biases"))?)
    }
}

struct Layer {
    q: Dense,
    k: Dense,
    v: Dense,
    out: Dense,
    attn_norm: LayerNorm,
    up: Dense,
    down: Dense,
    out_norm: LayerNorm,
}

pub struct SentenceEmbedder {
    pub kind: EncoderKind,
    pub source: PathBuf,
    tokenizer: tokenizers::Tokenizer,
    word: Tensor,
    position: Tensor,
    token_type: Option<Tensor>,
    embed_norm: LayerNorm,
    relative_bias: Option<Tensor>,
    layers: Vec<Layer>,
    heads: usize,
    buckets: usize,
    pad_id: u32,
    /// Longest input in tokens (sentence-transformers' max_seq_length); longer texts are cut.
    pub max_tokens: usize,
    device: Device,
}

/// Weights by name, with errors that name the file and the missing tensor.
struct Weights {
    path: PathBuf,
    map: HashMap<String, Tensor>,
}

impl Weights {
    fn get(&self, name: &str) -> Result<Tensor> {
        self.map.get(name).cloned().ok_or_else(|| Error::MissingTensor { path: self.path.clone(), name: name.into() })
    }
    fn linear(&self, prefix: &str) -> Result<Linear> {
        Ok(Linear::new(self.get(&format!("{prefix}.weight"))?, Some(self.get(&format!("{prefix}.bias"))?)))
    }
    fn norm(&self, prefix: &str, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm::new(self.get(&format!("{prefix}.weight"))?, self.get(&format!("{prefix}.bias"))?, eps))
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::bad_model(path, format!("unreadable JSON ({e})")))
}

/// sentence-transformers' max_seq_length, or the position table's size when it is absent.
fn max_tokens(dir: &Path, kind: EncoderKind, positions: usize, pad_id: u32) -> Result<usize> {
    let path = dir.join("sentence_bert_config.json");
    // MPNet's positions start past the padding id.
    let offset = if kind == EncoderKind::Mpnet { pad_id as usize + 1 } else { 0 };
    let usable = positions
        .checked_sub(offset)
        .filter(|&n| n > 1)
        .ok_or_else(|| Error::bad_model(dir.join("config.json"), format!("{positions} positions leave no room past the padding id {pad_id}")))?;
    if !path.exists() {
        return Ok(usable);
    }
    let cfg: serde_json::Value = read_json(&path)?;
    match cfg["max_seq_length"].as_u64() {
        None => Ok(usable),
        // One token besides the closing special token, at least.
        Some(n) if n >= 2 => Ok((n as usize).min(usable)),
        Some(n) => Err(Error::bad_model(&path, format!("max_seq_length {n} leaves no room for a token (at least 2)"))),
    }
}

impl SentenceEmbedder {
    /// Loads a sentence-transformers model directory (config.json, model.safetensors,
    /// tokenizer.json).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let cfg: EncoderConfig = read_json(&dir.join("config.json"))?;
        let kind = match cfg.model_type.as_str() {
            "bert" => EncoderKind::Bert,
            "mpnet" => EncoderKind::Mpnet,
            other => {
                return Err(Error::bad_model(
                    dir.join("config.json"),
                    format!("model_type '{other}' is not a supported sentence encoder (bert, mpnet)"),
                ))
            }
        };
        let path = dir.join("model.safetensors");
        let map = candle_core::safetensors::load(&path, device).map_err(|e| Error::bad_model(&path, format!("unreadable safetensors ({e})")))?;
        let map = map.into_iter().map(|(k, t)| Ok((k, t.to_dtype(DType::F32)?))).collect::<Result<_>>()?;
        let w = Weights { path, map };
        let eps = cfg.layer_norm_eps;
        let layers = (0..cfg.num_hidden_layers).map(|i| layer(&w, kind, i, eps)).collect::<Result<Vec<_>>>()?;
        let position = w.get("embeddings.position_embeddings.weight")?;
        let tokenizer = plain_tokenizer(&dir.join("tokenizer.json"))?;
        let max = max_tokens(dir, kind, position.dim(0)?, cfg.pad_token_id)?;
        Ok(SentenceEmbedder {
            kind,
            source: dir.to_path_buf(),
            tokenizer,
            word: w.get("embeddings.word_embeddings.weight")?,
            position,
            token_type: match kind {
                EncoderKind::Bert => Some(w.get("embeddings.token_type_embeddings.weight")?),
                EncoderKind::Mpnet => None,
            },
            embed_norm: w.norm("embeddings.LayerNorm", eps)?,
            relative_bias: match kind {
                EncoderKind::Mpnet => Some(w.get("encoder.relative_attention_bias.weight")?),
                EncoderKind::Bert => None,
            },
            layers,
            heads: cfg.num_attention_heads,
            buckets: cfg.relative_attention_num_buckets,
            pad_id: cfg.pad_token_id,
            max_tokens: max,
            device: device.clone(),
        })
    }

    pub fn dim(&self) -> usize {
        self.word.dim(1).expect("2-d embedding table")
    }

    /// Token ids of a text, with the model's special tokens, cut to `max_tokens`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut ids = enc.get_ids().to_vec();
        if ids.len() > self.max_tokens {
            // Keep the closing special token, as the tokenizer's own truncation would.
            let last = *ids.last().expect("non-empty");
            ids.truncate(self.max_tokens - 1);
            ids.push(last);
        }
        Ok(ids)
    }

    /// Unit-length embeddings of the texts, in input order. Texts are batched by length so
    /// that padding stays small; `tokens_per_batch` bounds a batch's padded size.
    pub fn embed(&self, texts: &[&str], tokens_per_batch: usize) -> Result<Vec<Vec<f32>>> {
        let ids: Vec<Vec<u32>> = texts.iter().map(|t| self.encode(t)).collect::<Result<_>>()?;
        self.embed_ids(&ids, tokens_per_batch)
    }

    /// As `embed`, for texts already encoded with `encode`.
    pub fn embed_ids(&self, ids: &[Vec<u32>], tokens_per_batch: usize) -> Result<Vec<Vec<f32>>> {
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let mut out = vec![Vec::new(); ids.len()];
        let mut start = 0;
        while start < order.len() {
            let longest = ids[order[start]].len().max(1);
            let rows = (tokens_per_batch / longest).max(1).min(order.len() - start);
            let batch: Vec<&[u32]> = order[start..start + rows].iter().map(|&i| ids[i].as_slice()).collect();
            for (k, v) in self.embed_batch(&batch)?.into_iter().enumerate() {
                out[order[start + k]] = v;
            }
            start += rows;
        }
        Ok(out)
    }

    fn embed_batch(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let len = batch.iter().map(|b| b.len()).max().unwrap_or(1).max(1);
        let mut flat = Vec::with_capacity(batch.len() * len);
        let mut mask = Vec::with_capacity(batch.len() * len);
        for row in batch {
            flat.extend(row.iter().copied().chain(std::iter::repeat_n(self.pad_id, len - row.len())));
            mask.extend((0..len).map(|j| if j < row.len() { 1f32 } else { 0f32 }));
        }
        let ids = Tensor::from_vec(flat, (batch.len(), len), &self.device)?;
        let mask = Tensor::from_vec(mask, (batch.len(), len), &self.device)?;
        let mut h = self.embeddings(&ids, len)?;
        // Padded keys get -inf-like scores; the bias broadcasts over heads and queries.
        let key_bias = ((mask.ones_like()? - &mask)? * -1e9f64)?.unsqueeze(1)?.unsqueeze(1)?;
        let bias = match &self.relative_bias {
            Some(table) => key_bias.broadcast_add(&self.relative_position_bias(table, len)?)?,
            None => key_bias,
        };
        for layer in &self.layers {
            h = self.layer_forward(layer, &h, &bias)?;
        }
        let pooled = mean_pool(&h, &mask)?;
        let norm = pooled.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        Ok(pooled.broadcast_div(&norm)?.to_vec2::<f32>()?)
    }

    fn embeddings(&self, ids: &Tensor, len: usize) -> Result<Tensor> {
        let (b, _) = ids.dims2()?;
        let words = self.word.embedding(&ids.flatten_all()?)?.reshape((b, len, ()))?;
        // MPNet numbers positions from padding_idx + 1, as RoBERTa does.
        let first = if self.kind == EncoderKind::Mpnet { self.pad_id as usize + 1 } else { 0 };
        let positions = self.position.i(first..first + len)?.unsqueeze(0)?;
        let mut x = words.broadcast_add(&positions)?;
        if let Some(types) = &self.token_type {
            x = x.broadcast_add(&types.i(0)?)?;
        }
        Ok(self.embed_norm.forward(&x)?)
    }

    fn layer_forward(&self, l: &Layer, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let (b, n, hidden) = x.dims3()?;
        let d = hidden / self.heads;
        let split = |t: Tensor| -> Result<Tensor> { Ok(t.reshape((b, n, self.heads, d))?.transpose(1, 2)?.contiguous()?) };
        let q = split(l.q.forward(x)?)?;
        let k = split(l.k.forward(x)?)?;
        let v = split(l.v.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? / (d as f64).sqrt())?.broadcast_add(bias)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, n, hidden))?;
        let attended = l.attn_norm.forward(&(l.out.forward(&ctx)? + x)?)?;
        let inner = l.up.forward(&attended)?.gelu_erf()?;
        Ok(l.out_norm.forward(&(l.down.forward(&inner)? + attended)?)?)
    }

    /// MPNet's bias: (1, heads, len, len) from the bucket of each key-minus-query distance.
    fn relative_position_bias(&self, table: &Tensor, len: usize) -> Result<Tensor> {
        let buckets: Vec<u32> = (0..len)
            .flat_map(|q| (0..len).map(move |k| (q, k)))
            .map(|(q, k)| relative_bucket(k as i64 - q as i64, self.buckets, 128) as u32)
            .collect();
        let idx = Tensor::from_vec(buckets, len * len, &self.device)?;
        let values = table.embedding(&idx)?.reshape((len, len, self.heads))?;
        Ok(values.permute((2, 0, 1))?.unsqueeze(0)?)
    }
}

fn layer(w: &Weights, kind: EncoderKind, i: usize, eps: f64) -> Result<Layer> {
    let p = format!("encoder.layer.{i}");
    let (q, k, v, out, attn_norm) = match kind {
        EncoderKind::Bert => {
            ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "attention.output.LayerNorm")
        }
        EncoderKind::Mpnet => ("attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o", "attention.LayerNorm"),
    };
    let dense = |name: String| Dense::new(w.linear(&name)?);
    Ok(Layer {
        q: dense(format!("{p}.{q}"))?,
        k: dense(format!("{p}.{k}"))?,
        v: dense(format!("{p}.{v}"))?,
        out: dense(format!("{p}.{out}"))?,
        attn_norm: w.norm(&format!("{p}.{attn_norm}"), eps)?,
        up: dense(format!("{p}.intermediate.dense"))?,
        down: dense(format!("{p}.output.dense"))?,
        out_norm: w.norm(&format!("{p}.output.LayerNorm"), eps)?,
    })
}

/// The tokenizer with the padding and truncation that these files fix at 128 turned off:
/// batching pads here, and `encode` truncates at the model's own limit.
fn plain_tokenizer(path: &Path) -> Result<tokenizers::Tokenizer> {
    let mut tok = tokenizers::Tokenizer::from_file(path).map_err(|e| Error::bad_model(path, format!("unreadable tokenizer.json ({e})")))?;
    tok.with_padding(None);
    tok.with_truncation(None).map_err(|e| Error::bad_model(path, e.to_string()))?;
    Ok(tok)
}

/// Mean of the hidden states over the unpadded tokens of each row.
fn mean_pool(h: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let m = mask.unsqueeze(2)?;
    let sum = h.broadcast_mul(&m)?.sum(1)?;
    let count = m.sum(1)?.clamp(1e-9, f64::MAX)?;
    Ok(sum.broadcast_div(&count)?)
}

/// T5/MPNet bucketing of a relative distance (key position minus query position): half the
/// buckets per direction, exact below `buckets / 4`, logarithmic up to `max_distance`.
pub(crate) fn relative_bucket(relative: i64, buckets: usize, max_distance: usize) -> usize {
    let half = buckets / 2;
    let n = -relative;
    let base = if n < 0 { half } else { 0 };
    let n = n.unsigned_abs() as usize;
    let exact = half / 2;
    if n < exact {
        return base + n;
    }
    let scaled = ((n as f64 / exact as f64).ln() / (max_distance as f64 / exact as f64).ln() * (half - exact) as f64) as usize;
    base + (exact + scaled).min(half - 1)
}

/// Cosine similarity of two unit vectors (their dot product).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::relative_bucket;

    #[test]
    fn buckets_follow_the_t5_rule() {
        // Query at 0: later keys (relative > 0) are negative n, so they take the upper half.
        assert_eq!(relative_bucket(0, 32, 128), 0);
        assert_eq!(relative_bucket(-3, 32, 128), 3);
        assert_eq!(relative_bucket(3, 32, 128), 19);
        // Beyond max_distance every distance shares the last bucket of its direction.
        assert_eq!(relative_bucket(-1000, 32, 128), 15);
        assert_eq!(relative_bucket(1000, 32, 128), 31);
        // Log region: 8 + floor(ln(20/8) / ln(16) * 8) = 8 + 2.
        assert_eq!(relative_bucket(-20, 32, 128), 10);
    }
}
