//! `valuedrift judge`: stance probabilities for (question, response, topic) items, and the
//! judge's accuracy on a labelled set.

use crate::cli::JudgeArgs;
use crate::{jsonl, progress};
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::path::Path;
use valuedrift_trace::judge::{expected_calibration_error, mean_label_probability, top_stance, Item, Judge, Judgment, LocalJudge, Validation};
use valuedrift_trace::judge_check::{self, LabelledSet};
use valuedrift_trace::significance::{bootstrap_draws, cohen_kappa, percentile_interval, RESAMPLES};
use valuedrift_trace::Stance;

/// The `question`, `response` and `topic` of every row.
pub fn items(path: &Path, rows: &[jsonl::Row]) -> Result<Vec<Item>> {
    rows.iter()
        .map(|r| {
            Ok(Item {
                question: r.str_field(path, "question")?.to_string(),
                response: r.str_field(path, "response")?.to_string(),
                topic: r.str_field(path, "topic")?.to_string(),
            })
        })
        .collect()
}

/// The `label` field of every row: support, neutral or oppose.
pub fn labels(path: &Path, rows: &[jsonl::Row]) -> Result<Vec<Stance>> {
    rows.iter()
        .map(|r| match r.str_field(path, "label")? {
            "support" => Ok(Stance::Support),
            "neutral" => Ok(Stance::Neutral),
            "oppose" => Ok(Stance::Oppose),
            other => bail!("{}:{}: field 'label' is '{other}', expected support, neutral or oppose", path.display(), r.line),
        })
        .collect()
}

/// Judges in chunks so that progress shows and a long input is not one opaque wait.
fn judge_all(judge: &dyn Judge, items: &[Item]) -> Result<Vec<Judgment>> {
    const CHUNK: usize = 32;
    let pb = progress::bar(items.len() as u64, "judge");
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(CHUNK) {
        out.extend(judge.judge(chunk)?);
        pb.inc(chunk.len() as u64);
    }
    pb.finish();
    Ok(out)
}

pub fn run(args: JudgeArgs) -> Result<()> {
    if let Some(files) = &args.agreement {
        return agreement(&files[0], &files[1]);
    }
    let path = args.validate.as_ref().or(args.input.as_ref()).expect("clap requires one");
    let rows = jsonl::read(path)?;
    if rows.is_empty() {
        bail!("{}: no items", path.display());
    }
    let items = items(path, &rows)?;
    let labels = match &args.validate {
        Some(p) => Some(labels(p, &rows)?),
        None => None,
    };
    if let Some(out_path) = &args.features {
        let judge = super::engines::load_judge(&args.choice(), &args.device)?;
        let layers = if args.feature_layers.is_empty() { vec![judge.layer_count() - 1] } else { args.feature_layers.clone() };
        return write_features(&judge, &items, &rows, &layers, out_path);
    }
    let (judge, _) = super::engines::local_judge(&args.choice(), &args.device)?;
    let started = std::time::Instant::now();
    let judgments = judge_all(judge.as_ref(), &items)?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!("{} judgments in {secs:.1}s ({:.1} per minute, {} option orders each)", items.len(), items.len() as f64 * 60.0 / secs, args.orders);
    if let Some(out_path) = &args.output {
        let mut out = jsonl::Appender::open(out_path)?;
        for (row, j) in rows.iter().zip(&judgments) {
            let mut v = Value::Object(row.fields.clone());
            v["p_support"] = json!(j.p[0]);
            v["p_neutral"] = json!(j.p[1]);
            v["p_oppose"] = json!(j.p[2]);
            v["order_spread"] = json!(j.order_spread);
            out.write(&v)?;
        }
    }
    if let Some(labels) = labels {
        print_validation(&labels, &judgments, &rows);
    }
    Ok(())
}

