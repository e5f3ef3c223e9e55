//! Command-line interface (clap derive); each subcommand lives in commands/<name>.rs.

use crate::settings::{
    defaults, on_malformed, AuditPlan, EmbedderEngine, EvalSelection, Hyperparameters, JudgeChoice, JudgeMode, Matmul, PhaseTarget, TrainPlan,
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use valuedrift_data::valuegap::LabelSetup;
use valuedrift_trace::pipeline::PromptStyle;
use valuedrift_train::checkpoint::WeightsDtype;
use valuedrift_train::presets::Algo;

#[derive(Parser)]
#[command(name = "valuedrift", version, about = "Trace how a language model's values drift during post-training")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Sample K answers per prompt (batched, seeded, resumable).
    Generate(GenerateArgs),
    /// Log-probabilities of responses given prompts.
    Score(ScoreArgs),
    /// Show a model's architecture, size and chat format.
    Info(InfoArgs),
    /// Measure generation and scoring throughput against reference engines.
    Bench(BenchArgs),
    /// Save a model (e.g. a GGUF file, dequantized) as a Hugging Face directory.
    Export(ExportArgs),
    /// Judge the stance of responses toward a topic: p(support), p(neutral), p(oppose).
    Judge(JudgeArgs),
    /// General capability: multiple-choice log-likelihood accuracy (acc, acc_norm) as
    /// lm-evaluation-harness computes it, on MMLU, HellaSwag, PIQA, ARC, GPQA or plain files
    /// (resumable; docs/capability.md).
    Capability(CapabilityArgs),
    /// Fit a stance head on the judge model's hidden states over labelled items (docs/judge.md).
    FitHead(FitHeadArgs),
    /// Measure one model's values: sample answers to the eval questions, judge their stances,
    /// and report v(T) per category with 95% intervals (resumable).
    Eval(EvalArgs),
    /// Trace values across training checkpoints into a store (SQLite; resumable after any
    /// interruption), then write the report: values, drift tables, plots, samples.
    Trace(TraceArgs),
    /// Rewrite the report of a traced run from its store.
    Report(ReportArgs),
    /// Export every sample of a traced run (checkpoint, question, answer, judgment) as JSONL or CSV.
    Dump(DumpArgs),
    /// Post-train a model (SFT, reward model, PPO, DPO, SimPO), full-parameter, writing
    /// checkpoint-N/ directories the tracer reads; re-running resumes from the newest one.
    Train(TrainArgs),
    /// Run an experiment file: train its phases, trace every checkpoint, write the report
    /// (resumable: re-run the same command).
    Run(RunArgs),
    /// Approximate the stance distribution of training data: retrieve items close to the eval
    /// questions by sentence embedding, judge their replies, summarize per category (and the
    /// value gap of preference pairs).
    Audit(AuditArgs),
    /// Build a value-gap preference set: per category, the dataset prompts closest to its eval
    /// questions, each answered once supporting and once opposing the category's value.
    Synth(SynthArgs),
    /// Build a value-laden eval set from any prompt corpus (the paper's V-PRISM pipeline):
    /// rephrase, embed, UMAP, HDBSCAN, name, value filter, sample (resumable; docs/curate.md).
    Curate(CurateArgs),
    /// Serve a model over the OpenAI API (/v1/completions, /v1/chat/completions with log-probs,
    /// /v1/models, /health) for other tools and machines (see docs/remote.md).
    Serve(ServeArgs),
}

#[derive(Args)]
pub struct RunArgs {
    /// The experiment (TOML), e.g. experiments/builtin.toml.
    pub experiment: PathBuf,
    /// Output directory (default runs/<name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Check the file and print the plan without training or tracing.
    #[arg(long)]
    pub dry_run: bool,
    /// Train every phase and stop (trace later, e.g. on another machine, by running again).
    #[arg(long, conflicts_with = "dry_run")]
    pub train_only: bool,
    /// Training matmuls on the CPU (see `train --matmul`).
    #[arg(long, value_enum, default_value_t = defaults::MATMUL)]
    pub matmul: Matmul,
    /// Device for training, local generation, judging and audits (cpu, cuda, cuda:N).
    #[arg(long, default_value = defaults::DEVICE)]
    pub device: String,
    /// Engines per role, over the experiment's `eval.engine` and `judge.engine`.
    #[command(flatten)]
    pub engines: EngineArgs,
}

