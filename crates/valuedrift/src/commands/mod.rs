//! One module per subcommand; shared model loading here.

mod audit;
mod bench;
mod budget;
mod capability;
mod curate;
mod engines;
mod eval;
mod export;
mod external;
mod fit_head;
mod generate;
mod info;
mod judge;
mod ppo;
mod run;
mod score;
mod serve;
mod synth;
mod trace;
mod train;

use crate::cli::{Cli, Command, DTypeArg, ModelArgs};
use crate::settings::Matmul;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use valuedrift_engine::LanguageModel;

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Generate(a) => generate::run(a),
        Command::Score(a) => score::run(a),
        Command::Info(a) => info::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Export(a) => export::run(a),
        Command::Judge(a) => judge::run(a),
        Command::Capability(a) => capability::run(a),
        Command::FitHead(a) => fit_head::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Trace(a) => trace::run(a),
        Command::Report(a) => trace::report(a),
        Command::Dump(a) => trace::dump(a),
        Command::Train(a) => train::run(&a.plan()),
        Command::Run(a) => run::run(a),
        Command::Audit(a) => audit::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Curate(a) => curate::run(a),
        Command::Serve(a) => serve::run(a),
    }
}

pub fn device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = s.strip_prefix("cuda:").map(str::parse).transpose().context("--device cuda:N needs a number")?.unwrap_or(0);
            Device::new_cuda(ordinal).context("CUDA device unavailable (build with --features cuda)")
        }
        other => bail!("unknown device '{other}' (cpu, cuda, cuda:N)"),
    }
}

/// What a command loads a model for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    Train,
    Infer,
    /// Reading the hidden states of the first this many layers (a stance head).
    Probe(usize),
}

/// Loads for inference: with a packed CPU kernel, the weights are kept only in packed form.
pub fn load_model(args: &ModelArgs) -> Result<LanguageModel> {
    load(args, Use::Infer)
}

/// Loads with trainable (and saveable) weights.
pub fn load_model_full(args: &ModelArgs) -> Result<LanguageModel> {
    load(args, Use::Train)
}

/// Loads the first `depth` layers, without the output head, where the packed kernels run
/// (elsewhere the whole model): for reading hidden states, never logits.
pub fn load_probe(args: &ModelArgs, depth: usize) -> Result<LanguageModel> {
    load(args, Use::Probe(depth))
}

fn load(args: &ModelArgs, purpose: Use) -> Result<LanguageModel> {
    let dtype = match args.dtype {
        DTypeArg::F32 => DType::F32,
        DTypeArg::Bf16 => DType::BF16,
    };
    let dev = device(&args.device)?;
    let started = std::time::Instant::now();
    let precision = args.matmul.precision();
    let mut lm = match (precision, purpose) {
        (Some(p), Use::Infer) if dtype == DType::F32 => LanguageModel::load_for_inference(&args.model, &dev, p)?,
        (Some(p), Use::Probe(depth)) if dtype == DType::F32 => LanguageModel::load_probe(&args.model, &dev, p, depth)?,
        _ => LanguageModel::load(&args.model, &dev, dtype)?,
    };
    let applied = lm.model.is_frozen() || lm.model.set_infer_precision(precision);
    if !applied {
        eprintln!("note: --matmul {:?} is not available here (needs an f32 model on a CPU with AVX2 and FMA); using candle's matmul", args.matmul);
        lm.model.set_infer_precision(None);
    }
    let kernels = match lm.model.infer_precision() {
        Some(p) => format!("packed {} kernels, {p:?}", valuedrift_engine::matmul::family_name()),
        None => "candle's kernels".into(),
    };
    let part = if lm.model.has_output_head() { String::new() } else { format!("first {} layers, ", lm.config().num_layers) };
    eprintln!(
        "loaded {} ({}, {part}{:.0}M params, {:.2} GB of weights) in {:.1}s; {kernels}",
        args.model.display(),
        lm.config().family.name(),
        lm.config().num_params() as f64 / 1e6,
        lm.model.weight_bytes() as f64 / 1e9,
        started.elapsed().as_secs_f64()
    );
    Ok(lm)
}

/// Peak resident memory of this process so far, in bytes (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// Sets the training matmuls, saying so when the CPU lacks the asked kernel.
pub fn set_train_matmul(lm: &mut LanguageModel, m: Matmul) {
    if m == Matmul::Q8 {
        eprintln!("note: --matmul q8 (int8 weights) is for inference only; training runs f32");
        return set_train_matmul(lm, Matmul::F32);
    }
    if !lm.model.set_train_precision(m.precision()) {
        eprintln!("note: --matmul {m:?} is not available here for training; using candle's matmul");
        lm.model.set_train_precision(None);
    }
}

/// Opens generator checkpoints for the tracer (inference-only loading on `device`).
pub fn generator_loader(device: String, matmul: Matmul) -> impl Fn(&std::path::Path) -> valuedrift_trace::pipeline::Result<LanguageModel> {
    move |path| {
        load_model(&ModelArgs { model: path.into(), device: device.clone(), dtype: DTypeArg::F32, matmul })
            .map_err(|e| valuedrift_trace::pipeline::TraceError::Load { path: path.into(), source: e.into() })
    }
}
