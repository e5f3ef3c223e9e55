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

/// The installed model file; tests need the real models (scripts/install-models.sh).
pub fn model_path(file: &str) -> PathBuf {
    let dir = std::env::var_os("VALUEDRIFT_MODELS").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("models"));
    let p = dir.join(file);
    assert!(p.exists(), "{} is missing: run scripts/install-models.sh first", p.display());
    p
}

pub fn load(file: &str) -> LanguageModel {
    LanguageModel::load(&model_path(file), &Device::Cpu, DType::F32).expect("model loads")
}

pub fn fixture(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).expect("fixture is JSON")
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array().expect("id list").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

pub fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("float list").iter().map(|x| x.as_f64().expect("float")).collect()
}