#[derive(Args)]
pub struct TrainArgs {
    #[arg(long, value_enum)]
    pub algo: Algo,
    /// The model to start from (.gguf or Hugging Face directory).
    #[arg(long)]
    pub model: PathBuf,
    /// Training data: SFT (Alpaca JSON, messages/ShareGPT JSONL) or preference pairs
    /// (prompt/chosen/rejected, HH-RLHF, ShareGPT preference; for PPO any of these gives the prompts).
    /// gzip is read transparently.
    #[arg(long)]
    pub data: PathBuf,
    /// Output directory (checkpoint-N/, metrics.jsonl).
    #[arg(long)]
    pub out: PathBuf,
    /// Skip and count malformed rows instead of stopping at the first.
    #[arg(long)]
    pub skip_malformed: bool,
    /// For value-gap files (prompt/support/oppose): which answer is chosen.
    #[arg(long, value_enum)]
    pub label_setup: Option<LabelSetup>,
    /// Held-out pairs for the reward model's accuracy (default: the last 10% of --data).
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// Reward model directory (PPO).
    #[arg(long)]
    pub reward_model: Option<PathBuf>,
    /// Phase name recorded in trainer_state.json (default: the algorithm).
    #[arg(long)]
    pub phase: Option<String>,
    /// Hyperparameter preset the options below override.
    #[arg(long, value_enum, default_value = "paper")]
    pub preset: PresetArg,
    #[command(flatten)]
    pub hyper: Hyperparameters,
    /// Save a checkpoint every N updates (and at the end).
    #[arg(long, default_value_t = defaults::SAVE_EVERY)]
    pub save_every: u64,
    /// Weights of the checkpoints a resume no longer needs (all but the newest of an unfinished
    /// run): bf16 halves the disk; the newest stays f32 with the optimizer for an exact resume.
    #[arg(long, value_enum, default_value = "bf16")]
    pub checkpoint_dtype: WeightsDtype,
    #[arg(long, default_value = defaults::DEVICE)]
    pub device: String,
    /// Training matmuls on the CPU: packed f32 kernels (AVX-512 or AVX2), bf16 products with
    /// f32 accumulation (mixed precision, faster where the CPU has AVX512-BF16), or candle's
    /// (q8 is for inference: training runs f32).
    #[arg(long, value_enum, default_value_t = defaults::MATMUL)]
    pub matmul: Matmul,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PresetArg {
    /// The paper's settings (see docs/training.md).
    Paper,
}

#[derive(Args)]
pub struct TraceArgs {
    /// Checkpoints as [PHASE=]PATH[@STEP]: a model (.gguf or Hugging Face directory) or a training
    /// output directory with checkpoint-N/ subdirectories (Hugging Face/TRL or ours). The phase
    /// and step come from trainer_state.json when not given.
    #[arg(required = true)]
    pub checkpoints: Vec<String>,
    /// Output directory: the store (trace.sqlite) and the report (report/).
    #[arg(long)]
    pub out: PathBuf,
    /// Store file (default OUT/trace.sqlite).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Run name inside the store; one store can hold several runs.
    #[arg(long, default_value = "trace")]
    pub run: String,
    /// Phase name for checkpoints that carry none.
    #[arg(long, default_value = "train")]
    pub phase: String,
    /// Watch training output directories that a trainer is still writing: trace each checkpoint
    /// once it is complete, and finish when every trainer has written its final model.
    #[arg(long)]
    pub follow: bool,
    /// With --follow: seconds between looks for new checkpoints.
    #[arg(long, default_value_t = 30, requires = "follow")]
    pub poll_s: u64,
    #[command(flatten)]
    pub eval: EvalSetArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub judge: JudgeModelArgs,
    /// Check the judge on this many items per category of each bundled labelled set (hand-written
    /// and real samples) before tracing, and keep its figures in the store and on the report page
    /// (0, 3, 6, 9 or 12; 0: no check).
    #[arg(long, default_value_t = defaults::JUDGE_CHECK_PER_CATEGORY, value_parser = judge_check_size)]
    pub judge_check: usize,
    /// Device for generation (cpu, cuda, cuda:N).
    #[arg(long, default_value = defaults::DEVICE)]
    pub device: String,
    /// Generator matmul kernels on the CPU.
    #[arg(long, value_enum, default_value_t = defaults::MATMUL)]
    pub matmul: Matmul,
    /// Sequences decoded together.
    #[arg(long, default_value_t = defaults::GENERATION_BATCH)]
    pub batch_size: usize,
    #[command(flatten)]
    pub engines: EngineArgs,
    #[command(flatten)]
    pub capability: CapabilityTraceArgs,
}

/// Capability checks on every traced checkpoint (docs/capability.md).
#[derive(Args, Clone, Debug, Default)]
pub struct CapabilityTraceArgs {
    /// Also measure capability at every checkpoint (the bundled smoke set unless
    /// --capability-task names files) into the store and the report.
    #[arg(long)]
    pub capability: bool,
    /// A capability task as FORMAT=PATH (implies --capability); repeat for several.
    #[arg(long = "capability-task", value_name = "FORMAT=PATH")]
    pub tasks: Vec<String>,
    /// Few-shot examples per capability item (from the other items of its task).
    #[arg(long = "capability-fewshot", default_value_t = 0)]
    pub fewshot: usize,
}

#[derive(Args, Clone)]
pub struct EvalSetArgs {
    /// Eval set (JSONL or CSV with id, category, topic, question); default: the bundled set
    /// (data/eval/questions.jsonl, built into the binary).
    #[arg(long)]
    pub questions: Option<PathBuf>,
    /// Only the quick subset (5 questions per category in the bundled set).
    #[arg(long)]
    pub quick: bool,
    /// Comma-separated categories (default: all).
    #[arg(long, value_delimiter = ',')]
    pub categories: Vec<String>,
    /// At most this many questions per category (the first ones in file order).
    #[arg(long)]
    pub per_category: Option<usize>,
}

#[derive(Args, Clone)]
pub struct SamplingArgs {
    /// Answers sampled per question (paper: 5).
    #[arg(long, default_value_t = defaults::SAMPLES)]
    pub samples: u32,
    #[arg(long, default_value_t = defaults::TEMPERATURE)]
    pub temperature: f64,
    #[arg(long, default_value_t = defaults::MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    #[arg(long, default_value_t = defaults::SEED)]
    pub seed: u64,
    /// auto: the chat template when the model has one, else the paper's base prompt
    /// (question + "Response:"); chat; base.
    #[arg(long, value_enum, default_value = "auto")]
    pub prompt: PromptStyle,
}

#[derive(Args, Clone)]
pub struct JudgeModelArgs {
    /// Judge model (any instruct model, .gguf or Hugging Face directory).
    #[arg(long, default_value = defaults::JUDGE_MODEL)]
    pub judge: PathBuf,
    /// Option orders averaged per judgment (1-3; 3 cancels position bias to first order).
    #[arg(long, default_value_t = defaults::JUDGE_ORDERS, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub orders: u8,
    /// Judge matmul kernels on the CPU.
    #[arg(long, value_enum, default_value_t = defaults::JUDGE_MATMUL)]
    pub judge_matmul: Matmul,
    #[command(flatten)]
    pub reading: JudgeReadingArgs,
}

/// How a local judge's answer is read.
#[derive(Args, Clone)]
pub struct JudgeReadingArgs {
    /// auto: the stance head where it fits the judge model (the bundled head fits the default
    /// judge), else the option words; paper: the option words' log-probs (the paper's judge);
    /// head: the stance head, or an error.
    #[arg(long, value_enum, default_value = "auto")]
    pub judge_mode: JudgeMode,
    /// A stance head file (`valuedrift fit-head`); default: the bundled data/judge/stance-head.json.
    #[arg(long)]
    pub judge_head: Option<PathBuf>,
}

#[derive(Args)]
pub struct ReportArgs {
    #[arg(long)]
    pub store: PathBuf,
    #[arg(long, default_value = "trace")]
    pub run: String,
    /// Report directory.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct DumpArgs {
    #[arg(long)]
    pub store: PathBuf,
    #[arg(long, default_value = "trace")]
    pub run: String,
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: DumpFormat,
    /// Output file (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DumpFormat {
    Jsonl,
    Csv,
}

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Eval set (JSONL or CSV with id, category, topic, question).
    #[arg(long, default_value = "data/eval/questions.jsonl")]
    pub questions: PathBuf,
    /// Only the quick subset (5 questions per category in the bundled set).
    #[arg(long)]
    pub quick: bool,
    /// Comma-separated categories (default: all).
    #[arg(long, value_delimiter = ',')]
    pub categories: Vec<String>,
    #[arg(long, default_value_t = defaults::SAMPLES as usize)]
    pub samples: usize,
    #[arg(long, default_value_t = defaults::TEMPERATURE)]
    pub temperature: f64,
    #[arg(long, default_value_t = defaults::MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    #[arg(long, default_value_t = defaults::SEED)]
    pub seed: u64,
    #[arg(long, default_value_t = defaults::GENERATION_BATCH)]
    pub batch_size: usize,
    /// The paper's prompt for base models (question + "Response:"), ignoring any chat template.
    #[arg(long)]
    pub base_prompt: bool,
    #[arg(long, default_value = defaults::JUDGE_MODEL)]
    pub judge: PathBuf,
    #[arg(long, default_value_t = defaults::JUDGE_ORDERS, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub orders: u8,
    #[command(flatten)]
    pub reading: JudgeReadingArgs,
    /// Output directory: questions.jsonl, generations.jsonl, judgments.jsonl, values.csv.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct JudgeArgs {
    /// JSONL; each line has `question`, `response` and `topic`.
    #[arg(long, required_unless_present_any = ["validate", "agreement"])]
    pub input: Option<PathBuf>,
    /// JSONL output: the input fields plus `p_support`, `p_neutral`, `p_oppose`, `order_spread`.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Measure the judge on a labelled set (lines with `label`: support|neutral|oppose) and print
    /// accuracy, per-class recall and the confusion matrix.
    #[arg(long, conflicts_with = "input")]
    pub validate: Option<PathBuf>,
    /// Agreement of two judges on the same items: two JSONL files with `p_support`, `p_neutral`
    /// and `p_oppose` per line (`judge --output`, or `dump` of two stores), paired line by line
    /// (`id`, `question` and `response` must match where present). Prints Cohen's kappa with a
    /// bootstrap interval and the confusion between the judges' top stances; loads no model.
    #[arg(long, num_args = 2, value_names = ["A", "B"], conflicts_with_all = ["input", "validate"])]
    pub agreement: Option<Vec<PathBuf>>,
    /// Instead of judging, write each input item's judge representation (the hidden state at
    /// the answer position, averaged over orders) as JSONL: the input fields plus `features`.
    #[arg(long, conflicts_with_all = ["output", "agreement"])]
    pub features: Option<PathBuf>,
    /// The layers (0-based, comma-separated) whose states `--features` writes, concatenated
    /// (default: the last).
    #[arg(long, value_delimiter = ',', requires = "features")]
    pub feature_layers: Vec<usize>,
    /// The judge: any instruct model (GGUF or Hugging Face directory).
    #[arg(long, default_value = defaults::JUDGE_MODEL)]
    pub judge: PathBuf,
    /// Option orders averaged per item: 1 (support, neutral, oppose) or 3 (each option in each
    /// position, cancelling position bias).
    #[arg(long, default_value_t = defaults::JUDGE_ORDERS, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub orders: u8,
    #[arg(long, default_value = defaults::DEVICE)]
    pub device: String,
    /// Inference matmuls (see `generate --help`); int8 weights (q8) by default for the judge.
    #[arg(long, value_enum, default_value_t = defaults::JUDGE_MATMUL)]
    pub matmul: Matmul,
    #[command(flatten)]
    pub reading: JudgeReadingArgs,
}

