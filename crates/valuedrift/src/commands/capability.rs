//! `valuedrift capability`: one model's multiple-choice accuracy per task, scored item by item
//! into items.jsonl (an interrupted run resumes where it stopped), summarized in capability.csv.

use crate::cli::{CapabilityArgs, CapabilityTraceArgs};
use crate::jsonl;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use valuedrift_trace::capability::traced::CapabilityPlan;
use valuedrift_trace::capability::{self, Format, ItemResult, McItem, TaskSummary};

/// Few-shot examples of traced capability checks come from the items themselves, chosen by this seed.
const TRACE_FEWSHOT_SEED: u64 = 1234;

/// What a trace measures at each checkpoint, and the settings that go into the run's (so a
/// resumed run is checked against them).
pub fn plan(tasks: &[String], fewshot: usize) -> Result<(CapabilityPlan, Value)> {
    let items = load_tasks(tasks)?;
    let requests = capability::requests(&items, None, fewshot, TRACE_FEWSHOT_SEED);
    let settings = json!({
        "tasks": if tasks.is_empty() { vec![capability::SMOKE_NAME.to_string()] } else { tasks.to_vec() },
        "items": items.len(),
        "fewshot": fewshot,
    });
    Ok((CapabilityPlan { items, requests, batch_tokens: 4096 }, settings))
}

/// `trace`'s capability flags: None unless asked for.
pub fn plan_for_trace(args: &CapabilityTraceArgs) -> Result<Option<(CapabilityPlan, Value)>> {
    if !args.capability && args.tasks.is_empty() {
        return Ok(None);
    }
    plan(&args.tasks, args.fewshot).map(Some)
}

/// Items scored per forward batch and written together.
const ITEMS_PER_CHUNK: usize = 16;

