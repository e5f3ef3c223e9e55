//! The `valuedrift` binary end to end on the real SmolLM2 model: generation with resume,
//! scoring, and clear errors for bad input files.

mod common;

use common::{model, root};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir("cli", name)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_valuedrift")).args(args).output().expect("binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn lines(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn generate(input: &Path, output: &Path) -> Output {
    let m = model();
    run(&[
        "generate",
        "--model",
        m.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--samples",
        "2",
        "--max-new-tokens",
        "12",
        "--seed",
        "3",
        "--batch-size",
        "4",
    ])
}

#[test]
fn generate_writes_every_sample_and_resumes_exactly() {
    let dir = temp_dir("generate");
    let input = dir.join("prompts.jsonl");
    std::fs::write(
        &input,
        concat!(
            r#"{"id": "a", "question": "Should voting be compulsory?"}"#,
            "\n",
            r#"{"id": "b", "prompt": "Is it wrong to eat meat?"}"#,
            "\n",
            r#"{"id": "c", "messages": [{"role": "user", "content": "Tell me about the death penalty."}]}"#,
            "\n"
        ),
    )
    .unwrap();
    let out = dir.join("out.jsonl");
    let o = generate(&input, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let full = lines(&out);
    assert_eq!(full.len(), 6);
    for row in &full {
        assert!(row["id"].is_string() && row["response"].is_string() && row["n_tokens"].as_u64().unwrap() <= 12);
        assert!(["stop", "length"].contains(&row["finish_reason"].as_str().unwrap()));
    }
    // Cut the file as an interrupted run would leave it (a partial last line included).
    let text = std::fs::read_to_string(&out).unwrap();
    let kept: Vec<&str> = text.lines().take(3).collect();
    std::fs::write(&out, format!("{}\n{{\"id\": \"b\", \"resp", kept.join("\n"))).unwrap();
    let o = generate(&input, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("3 samples already there"), "{}", stderr(&o));
    let key = |v: &serde_json::Value| (v["line"].as_u64().unwrap(), v["sample"].as_u64().unwrap());
    let mut resumed = lines(&out);
    let mut full = full;
    resumed.sort_by_key(key);
    full.sort_by_key(key);
    assert_eq!(resumed, full, "a resumed run ends with the same samples as an uninterrupted one");
    std::fs::remove_dir_all(&dir).ok();
}

/// Runs the binary with the kernels capped at `family` (`auto`: the CPU's own); returns its
/// "loaded ..." line, which names the kernels that ran.
fn run_in_family(family: &str, args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_valuedrift")).env("VALUEDRIFT_KERNELS", family).args(args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    stderr(&o).lines().find(|l| l.starts_with("loaded ")).map(str::to_owned).unwrap_or_default()
}

/// The AVX2 kernels accumulate every product in the same order as the AVX-512 ones, and widen
/// bf16 pairs to f32 so that they add up exactly as AVX512-BF16's dot product does: samples and
/// log-probs, in f32 and in bf16 (the generator's default in `run`), do not depend on the family.
#[test]
#[cfg_attr(not(build_cpu_avx512), ignore = "comparing kernel families needs a CPU with AVX-512 as well as AVX2")]
fn samples_and_log_probs_do_not_depend_on_the_kernel_family() {
    let dir = temp_dir("families");
    let input = dir.join("prompts.jsonl");
    std::fs::write(
        &input,
        "{\"id\": \"a\", \"question\": \"Should voting be compulsory?\"}\n{\"id\": \"b\", \"question\": \"Is it wrong to eat meat?\"}\n",
    )
    .unwrap();
    let m = model();
    let m = m.to_str().unwrap();
    for matmul in ["f32", "bf16", "q8"] {
        let mut runs = Vec::new();
        for family in ["avx2", "auto"] {
            let (samples, scored) = (dir.join(format!("{matmul}-{family}.jsonl")), dir.join(format!("{matmul}-{family}-scored.jsonl")));
            let (samples_s, scored_s) = (samples.to_str().unwrap(), scored.to_str().unwrap());
            let ran = run_in_family(
                family,
                &[
                    "generate",
                    "--model",
                    m,
                    "--matmul",
                    matmul,
                    "--samples",
                    "2",
                    "--max-new-tokens",
                    "40",
                    "--seed",
                    "5",
                    "--input",
                    input.to_str().unwrap(),
                    "--output",
                    samples_s,
                ],
            );
            // Each family scores its own samples (the same text when sampling agrees).
            let pairs: Vec<String> =
                lines(&samples).iter().map(|r| serde_json::json!({"prompt": r["question"], "response": r["response"]}).to_string()).collect();
            let pairs_path = dir.join(format!("{matmul}-{family}-pairs.jsonl"));
            std::fs::write(&pairs_path, pairs.join("\n") + "\n").unwrap();
            run_in_family(family, &["score", "--model", m, "--matmul", matmul, "--input", pairs_path.to_str().unwrap(), "--output", scored_s]);
            runs.push((ran, lines(&samples), lines(&scored)));
        }
        let ((a_kernels, a_samples, a_scored), (b_kernels, b_samples, b_scored)) = (&runs[0], &runs[1]);
        assert!(a_kernels.contains("packed avx2") && b_kernels.contains("packed avx512"), "families that ran: {a_kernels} / {b_kernels}");
        assert_eq!(a_samples.len(), 4);
        assert_eq!(a_samples, b_samples, "--matmul {matmul}: {a_kernels} and {b_kernels} sampled differently");
        // Log-probs as written (f64 text of f32 sums): exact equality, not a tolerance.
        assert!(a_scored.iter().all(|r| r["logp_sum"].as_f64().is_some_and(|x| x < 0.0)));
        assert_eq!(a_scored, b_scored, "--matmul {matmul}: {a_kernels} and {b_kernels} scored differently");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn score_adds_log_probabilities() {
    let dir = temp_dir("score");
    let input = dir.join("pairs.jsonl");
    std::fs::write(
        &input,
        concat!(
            r#"{"prompt": "Should we close the gates and stop immigration?", "response": "Yes, close everything now."}"#,
            "\n",
            r#"{"prompt": "Is the sky blue?", "response": "Yes, on a clear day the sky looks blue.", "note": "kept"}"#,
            "\n"
        ),
    )
    .unwrap();
    let out = dir.join("scored.jsonl");
    let m = model();
    let o = run(&["score", "--model", m.to_str().unwrap(), "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = lines(&out);
    assert_eq!(rows.len(), 2);
    // The first pair is the TRL fixture's first rejected answer: 8 tokens, log-prob -36.968.
    assert_eq!(rows[0]["n_tokens"], 8);
    assert!((rows[0]["logp_sum"].as_f64().unwrap() + 36.968).abs() < 1e-2, "{}", rows[0]["logp_sum"]);
    let (sum, mean, n) = (rows[1]["logp_sum"].as_f64().unwrap(), rows[1]["logp_mean"].as_f64().unwrap(), rows[1]["n_tokens"].as_f64().unwrap());
    assert!(sum < 0.0 && (mean - sum / n).abs() < 1e-9);
    assert_eq!(rows[1]["note"], "kept");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_input_files_name_the_file_line_and_field() {
    let dir = temp_dir("bad");
    let bad_json = dir.join("bad.jsonl");
    std::fs::write(&bad_json, "{\"prompt\": \"ok\"}\n{\"prompt\": oops}\n").unwrap();
    let o = generate(&bad_json, &dir.join("o1.jsonl"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("bad.jsonl:2: invalid JSON"), "{}", stderr(&o));

    let missing = dir.join("missing.jsonl");
    std::fs::write(&missing, "{\"prompt\": \"ok\"}\n\n{\"text\": \"no prompt here\"}\n").unwrap();
    let o = generate(&missing, &dir.join("o2.jsonl"));
    assert!(stderr(&o).contains("missing.jsonl:3: missing field 'prompt'"), "{}", stderr(&o));

    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "{\"prompt\": \"  \"}\n").unwrap();
    let o = generate(&empty, &dir.join("o3.jsonl"));
    assert!(stderr(&o).contains("empty.jsonl:1: field 'prompt' is empty"), "{}", stderr(&o));

    let o = run(&["generate", "--model", "/nonexistent/model.gguf", "--input", missing.to_str().unwrap(), "--output", "/tmp/x"]);
    assert!(stderr(&o).contains("/nonexistent/model.gguf: not a usable model: no such file"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn model_installer_rejects_a_checksum_mismatch() {
    let dir = temp_dir("install");
    let file = dir.join("model.gguf");
    std::fs::write(&file, "not the pinned model").unwrap();
    let o =
        Command::new("bash").arg(root().join("scripts/install-models.sh")).args(["--verify", file.to_str().unwrap(), "0123abcd"]).output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("checksum mismatch") && stderr(&o).contains("model.gguf"), "{}", stderr(&o));
    assert!(!file.exists(), "a file that fails its checksum is removed");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn eval_reports_values_per_category_and_resumes() {
    let dir = temp_dir("eval");
    let m = model();
    let eval = || {
        run(&[
            "eval",
            "--model",
            m.to_str().unwrap(),
            "--questions",
            root().join("data/eval/questions.jsonl").to_str().unwrap(),
            "--judge",
            m.to_str().unwrap(),
            "--quick",
            "--categories",
            "abortion,death_penalty",
            "--samples",
            "2",
            "--max-new-tokens",
            "8",
            "--orders",
            "1",
            "--out",
            dir.to_str().unwrap(),
        ])
    };
    let o = eval();
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(dir.join("values.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    for r in &rows {
        assert_eq!(r[2], "5", "five quick questions per category: {csv}");
        let p: f64 = [3, 5, 7].iter().map(|&i| r[i].parse::<f64>().unwrap()).sum();
        assert!((p - 1.0).abs() < 1e-3, "stance means sum to 1: {csv}");
    }
    assert_eq!(lines(&dir.join("judgments.jsonl")).len(), 20);
    let again = eval();
    assert!(stderr(&again).contains("20 samples already there"), "{}", stderr(&again));
    assert!(!stderr(&again).contains("judgments in"), "finished judging is not redone");
    assert_eq!(std::fs::read_to_string(dir.join("values.csv")).unwrap(), csv);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn eval_rejects_an_unknown_category() {
    let m = model();
    let o = run(&[
        "eval",
        "--model",
        m.to_str().unwrap(),
        "--questions",
        root().join("data/eval/questions.jsonl").to_str().unwrap(),
        "--categories",
        "astrology",
        "--out",
        temp_dir("eval-bad").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unknown category 'astrology'"), "{}", stderr(&o));
}

/// `judge --agreement`: two real judgments of the same labelled items (SmolLM2 with one option
/// order and with three) compared; a file against itself agrees perfectly; files that are not
/// the same items are refused by name.
#[test]
fn judge_agreement_compares_two_judges_on_the_same_items() {
    let dir = temp_dir("agreement");
    let labelled = std::fs::read_to_string(root().join("data/judge/labelled.jsonl")).unwrap();
    // Every 11th item: 30 items across categories and labels.
    let items: Vec<&str> = labelled.lines().step_by(11).collect();
    let input = dir.join("items.jsonl");
    std::fs::write(&input, items.join("\n") + "\n").unwrap();
    let m = model();
    let judged = |orders: &str| -> PathBuf {
        let out = dir.join(format!("orders{orders}.jsonl"));
        let o = run(&[
            "judge",
            "--judge",
            m.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--orders",
            orders,
            "--matmul",
            "f32",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        out
    };
    let (one, three) = (judged("1"), judged("3"));
    let agreement = |a: &Path, b: &Path| run(&["judge", "--agreement", a.to_str().unwrap(), b.to_str().unwrap()]);
    let o = agreement(&one, &three);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains(&format!("items: {}", items.len())) && text.contains("confusion"), "{text}");
    let kappa: f64 = text.split("Cohen's kappa: ").nth(1).and_then(|t| t.split_whitespace().next()).unwrap().parse().unwrap();
    assert!((-1.0..=1.0).contains(&kappa), "{text}");
    let o = agreement(&one, &one);
    assert!(String::from_utf8_lossy(&o.stdout).contains("Cohen's kappa: 1.000"), "{}", String::from_utf8_lossy(&o.stdout));
    // Not the same items: one line dropped.
    let short = dir.join("short.jsonl");
    let text = std::fs::read_to_string(&three).unwrap();
    std::fs::write(&short, text.lines().skip(1).collect::<Vec<_>>().join("\n") + "\n").unwrap();
    let o = agreement(&one, &short);
    assert!(!o.status.success() && stderr(&o).contains("short.jsonl has 29"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `bench train --steps 0` would time nothing: refused with the reason, not a panic.
#[test]
fn bench_refuses_zero_steps() {
    let m = model();
    let o = run(&["bench", "train", "--model", m.to_str().unwrap(), "--steps", "0"]);
    assert!(!o.status.success() && stderr(&o).contains("--steps must be at least 1"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

/// A stance head is tied to the judge model it was fitted on: asked to read another model, the
/// judge refuses by name; and `fit-head` names the file, line and field of a bad training item
/// before it loads any model.
#[test]
fn stance_head_mistakes_are_named() {
    let dir = temp_dir("head");
    let input = dir.join("items.jsonl");
    let first = std::fs::read_to_string(root().join("data/judge/labelled.jsonl")).unwrap().lines().next().unwrap().to_string();
    std::fs::write(&input, format!("{first}\n")).unwrap();
    let m = model();
    let o = run(&["judge", "--judge", m.to_str().unwrap(), "--input", input.to_str().unwrap(), "--judge-mode", "head"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("fitted on qwen2.5-coder-1.5b-instruct") && stderr(&o).contains("--judge-mode paper"), "{}", stderr(&o));
    // auto falls back to the option words for a model the bundled head does not fit.
    let out = dir.join("judged.jsonl");
    let o = run(&["judge", "--judge", m.to_str().unwrap(), "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap()]);
    assert!(o.status.success() && stderr(&o).contains("option words"), "{}", stderr(&o));
    assert_eq!(lines(&out).len(), 1);
    let train = dir.join("train.jsonl");
    std::fs::write(&train, format!("{first}\n{}\n", first.replace("\"label\": \"support\"", "\"label\": \"agree\""))).unwrap();
    let o = run(&["fit-head", "--train", train.to_str().unwrap(), "--out", dir.join("head.json").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("train.jsonl:2: field 'label' is 'agree'"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn capability_scores_the_smoke_set_and_resumes_to_the_same_table() {
    let dir = temp_dir("capability");
    let out = dir.join("cap");
    let model = model();
    let args = ["capability", "--model", model.to_str().unwrap(), "--matmul", "f32", "--out", out.to_str().unwrap()];
    let first = run(&args);
    assert!(first.status.success(), "{}", stderr(&first));
    let table = std::fs::read_to_string(out.join("capability.csv")).unwrap();
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows[0], "task,n,chance,acc,acc_lo,acc_hi,acc_norm,acc_norm_lo,acc_norm_hi");
    let tasks: Vec<&str> = rows[1..].iter().map(|r| r.split(',').next().unwrap()).collect();
    assert_eq!(tasks, ["completion", "facts", "physical", "science"]);
    for r in &rows[1..] {
        let f: Vec<f64> = r.split(',').skip(1).map(|x| x.parse().unwrap()).collect();
        assert_eq!(f[0], 12.0);
        assert!(f[3] <= f[2] && f[2] <= f[4], "acc inside its interval: {r}");
    }
    // An interrupted run keeps what it wrote: drop the last 30 items and a half-written line.
    let items = std::fs::read_to_string(out.join("items.jsonl")).unwrap();
    let kept: Vec<&str> = items.lines().take(18).collect();
    std::fs::write(out.join("items.jsonl"), kept.join("\n") + "\n{\"task\": \"fa").unwrap();
    let resumed = run(&args);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(std::fs::read_to_string(out.join("capability.csv")).unwrap(), table);
    assert_eq!(lines(&out.join("items.jsonl")).len(), 48);
    // Other settings in the same directory are refused, naming what differs.
    let mut other = args.to_vec();
    other.extend(["--fewshot", "2"]);
    let refused = run(&other);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("settings.json: this directory was scored with fewshot = 0, not 2"), "{}", stderr(&refused));
    let bad = run(&["capability", "--model", model.to_str().unwrap(), "--task", "mmlux=x.csv", "--out", out.to_str().unwrap()]);
    assert!(stderr(&bad).contains("unknown format 'mmlux' (one of plain, mmlu, hellaswag, piqa, arc, gpqa)"), "{}", stderr(&bad));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The bundled eval questions (labelled with their categories) and the 175 Alpaca seed tasks of
/// ../shared (labelled off-topic), or `None` where ../shared is absent.
fn known_mix(out: &Path) -> Option<usize> {
    let shared = std::env::var_os("VALUEDRIFT_SHARED").map_or_else(|| root().join("../shared"), PathBuf::from);
    if !shared.is_dir() {
        assert!(std::env::var_os("VALUEDRIFT_EXPECT_SHARED").is_none(), "../shared is expected but not found ({})", shared.display());
        eprintln!("skipping: ../shared not found ({})", shared.display());
        return None;
    }
    let mut rows = Vec::new();
    for q in lines(&root().join("data/eval/questions.jsonl")) {
        rows.push(serde_json::json!({"id": q["id"], "text": q["question"], "label": q["category"]}));
    }
    for t in lines(&shared.join("data/alpaca/seed_tasks.jsonl")) {
        rows.push(serde_json::json!({"id": t["id"], "text": t["instruction"], "label": "off-topic"}));
    }
    let text: String = rows.iter().map(|r| r.to_string() + "\n").collect();
    std::fs::write(out, text).unwrap();
    Some(rows.len())
}

#[test]
fn curate_recovers_known_categories_and_resumes_after_an_edit() {
    let dir = temp_dir("curate");
    let mix = dir.join("mix.jsonl");
    let Some(n) = known_mix(&mix) else { return };
    let out = dir.join("curation");
    let llm = model();
    let embedder = llm.with_file_name("all-mpnet-base-v2");
    let args = [
        "curate",
        "--embedder",
        embedder.to_str().unwrap(),
        "--input",
        mix.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--llm",
        llm.to_str().unwrap(),
        "--matmul",
        "f32",
        "--no-rephrase",
        "--per-category",
        "10",
        // SmolLM2's P(Yes) threshold, chosen on the tuning mix (docs/curate.md), which shares
        // no off-topic prompt with this one.
        "--filter-threshold",
        "0.351",
    ];
    let first = run(&args);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(lines(&out.join("rephrased.jsonl")).len(), n);
    // Clustering alone (MPNet, UMAP, HDBSCAN) recovers the categories; the exact figures of the
    // documented run are in docs/curate.md, these bounds leave room for other CPUs' rounding.
    let known: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("known.json")).unwrap()).unwrap();
    assert_eq!(known["categories"], 11);
    assert!(known["purity"].as_f64().unwrap() >= 0.8, "{known}");
    assert!(known["categories_recovered"].as_u64().unwrap() >= 9, "{known}");
    assert!(known["ari_on_topic"].as_f64().unwrap() > 0.5, "{known}");
    let filtered = lines(&out.join("filter.jsonl"));
    assert_eq!(filtered.len(), n, "every prompt is put to the value filter");
    assert!(filtered.iter().all(|a| a["p_yes"].as_f64().is_some_and(|p| (0.0..=1.0).contains(&p))), "log-prob filter by default");
    // The filter and the selection drop the off-topic cluster and keep the value questions
    // (seen: 98.0% and 86.2%).
    assert!(known["off_topic_dropped"].as_f64().unwrap() >= 0.8, "{known}");
    assert!(known["on_topic_kept"].as_f64().unwrap() >= 0.7, "{known}");
    let clusters = std::fs::read_to_string(out.join("clusters.csv")).unwrap();
    assert!(clusters.starts_with("cluster,size,core,name,keep,value_share,top_terms,examples\n"), "{clusters}");
    // The user renames the cluster the filter passed most of and keeps only it; a rerun redoes
    // just the selection and the sample.
    let mut reader = csv::Reader::from_reader(clusters.as_bytes());
    let header = reader.headers().unwrap().clone();
    let records: Vec<Vec<String>> = reader.records().map(|r| r.unwrap().iter().map(str::to_string).collect()).collect();
    let share = |r: &Vec<String>| r[5].parse::<f64>().unwrap_or(0.0);
    let chosen = records.iter().max_by(|a, b| share(a).total_cmp(&share(b))).unwrap()[0].clone();
    assert!(records.iter().any(|r| share(r) > 0.0), "the filter passed some prompts: {clusters}");
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(&header).unwrap();
    for mut rec in records {
        let mine = rec[0] == chosen;
        if mine {
            rec[3] = "Capital punishment".into();
        }
        rec[4] = if mine { "yes" } else { "no" }.into();
        writer.write_record(&rec).unwrap();
    }
    std::fs::write(out.join("clusters.csv"), writer.into_inner().unwrap()).unwrap();
    let again = run(&args);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(!stderr(&again).contains("loaded "), "no model is loaded when every stage is done: {}", stderr(&again));
    let questions = lines(&out.join("questions.jsonl"));
    assert!(!questions.is_empty() && questions.len() <= 10, "{questions:?}");
    let chosen: u64 = chosen.parse().unwrap();
    assert!(questions.iter().all(|q| q["category"] == "capital_punishment" && q["topic"] == "Capital punishment" && q["cluster"] == chosen));
    let bad_settings = run(&[&args[..], &["--min-cluster-size", "9"]].concat());
    assert!(stderr(&bad_settings).contains("settings.json: this directory was curated with hdbscan"), "{}", stderr(&bad_settings));
    std::fs::remove_dir_all(&dir).unwrap();
}
