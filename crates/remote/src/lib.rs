//! OpenAI-compatible engines. The client side generates and judges through any server that
//! speaks the API (vLLM, SGLang, llama.cpp's server, OpenAI, `valuedrift serve`), behind the
//! tracer's `Generator` and `Judge` traits; `serve` puts the local engine behind the same API.

pub mod client;
pub mod config;
pub mod embed;
pub mod generator;
pub mod judge;
pub mod launch;
pub mod serve;
pub mod wire;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// A 4xx other than 429: retrying cannot help.
    #[error("{url}: the server refused the request (HTTP {status}): {body}")]
    Refused { url: String, status: u16, body: String },
    #[error("{url}: gave up after {tries} tries; last failure: {last}")]
    GaveUp { url: String, tries: u32, last: String },
    /// The server answered, but not with what the API promises.
    #[error("{url}: unexpected answer: {message}")]
    BadAnswer { url: String, message: String },
    #[error("{0}")]
    Config(String),
    #[error("server for {model}: {message}")]
    Launch { model: String, message: String },
    #[error(transparent)]
    Engine(#[from] valuedrift_engine::Error),
}

pub type Result<T> = std::result::Result<T, RemoteError>;

impl From<RemoteError> for valuedrift_trace::pipeline::TraceError {
    fn from(e: RemoteError) -> Self {
        valuedrift_trace::pipeline::TraceError::Remote(e.to_string())
    }
}

impl From<RemoteError> for valuedrift_trace::judge::JudgeError {
    fn from(e: RemoteError) -> Self {
        valuedrift_trace::judge::JudgeError::Remote(e.to_string())
    }
}
