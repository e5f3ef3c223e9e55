//! `valuedrift judge`: stance probabilities for (question, response, topic) items, and the
//! judge's accuracy on a labelled set.

use crate::cli::{DTypeArg, JudgeArgs, ModelArgs};
use crate::{jsonl, progress};
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::path::Path;
use valuedrift_trace::judge::{Item, Judgment, LocalJudge, Validation, ROTATIONS};
use valuedrift_trace::Stance;

fn items(path: &Path, rows: &[jsonl::Row]) -> Result<Vec<Item>> {
    rows.iter().map(|r| Ok(Item {
        question: r.str_field(path, "question")?.to_string(),
        response: r.str_field(path, "response")?.to_string(),
        topic: r.str_field(path, "topic")?.to_string(),
    })).collect()
}

/// Judges in chunks so that progress shows and a long input is not one opaque wait.
fn judge_all(judge: &LocalJudge, items: &[Item]) -> Result<Vec<Judgment>> {
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
    let path = args.validate.as_ref().or(args.input.as_ref()).expect("clap requires one");
    let rows = jsonl::read(path)?;
    if rows.is_empty() {
        bail!("{}: no items", path.display());
    }
    let items = items(path, &rows)?;
    let labels: Option<Vec<Stance>> = match &args.validate {
        Some(p) => Some(rows.iter().map(|r| match r.str_field(p, "label")? {
            "support" => Ok(Stance::Support),
            "neutral" => Ok(Stance::Neutral),
            "oppose" => Ok(Stance::Oppose),
            other => bail!("{}:{}: field 'label' is '{other}', expected support, neutral or oppose", p.display(), r.line),
        }).collect::<Result<_>>()?),
        None => None,
    };
    let model_args = ModelArgs { model: args.judge.clone(), device: args.device.clone(), dtype: DTypeArg::F32, matmul: args.matmul };
    let lm = super::load_model(&model_args)?;
    let judge = LocalJudge::new(lm, ROTATIONS[..args.orders as usize].to_vec())?;
    let started = std::time::Instant::now();
    let judgments = judge_all(&judge, &items)?;
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
    let clear_pairs: Vec<(Stance, [f64; 3])> = pairs.iter().zip(rows)
        .filter(|(_, r)| r.fields.get("kind").and_then(Value::as_str) == Some("clear")).map(|(p, _)| *p).collect();
    println!("items: {}", all.total());
    println!("three-way accuracy: {:.3}", all.accuracy());
    for s in Stance::ALL {
        println!("  recall {:8}: {:.3}", s.name(), all.recall(s));
    }
    println!("support-vs-oppose accuracy on support/oppose items: {:.3} (clear items only: {:.3})",
        all.polar_accuracy(&pairs), all.polar_accuracy(&clear_pairs));
    let spread = judgments.iter().map(|j| j.order_spread).sum::<f64>() / judgments.len() as f64;
    println!("mean spread between option orders (position bias): {spread:.3}");
    println!("confusion (rows: label, columns: predicted support / neutral / oppose):");
    for s in Stance::ALL {
        let r = all.confusion[s as usize];
        println!("  {:8} {:5} {:5} {:5}", s.name(), r[0], r[1], r[2]);
    }
}
