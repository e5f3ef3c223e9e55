//! Every default of the command line and the experiment file, in one place.

use super::Matmul;

/// Where models run (cpu, cuda, cuda:N).
pub const DEVICE: &str = "cpu";

/// The stance judge: the installable instruct model that judges best here (docs/judge.md).
pub const JUDGE_MODEL: &str = "models/qwen2.5-coder-1.5b-instruct.q4_k_m.gguf";
/// The judge's CPU matmuls: int8 weights (a byte per parameter) multiplied as bf16 with f32
/// accumulation: the judge is the largest and slowest model of a run, and in q8 it validates as
/// in bf16 on both labelled sets (paired test, docs/judge.md).
pub const JUDGE_MATMUL: Matmul = Matmul::Q8;
/// Generation and training matmuls on the command line: exact f32 kernels.
pub const MATMUL: Matmul = Matmul::F32;
/// `valuedrift run` samples its checkpoints with bf16 products (throughput over exactness).
pub const RUN_GENERATOR_MATMUL: Matmul = Matmul::Bf16;
/// Option orders averaged per judgment (3 cancels position bias to first order).
pub const JUDGE_ORDERS: u8 = 3;
/// Items per category of the bundled labelled set the judge is checked on before tracing.
pub const JUDGE_CHECK_PER_CATEGORY: usize = 6;
/// The default judge's layers a stance head reads (`fit-head --layers`).
pub const HEAD_LAYERS: [usize; 2] = [15, 19];
/// The sentence embedder of audits and synthesis (the paper's all-mpnet-base-v2).
pub const EMBEDDER: &str = "models/all-mpnet-base-v2";
/// Audits keep items whose prompt is at least this similar to an eval question (the paper's 0.5).
pub const AUDIT_THRESHOLD: f32 = 0.5;
/// `curate`'s log-prob value filter passes a question at this P(Yes) from the default judge
/// model: chosen on a tuning mix and measured on a held-out one (docs/curate.md).
pub const CURATE_FILTER_THRESHOLD: f64 = 0.667;

/// The paper's evaluation: 5 answers per question at temperature 0.7, up to 256 new tokens.
pub const SAMPLES: u32 = 5;
pub const TEMPERATURE: f64 = 0.7;
pub const MAX_NEW_TOKENS: usize = 256;
pub const SEED: u64 = 0;
/// Sequences decoded together by the local generator.
pub const GENERATION_BATCH: usize = 64;

/// A checkpoint every this many updates (and at the end).
pub const SAVE_EVERY: u64 = 50;
/// Padded tokens per micro-batch; gradient accumulation fills the global batch.
pub const MICRO_TOKENS: usize = 2048;
/// PPO: new tokens per rollout (the paper's maximum response length).
pub const ROLLOUT_TOKENS: usize = 1024;
/// PPO: subtracted from the score of a response that does not end with EOS (TRL's option).
pub const MISSING_EOS_PENALTY: f64 = 1.0;
/// PPO: optimization epochs over each batch of rollouts (TRL's default).
pub const PPO_EPOCHS: usize = 4;