impl JudgeArgs {
    pub fn choice(&self) -> JudgeChoice {
        JudgeChoice {
            model: self.judge.clone(),
            orders: self.orders,
            matmul: self.matmul,
            mode: self.reading.judge_mode,
            head: self.reading.judge_head.clone(),
        }
    }
}

#[derive(Args)]
pub struct FitHeadArgs {
    /// Labelled JSONL files (question, response, topic, label, category). Never the sets a head
    /// is validated on.
    #[arg(long, num_args = 1.., default_value = "data/judge/constructed.jsonl")]
    pub train: Vec<PathBuf>,
    /// The head file to write; features are kept in OUT.features.jsonl for resuming.
    #[arg(long)]
    pub out: PathBuf,
    /// The judge model's layers (0-based, comma-separated) whose answer-position states the
    /// head reads, concatenated.
    #[arg(long, value_delimiter = ',', default_values_t = defaults::HEAD_LAYERS)]
    pub layers: Vec<usize>,
    #[command(flatten)]
    pub judge: JudgeModelArgs,
    #[arg(long, default_value = defaults::DEVICE)]
    pub device: String,
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output directory (config.json, model.safetensors, tokenizer files, generation config).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DTypeArg {
    F32,
    Bf16,
}

#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// A .gguf file or a Hugging Face model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// cpu, cuda or cuda:N (cuda needs a build with --features cuda).
    #[arg(long, default_value = defaults::DEVICE)]
    pub device: String,
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DTypeArg,
    /// Inference matmuls on the CPU: packed f32 kernels, bf16 dot products with f32
    /// accumulation (about twice as fast where the CPU has AVX512-BF16, slightly less exact),
    /// int8 weights with f32 inputs (q8: about a quarter of the f32 weight memory; docs/benchmarks.md
    /// has its cost in accuracy), or candle's gemm.
    #[arg(long, value_enum, default_value_t = defaults::MATMUL)]
    pub matmul: Matmul,
}

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// JSONL; each line has `prompt` (or `question`, or `messages`), optionally `id`.
    #[arg(long)]
    pub input: PathBuf,
    /// JSONL output: each input line once per sample, plus `sample`, `response`, `n_tokens`,
    /// `finish_reason`. An existing file is resumed: finished (line, sample) pairs are kept.
    #[arg(long)]
    pub output: PathBuf,
    #[arg(long, default_value_t = 1)]
    pub samples: usize,
    #[arg(long, default_value_t = defaults::TEMPERATURE)]
    pub temperature: f64,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    #[arg(long, default_value_t = defaults::MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    #[arg(long, default_value_t = defaults::SEED)]
    pub seed: u64,
    /// Sequences decoded together.
    #[arg(long, default_value_t = defaults::GENERATION_BATCH)]
    pub batch_size: usize,
    /// Prompt as the paper does for base models (question + "\nResponse:"), ignoring any template.
    #[arg(long)]
    pub base_prompt: bool,
    /// A system message placed before each prompt.
    #[arg(long)]
    pub system: Option<String>,
}

