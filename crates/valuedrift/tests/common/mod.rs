//! Helpers shared by the binary's integration tests.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The installed SmolLM2 file (tests need the real models: scripts/install-models.sh).
pub fn model() -> PathBuf {
    let dir = std::env::var_os("VALUEDRIFT_MODELS").map(PathBuf::from).unwrap_or_else(|| root().join("models"));
    let p = dir.join("smollm2-135m-instruct.q4_1.gguf");
    assert!(p.exists(), "{} is missing: run scripts/install-models.sh first", p.display());
    p
}

/// A fresh directory under the system temp dir, unique to this process and test.
pub fn temp_dir(suite: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("valuedrift-{suite}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Held by each test of a binary that starts training processes, so they run one at a time:
/// where the hand-written training pass is not available (CPUs without AVX2 use candle's graph),
/// one SmolLM2 training process holds about 8 GB, and three at once exhausted a 24 GB machine
/// (OOM-killed, seen when AVX2 still ran candle's graph).
pub fn one_training_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A failed test poisons the lock; the next test still runs.
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The rows of a report's drift.csv, each keyed by column name (its values have no commas: the
/// phases and categories the tests use have none).
pub fn drift_rows(report: &std::path::Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let path = report.join("drift.csv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header line").split(',').collect();
    lines.map(|l| header.iter().map(|h| h.to_string()).zip(l.split(',').map(str::to_string)).collect()).collect()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `valuedrift serve` (SmolLM2) on a port, stopped when dropped.
pub struct Served(pub Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `valuedrift serve` with SmolLM2 and `extra` arguments; returns once it listens.
pub fn serve(port: u16, extra: &[&str]) -> Served {
    serve_model(&model(), port, extra)
}

/// Starts `valuedrift serve` with `model` and `extra` arguments; returns once it listens.
pub fn serve_model(model: &std::path::Path, port: u16, extra: &[&str]) -> Served {
    let child = Command::new(env!("CARGO_BIN_EXE_valuedrift"))
        .args(["serve", "--model", model.to_str().unwrap(), "--port", &port.to_string(), "--batch-size", "8"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(if std::env::var_os("VALUEDRIFT_TEST_SERVER_LOG").is_some() { Stdio::inherit() } else { Stdio::null() })
        .spawn()
        .unwrap();
    let served = Served(child);
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "serve did not listen within a minute");
        std::thread::sleep(Duration::from_millis(50));
    }
    served
}

/// Kills `child` as soon as `path` exists (a checkpoint written), failing if the process ends
/// first or `limit` passes.
pub fn kill_once_exists(mut child: Child, path: &std::path::Path, limit: Duration) {
    let started = Instant::now();
    while !path.exists() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        assert!(started.elapsed() < limit, "{} did not appear within {limit:?}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[path = "../../../test-helpers/paired.rs"]
mod paired_helper;
#[allow(unused_imports)] // not every test binary compares lists
pub use paired_helper::paired;
