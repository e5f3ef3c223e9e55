//! Helpers shared by the engine's integration tests: locating the installed models and the
//! reference fixtures computed with transformers (scripts/reference/make_engine_fixtures.py).
#![allow(dead_code)]

use candle_core::{DType, Device};
use serde_json::Value;
use std::path::PathBuf;
use valuedrift_engine::LanguageModel;

pub const SMOLLM2: &str = "smollm2-135m-instruct.q4_1.gguf";
pub const GEMMA3: &str = "gemma3-270m.q4_k_m.gguf";
pub const QWEN2: &str = "qwen2.5-coder-1.5b-instruct.q4_k_m.gguf";

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// ../shared/fixtures/NAME beside the checkout (or under `VALUEDRIFT_SHARED`), if present.
pub fn shared_fixture(name: &str) -> Option<Value> {
    let root = std::env::var_os("VALUEDRIFT_SHARED").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("../shared"));
    let p = root.join("fixtures").join(name);
    match std::fs::read_to_string(&p) {
        Ok(s) => Some(serde_json::from_str(&s).expect("shared fixture is JSON")),
        Err(e) => {
            // CI has ../shared (.ci/run sets VALUEDRIFT_EXPECT_SHARED): there a missing file fails.
            assert!(std::env::var_os("VALUEDRIFT_EXPECT_SHARED").is_none(), "{}: {e} (VALUEDRIFT_EXPECT_SHARED is set)", p.display());
            eprintln!("SKIP: {} is absent (only present beside the project's own checkouts)", p.display());
            None
        }
    }
}

/// The installed model file; tests need the real models (scripts/install-models.sh).
pub fn model_path(file: &str) -> PathBuf {
    let dir = std::env::var_os("VALUEDRIFT_MODELS").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("models"));
    let p = dir.join(file);
    assert!(p.exists(), "{} is missing: run scripts/install-models.sh first", p.display());
    p
}

/// The device tests run on: the CPU, or `VALUEDRIFT_TEST_DEVICE=cuda` to check the CUDA path
/// (a build with `--features cuda`) against the same references.
pub fn device() -> Device {
    match std::env::var("VALUEDRIFT_TEST_DEVICE").as_deref() {
        Ok("cuda") => Device::new_cuda(0).expect("CUDA device"),
        _ => Device::Cpu,
    }
}

pub fn load(file: &str) -> LanguageModel {
    LanguageModel::load(&model_path(file), &device(), DType::F32).expect("model loads")
}

/// Fixtures beside the tests; `VALUEDRIFT_FIXTURES` points elsewhere when the test binaries run
/// away from the source tree (on a GPU machine).
pub fn fixture(name: &str) -> Value {
    let dir = std::env::var_os("VALUEDRIFT_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"));
    let p = dir.join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).expect("fixture is JSON")
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array().expect("id list").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

pub fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("float list").iter().map(|x| x.as_f64().expect("float")).collect()
}

#[path = "../../../test-helpers/paired.rs"]
mod paired_helper;
pub use paired_helper::paired;