#[derive(Args)]
pub struct CapabilityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A benchmark file as FORMAT=PATH (formats: plain, mmlu, hellaswag, piqa, arc, gpqa);
    /// repeat for several. Without one: the bundled smoke set (48 easy items, four tasks).
    #[arg(long = "task", value_name = "FORMAT=PATH")]
    pub tasks: Vec<String>,
    /// Examples before each item (from --fewshot-from, else from the other items of its task).
    #[arg(long, default_value_t = 0)]
    pub fewshot: usize,
    /// The few-shot split as FORMAT=PATH (e.g. MMLU's dev files): its first items of each task.
    #[arg(long = "fewshot-from", value_name = "FORMAT=PATH")]
    pub fewshot_from: Vec<String>,
    /// Chooses the few-shot examples when they come from the items themselves.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Output directory: items.jsonl (each item's log-likelihoods; an existing one is resumed)
    /// and capability.csv (accuracy per task with 95% Wilson intervals).
    #[arg(long)]
    pub out: PathBuf,
    /// Padded tokens per forward pass.
    #[arg(long, default_value_t = 4096)]
    pub batch_tokens: usize,
}

#[derive(Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// JSONL; each line has `prompt` and `response`.
    #[arg(long)]
    pub input: PathBuf,
    /// JSONL output: the input fields plus `logp_sum`, `logp_mean`, `n_tokens`.
    #[arg(long)]
    pub output: PathBuf,
    /// Use the prompt text as is, without the chat template, and no end-of-turn after the response.
    #[arg(long)]
    pub raw: bool,
    /// Padded tokens per forward pass.
    #[arg(long, default_value_t = 4096)]
    pub batch_tokens: usize,
    /// Also write each response token's log-prob (`token_logps`).
    #[arg(long)]
    pub per_token: bool,
}

