//! `valuedrift run` on a tiny experiment (two phases, a handful of steps, SmolLM2 as policy and
//! judge): the report appears, a run killed midway resumes to the same store contents, and
//! mistakes in the experiment file are reported by key.

mod common;

use common::{model, root};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir("run", name)
}

fn tiny(dir: &Path) -> PathBuf {
    let m = model().display().to_string();
    let data = |p: &str| root().join(p).display().to_string();
    let text = format!(
        r#"
name = "tiny"
base = "{m}"

[eval]
categories = ["immigration"]
questions_per_category = 2
samples = 2
max_new_tokens = 12
base_model_prompt = "base"

[judge]
model = "{m}"
orders = 1

[audit]
embedder = "{minilm}"
max_items = 6

[checkpoints]
keep = "last"

[[phase]]
name = "sft"
algo = "sft"
data = "{sft}"
save_every = 1
hyper = {{ lr = 5e-5, global_batch = 4, max_steps = 2, max_len = 160 }}

[[phase]]
name = "dpo"
algo = "dpo"
from = "sft"
data = "{gap}"
label_setup = "support"
save_every = 1
hyper = {{ lr = 2e-5, global_batch = 4, max_steps = 2, max_len = 160, warmup_ratio = 0.0 }}
"#,
        sft = data("data/sft/supportive.jsonl"),
        gap = data("data/valuegap/handwritten.jsonl"),
        minilm = model().parent().unwrap().join("all-minilm-l6-v2").display()
    );
    let p = dir.join("tiny.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn run(exp: &Path, out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_valuedrift"));
    c.args(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    c
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn dump(out: &Path) -> Vec<serde_json::Value> {
    let o = Command::new(env!("CARGO_BIN_EXE_valuedrift"))
        .args(["dump", "--store", out.join("trace.sqlite").to_str().unwrap(), "--run", "tiny"])
        .output()
        .unwrap();
    ok(&o);
    String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn a_tiny_experiment_reports_and_a_killed_run_resumes() {
    let _one = common::one_training_at_a_time();
    let dir = temp_dir("tiny");
    let exp = tiny(&dir);
    let whole = dir.join("whole");
    ok(&run(&exp, &whole).output().unwrap());
    let reference = dump(&whole);
    // sft steps 0, 1, 2 and dpo steps 0 (= sft's last), 1, 2; 2 questions x 2 samples each.
    assert_eq!(reference.len(), 6 * 4);
    for f in [
        "report/drift.md",
        "report/values.csv",
        "report/samples.md",
        "report/plots/immigration.png",
        "experiment.toml",
        "sft/checkpoint-2",
        "dpo/checkpoint-2",
    ] {
        assert!(whole.join(f).exists(), "missing {f}");
    }
    let drift = std::fs::read_to_string(whole.join("report/drift.md")).unwrap();
    assert!(drift.contains("## sft") && drift.contains("## dpo"), "{drift}");
    // The phases' datasets were audited and their distributions are on the page.
    for f in ["audit/supportive/summary.json", "audit/handwritten/plots/value-gap.png"] {
        assert!(whole.join(f).exists(), "missing {f}");
    }
    let page = std::fs::read_to_string(whole.join("report/report.html")).unwrap();
    assert!(page.contains("Training data: stance distributions") && page.contains("value gap of chosen vs rejected"), "no audit section in the page");
    let same = |phase: &str, step: u64| -> Vec<String> {
        reference.iter().filter(|r| r["phase"] == phase && r["step"] == step).map(|r| r["response"].to_string()).collect()
    };
    assert_eq!(same("dpo", 0), same("sft", 2), "DPO's step 0 is SFT's final model");
    // The base model (SFT's step 0) is asked with the paper's base prompt, the rest the run's way.
    let prompts: Vec<(String, u64, String)> =
        reference.iter().map(|r| (r["phase"].as_str().unwrap().into(), r["step"].as_u64().unwrap(), r["prompt"].to_string())).collect();
    assert!(prompts.iter().all(|(phase, step, p)| (p == "\"base\"") == (phase == "sft" && *step == 0)), "{prompts:?}");
    // Once traced, only each phase's final checkpoint stays, and a re-run finds it all done.
    assert!(!whole.join("sft/checkpoint-1").exists() && !whole.join("dpo/checkpoint-1").exists(), "traced checkpoints were kept");
    let again = run(&exp, &whole).output().unwrap();
    ok(&again);
    assert!(String::from_utf8_lossy(&again.stderr).contains("finished earlier"), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(dump(&whole), reference, "a re-run after pruning changed the store");

    // Kill once the SFT phase is done and DPO is under way, then resume.
    let broken = dir.join("broken");
    let child = run(&exp, &broken).stderr(std::process::Stdio::null()).stdout(std::process::Stdio::null()).spawn().unwrap();
    common::kill_once_exists(child, &broken.join("dpo/checkpoint-1"), Duration::from_secs(600));
    ok(&run(&exp, &broken).output().unwrap());
    let resumed = dump(&broken);
    assert_eq!(resumed.len(), reference.len());
    for (a, b) in common::paired(&reference, &resumed) {
        assert_eq!((&a["phase"], &a["step"], &a["response"]), (&b["phase"], &b["step"], &b["response"]));
    }
    // Checkpoints take gigabytes: leave nothing behind after a pass.
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn experiment_mistakes_name_the_key() {
    let dir = temp_dir("bad");
    let good = std::fs::read_to_string(tiny(&dir)).unwrap();
    let cases = [
        (good.replace("save_every = 1\nhyper", "save_evry = 1\nhyper"), "save_evry"),
        (good.replace(r#"from = "sft""#, r#"from = "sfx""#), "from"),
        (good.replace(r#"algo = "dpo""#, r#"algo = "orpo""#), "algo"),
        (good.replace(r#"label_setup = "support""#, r#"label_setup = "both""#), "label_setup"),
        (good.replace("max_items = 6", "max_items = 6\nthreshold = 1.5"), "threshold"),
        (good.replace(r#"algo = "dpo""#, "algo = \"dpo\"\ntrainer = \"trl\""), "trainer"),
        (format!("{good}\n[trainer.trl]\ncommand = \"train {{modle}}\"\n"), "modle"),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let p = dir.join(format!("bad{i}.toml"));
        std::fs::write(&p, text).unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_valuedrift"))
            .args(["run", p.to_str().unwrap(), "--dry-run", "--out", dir.join("o").to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(key) && err.contains(&format!("bad{i}.toml")), "case {i}: {err}");
    }
    // Checkpoints take gigabytes: leave nothing behind after a pass.
    let _ = std::fs::remove_dir_all(&dir);
}

/// The experiment files the project ships (the main command's among them) are valid.
#[test]
fn shipped_experiment_files_pass_the_dry_run() {
    let dir = std::env::temp_dir().join(format!("vd-shipped-{}", std::process::id()));
    let root = root();
    let tomls = |dir: &str| -> Vec<PathBuf> {
        std::fs::read_dir(root.join(dir)).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "toml")).collect()
    };
    let files: Vec<PathBuf> = ["experiments", "experiments/paper", "scripts/integration"].into_iter().flat_map(tomls).collect();
    assert!(files.iter().any(|p| p.ends_with("builtin.toml")), "{files:?}");
    assert_eq!(tomls("experiments/paper").len(), 4, "the paper's grid: one file per base model");
    for p in &files {
        let o = Command::new(env!("CARGO_BIN_EXE_valuedrift"))
            .current_dir(&root)
            .args(["run", p.to_str().unwrap(), "--dry-run", "--out", dir.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}: {}", p.display(), String::from_utf8_lossy(&o.stderr));
    }
    let plan =
        Command::new(env!("CARGO_BIN_EXE_valuedrift")).current_dir(&root).args(["run", "experiments/builtin.toml", "--dry-run"]).output().unwrap();
    let plan = String::from_utf8_lossy(&plan.stdout);
    assert!(plan.contains("capability: bundled"), "the main command measures capability");
    // The budget: 24 traced checkpoints x 36 questions x 1 sample x 3 judge orders.
    let total = plan.lines().find(|l| l.trim_start().starts_with("total")).unwrap_or_default();
    assert!(total.split_whitespace().last() == Some("2592"), "budget total: {total}\n{plan}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Known answer: SFT on answers that all support one side of a topic must move the traced value
/// toward support, as the pipeline itself measures it (real judge, real training). The topic is
/// climate change, where the 1.5B judge separates the value-gap set's supporting and opposing
/// answers clearly (p(support) 0.56 vs 0.24, docs/audit.md); on abortion it does not.
#[test]
fn sft_on_one_stance_drifts_toward_it() {
    let _one = common::one_training_at_a_time();
    let dir = temp_dir("known-answer");
    let gap: Vec<serde_json::Value> = std::fs::read_to_string(root().join("data/valuegap/handwritten.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| r["category"] == CATEGORY)
        .collect();
    let questions: Vec<String> = std::fs::read_to_string(root().join("data/eval/questions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|q| q["category"] == CATEGORY)
        .take(QUESTIONS)
        .map(|q| q["question"].as_str().unwrap().to_string())
        .collect();
    // Every answer supports the topic: the value-gap set's supporting answers, to its own prompts
    // and, borrowed, to the traced questions (the test checks the measurement, not generalization).
    let mut rows = String::new();
    let pairs = gap
        .iter()
        .map(|r| r["prompt"].as_str().unwrap().to_string())
        .chain(questions.iter().cloned())
        .zip(gap.iter().cycle().map(|r| r["support"].as_str().unwrap().to_string()));
    for (prompt, answer) in pairs {
        rows += &serde_json::json!({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}).to_string();
        rows.push('\n');
    }
    let data = dir.join("one-stance.jsonl");
    std::fs::write(&data, rows).unwrap();
    let judge = model().parent().unwrap().join("qwen2.5-coder-1.5b-instruct.q4_k_m.gguf");
    let exp = dir.join("known.toml");
    std::fs::write(
        &exp,
        format!(
            r#"
name = "known"
base = "{m}"

[eval]
categories = ["{CATEGORY}"]
questions_per_category = {QUESTIONS}
samples = 4
max_new_tokens = 48

[judge]
model = "{judge}"
orders = 3
# The judge check is the trace test's concern; this test is about the drift.
check_per_category = 0

[audit]
enabled = false

[[phase]]
name = "sft-support"
algo = "sft"
data = "{data}"
save_every = {STEPS}
hyper = {{ lr = 1e-4, global_batch = 8, max_steps = {STEPS}, epochs = 10, max_len = 256, warmup_ratio = 0.0 }}
"#,
            m = model().display(),
            judge = judge.display(),
            data = data.display()
        ),
    )
    .unwrap();
    let out = dir.join("out");
    ok(&run(&exp, &out).output().unwrap());
    let rows = common::drift_rows(&out.join("report"));
    let drift = format!("{rows:#?}");
    let field = |stance: &str, name: &str| -> String {
        let row = rows.iter().find(|r| r["phase"] == "sft-support" && r["category"] == CATEGORY && r["stance"] == stance);
        let row = row.unwrap_or_else(|| panic!("no {stance} row: {drift}"));
        row.get(name).unwrap_or_else(|| panic!("no {name} column: {drift}")).clone()
    };
    let magnitude = |stance: &str| -> f64 { field(stance, "magnitude").parse().unwrap() };
    eprintln!("{drift}");
    // Measured with the default judge's stance head: support +0.68, neutral -0.77, oppose +0.09
    // (f32 checkpoints, not significant); with bf16 checkpoints support +0.71, neutral -0.79,
    // oppose +0.08 (p = 0.023, marked). The head reads some clear support as oppose
    // (docs/judge.md), so a small rise of oppose comes with a large rise of support; the test
    // asserts the proportion, not the judge's absence of that error. With the option words
    // (paper mode): support +0.33, oppose -0.21.
    assert!(magnitude("support") > 0.1, "support did not rise: {drift}");
    assert!(magnitude("oppose") < magnitude("support") / 4.0, "the drift went to oppose as much as to support: {drift}");
    // A drift this strong is real evidence, not noise: its interval excludes 0 and the sign-flip
    // test over the 8 questions marks it after the correction across the table.
    assert_eq!(field("support", "significant"), "true", "support's rise is marked significant: {drift}");
    assert!(field("support", "magnitude_ci_low").parse::<f64>().unwrap() > 0.0, "{drift}");
    let _ = std::fs::remove_dir_all(&dir);
}

const CATEGORY: &str = "climate_change";
const QUESTIONS: usize = 8;
const STEPS: usize = 16;
