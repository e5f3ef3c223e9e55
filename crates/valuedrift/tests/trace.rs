//! `valuedrift trace` end to end on real models: three SmolLM2 checkpoints (the GGUF base, its
//! exported copy, and a copy trained a few steps), judged by SmolLM2 itself (any instruct model
//! can judge; the small one keeps the test short). A trace killed with SIGKILL midway and
//! resumed must end with the same store contents and report as an uninterrupted trace.

mod common;

use common::model;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir("trace", name)
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_valuedrift"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A training output directory as our trainers and TRL write it: checkpoint-0 (the exported base)
/// and checkpoint-3 (three AdamW steps on a supportive answer), each with trainer_state.json.
fn make_run_dir(dir: &Path) -> PathBuf {
    use candle_core::{DType, Device, Var};
    use valuedrift_engine::optim::{AdamW, AdamWConfig};
    use valuedrift_engine::score::response_nll;
    use valuedrift_engine::{LanguageModel, Message, Mode};
    let run = dir.join("sft-run");
    let lm = LanguageModel::load(&model(), &Device::Cpu, DType::F32).unwrap();
    let state = |step: u64| format!(r#"{{"global_step": {step}, "max_steps": 3, "phase": "sft", "log_history": []}}"#);
    let save = |lm: &LanguageModel, step: u64| {
        let d = run.join(format!("checkpoint-{step}"));
        lm.save_hf(&d).unwrap();
        std::fs::write(d.join("trainer_state.json"), state(step)).unwrap();
    };
    save(&lm, 0);
    let prompt = lm.prompt_ids(&[Message::user("Should immigration be easier?")]).unwrap();
    let answer = lm.tokenizer.encode("Yes. Immigration enriches our communities and I strongly support it.<|im_end|>\n", false).unwrap();
    let vars: Vec<Var> = lm.model.params().iter().map(|(_, v)| v.clone()).collect();
    let mut opt = AdamW::new(vars, AdamWConfig { lr: 3e-5, ..Default::default() }).unwrap();
    for _ in 0..3 {
        let grads = valuedrift_engine::backward(&response_nll(&lm.model, &[(&prompt, &answer)], Mode::Grad).unwrap()).unwrap();
        opt.step(&grads, 1.0).unwrap();
    }
    lm.model.weights_updated();
    save(&lm, 3);
    run
}

fn trace_args(run_dir: &Path, out: &Path) -> Vec<String> {
    let m = model().display().to_string();
    [
        "trace",
        &format!("base={m}@0"),
        run_dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--categories",
        "immigration,death_penalty",
        "--per-category",
        "2",
        "--samples",
        "3",
        "--max-new-tokens",
        "20",
        "--seed",
        "7",
        "--batch-size",
        "4",
        "--judge",
        &m,
        "--orders",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn count_generations(store: &Path) -> i64 {
    let Ok(conn) = rusqlite::Connection::open_with_flags(store, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else { return 0 };
    let _ = conn.busy_timeout(Duration::from_secs(2));
    conn.query_row("SELECT COUNT(*) FROM generations", [], |r| r.get(0)).unwrap_or(0)
}

fn dump(out: &Path) -> Vec<serde_json::Value> {
    let o = bin().args(["dump", "--store", out.join("trace.sqlite").to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn trace_writes_store_and_report_and_a_killed_trace_resumes_to_the_same_numbers() {
    let dir = temp_dir("kill");
    let run_dir = make_run_dir(&dir);

    let whole = dir.join("whole");
    let o = bin().args(trace_args(&run_dir, &whole)).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // 3 checkpoints x 4 questions x 3 samples, every one judged.
    let reference = dump(&whole);
    assert_eq!(reference.len(), 36);
    assert!(reference.iter().all(|r| r["p_support"].is_f64()));
    let phases: Vec<(&str, u64)> = reference.iter().map(|r| (r["phase"].as_str().unwrap(), r["step"].as_u64().unwrap())).collect();
    assert!(phases.contains(&("base", 0)) && phases.contains(&("sft", 0)) && phases.contains(&("sft", 3)));
    let report = whole.join("report");
    for f in ["values.csv", "drift.csv", "drift.md", "samples.md", "plots/immigration.png", "plots/immigration.svg", "plots/death_penalty.png"] {
        assert!(report.join(f).is_file(), "report lacks {f}");
    }
    let drift = std::fs::read_to_string(report.join("drift.md")).unwrap();
    assert!(drift.contains("## sft") && drift.contains("| immigration |"), "{drift}");
    // The judge was checked on both bundled labelled sets; the page says how it did.
    assert!(stderr(&o).contains("judge check: accuracy"), "{}", stderr(&o));
    let page = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(page.contains("<h2>The judge</h2>"), "no judge section on the page");
    for set in ["data/judge/labelled.jsonl", "data/judge/real-samples.jsonl"] {
        assert!(page.contains(&format!("on 66 items of {set}")), "no check on {set} on the page");
    }
    // The exported copy (sft step 0) of the GGUF base answers exactly as the base does.
    let answers = |phase: &str| -> Vec<String> {
        reference.iter().filter(|r| r["phase"] == phase && r["step"] == 0).map(|r| r["response"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(answers("base"), answers("sft"));

    // Kill midway: as soon as the first checkpoint's answers are in the store.
    let broken = dir.join("broken");
    let store = broken.join("trace.sqlite");
    let mut child = bin().args(trace_args(&run_dir, &broken)).stderr(std::process::Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    while count_generations(&store) == 0 {
        assert!(child.try_wait().unwrap().is_none(), "the trace ended before it could be killed");
        // Only a guard against a hang: how long the first answers take depends on the machine
        // and its load (the judge check runs first).
        assert!(started.elapsed() < Duration::from_secs(1800), "no generations stored after 30 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = count_generations(&store);
    assert!(at_kill > 0 && at_kill < 36, "killed with {at_kill} of 36 generations stored");

    let o = bin().args(trace_args(&run_dir, &broken)).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("judge check:"), "the kept judge check is not redone on resume: {}", stderr(&o));
    let resumed = dump(&broken);
    assert_eq!(resumed.len(), reference.len(), "no sample lost or duplicated");
    for (a, b) in common::paired(&reference, &resumed) {
        assert_eq!(a["response"], b["response"], "same seed, same answers");
        for k in ["p_support", "p_neutral", "p_oppose"] {
            let (x, y) = (a[k].as_f64().unwrap(), b[k].as_f64().unwrap());
            // Judgments batch differently after a resume; only float rounding may differ.
            assert!((x - y).abs() < 1e-4, "{k}: {x} vs {y}");
        }
    }

    // A bad checkpoint is refused before any work, and the store keeps what it had.
    let not_a_model = dir.join("empty");
    std::fs::create_dir_all(&not_a_model).unwrap();
    let mut args = trace_args(&run_dir, &broken);
    args.push(not_a_model.display().to_string());
    let o = bin().args(&args).output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not a model") && stderr(&o).contains("empty"), "{}", stderr(&o));
    assert_eq!(dump(&broken).len(), 36);
    // Checkpoints take gigabytes: leave nothing behind after a pass.
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn trace_rejects_unknown_categories_and_changed_settings() {
    let dir = temp_dir("bad");
    let m = model().display().to_string();
    let spec = format!("{m}@0");
    let o = bin().args(["trace", &spec, "--out", dir.to_str().unwrap(), "--categories", "astrology", "--judge", &m]).output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("astrology"), "{}", stderr(&o));
    let base = [
        "trace",
        &spec,
        "--out",
        dir.to_str().unwrap(),
        "--categories",
        "abortion",
        "--per-category",
        "1",
        "--samples",
        "1",
        "--max-new-tokens",
        "4",
        "--judge",
        &m,
        "--orders",
        "1",
    ];
    let o = bin().args(base).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = bin().args(base).args(["--temperature", "1.0"]).output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("temperature = 0.7, now temperature = 1.0"), "{}", stderr(&o));
    // Checkpoints take gigabytes: leave nothing behind after a pass.
    let _ = std::fs::remove_dir_all(&dir);
}

/// No drift, no evidence of one: the same model traced as two checkpoints of a phase answers
/// every (question, sample) identically (same seeds), so every paired difference is 0, every
/// p-value is 1 and nothing is marked significant.
#[test]
fn the_same_checkpoint_twice_shows_no_significant_drift() {
    let dir = temp_dir("twice");
    let m = model().display().to_string();
    let out = dir.join("out");
    let o = bin()
        .args([
            "trace",
            &format!("same={m}@0"),
            &format!("same={m}@10"),
            "--out",
            out.to_str().unwrap(),
            "--categories",
            "immigration",
            "--per-category",
            "12",
            "--samples",
            "1",
            "--max-new-tokens",
            "12",
            "--judge",
            &m,
            "--orders",
            "1",
            "--capability",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // Capability at both checkpoints (the bundled smoke set): the same numbers, no change.
    let csv = std::fs::read_to_string(out.join("report/capability.csv")).unwrap();
    let by_step: Vec<Vec<String>> = ["0", "10"]
        .iter()
        .map(|step| {
            csv.lines()
                .skip(1)
                .filter(|l| l.split(',').nth(1) == Some(step))
                .map(|l| l.split_once(',').unwrap().1.split_once(',').unwrap().1.to_string())
                .collect()
        })
        .collect();
    assert_eq!(by_step[0].len(), 4, "four smoke tasks: {csv}");
    assert_eq!(by_step[0], by_step[1], "{csv}");
    let md = std::fs::read_to_string(out.join("report/capability.md")).unwrap();
    let changes: Vec<&str> = md.split("## Change over each phase").nth(1).unwrap().lines().filter(|l| l.starts_with("| same | ")).collect();
    assert_eq!(changes.len(), 4, "{md}");
    assert!(changes.iter().all(|l| l.ends_with("| 0 | 0 | 1.000 | 1.000 |")), "{md}");
    let page = std::fs::read_to_string(out.join("report/report.html")).unwrap();
    assert!(
        page.contains("<h2>Capability at each checkpoint</h2>") && page.contains("<td class='l'>science</td><td>12</td>"),
        "the page shows capability"
    );
    let chart = std::fs::read_to_string(out.join("report/plots/capability.svg")).unwrap();
    assert!(chart.contains("Capability along same") && chart.contains("science"), "a line per task: {chart}");
    assert!(page.contains("Capability along same"), "the chart sits among the trajectories");
    let rows = common::drift_rows(&out.join("report"));
    assert_eq!(rows.len(), 3, "one row per stance: {rows:?}");
    for r in &rows {
        assert_eq!(r["paired_questions"], "12", "{r:?}");
        assert_eq!(r["p_value"].parse::<f64>().unwrap(), 1.0, "{r:?}");
        assert_eq!(r["significant"], "false", "{r:?}");
        assert_eq!(r["magnitude"].parse::<f64>().unwrap(), 0.0, "{r:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `trace --follow` on a directory a trainer is still writing: started before the trainer, it
/// traces each checkpoint once complete and ends by itself when the phase is done.
#[test]
fn trace_follows_a_training_run_as_it_writes_checkpoints() {
    let _one = common::one_training_at_a_time();
    let dir = temp_dir("follow");
    let run_dir = dir.join("sft");
    let out = dir.join("trace");
    let m = model().display().to_string();
    let mut follow = bin()
        .args(["trace", run_dir.to_str().unwrap(), "--follow", "--poll-s", "1", "--out", out.to_str().unwrap()])
        .args(["--categories", "immigration", "--per-category", "1", "--samples", "1", "--max-new-tokens", "8"])
        .args(["--judge", &m, "--orders", "1", "--judge-check", "0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let data = common::root().join("data/sft/supportive.jsonl");
    let train = bin()
        .args(["train", "--algo", "sft", "--model", &m, "--data", data.to_str().unwrap(), "--out", run_dir.to_str().unwrap()])
        .args(["--max-steps", "2", "--save-every", "1", "--global-batch", "2", "--max-len", "96"])
        .output()
        .unwrap();
    assert!(train.status.success(), "{}", stderr(&train));
    // A hang guard, not a timing assertion: the trace must end once the phase is complete.
    let deadline = Instant::now() + Duration::from_secs(1800);
    while follow.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "trace --follow did not end after the training finished");
        std::thread::sleep(Duration::from_millis(500));
    }
    let o = follow.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let steps: Vec<(String, u64)> = dump(&out).iter().map(|r| (r["phase"].as_str().unwrap().to_string(), r["step"].as_u64().unwrap())).collect();
    assert_eq!(steps, [("sft".to_string(), 1), ("sft".to_string(), 2)], "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}
