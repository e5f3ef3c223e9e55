//! valuedrift: trace how a language model's values drift during post-training.

mod cli;
mod commands;
mod jsonl;
mod progress;
mod settings;

use clap::Parser;

/// Training allocates and frees tensors of many megabytes every step. By default glibc serves
/// those with fresh mmaps and returns them on free, so every step page-faults its memory back
/// in (a third of a training step's time here). Keep freed memory in the heap instead.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets glibc allocator parameters; it runs first thing in main, before
    // any other thread exists or allocates concurrently.
    unsafe {
        const M_TRIM_THRESHOLD: libc::c_int = -1;
        const M_MMAP_THRESHOLD: libc::c_int = -3;
        // 32 MiB is glibc's largest mmap threshold; bigger blocks are still mapped per use.
        libc::mallopt(M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(M_TRIM_THRESHOLD, libc::c_int::MAX);
    }
}

fn main() {
    keep_freed_memory();
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
