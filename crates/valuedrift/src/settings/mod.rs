//! Resolved settings, between the sources (the command line, an experiment file) and the
//! commands: the plans commands run on, the choices both sources share (parsed by clap and by
//! serde alike, never by hand), and every default (`defaults`). A leaf: it uses no other module
//! of the binary.

pub mod defaults;
mod train;

pub use train::{Hyperparameters, PhaseTarget, TrainPlan};

use clap::ValueEnum;
use serde::Deserialize;
use std::path::PathBuf;
use valuedrift_data::OnMalformed;
use valuedrift_engine::matmul::Precision;

/// How matmuls run on the CPU: packed f32 kernels, bf16 products with f32 accumulation (faster
/// where the CPU has AVX512-BF16, half the weight memory everywhere, slightly less exact),
/// int8 weights with f32 inputs (inference only: about a quarter of the f32 weight memory), or
/// candle's gemm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Matmul {
    F32,
    Bf16,
    Q8,
    Candle,
}

impl Matmul {
    /// The weights these matmuls read, as a judge's identity names them.
    pub fn weights(self) -> &'static str {
        match self {
            Matmul::F32 | Matmul::Candle => "f32",
            Matmul::Bf16 => "bf16",
            Matmul::Q8 => "int8",
        }
    }

    /// The packed-kernel precision this asks for (None: candle's matmul).
    pub fn precision(self) -> Option<Precision> {
        match self {
            Matmul::F32 => Some(Precision::F32),
            Matmul::Bf16 => Some(Precision::Bf16),
            Matmul::Q8 => Some(Precision::Q8),
            Matmul::Candle => None,
        }
    }
}

/// Which eval questions are asked: a set (default: the bundled one), narrowed by category, the
/// quick subset and a per-category cap.
#[derive(Clone, Debug, Default)]
pub struct EvalSelection {
    pub questions: Option<PathBuf>,
    pub quick: bool,
    pub categories: Vec<String>,
    pub per_category: Option<usize>,
}

/// How the judge's answer is read: the paper's option words, or a stance head on the judge
/// model's hidden state (docs/judge.md). `auto`: the head where one fits the judge model
/// (the bundled head fits the default judge), the option words otherwise (other models, remote
/// judges).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JudgeMode {
    #[default]
    Auto,
    Paper,
    Head,
}

/// The stance judge: its model, the option orders it averages, its CPU matmuls, how its answer
/// is read and the stance head file (None: the bundled head).
#[derive(Clone, Debug)]
pub struct JudgeChoice {
    pub model: PathBuf,
    pub orders: u8,
    pub matmul: Matmul,
    pub mode: JudgeMode,
    pub head: Option<PathBuf>,
}

impl JudgeChoice {
    /// The name runs and audits record for a local judge read by its option words: its file
    /// name and the weights its matmuls read, since bf16 and int8 judges give slightly different
    /// probabilities and one store must not mix them (a head adds its hash, see
    /// `commands::engines`).
    pub fn identity(&self) -> String {
        format!("{} ({} weights)", file_name(&self.model), self.matmul.weights())
    }
}

/// Where sentence embeddings come from: `local` (the embedder directory), an engine named in
/// an engines file or experiment, or a server's base URL.
#[derive(Clone, Debug, Default)]
pub struct EmbedderEngine {
    pub choice: Option<String>,
    pub engines_file: Option<PathBuf>,
}

/// One `audit` of training datasets.
#[derive(Clone, Debug)]
pub struct AuditPlan {
    pub data: Vec<PathBuf>,
    pub out: PathBuf,
    pub embedder: PathBuf,
    pub embedder_engine: EmbedderEngine,
    pub threshold: f32,
    pub max_items: Option<usize>,
    pub on_malformed: OnMalformed,
    pub eval: EvalSelection,
    pub judge: JudgeChoice,
    pub device: String,
}

/// What `--skip-malformed` asks of the data loaders.
pub fn on_malformed(skip: bool) -> OnMalformed {
    if skip {
        OnMalformed::Skip
    } else {
        OnMalformed::Error
    }
}

/// A path's last component, or "" for none.
pub fn file_name(path: &std::path::Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}
