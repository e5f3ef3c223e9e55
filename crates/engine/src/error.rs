//! One error type for the engine. Messages name the file and the field at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a usable model: {reason}")]
    BadModel { path: PathBuf, reason: String },
    #[error("{path}: unknown architecture '{arch}' (supported: llama, qwen2, gemma3)")]
    UnknownArchitecture { path: PathBuf, arch: String },
    #[error("{path}: missing tensor '{name}'")]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: tensor '{name}' has shape {got:?}, expected {expected:?}")]
    TensorShape { path: PathBuf, name: String, got: Vec<usize>, expected: Vec<usize> },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    ChatTemplate(String),
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub fn bad_model(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::BadModel { path: path.into(), reason: reason.into() }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
