//! `POST /v1/embeddings` for `valuedrift serve --embedder`: a string or a list of strings in,
//! the sentence encoder's vectors out.

use super::request::ApiError;
use serde_json::{json, Value};
use std::sync::Mutex;
use valuedrift_engine::embed::SentenceEmbedder;

/// Answers one request (`input`: a string or a list of strings). Requests take turns on the
/// encoder, which uses every core by itself.
pub fn answer(embedder: &Mutex<SentenceEmbedder>, model: &str, body: &Value) -> Result<Value, ApiError> {
    let texts: Vec<&str> = match &body["input"] {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => {
            items.iter().map(|x| x.as_str().ok_or_else(|| ApiError::bad("field 'input': expected strings"))).collect::<Result<_, _>>()?
        }
        _ => return Err(ApiError::bad("field 'input': expected a string or a list of strings")),
    };
    let encoder = embedder.lock().map_err(|_| ApiError::server("the embedder failed earlier"))?;
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| encoder.encode(t)).collect::<Result<_, _>>().map_err(|e| ApiError::bad(e.to_string()))?;
    let vectors = encoder.embed_ids(&ids, 8192).map_err(|e| ApiError::server(e.to_string()))?;
    let tokens: usize = ids.iter().map(Vec::len).sum();
    Ok(json!({
        "object": "list", "model": model,
        "data": vectors.iter().enumerate().map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": v})).collect::<Vec<_>>(),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
}
