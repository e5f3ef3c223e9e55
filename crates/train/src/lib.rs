//! Post-training on the engine, full-parameter: SFT, a Bradley-Terry reward model, DPO, SimPO and
//! PPO. Trainers turn (model, data, hyperparameters) into a sequence of checkpoints
//! (`checkpoint-N/` Hugging Face directories with `trainer_state.json`) that the tracer reads;
//! they know nothing of stances or judges.

pub mod accumulate;
pub mod checkpoint;
pub mod losses;
pub mod ppo;
pub mod preference;
pub mod presets;
pub mod reward;
pub mod schedule;
pub mod sft;
pub mod tokenize;
pub mod trainer;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Engine(#[from] valuedrift_engine::Error),
    #[error(transparent)]
    Data(#[from] valuedrift_data::Error),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Input(String),
    /// The run was asked to stop (an interrupt); everything up to the last checkpoint is kept.
    #[error("stopped at step {0}; the last checkpoint holds the progress")]
    Stopped(u64),
}

impl From<candle_core::Error> for TrainError {
    fn from(e: candle_core::Error) -> Self {
        TrainError::Engine(e.into())
    }
}

pub type Result<T> = std::result::Result<T, TrainError>;

pub(crate) fn file_err(path: &std::path::Path, message: impl std::fmt::Display) -> TrainError {
    TrainError::File { path: path.into(), message: message.to_string() }
}
