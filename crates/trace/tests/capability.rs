//! `capability` against lm-evaluation-harness 0.4.13 itself (fixture made by
//! scripts/reference/make_capability_fixture.py): the harness's own MMLU, ARC, HellaSwag and
//! PIQA task configs, pointed at local files, on SmolLM2-135M in f32 through transformers.
//! Same contexts and continuations character for character, log-likelihoods within float
//! error, and the same acc and acc_norm on every item.

use std::path::PathBuf;

use serde_json::Value;
use valuedrift_engine::matmul::Precision;
use valuedrift_engine::LanguageModel;
use valuedrift_trace::capability::{self, Format, McItem};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/capability")
}

fn smollm2() -> LanguageModel {
    let dir =
        std::env::var_os("VALUEDRIFT_MODELS").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let p = dir.join("smollm2-135m-instruct.q4_1.gguf");
    assert!(p.exists(), "{} is missing: run scripts/install-models.sh first", p.display());
    LanguageModel::load_for_inference(&p, &candle_core::Device::Cpu, Precision::F32).unwrap()
}

fn reference() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("reference.json")).unwrap()).unwrap()
}

/// Compares one task's items, requests and scores with the harness's record of them.
fn check_task(lm: &LanguageModel, items: &[McItem], pool: Option<&[McItem]>, shots: usize, expected: &Value) {
    let expected = expected["items"].as_array().unwrap();
    assert_eq!(items.len(), expected.len());
    assert!(!items.is_empty());
    let requests = capability::requests(items, pool, shots, 0);
    let results = capability::score_requests(lm, items, &requests, 4096).unwrap();
    let (mut acc, mut ref_acc) = (0, 0.0);
    for ((req, res), exp) in requests.iter().zip(&results).zip(expected) {
        assert_eq!(req.context, exp["context"].as_str().unwrap());
        let conts: Vec<&str> = exp["continuations"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        assert_eq!(req.continuations, conts);
        for (ours, theirs) in res.logliks.iter().zip(exp["logliks"].as_array().unwrap()) {
            let theirs = theirs.as_f64().unwrap();
            assert!((ours - theirs).abs() <= 5e-4, "{}: {ours} against {theirs}", req.context);
        }
        assert_eq!(res.correct() as u8 as f64, exp["acc"].as_f64().unwrap(), "acc of {}", res.id);
        // MMLU reports acc only (null here).
        if let Some(norm) = exp["acc_norm"].as_f64() {
            assert_eq!(res.correct_norm() as u8 as f64, norm, "acc_norm of {}", res.id);
        }
        acc += res.correct() as usize;
        ref_acc += exp["acc"].as_f64().unwrap();
    }
    assert_eq!(acc as f64, ref_acc);
}

#[test]
fn four_published_formats_score_as_lm_evaluation_harness_does() {
    let lm = smollm2();
    let reference = reference();
    let zero = &reference["zero_shot"];
    let f = fixtures();
    for (format, file, task) in [
        (Format::Mmlu, "mmlu.jsonl", "vd_mmlu"),
        (Format::Arc, "arc.jsonl", "vd_arc"),
        (Format::Hellaswag, "hellaswag.jsonl", "vd_hellaswag"),
        (Format::Piqa, "piqa.jsonl", "vd_piqa"),
    ] {
        let items = capability::load(&f.join(file), format).unwrap();
        check_task(&lm, &items, None, 0, &zero[task]);
    }
    // MMLU's few-shot examples are the dev split's first ones.
    let items = capability::load(&f.join("mmlu.jsonl"), Format::Mmlu).unwrap();
    let dev = capability::load(&f.join("mmlu-dev.jsonl"), Format::Mmlu).unwrap();
    check_task(&lm, &items, Some(&dev), 2, &reference["mmlu_two_shot"]);
}

#[test]
fn malformed_benchmark_files_name_the_file_line_and_field() {
    let dir = std::env::temp_dir().join(format!("valuedrift-capability-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            Format::Arc,
            "arc.jsonl",
            "{\"question\": \"q\", \"choices\": {\"text\": [\"a\", \"b\"], \"label\": [\"A\", \"B\"]}, \"answerKey\": \"C\"}\n",
            ":1: field 'answerKey' ('C') names no choice",
        ),
        (
            Format::Hellaswag,
            "hs.jsonl",
            "{}\n{\"activity_label\": \"x\", \"ctx_a\": \"a\", \"ctx_b\": \"b\", \"endings\": [\"e\", \"f\"], \"label\": 5}\n",
            ":1: field 'ctx_b' must be a string",
        ),
        (Format::Piqa, "p.jsonl", "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n", ":1: missing field 'label'"),
        (
            Format::Plain,
            "plain.jsonl",
            "{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n{\"question\": \"q\", \"choices\": [\"a\"], \"answer\": 0}\n",
            ":2: an item needs at least two choices",
        ),
        (Format::Mmlu, "x_test.csv", "q,a,b,c,d,A\nq,a,b,c,d,E\n", ":2: column 6 (answer) must be A, B, C or D, not 'E'"),
        (Format::Gpqa, "gpqa.csv", "Question,Correct Answer,Incorrect Answer 1\nq,a,b\n", "missing column 'Incorrect Answer 2'"),
    ];
    for (format, name, text, want) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let err = capability::load(&path, format).unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()) && err.contains(want), "{name}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_bundled_smoke_set_has_four_balanced_tasks() {
    let items = capability::load_smoke().unwrap();
    let mut tasks: Vec<&str> = items.iter().map(|i| i.task.as_str()).collect();
    tasks.dedup();
    assert_eq!(tasks, ["facts", "science", "completion", "physical"]);
    assert_eq!(items.len(), 48);
    // Gold positions are spread evenly, so a position bias cannot pass for knowledge.
    for task in tasks {
        let golds: Vec<usize> = items.iter().filter(|i| i.task == task).map(|i| i.gold).collect();
        let n = items.iter().find(|i| i.task == task).unwrap().choices.len();
        for c in 0..n {
            assert_eq!(golds.iter().filter(|&&g| g == c).count(), 12 / n, "{task}: gold at {c}");
        }
    }
}