#[derive(Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub which: BenchCommand,
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Evaluation-style sampling throughput (questions x samples at temperature 0.7).
    Generate(BenchGenerateArgs),
    /// Prefill (scoring) throughput in tokens/s.
    Score(BenchScoreArgs),
    /// Seconds per training step (SFT, or DPO with a reference forward) and peak memory.
    Train(BenchTrainArgs),
    /// Judgments per minute of the stance judge, with and without prefix caching.
    Judge(BenchJudgeArgs),
    /// Load test of an OpenAI-compatible server (e.g. `valuedrift serve`): throughput and
    /// latency percentiles at each concurrency.
    Serve(BenchServeArgs),
}

#[derive(Args)]
pub struct BenchServeArgs {
    /// The server's base URL.
    #[arg(long)]
    pub url: String,
    /// Concurrency levels, each measured in turn.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32")]
    pub concurrency: Vec<usize>,
    /// Requests per level (chat completions of the bundled questions, in order).
    #[arg(long, default_value_t = 32)]
    pub requests: usize,
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// A level stops early after this many seconds (the figures cover what finished).
    #[arg(long, default_value_t = 120.0)]
    pub max_seconds: f64,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Args)]
pub struct BenchJudgeArgs {
    #[command(flatten)]
    pub judge: JudgeModelArgs,
    /// Items with question, response and topic (default: the bundled labelled set).
    #[arg(long, default_value = "data/judge/labelled.jsonl")]
    pub items: PathBuf,
    #[arg(long, default_value_t = 48)]
    pub num_items: usize,
    /// Write the whole prompts' token ids (one JSON list per line) for peers.
    #[arg(long)]
    pub dump_ids: Option<PathBuf>,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Args)]
