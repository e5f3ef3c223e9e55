//! `valuedrift serve`: the local engine behind the OpenAI API (`/v1/models`, `/v1/completions`,
//! `/v1/chat/completions` with log-probs, `/health`), so that other tools and machines can use
//! our checkpoints.
//!
//! HTTP threads parse requests and wait; one engine thread owns the model and works in waves:
//! it takes every request that arrived, gathers for a few milliseconds more, and runs them
//! together (one-token requests such as judge questions through prefix-shared scoring, longer
//! ones through continuous batching), so concurrent clients share batches.

mod batch;
mod request;
mod respond;

use crate::{RemoteError, Result};
pub use request::ApiError;
use request::Parsed;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::mpsc;
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
    /// Requests handled at once (each waits on its own thread).
    pub http_threads: usize,
    /// How long the engine waits for more requests before running a wave.
    pub gather: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            host: "127.0.0.1".into(),
            port: 8000,
            model_name: "model".into(),
            batch_size: 64,
            tokens_per_batch: 4096,
            http_threads: 128,
            gather: Duration::from_millis(5),
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
    let server = tiny_http::Server::http(&addr).map_err(|e| RemoteError::Config(format!("cannot listen on {addr}: {e}")))?;
    let bound = server.server_addr().to_ip().ok_or_else(|| RemoteError::Config(format!("{addr} is not an IP address")))?;
    let (tx, rx) = mpsc::channel::<Job>();
    let server = std::sync::Arc::new(server);
    let embedder = embedder.map(|e| std::sync::Arc::new(std::sync::Mutex::new(e)));
    for _ in 0..opts.http_threads.max(1) {
        let (server, tx, name, embedder) = (server.clone(), tx.clone(), opts.model_name.clone(), embedder.clone());
        std::thread::spawn(move || {
            while let Ok(req) = server.recv() {
                handle(req, &tx, &name, embedder.as_deref());
            }
        });
    }
    drop(tx);
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

fn handle(mut req: tiny_http::Request, engine: &mpsc::Sender<Job>, model_name: &str, embedder: Option<&std::sync::Mutex<SentenceEmbedder>>) {
    let path = req.url().split('?').next().unwrap_or("").trim_end_matches('/').to_string();
    let method = req.method().clone();
    let answer: std::result::Result<Value, ApiError> = match (method, path.as_str()) {
        (tiny_http::Method::Get, "/health") => Ok(json!({"status": "ok"})),
        (tiny_http::Method::Get, "/v1/models") => Ok(json!({"object": "list", "data": [
            {"id": model_name, "object": "model", "created": respond::now(), "owned_by": "valuedrift"}]})),
        (tiny_http::Method::Post, "/v1/completions" | "/v1/chat/completions") => {
            let chat = path.ends_with("chat/completions");
            read_json(&mut req).and_then(|body| request::parse(&body, chat)).and_then(|parsed| {
                let (reply, answer) = mpsc::channel();
                engine.send(Job { parsed, reply }).map_err(|_| ApiError::server("the engine stopped"))?;
                answer.recv().map_err(|_| ApiError::server("the engine dropped the request"))?
            })
        }
        (tiny_http::Method::Post, "/v1/embeddings") => match embedder {
            Some(e) => read_json(&mut req).and_then(|body| crate::embed::answer(e, model_name, &body)),
            None => Err(ApiError { status: 404, message: "no embedder is served here (start with --embedder DIR)".into() }),
        },
        (_, p) => Err(ApiError {
            status: 404,
            message: format!("no route {p} (try /v1/models, /v1/completions, /v1/chat/completions, /v1/embeddings, /health)"),
        }),
    };
    let (status, body) = match answer {
        Ok(v) => (200, v),
        Err(e) => (
            e.status,
            json!({"error": {"message": e.message, "type": if e.status < 500 { "invalid_request_error" } else { "server_error" }, "code": e.status}}),
        ),
    };
    let header = tiny_http::Header::from_bytes("Content-Type", "application/json").expect("static header");
    let _ = req.respond(tiny_http::Response::from_string(body.to_string()).with_status_code(status).with_header(header));
}

fn read_json(req: &mut tiny_http::Request) -> std::result::Result<Value, ApiError> {
    let mut text = String::new();
    req.as_reader().read_to_string(&mut text).map_err(|e| ApiError::bad(format!("cannot read the body: {e}")))?;
    serde_json::from_str(&text).map_err(|e| ApiError::bad(format!("the body is not JSON: {e}")))
}
