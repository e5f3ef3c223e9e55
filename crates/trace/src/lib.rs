//! The tracer: eval sets, the stance judge, the store, tracing checkpoints (sample, judge,
//! resume), per-topic values with confidence intervals, the paper's drift metrics and reports.

pub mod aggregate;
pub mod audit;
pub mod capability;
pub mod checkpoints;
pub mod drift;
pub mod evalset;
pub mod evidence;
pub mod head_judge;
pub mod html;
pub mod judge;
pub mod judge_check;
pub mod pipeline;
pub mod prompt;
pub mod report;
pub mod significance;
pub mod stance_head;
pub mod store;
pub mod synth;

/// The cause of a failure in a part this crate does not know (a remote engine, a loader the
/// binary supplies), kept whole so that `source()` and downcasting still reach it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The three stances, in the order used by every array here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Stance {
    Support,
    Neutral,
    Oppose,
}

impl Stance {
    pub const ALL: [Stance; 3] = [Stance::Support, Stance::Neutral, Stance::Oppose];

    pub fn name(self) -> &'static str {
        match self {
            Stance::Support => "support",
            Stance::Neutral => "neutral",
            Stance::Oppose => "oppose",
        }
    }
}