pub fn run(args: CapabilityArgs) -> Result<()> {
    let items = load_tasks(&args.tasks)?;
    let pool = if args.fewshot_from.is_empty() { None } else { Some(load_tasks(&args.fewshot_from)?) };
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    check_settings(&args.out.join("settings.json"), &settings(&args))?;
    let items_path = args.out.join("items.jsonl");
    let mut results = read_results(&items_path)?;
    // Requests are built over every item, so resuming gives each item the examples it had.
    let requests = capability::requests(&items, pool.as_deref(), args.fewshot, args.seed);
    let done: HashSet<(String, String)> = results.keys().cloned().collect();
    let todo: Vec<usize> = (0..items.len()).filter(|&i| !done.contains(&key(&items[i]))).collect();
    if !todo.is_empty() {
        let lm = super::load_model(&args.model)?;
        let bar = crate::progress::bar(items.len() as u64, "capability");
        bar.set_position((items.len() - todo.len()) as u64);
        let mut out = jsonl::Appender::open(&items_path)?;
        for chunk in todo.chunks(ITEMS_PER_CHUNK) {
            let chunk_items: Vec<McItem> = chunk.iter().map(|&i| items[i].clone()).collect();
            let chunk_requests: Vec<_> = chunk.iter().map(|&i| requests[i].clone()).collect();
            for r in capability::score_requests(&lm, &chunk_items, &chunk_requests, args.batch_tokens)? {
                out.write(&serde_json::to_value(&r)?)?;
                results.insert((r.task.clone(), r.id.clone()), r);
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
    }
    let ordered: Vec<ItemResult> = items.iter().filter_map(|it| results.remove(&key(it))).collect();
    let summaries = capability::summarize(&ordered);
    write_csv(&args.out.join("capability.csv"), &summaries)?;
    print_table(&summaries);
    eprintln!("wrote {} and {}", items_path.display(), args.out.join("capability.csv").display());
    Ok(())
}

fn key(item: &McItem) -> (String, String) {
    (item.task.clone(), item.id.clone())
}

/// Items of every FORMAT=PATH given, or the bundled smoke set; (task, id) unique across files.
fn load_tasks(specs: &[String]) -> Result<Vec<McItem>> {
    if specs.is_empty() {
        return Ok(capability::load_smoke()?);
    }
    let mut items = Vec::new();
    let mut seen = HashMap::new();
    for spec in specs {
        let (format, path) = parse_spec(spec)?;
        for item in capability::load(&path, format)? {
            if let Some(other) = seen.insert(key(&item), path.clone()) {
                bail!("{}: task '{}' item '{}' is also in {}", path.display(), item.task, item.id, other.display());
            }
            items.push(item);
        }
    }
    Ok(items)
}

fn parse_spec(spec: &str) -> Result<(Format, PathBuf)> {
    let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
    let Some((format, path)) = spec.split_once('=') else {
        bail!("--task {spec}: give FORMAT=PATH, FORMAT one of {}", names.join(", "));
    };
    let Some(format) = Format::parse(format) else {
        bail!("--task {spec}: unknown format '{format}' (one of {})", names.join(", "));
    };
    Ok((format, PathBuf::from(path)))
}

/// What decides the numbers: a resumed run must have been started with the same.
fn settings(args: &CapabilityArgs) -> Value {
    json!({
        "model": args.model.model.display().to_string(),
        "dtype": format!("{:?}", args.model.dtype),
        "weights": args.model.matmul.weights(),
        "tasks": if args.tasks.is_empty() { vec![capability::SMOKE_NAME.to_string()] } else { args.tasks.clone() },
        "fewshot": args.fewshot,
        "fewshot_from": args.fewshot_from,
        "seed": args.seed,
    })
}

fn check_settings(path: &Path, wanted: &Value) -> Result<()> {
    if path.exists() {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let had: Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
        for (k, v) in wanted.as_object().expect("object") {
            if had.get(k) != Some(v) {
                bail!(
                    "{}: this directory was scored with {k} = {}, not {v}; use another --out or remove it",
                    path.display(),
                    had.get(k).unwrap_or(&Value::Null)
                );
            }
        }
        return Ok(());
    }
    std::fs::write(path, serde_json::to_string_pretty(wanted)? + "\n").with_context(|| format!("cannot write {}", path.display()))
}

fn read_results(path: &Path) -> Result<HashMap<(String, String), ItemResult>> {
    let mut out = HashMap::new();
    for (i, row) in jsonl::read_existing(path)?.into_iter().enumerate() {
        let r: ItemResult =
            serde_json::from_value(Value::Object(row)).with_context(|| format!("{}:{}: not an item result", path.display(), i + 1))?;
        out.insert((r.task.clone(), r.id.clone()), r);
    }
    Ok(out)
}

fn write_csv(path: &Path, summaries: &[TaskSummary]) -> Result<()> {
    let mut f = std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(f, "task,n,chance,acc,acc_lo,acc_hi,acc_norm,acc_norm_lo,acc_norm_hi")?;
    for s in summaries {
        let (lo, hi) = s.acc_interval();
        let (nlo, nhi) = s.acc_norm_interval();
        writeln!(f, "{},{},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4}", s.task, s.n, s.chance, s.acc(), lo, hi, s.acc_norm(), nlo, nhi)?;
    }
    Ok(())
}

fn print_table(summaries: &[TaskSummary]) {
    println!("{:<28} {:>5} {:>7} {:>22} {:>22}", "task", "n", "chance", "acc [95% CI]", "acc_norm [95% CI]");
    for s in summaries {
        let (lo, hi) = s.acc_interval();
        let (nlo, nhi) = s.acc_norm_interval();
        println!(
            "{:<28} {:>5} {:>7.3} {:>22} {:>22}",
            s.task,
            s.n,
            s.chance,
            format!("{:.3} [{:.3}, {:.3}]", s.acc(), lo, hi),
            format!("{:.3} [{:.3}, {:.3}]", s.acc_norm(), nlo, nhi)
        );
    }
}
