//! Training-data loaders for post-training: the published SFT and preference formats, read from
//! JSON arrays or JSONL (optionally gzipped) and normalized into chat messages.
//!
//! - SFT: Alpaca (`instruction`/`input`/`output`, optional `system` and `history`) and chat
//!   transcripts (`messages: [{role, content}]` or ShareGPT `conversations: [{from, value}]`).
//! - Preference: `prompt`/`chosen`/`rejected` (strings or message lists, as in UltraFeedback
//!   binarized), HH-RLHF transcripts, and ShareGPT pairs (LLaMA-Factory's dpo format).
//!
//! Malformed rows are an error naming the file, the line (JSONL) or record (JSON array) and the
//! field, unless the caller asks to skip and count them ([`OnMalformed::Skip`]).

mod fields;
mod hh;
mod preference;
mod read;
mod sft;
pub mod valuegap;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message { role, content: content.into() }
    }
}

/// One SFT conversation: an optional leading system message, at least one user turn, and a
/// final assistant message. Loss goes on the assistant turns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SftExample {
    pub messages: Vec<Message>,
}

/// A prompt (optional leading system message, ending with a user message) and two responses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreferencePair {
    pub prompt: Vec<Message>,
    pub chosen: String,
    pub rejected: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SftFormat {
    /// Decided from the first record's fields.
    #[default]
    Auto,
    Alpaca,
    /// `messages` (role/content), `conversations` (ShareGPT from/value) or `conversation`.
    Messages,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PreferenceFormat {
    /// Decided from the first record's fields.
    #[default]
    Auto,
    PromptChosenRejected,
    HhRlhf,
    ShareGpt,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnMalformed {
    #[default]
    Error,
    /// Skip malformed rows, counting them and keeping the first few reasons.
    Skip,
}

/// How many skip reasons [`Loaded`] keeps.
pub const MAX_SKIP_REASONS: usize = 5;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loaded<T> {
    pub items: Vec<T>,
    /// Malformed rows skipped (always 0 with [`OnMalformed::Error`]).
    pub skipped: usize,
    /// The first [`MAX_SKIP_REASONS`] skipped rows' errors.
    pub skip_reasons: Vec<String>,
}

/// Where a row sits in its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// 1-based line of a JSONL file.
    Line(usize),
    /// 1-based index of a record in a JSON array file.
    Record(usize),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "{n}"),
            Location::Record(n) => write!(f, "record {n}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The file as a whole: bad gzip or UTF-8, an invalid JSON array, no records, unknown format.
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    /// One malformed row, e.g. `data.jsonl:17: field 'output': expected a string`.
    #[error("{path}:{location}: {}", fields::describe(.field.as_deref(), .message))]
    Row { path: PathBuf, location: Location, field: Option<String>, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Loads SFT conversations from a JSON array or JSONL file (gzip read transparently).
pub fn load_sft(path: &Path, format: SftFormat, on_malformed: OnMalformed) -> Result<Loaded<SftExample>> {
    let records = read::records(path)?;
    let format = match format {
        SftFormat::Auto => sft::detect(path, &records)?,
        explicit => explicit,
    };
    read::collect(path, records, on_malformed, |row| sft::parse(format, row))
}

/// Loads preference pairs from a JSON array or JSONL file (gzip read transparently).
pub fn load_preferences(path: &Path, format: PreferenceFormat, on_malformed: OnMalformed) -> Result<Loaded<PreferencePair>> {
    let records = read::records(path)?;
    let format = match format {
        PreferenceFormat::Auto => preference::detect(path, &records)?,
        explicit => explicit,
    };
    read::collect(path, records, on_malformed, |row| preference::parse(format, row))
}

/// How many records (JSONL lines or array elements) a data file holds, unparsed: what a plan
/// needs to estimate its steps.
pub fn count_records(path: &Path) -> Result<usize> {
    Ok(read::records(path)?.len())
}

/// The SFT format [`SftFormat::Auto`] picks for this file.
pub fn detect_sft_format(path: &Path) -> Result<SftFormat> {
    sft::detect(path, &read::records(path)?)
}

/// The preference format [`PreferenceFormat::Auto`] picks for this file.
pub fn detect_preference_format(path: &Path) -> Result<PreferenceFormat> {
    preference::detect(path, &read::records(path)?)
}
