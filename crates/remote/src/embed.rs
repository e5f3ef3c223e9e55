//! Sentence embeddings through a server's `/v1/embeddings` (the audit's and synth's embedder role).
//! `valuedrift serve --embedder` answers that endpoint in `serve::embeddings`.

use crate::client::Client;
use crate::{RemoteError, Result};
use serde_json::{json, Value};
use std::sync::Arc;
use valuedrift_trace::audit::{AuditError, Embedder};

/// Texts sent per request.
const CHUNK: usize = 64;

pub struct RemoteEmbedder {
    pub client: Arc<Client>,
    pub model: String,
}

impl RemoteEmbedder {
    /// Unit-length embeddings in input order (servers differ on whether they normalize).
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(CHUNK) {
            let (url, answer) = self.client.post("/embeddings", &json!({"model": self.model, "input": chunk}))?;
            out.extend(parse_embeddings(&url, &answer, chunk.len())?);
        }
        Ok(out)
    }
}

impl Embedder for RemoteEmbedder {
    fn embed_texts(&self, texts: &[&str]) -> std::result::Result<Vec<Vec<f32>>, AuditError> {
        self.embed(texts).map_err(|e| AuditError::Remote(Box::new(e)))
    }
}

/// The `data` of an embeddings answer, ordered by `index` and normalized. Indices must be
/// 0..n once each and every vector numeric and of one length, or the answer is refused.
fn parse_embeddings(url: &str, answer: &Value, expected: usize) -> Result<Vec<Vec<f32>>> {
    let bad = |message: String| RemoteError::BadAnswer { url: url.into(), message };
    let data = answer["data"].as_array().ok_or_else(|| bad("no 'data' list in the embeddings answer".into()))?;
    if data.len() != expected {
        return Err(bad(format!("{} embeddings for {expected} inputs", data.len())));
    }
    let mut rows: Vec<Option<Vec<f32>>> = vec![None; expected];
    for (i, d) in data.iter().enumerate() {
        let index = d["index"].as_u64().map_or(i, |x| x as usize);
        let v: Option<Vec<f32>> = d["embedding"].as_array().and_then(|a| a.iter().map(|x| x.as_f64().map(|x| x as f32)).collect());
        let v = v.filter(|v| !v.is_empty()).ok_or_else(|| bad(format!("data[{i}]: 'embedding' is not a list of numbers")))?;
        match rows.get_mut(index) {
            Some(slot @ None) => *slot = Some(normalized(v)),
            _ => return Err(bad(format!("data[{i}]: index {index} is out of range or repeated"))),
        }
    }
    let rows: Vec<Vec<f32>> = rows.into_iter().map(|r| r.expect("every index filled")).collect();
    if rows.iter().any(|r| r.len() != rows[0].len()) {
        return Err(bad("embeddings of different lengths".into()));
    }
    Ok(rows)
}

fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}
