//! `valuedrift serve`: the local engine behind the OpenAI API (`/v1/models`, `/v1/completions`,
//! `/v1/chat/completions` with log-probs, `/health`), so that other tools and machines can use
//! our checkpoints.
//!
//! A thread per connection reads requests within limits (`http`) and waits for the answer; one
//! engine thread owns the model and works in waves:
//! it takes every request that arrived, gathers for a few milliseconds more, and runs them
//! together (one-token requests such as judge questions through prefix-shared scoring, longer
//! ones through continuous batching), so concurrent clients share batches.

mod batch;
mod embeddings;
mod http;
mod request;
mod respond;
mod sampled;

use crate::{RemoteError, Result};
pub use request::ApiError;
use request::Parsed;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use valuedrift_engine::embed::SentenceEmbedder;
use valuedrift_engine::LanguageModel;

#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub host: String,
    pub port: u16,
    /// The name `/v1/models` reports (requests may name any model: there is one).
    pub model_name: String,
    /// Sequences decoded together.
    pub batch_size: usize,
    /// Padded tokens per forward pass when scoring one-token requests.
    pub tokens_per_batch: usize,
    /// Connections open at once, each on its own thread (more are answered 503).
    pub max_connections: usize,
    /// How long the engine waits for more requests before running a wave.
    pub gather: Duration,
    /// Largest request body read; a larger one is answered 413.
    pub max_body_bytes: usize,
    /// Longest a client may take to send its body; a slower one is answered 408 and the
    /// handler thread goes back to serving others.
    pub read_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            host: "127.0.0.1".into(),
            port: 8000,
            model_name: "model".into(),
            batch_size: 64,
            tokens_per_batch: 4096,
            max_connections: 256,
            gather: Duration::from_millis(5),
            max_body_bytes: 8 << 20,
            read_timeout: Duration::from_secs(30),
        }
    }
}

/// A parsed request waiting for the engine, with where its answer goes.
struct Job {
    parsed: Parsed,
    reply: mpsc::Sender<std::result::Result<Value, ApiError>>,
}

/// Serves until the process is stopped. `ready` is called with the bound address once requests
/// are accepted.
/// With `embedder`, `/v1/embeddings` answers from that sentence encoder as well.
pub fn serve(lm: LanguageModel, opts: &ServeOptions, embedder: Option<SentenceEmbedder>, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    let addr = format!("{}:{}", opts.host, opts.port);
    let listener = std::net::TcpListener::bind(&addr).map_err(|e| RemoteError::Config(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| RemoteError::Config(format!("{addr}: {e}")))?;
    let (tx, rx) = mpsc::channel::<Job>();
    let embedder = embedder.map(|e| Arc::new(Mutex::new(e)));
    let accept_opts = opts.clone();
    std::thread::spawn(move || accept(listener, tx, accept_opts, embedder));
    ready(bound);
    let engine = batch::Engine::new(lm, opts);
    while let Ok(first) = rx.recv() {
        let mut wave = vec![first];
        // Requests sent together arrive a little apart: gather them into one wave.
        let started = Instant::now();
        while let Ok(job) = rx.recv_timeout(opts.gather) {
            wave.push(job);
            if started.elapsed() > opts.gather * 20 {
                break;
            }
        }
        let (parsed, replies): (Vec<Parsed>, Vec<_>) = wave.into_iter().map(|j| (j.parsed, j.reply)).unzip();
        for (answer, reply) in engine.run_wave(parsed, &opts.model_name).into_iter().zip(replies) {
            let _ = reply.send(answer);
        }
    }
    Ok(())
}

/// Accepts connections, each on its own thread, up to `max_connections` at once (beyond that a
/// connection is answered 503 and closed).
fn accept(listener: std::net::TcpListener, engine: mpsc::Sender<Job>, opts: ServeOptions, embedder: Option<Arc<Mutex<SentenceEmbedder>>>) {
    let open = Arc::new(AtomicUsize::new(0));
    let limits = http::Limits { max_body_bytes: opts.max_body_bytes, read_timeout: opts.read_timeout };
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if open.fetch_add(1, Ordering::SeqCst) >= opts.max_connections {
            open.fetch_sub(1, Ordering::SeqCst);
            http::refuse(stream, &ApiError { status: 503, message: format!("{} connections are open; try again", opts.max_connections) });
            continue;
        }
        let (engine, opts, embedder, open) = (engine.clone(), opts.clone(), embedder.clone(), open.clone());
        std::thread::spawn(move || {
            http::serve_connection(stream, limits, |req| {
                let answer = route(req, &engine, &opts.model_name, embedder.as_deref());
                (answer.as_ref().map_or_else(|e| e.status, |_| 200), respond::body(answer).to_string())
            });
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

fn route(
    req: &http::Request,
    engine: &mpsc::Sender<Job>,
    model_name: &str,
    embedder: Option<&Mutex<SentenceEmbedder>>,
) -> std::result::Result<Value, ApiError> {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/health") => Ok(json!({"status": "ok"})),
        ("GET", "/v1/models") => Ok(json!({"object": "list", "data": [
            {"id": model_name, "object": "model", "created": respond::now(), "owned_by": "valuedrift"}]})),
        ("POST", path @ ("/v1/completions" | "/v1/chat/completions")) => {
            let parsed = request::parse(&json_body(&req.body)?, path.ends_with("chat/completions"))?;
            let (reply, answer) = mpsc::channel();
            engine.send(Job { parsed, reply }).map_err(|_| ApiError::server("the engine stopped"))?;
            answer.recv().map_err(|_| ApiError::server("the engine dropped the request"))?
        }
        ("POST", "/v1/embeddings") => match embedder {
            Some(e) => embeddings::answer(e, model_name, &json_body(&req.body)?),
            None => Err(ApiError { status: 404, message: "no embedder is served here (start with --embedder DIR)".into() }),
        },
        (_, p) => Err(ApiError {
            status: 404,
            message: format!("no route {p} (try /v1/models, /v1/completions, /v1/chat/completions, /v1/embeddings, /health)"),
        }),
    }
}

fn json_body(bytes: &[u8]) -> std::result::Result<Value, ApiError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ApiError::bad(format!("the body is not UTF-8: {e}")))?;
    serde_json::from_str(text).map_err(|e| ApiError::bad(format!("the body is not JSON: {e}")))
}
