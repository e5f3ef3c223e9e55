//! `valuedrift curate`: the paper's V-PRISM pipeline for any prompt corpus (its appendix A.1).
//!
//! Prompts are rephrased into natural questions by an LLM, embedded by a sentence encoder,
//! reduced with UMAP, clustered with HDBSCAN (every prompt then softly assigned to a cluster),
//! described by class-based TF-IDF n-grams and named by the LLM, screened by the LLM's value
//! filter (its P(Yes) against a threshold, or its answer), and sampled per selected cluster into an eval set that `trace` reads.
//!
//! Each stage writes its output into the curation directory and is skipped when that output
//! is there, so a user can stop, inspect and edit (rename a cluster, choose which to keep) and
//! go on. Everything random is seeded.

pub mod cluster;
pub mod files;
pub mod input;
pub mod known;
pub mod layout;
pub mod llm;
pub mod ngrams;
pub mod reduce;
pub mod rng;
pub mod stages;
pub mod yes_no;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CurateError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}:{line}: {message}")]
    Row { path: PathBuf, line: usize, message: String },
    #[error("{0}")]
    Input(String),
    /// Boxed: the engines' errors are large next to the others.
    #[error(transparent)]
    Trace(Box<valuedrift_trace::pipeline::TraceError>),
    #[error(transparent)]
    Audit(Box<valuedrift_trace::audit::AuditError>),
}

impl From<valuedrift_trace::pipeline::TraceError> for CurateError {
    fn from(e: valuedrift_trace::pipeline::TraceError) -> Self {
        CurateError::Trace(Box::new(e))
    }
}

impl From<valuedrift_trace::audit::AuditError> for CurateError {
    fn from(e: valuedrift_trace::audit::AuditError) -> Self {
        CurateError::Audit(Box::new(e))
    }
}

pub type Result<T> = std::result::Result<T, CurateError>;

pub(crate) fn file_err(path: &std::path::Path, message: impl std::fmt::Display) -> CurateError {
    CurateError::File { path: path.into(), message: message.to_string() }
}

pub(crate) fn row_err(path: &std::path::Path, line: usize, message: impl Into<String>) -> CurateError {
    CurateError::Row { path: path.into(), line, message: message.into() }
}
