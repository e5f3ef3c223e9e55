//! A third-party OpenAI-compatible server: llama-cpp-python's, started per role by the launch
//! template, judges and generates for a trace. Its stances agree with the local judge to the
//! difference between llama.cpp's quantized kernels and our dequantized f32 weights.
//! Needs VALUEDRIFT_LLAMA_CPP_PYTHON (a python with llama_cpp.server): scripts/integration/remote.sh.

mod common;

use common::model;
use std::path::Path;
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_valuedrift"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The python with llama-cpp-python's server (scripts/integration/remote.sh installs it and runs
/// this test with --ignored); its absence there is an error, not a silent pass.
fn llama_cpp_python() -> String {
    let py = std::env::var_os("VALUEDRIFT_LLAMA_CPP_PYTHON")
        .map(|p| p.to_string_lossy().into_owned())
        .expect("set VALUEDRIFT_LLAMA_CPP_PYTHON to a python with llama-cpp-python's server (scripts/integration/remote.sh does)");
    let ok = Command::new(&py).args(["-c", "import llama_cpp.server.app"]).output().is_ok_and(|o| o.status.success());
    assert!(ok, "{py} cannot import llama_cpp.server.app (scripts/integration/remote.sh installs it)");
    py
}

fn trace(out: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let m = model().display().to_string();
    let o = bin()
        .args([
            "trace",
            &format!("base={m}@0"),
            "--out",
            out.to_str().unwrap(),
            "--categories",
            "immigration,death_penalty",
            "--per-category",
            "2",
            "--samples",
            "2",
            "--max-new-tokens",
            "16",
            "--seed",
            "7",
            "--judge",
            &m,
            "--orders",
            "2",
            "--judge-matmul",
            "f32",
            "--judge-check",
            "0",
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = bin().args(["dump", "--store", out.join("trace.sqlite").to_str().unwrap()]).output().unwrap();
    String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
#[ignore = "needs llama-cpp-python's server: bash scripts/integration/remote.sh"]
fn llama_cpp_python_server_judges_like_the_local_engine_and_generates() {
    let py = llama_cpp_python();
    let dir = common::temp_dir("llama-cpp", "judge");
    let launch = format!("'{py}' -m llama_cpp.server --model {{model}} --port {{port}} --logits_all true --n_ctx 2048");
    let engines = dir.join("engines.toml");
    std::fs::write(
        &engines,
        format!(
            "[engine.llama-echo]\nlaunch = \"{launch}\"\napi = \"completions\"\nlogprobs = \"echo\"\nconcurrency = 1\nready_timeout_s = 120\n\
         [engine.llama-top]\nlaunch = \"{launch}\"\nconcurrency = 1\nready_timeout_s = 120\n"
        ),
    )
    .unwrap();
    let e = engines.to_str().unwrap();
    let local = trace(&dir.join("local"), &[]);
    let echo = trace(&dir.join("echo"), &["--engines", e, "--judge-engine", "llama-echo"]);
    let mut worst = 0.0f64;
    for (a, b) in common::paired(&local, &echo) {
        assert_eq!(a["response"], b["response"], "the local generator answered both");
        for k in ["p_support", "p_neutral", "p_oppose"] {
            worst = worst.max((a[k].as_f64().unwrap() - b[k].as_f64().unwrap()).abs());
        }
    }
    eprintln!("llama.cpp echo judge vs local: largest stance difference {worst:.4}");
    assert!(worst < 0.05, "llama.cpp's exact option scores differ from the local judge's by {worst}");

    // Top-20 log-probs of its chat endpoint (the server's own template), and its sampling.
    let top = trace(&dir.join("top"), &["--engines", e, "--judge-engine", "llama-top", "--generator-engine", "llama-top"]);
    assert_eq!(top.len(), local.len());
    for r in &top {
        assert!(r["n_tokens"].as_u64().unwrap() > 0 && ["stop", "length"].contains(&r["finish"].as_str().unwrap()), "{r}");
        let sum: f64 = ["p_support", "p_neutral", "p_oppose"].iter().map(|k| r[*k].as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-9);
    }
    eprintln!("llama.cpp top-20 judge: {} of {} judgments floored", top.iter().filter(|r| r["floored"] == true).count(), top.len());
    let _ = std::fs::remove_dir_all(&dir);
}