pub struct BenchTrainArgs {
    /// The model, loaded trainable (f32 or bf16 weights).
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long, value_enum, default_value = "sft")]
    pub algo: Algo,
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    #[arg(long, default_value_t = 256)]
    pub seq_len: usize,
    /// Steps measured after one warm-up step.
    #[arg(long, default_value_t = 2)]
    pub steps: usize,
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DTypeArg,
    /// Training matmuls: packed f32 kernels (AVX-512 or AVX2), bf16 products with f32 accumulation, or candle's.
    #[arg(long, value_enum, default_value_t = defaults::MATMUL)]
    pub matmul: Matmul,
    /// Text whose tokens fill the sequences (the assistant answers of an SFT file).
    #[arg(long, default_value = "data/sft/supportive.jsonl")]
    pub text: PathBuf,
    /// Write the token ids used, so peers train on the very same inputs.
    #[arg(long)]
    pub dump_ids: Option<PathBuf>,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Args)]
pub struct BenchGenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// JSONL of questions (`question` or `prompt` field).
    #[arg(long, default_value = "data/eval/questions.jsonl")]
    pub questions: PathBuf,
    #[arg(long, default_value_t = 256)]
    pub num_questions: usize,
    #[arg(long, default_value_t = 5)]
    pub samples: usize,
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Args)]
pub struct BenchScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// JSONL of (question, response) items to score; defaults to the bundled judge set.
    #[arg(long, default_value = "data/judge/labelled.jsonl")]
    pub items: PathBuf,
    #[arg(long, default_value_t = 64)]
    pub num_items: usize,
    #[arg(long, default_value_t = 4096)]
    pub batch_tokens: usize,
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the token ids scored (one JSON list per line) so peers score the very same inputs.
    #[arg(long)]
    pub dump_ids: Option<PathBuf>,
}

#[derive(Args, Clone)]
pub struct AuditArgs {
    /// Datasets: SFT (Alpaca, messages, ShareGPT), preference (prompt/chosen/rejected, HH-RLHF,
    /// ShareGPT pairs) or value-gap files; JSON or JSONL, gzip allowed.
    #[arg(required = true)]
    pub data: Vec<PathBuf>,
    /// Output directory: one subdirectory per dataset (named after its file).
    #[arg(long)]
    pub out: PathBuf,
    /// Sentence embedder (a sentence-transformers directory: BERT or MPNet).
    #[arg(long, default_value = defaults::EMBEDDER)]
    pub embedder: PathBuf,
    /// Keep items whose prompt has at least this cosine similarity to some eval question.
    #[arg(long, default_value_t = defaults::AUDIT_THRESHOLD)]
    pub threshold: f32,
    /// Read only the first N items of each dataset.
    #[arg(long)]
    pub max_items: Option<usize>,
    /// Skip malformed rows (counted) instead of stopping at the first.
    #[arg(long)]
    pub skip_malformed: bool,
    #[command(flatten)]
    pub eval: EvalSetArgs,
    #[command(flatten)]
    pub judge: JudgeModelArgs,
    /// Device for the embedder and the judge (cpu, cuda, cuda:N).
    #[arg(long, default_value = defaults::DEVICE)]
    pub device: String,
    #[command(flatten)]
    pub embedder_engine: EmbedderEngineArgs,
}

/// Where sentence embeddings come from: `local` (the --embedder directory) or a server's
/// `/v1/embeddings` (a base URL, or an engine named in --engines).
#[derive(Args, Clone, Debug, Default)]
pub struct EmbedderEngineArgs {
    /// Engine that embeds: local, NAME, or http://HOST:PORT/v1.
    #[arg(long)]
    pub embedder_engine: Option<String>,
    /// TOML file with `[engine.NAME]` tables (docs/remote.md).
    #[arg(long = "engines")]
    pub embedder_engines: Option<PathBuf>,
}

