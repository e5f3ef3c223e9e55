//! The tracer's statistics: from per-sample stance probabilities to per-topic values with
//! confidence intervals, and from value trajectories to the paper's drift metrics.
//! (Eval sets, the judge, the store and reports are still to come; see docs/architecture.md.)

pub mod aggregate;
pub mod drift;
pub mod evalset;
pub mod judge;

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
