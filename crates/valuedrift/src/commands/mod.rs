//! One module per subcommand; shared model loading here.

mod bench;
mod export;
mod generate;
mod info;
mod score;

use crate::cli::{Cli, Command, DTypeArg, ModelArgs};
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

pub fn load_model(args: &ModelArgs) -> Result<LanguageModel> {
    let dtype = match args.dtype {
        DTypeArg::F32 => DType::F32,
        DTypeArg::Bf16 => DType::BF16,
    };
    let dev = device(&args.device)?;
    let started = std::time::Instant::now();
    let lm = LanguageModel::load(&args.model, &dev, dtype)?;
    eprintln!("loaded {} ({}, {:.0}M params) in {:.1}s", args.model.display(), lm.config().family.name(),
        lm.config().num_params() as f64 / 1e6, started.elapsed().as_secs_f64());
    Ok(lm)
}

/// Peak resident memory of this process so far, in bytes (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}