#[derive(Args, Clone)]
pub struct SynthArgs {
    /// Datasets whose prompts are candidates (any SFT or preference format).
    #[arg(long, required = true)]
    pub data: Vec<PathBuf>,
    /// Output directory: valuegap.jsonl, support-aligned.jsonl, oppose-aligned.jsonl.
    #[arg(long)]
    pub out: PathBuf,
    /// The generator that writes both answers (an instruct model with a chat template).
    #[arg(long)]
    pub model: PathBuf,
    /// Sentence embedder for prompt selection (BERT or MPNet sentence-transformers directory).
    #[arg(long, default_value = defaults::EMBEDDER)]
    pub embedder: PathBuf,
    /// Prompts kept per category (the most similar to its eval questions).
    #[arg(long, default_value_t = 20)]
    pub per_category: usize,
    /// Only prompts at least this similar to one of the category's questions.
    #[arg(long, default_value_t = 0.3)]
    pub min_cosine: f32,
    /// Comma-separated categories (default: all of the eval set's).
    #[arg(long, value_delimiter = ',')]
    pub categories: Vec<String>,
    /// Eval set whose questions define the categories (default: the bundled set).
    #[arg(long)]
    pub questions: Option<PathBuf>,
    #[arg(long, default_value_t = defaults::TEMPERATURE)]
    pub temperature: f64,
    #[arg(long, default_value_t = defaults::MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    #[arg(long, default_value_t = defaults::SEED)]
    pub seed: u64,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long)]
    pub skip_malformed: bool,
    /// Device for the embedder and the generator (cpu, cuda, cuda:N).
    #[arg(long, default_value = defaults::DEVICE)]
    pub device: String,
    #[command(flatten)]
    pub embedder_engine: EmbedderEngineArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterArg {
    Logprob,
    Answer,
}

#[derive(Args, Clone)]
pub struct CurateArgs {
    /// Prompt files: JSONL, a JSON array or CSV (PRISM's conversations.jsonl, Alpaca, ShareGPT,
    /// chat or plain `prompt`/`question`/`text` rows; an optional `label` scores the result).
    #[arg(long, required = true)]
    pub input: Vec<PathBuf>,
    /// The curation directory: every stage's output, resumed when run again.
    #[arg(long)]
    pub out: PathBuf,
    /// The LLM that rephrases, names clusters and filters (an instruct model).
    #[arg(long, default_value = defaults::JUDGE_MODEL)]
    pub llm: PathBuf,
    /// Engine for the LLM steps: local, NAME (in --engines), or http://HOST:PORT/v1.
    #[arg(long)]
    pub llm_engine: Option<String>,
    /// Keep the prompts as they are instead of rephrasing them into questions.
    #[arg(long)]
    pub no_rephrase: bool,
    /// Sentence embedder (the paper: all-mpnet-base-v2).
    #[arg(long, default_value = defaults::EMBEDDER)]
    pub embedder: PathBuf,
    #[arg(long, default_value_t = 15)]
    pub neighbors: usize,
    /// UMAP's output dimensions (the paper: 20).
    #[arg(long, default_value_t = 20)]
    pub dims: usize,
    #[arg(long, default_value_t = 500)]
    pub epochs: usize,
    /// HDBSCAN's minimum cluster size.
    #[arg(long, default_value_t = 15)]
    pub min_cluster_size: usize,
    /// HDBSCAN's min_samples (default: the minimum cluster size).
    #[arg(long)]
    pub min_samples: Option<usize>,
    /// Questions drawn per kept cluster.
    #[arg(long, default_value_t = 50)]
    pub per_category: usize,
    /// Keep a cluster (unless clusters.csv says otherwise) when this share passes the filter.
    #[arg(long, default_value_t = 0.5)]
    pub min_value_share: f64,
    /// How the value filter reads the LLM: its P(Yes) against --filter-threshold (a local
    /// --llm), or its greedy Yes/No answer (the paper's reading; needed for a server).
    #[arg(long, value_enum)]
    pub filter: Option<FilterArg>,
    /// P(Yes) a question needs to pass the log-prob filter (chosen on a held-out mix for the
    /// default --llm; docs/curate.md).
    #[arg(long, default_value_t = defaults::CURATE_FILTER_THRESHOLD)]
    pub filter_threshold: f64,
    /// The label that marks off-topic prompts in inputs with known categories.
    #[arg(long, default_value = "off-topic")]
    pub off_topic_label: String,
    #[arg(long, default_value_t = defaults::SEED)]
    pub seed: u64,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value = defaults::DEVICE)]
    pub device: String,
    /// LLM matmul kernels on the CPU.
    #[arg(long, value_enum, default_value_t = defaults::JUDGE_MATMUL)]
    pub matmul: Matmul,
    #[command(flatten)]
    pub embedder_engine: EmbedderEngineArgs,
}

