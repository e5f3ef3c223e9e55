//! Capability checks: multiple-choice log-likelihood evaluation as lm-evaluation-harness does it,
//! so that a value trajectory can be read beside the model's general abilities (the paper's
//! Table 17: MMLU, HellaSwag, PIQA, ARC, GPQA).
//!
//! - `read.rs` — the published file formats of those benchmarks, and a plain one for small
//!   hand-written sets, into [`McItem`]s (errors name the file, line and field);
//! - `prompt.rs` — each item's context and continuations as the harness writes them (task
//!   templates, few-shot examples, the target delimiter);
//! - `score.rs` — the log-likelihood of each continuation through the engine, tokenized as the
//!   harness tokenizes (context, then the rest of context + continuation), and accuracies (acc,
//!   and acc_norm: per-character) with Wilson 95% intervals.

mod prompt;
mod read;
mod score;
pub mod tables;
pub mod traced;

pub use prompt::{requests, Request};
pub use read::{load, load_smoke, CapabilityError, Format, SMOKE_NAME};
pub use score::encode_pair;
pub use score::{score_requests, summarize, ItemResult, TaskSummary};

/// One multiple-choice item as lm-evaluation-harness's task writes it: the context
/// (`doc_to_text`), the continuations (`doc_to_choice`) and the right one.
#[derive(Clone, Debug, PartialEq)]
pub struct McItem {
    /// Unique within a task (the file's own id, or its line number).
    pub id: String,
    /// The task it belongs to; MMLU items carry their subject (`mmlu/anatomy`).
    pub task: String,
    pub context: String,
    /// Written once before the few-shot examples (MMLU's line naming the subject).
    pub description: Option<String>,
    pub choices: Vec<String>,
    pub gold: usize,
}