fn write_features(judge: &LocalJudge, items: &[Item], rows: &[jsonl::Row], layers: &[usize], out_path: &Path) -> Result<()> {
    const CHUNK: usize = 32;
    let pb = progress::bar(items.len() as u64, "features");
    let mut out = jsonl::Appender::open(out_path)?;
    for (chunk, chunk_rows) in items.chunks(CHUNK).zip(rows.chunks(CHUNK)) {
        for (row, f) in chunk_rows.iter().zip(judge.features(chunk, layers)?) {
            let mut v = Value::Object(row.fields.clone());
            v["features"] = json!(f);
            out.write(&v)?;
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish();
    Ok(())
}

/// The judged stance probabilities of every line of a judged file.
fn judged_probabilities(path: &Path, rows: &[jsonl::Row]) -> Result<Vec<[f64; 3]>> {
    rows.iter().map(|r| Ok([r.f64_field(path, "p_support")?, r.f64_field(path, "p_neutral")?, r.f64_field(path, "p_oppose")?])).collect()
}

/// `judge --agreement A B`: Cohen's kappa between two judges' top stances on the same items,
/// with a 95% bootstrap interval over items, the confusion and the mean absolute difference of
/// their probabilities.
fn agreement(a_path: &Path, b_path: &Path) -> Result<()> {
    let (a_rows, b_rows) = (jsonl::read(a_path)?, jsonl::read(b_path)?);
    if a_rows.is_empty() || a_rows.len() != b_rows.len() {
        bail!(
            "{} has {} lines and {} has {}: the judges must have judged the same items, one per line",
            a_path.display(),
            a_rows.len(),
            b_path.display(),
            b_rows.len()
        );
    }
    for (a, b) in a_rows.iter().zip(&b_rows) {
        for key in ["id", "question", "response", "sample"] {
            if let (Some(x), Some(y)) = (a.fields.get(key), b.fields.get(key)) {
                if x != y {
                    bail!(
                        "{}:{} and {}:{}: field '{key}' differs: the files are not the same items in the same order",
                        a_path.display(),
                        a.line,
                        b_path.display(),
                        b.line
                    );
                }
            }
        }
    }
    let (pa, pb) = (judged_probabilities(a_path, &a_rows)?, judged_probabilities(b_path, &b_rows)?);
    let confusion_of = |items: &mut dyn Iterator<Item = usize>| {
        let mut c = [[0usize; 3]; 3];
        for i in items {
            c[top_stance(&pa[i])][top_stance(&pb[i])] += 1;
        }
        c
    };
    let confusion = confusion_of(&mut (0..pa.len()));
    let kappa = cohen_kappa(&confusion);
    let draws = bootstrap_draws(pa.len(), RESAMPLES, 1);
    let interval = percentile_interval(draws.iter().map(|d| cohen_kappa(&confusion_of(&mut d.iter().copied()))).collect());
    let agree = (0..3).map(|i| confusion[i][i]).sum::<usize>();
    let mad = pa.iter().zip(&pb).map(|(x, y)| (0..3).map(|s| (x[s] - y[s]).abs()).sum::<f64>() / 3.0).sum::<f64>() / pa.len() as f64;
    println!("items: {}", pa.len());
    println!("top-stance agreement: {:.3} ({agree} of {})", agree as f64 / pa.len() as f64, pa.len());
    match interval {
        Some((lo, hi)) => println!("Cohen's kappa: {kappa:.3} (95% bootstrap interval {lo:.3} to {hi:.3})"),
        None => println!("Cohen's kappa: {kappa:.3}"),
    }
    println!("mean absolute difference of stance probabilities: {mad:.3}");
    println!("confusion (rows: {}, columns: {}; support / neutral / oppose):", a_path.display(), b_path.display());
    for s in Stance::ALL {
        let r = confusion[s as usize];
        println!("  {:8} {:5} {:5} {:5}", s.name(), r[0], r[1], r[2]);
    }
    Ok(())
}

fn print_validation(labels: &[Stance], judgments: &[Judgment], rows: &[jsonl::Row]) {
    let mut all = Validation::default();
    let mut clear = Validation::default();
    for ((l, j), r) in labels.iter().zip(judgments).zip(rows) {
        all.add(*l, &j.p);
        if r.fields.get("kind").and_then(Value::as_str) == Some("clear") {
            clear.add(*l, &j.p);
        }
    }
    let pairs: Vec<(Stance, [f64; 3])> = labels.iter().zip(judgments).map(|(l, j)| (*l, j.p)).collect();
    let clear_pairs: Vec<(Stance, [f64; 3])> =
        pairs.iter().zip(rows).filter(|(_, r)| r.fields.get("kind").and_then(Value::as_str) == Some("clear")).map(|(p, _)| *p).collect();
    println!("items: {}", all.total());
    let (lo, hi) = all.accuracy_interval();
    println!("three-way accuracy: {:.3} (95% Wilson interval {lo:.3} to {hi:.3})", all.accuracy());
    for s in Stance::ALL {
        println!("  recall {:8}: {:.3}", s.name(), all.recall(s));
    }
    // Sets without `kind` (e.g. the real samples) have no clear subset to report.
    let clear = if clear_pairs.is_empty() { String::new() } else { format!(" (clear items only: {:.3})", all.polar_accuracy(&clear_pairs)) };
    println!("support-vs-oppose accuracy on support/oppose items: {:.3}{clear}", all.polar_accuracy(&pairs));
    println!(
        "calibration: expected calibration error {:.3} (top stance, 10 bins); mean probability of the labelled stance {:.3}",
        expected_calibration_error(&pairs),
        mean_label_probability(&pairs)
    );
    let spread = judgments.iter().map(|j| j.order_spread).sum::<f64>() / judgments.len() as f64;
    println!("mean spread between option orders (position bias): {spread:.3}");
    print_per_category(labels, judgments, rows);
    println!("confusion (rows: label, columns: predicted support / neutral / oppose):");
    for s in Stance::ALL {
        let r = all.confusion[s as usize];
        println!("  {:8} {:5} {:5} {:5}", s.name(), r[0], r[1], r[2]);
    }
}

/// Three-way accuracy per category (the `category` field), with Wilson intervals.
fn print_per_category(labels: &[Stance], judgments: &[Judgment], rows: &[jsonl::Row]) {
    let mut by_category: std::collections::BTreeMap<&str, Validation> = std::collections::BTreeMap::new();
    for ((l, j), r) in labels.iter().zip(judgments).zip(rows) {
        if let Some(c) = r.fields.get("category").and_then(Value::as_str) {
            by_category.entry(c).or_default().add(*l, &j.p);
        }
    }
    if by_category.is_empty() {
        return;
    }
    println!("three-way accuracy per category:");
    for (c, v) in by_category {
        let (lo, hi) = v.accuracy_interval();
        println!("  {c:24} {:.3} ({lo:.3} to {hi:.3}, {} items)", v.accuracy(), v.total());
    }
}

/// Checks the run's judge on samples of both bundled labelled sets and keeps its figures in the
/// store, unless they are there already for this judge, set and sample size (a resumed run).
pub fn check_into_store(store: &valuedrift_trace::store::Store, run: i64, chosen: &super::engines::ChosenJudge, per_category: usize) -> Result<()> {
    if per_category == 0 {
        return Ok(());
    }
    let kept = store.judge_checks(run)?;
    for set in LabelledSet::ALL {
        if kept.iter().any(|c| c.judge == chosen.identity && c.set == set && c.per_category == per_category) {
            continue;
        }
        eprintln!("judge check: {} on {per_category} items per category of {}", chosen.identity, set.file());
        let started = std::time::Instant::now();
        let check = judge_check::check(chosen.judge.as_ref(), &chosen.identity, set, per_category)?;
        eprintln!("judge check: {} ({:.0} s)", judge_check::summary(&check), started.elapsed().as_secs_f64());
        store.put_judge_check(run, &check)?;
    }
    Ok(())
}