/// Which engine does each role: `local` (this machine), an engine named in `--engines` (or the
/// experiment file), or a server's base URL.
#[derive(Args, Clone, Debug, Default)]
pub struct EngineArgs {
    /// TOML file with `[engine.NAME]` tables (urls, launch, model, api_key_env, ...; docs/remote.md).
    #[arg(long)]
    pub engines: Option<PathBuf>,
    /// Engine that samples the answers: local, NAME, or http://HOST:PORT/v1.
    #[arg(long)]
    pub generator_engine: Option<String>,
    /// Engine that judges the answers: local, NAME, or http://HOST:PORT/v1.
    #[arg(long)]
    pub judge_engine: Option<String>,
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// The name /v1/models reports (default: the model's file or directory name).
    #[arg(long)]
    pub name: Option<String>,
    /// Sequences decoded together.
    #[arg(long, default_value_t = defaults::GENERATION_BATCH)]
    pub batch_size: usize,
    /// Connections open at once, each on its own thread (more are answered 503).
    #[arg(long, default_value_t = 256)]
    pub max_connections: usize,
    /// Seconds a client may take to send its request body (slower ones are answered 408).
    #[arg(long, default_value_t = 30.0)]
    pub read_timeout_s: f64,
    /// Largest request body in MiB (larger ones are answered 413).
    #[arg(long, default_value_t = 8)]
    pub max_body_mib: usize,
    /// Also serve /v1/embeddings from this sentence-transformers directory (BERT or MPNet).
    #[arg(long)]
    pub embedder: Option<PathBuf>,
}

// From the command line to the plans commands run on (crate::settings).

impl TrainArgs {
    pub fn plan(&self) -> TrainPlan {
        let target = PhaseTarget {
            algo: self.algo,
            model: self.model.clone(),
            data: self.data.clone(),
            out: self.out.clone(),
            phase: self.phase.clone(),
            save_every: self.save_every,
        };
        TrainPlan {
            on_malformed: on_malformed(self.skip_malformed),
            label_setup: self.label_setup,
            eval_data: self.eval_data.clone(),
            reward_model: self.reward_model.clone(),
            checkpoint_dtype: self.checkpoint_dtype,
            ..TrainPlan::new(target, &self.hyper, &self.device, self.matmul)
        }
    }
}

impl EvalSetArgs {
    pub fn selection(&self) -> EvalSelection {
        EvalSelection { questions: self.questions.clone(), quick: self.quick, categories: self.categories.clone(), per_category: self.per_category }
    }
}

impl JudgeModelArgs {
    pub fn choice(&self) -> JudgeChoice {
        JudgeChoice {
            model: self.judge.clone(),
            orders: self.orders,
            matmul: self.judge_matmul,
            mode: self.reading.judge_mode,
            head: self.reading.judge_head.clone(),
        }
    }
}

impl EmbedderEngineArgs {
    pub fn engine(&self) -> EmbedderEngine {
        EmbedderEngine { choice: self.embedder_engine.clone(), engines_file: self.embedder_engines.clone() }
    }
}

impl AuditArgs {
    pub fn plan(&self) -> AuditPlan {
        AuditPlan {
            data: self.data.clone(),
            out: self.out.clone(),
            embedder: self.embedder.clone(),
            embedder_engine: self.embedder_engine.engine(),
            threshold: self.threshold,
            max_items: self.max_items,
            on_malformed: on_malformed(self.skip_malformed),
            eval: self.eval.selection(),
            judge: self.judge.choice(),
            device: self.device.clone(),
        }
    }
}

fn judge_check_size(text: &str) -> Result<usize, String> {
    let n = text.parse::<usize>().map_err(|e| format!("'{text}': {e}"))?;
    valuedrift_trace::judge_check::check_size(n)
}
