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
        valuedrift_trace::pipeline::TraceError::Remote(Box::new(e))
    }
}

impl From<RemoteError> for valuedrift_trace::judge::JudgeError {
    fn from(e: RemoteError) -> Self {
        valuedrift_trace::judge::JudgeError::Remote(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::RemoteError;
    use std::error::Error;

    /// A server's failure reaches the tracer's and the judge's errors whole: the same text, and
    /// the typed cause behind `source()` (for a caller that needs the status, say).
    #[test]
    fn remote_failures_keep_their_typed_cause() {
        let refused = || RemoteError::Refused { url: "http://h/v1".into(), status: 401, body: "bad key".into() };
        let traced = valuedrift_trace::pipeline::TraceError::from(refused());
        assert_eq!(traced.to_string(), refused().to_string());
        let judged = valuedrift_trace::judge::JudgeError::from(refused());
        let cause = match &judged {
            valuedrift_trace::judge::JudgeError::Remote(cause) => cause.downcast_ref::<RemoteError>(),
            other => panic!("{other:?}"),
        };
        assert!(matches!(cause, Some(RemoteError::Refused { status: 401, .. })));
        let audited = valuedrift_trace::audit::AuditError::Remote(Box::new(refused()));
        assert_eq!(audited.source().map(|s| s.to_string()), Some(refused().to_string()));
    }
}
