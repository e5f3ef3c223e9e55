//! `valuedrift audit` and `valuedrift synth` on real models and the bundled data: the audit
//! tells the supporting answers of the value-gap set from the opposing ones and resumes after a
//! torn write; synth picks prompts by similarity, writes both label setups and regenerates a lost
//! pair identically.

mod common;

use common::{model, root};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn models_dir() -> PathBuf {
    model().parent().unwrap().to_path_buf()
}

fn minilm() -> PathBuf {
    let p = models_dir().join("all-minilm-l6-v2");
    assert!(p.join("model.safetensors").exists(), "{} is missing: run scripts/install-models.sh", p.display());
    p
}

fn valuedrift(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_valuedrift")).args(args).output().unwrap()
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    err
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn audit_resumes_after_a_torn_write_to_the_same_numbers() {
    let out = common::temp_dir("datatools", "audit-resume");
    let data = root().join("data/valuegap/handwritten.jsonl");
    let (m, e) = (model(), minilm());
    let args = [
        "audit",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--embedder",
        e.to_str().unwrap(),
        "--judge",
        m.to_str().unwrap(),
        "--orders",
        "1",
        "--max-items",
        "24",
        "--categories",
        "abortion,climate_change",
    ];
    ok(&valuedrift(&args));
    let dir = out.join("handwritten");
    let first = summary(&dir);
    let items = dir.join("items.jsonl");
    let all = std::fs::read_to_string(&items).unwrap();
    assert!(first["matched"].as_u64().unwrap() >= 12, "{first}");
    assert_eq!(first["gaps"].as_array().unwrap().len() as u64, first["matched"].as_u64().unwrap());
    for f in ["stances.csv", "gaps.csv", "summary.md", "plots/stances-chosen.png", "plots/value-gap.svg"] {
        assert!(dir.join(f).exists(), "missing {f}");
    }
    // Keep three judged items and half of the fourth, as a kill mid-write would.
    let keep: usize = all.split_inclusive('\n').take(3).map(str::len).sum::<usize>() + 20;
    std::fs::write(&items, &all[..keep]).unwrap();
    let log = ok(&valuedrift(&args));
    assert!(log.contains("retrieval read back from"), "retrieval was redone instead of read back: {log}");
    assert_eq!(std::fs::read_to_string(&items).unwrap().lines().count(), all.lines().count());
    assert_eq!(summary(&dir), first, "the resumed audit differs");
    // Other settings in the same directory are refused by name.
    let mut other = args.to_vec();
    other.extend(["--threshold", "0.6"]);
    let o = valuedrift(&other);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("threshold"), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn synth_picks_similar_prompts_and_writes_both_label_setups() {
    let out = common::temp_dir("datatools", "synth");
    // The hand-written value-gap prompts and the neutral SFT set's prompts are candidates.
    let gap = root().join("data/valuegap/handwritten.jsonl");
    let sft = root().join("data/sft/neutral.jsonl");
    let (m, e) = (model(), minilm());
    let args = [
        "synth",
        "--data",
        gap.to_str().unwrap(),
        "--data",
        sft.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--model",
        m.to_str().unwrap(),
        "--embedder",
        e.to_str().unwrap(),
        "--categories",
        "abortion,death_penalty",
        "--per-category",
        "3",
        "--max-new-tokens",
        "24",
    ];
    ok(&valuedrift(&args));
    let pairs = lines(&out.join("valuegap.jsonl"));
    assert_eq!(pairs.len(), 6);
    for cat in ["abortion", "death_penalty"] {
        let mine: Vec<&serde_json::Value> = pairs.iter().filter(|p| p["category"] == cat).collect();
        assert_eq!(mine.len(), 3, "{cat}");
        for p in mine {
            assert!(p["cosine"].as_f64().unwrap() >= 0.3);
            assert_ne!(p["support"], p["oppose"]);
            assert!(!p["support"].as_str().unwrap().is_empty());
        }
    }
    let support = lines(&out.join("support-aligned.jsonl"));
    let oppose = lines(&out.join("oppose-aligned.jsonl"));
    for ((p, s), o) in pairs.iter().zip(&support).zip(&oppose) {
        assert_eq!((&s["chosen"], &s["rejected"]), (&p["support"], &p["oppose"]));
        assert_eq!((&o["chosen"], &o["rejected"]), (&p["oppose"], &p["support"]));
    }
    let text = std::fs::read_to_string(out.join("valuegap.jsonl")).unwrap();
    // A lost last pair (a kill) is generated again, identically (seeded per pair and side).
    let keep: usize = text.split_inclusive('\n').take(5).map(str::len).sum();
    std::fs::write(out.join("valuegap.jsonl"), &text[..keep]).unwrap();
    ok(&valuedrift(&args));
    assert_eq!(std::fs::read_to_string(out.join("valuegap.jsonl")).unwrap(), text);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn audit_names_a_malformed_row() {
    let out = common::temp_dir("datatools", "malformed");
    let bad = out.join("bad.jsonl");
    std::fs::write(&bad, "{\"prompt\": \"Q?\", \"chosen\": \"a\", \"rejected\": \"b\"}\n{\"prompt\": \"Q2?\", \"chosen\": 3, \"rejected\": \"b\"}\n")
        .unwrap();
    let o = valuedrift(&["audit", bad.to_str().unwrap(), "--out", out.join("a").to_str().unwrap(), "--embedder", minilm().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("bad.jsonl:2") && err.contains("chosen"), "{err}");
    std::fs::remove_dir_all(&out).unwrap();
}

/// The embedder role through `valuedrift serve --embedder` (/v1/embeddings) retrieves the same
/// items with the same similarities as the local encoder.
#[test]
fn audit_through_served_embeddings_equals_the_local_audit() {
    let out = common::temp_dir("datatools", "remote-embed");
    let data = root().join("data/sft/neutral.jsonl");
    let (m, e) = (model(), minilm());
    let port = common::free_port();
    let _server = common::serve(port, &["--embedder", e.to_str().unwrap()]);
    let url = format!("http://127.0.0.1:{port}/v1");
    let audit = |dir: &str, extra: &[&str]| {
        let d = out.join(dir);
        let mut args = vec![
            "audit",
            data.to_str().unwrap(),
            "--out",
            d.to_str().unwrap(),
            "--embedder",
            e.to_str().unwrap(),
            "--judge",
            m.to_str().unwrap(),
            "--orders",
            "1",
            "--max-items",
            "40",
            "--categories",
            "abortion,immigration",
        ];
        args.extend_from_slice(extra);
        ok(&valuedrift(&args));
        let text = std::fs::read_to_string(d.join("neutral/matches.json")).unwrap();
        serde_json::from_str::<Vec<serde_json::Value>>(&text).unwrap()
    };
    let local = audit("local", &[]);
    let remote = audit("remote", &["--embedder-engine", &url]);
    for (a, b) in common::paired(&local, &remote) {
        assert_eq!((&a["item"], &a["question"]), (&b["item"], &b["question"]));
        let (x, y) = (a["cosine"].as_f64().unwrap(), b["cosine"].as_f64().unwrap());
        assert!((x - y).abs() < 1e-5, "cosine {x} locally, {y} through the server");
    }
    std::fs::remove_dir_all(&out).unwrap();
}
