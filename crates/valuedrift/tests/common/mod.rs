//! Helpers shared by the binary's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

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
