//! valuedrift: trace how a language model's values drift during post-training.

mod cli;
mod commands;
mod jsonl;
mod progress;

use clap::Parser;

fn main() {
    // candle's CPU worker pool spins for a long time after each op; on a few cores that steals
    // time from the matmul and attention threads, so let it park sooner unless the user chose.
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "100");
    }
    let cli = cli::Cli::parse();
    if let Err(e) = commands::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
