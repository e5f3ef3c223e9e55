//! `valuedrift trace`, `report` and `dump`: values across checkpoints, through the store.

use crate::cli::{DumpArgs, DumpFormat, ReportArgs, SamplingArgs, TraceArgs};
use crate::progress::Bars;
use crate::settings::{EvalSelection, JudgeChoice};
use anyhow::{anyhow, bail, Context, Result};
use std::io::Write;
use std::path::Path;
use valuedrift_trace::audit;
use valuedrift_trace::capability::traced::trace_capability;
use valuedrift_trace::checkpoints::{discover, discover_live, CheckpointSpec};
use valuedrift_trace::evalset::{self, Question};
use valuedrift_trace::pipeline::{self, Settings, Throughput};
use valuedrift_trace::report::{self, Written};
use valuedrift_trace::store::Store;
use valuedrift_trace::Stance;

/// The eval questions a trace asks: the set, narrowed by category, the quick flag and a per-category cap.
pub fn questions(args: &EvalSelection) -> Result<Vec<Question>> {
    let (all, name) = match &args.questions {
        Some(p) => (evalset::load(p)?, p.display().to_string()),
        None => (evalset::load_bundled()?, evalset::BUNDLED_NAME.to_string()),
    };
    let mut picked = evalset::select(all, &args.categories, args.quick).map_err(|e| anyhow!("{name}: {e}"))?;
    if let Some(cap) = args.per_category {
        let mut seen = std::collections::HashMap::<String, usize>::new();
        picked.retain(|q| {
            let n = seen.entry(q.category.clone()).or_default();
            *n += 1;
            *n <= cap
        });
    }
    if picked.is_empty() {
        bail!("{name}: no questions selected");
    }
    Ok(picked)
}

fn settings(sampling: &SamplingArgs, judge: &JudgeChoice) -> Settings {
    Settings {
        samples: sampling.samples,
        temperature: sampling.temperature,
        max_new_tokens: sampling.max_new_tokens,
        seed: sampling.seed,
        prompt: sampling.prompt,
        judge: judge.identity(),
        judge_orders: judge.orders as usize,
        capability: None,
    }
}

/// Every checkpoint named on the command line, in order; the same (phase, step) twice is an error.
fn checkpoint_specs(args: &[String], default_phase: &str) -> Result<Vec<CheckpointSpec>> {
    let mut specs: Vec<CheckpointSpec> = Vec::new();
    for a in args {
        for spec in discover(a, default_phase)? {
            if let Some(dup) = specs.iter().find(|s| s.phase == spec.phase && s.step == spec.step) {
                bail!(
                    "{} and {} are both {} step {}; give one of them another phase or step",
                    dup.path.display(),
                    spec.path.display(),
                    spec.phase,
                    spec.step
                );
            }
            specs.push(spec);
        }
    }
    Ok(specs)
}

/// With --follow: the complete checkpoints of every watched directory so far, and whether
/// every trainer has finished.
fn live_specs(args: &[String], default_phase: &str) -> Result<(Vec<CheckpointSpec>, bool)> {
    let mut specs = Vec::new();
    let mut all_finished = true;
    for a in args {
        let (found, finished) = discover_live(a, default_phase)?;
        specs.extend(found);
        all_finished &= finished;
    }
    Ok((specs, all_finished))
}

pub fn run(args: TraceArgs) -> Result<()> {
    let specs = if args.follow { live_specs(&args.checkpoints, &args.phase)?.0 } else { checkpoint_specs(&args.checkpoints, &args.phase)? };
    let questions = questions(&args.eval.selection())?;
    let judge_choice = args.judge.choice();
    let mut settings = settings(&args.sampling, &judge_choice);
    let capability = super::capability::plan_for_trace(&args.capability)?;
    settings.capability = capability.as_ref().map(|(_, s)| s.clone());
    let known = super::engines::known(&args.engines, &Default::default())?;
    let generator_engine = super::engines::resolve(args.engines.generator_engine.as_deref(), &known, "generator")?;
    let judge_engine = super::engines::resolve(args.engines.judge_engine.as_deref(), &known, "judge")?;
    // The judge (a started judge server too) is ready before any work is stored.
    let judge = super::engines::judge(judge_engine, &judge_choice, &args.device)?;
    settings.judge = judge.identity.clone();
    let store_path = args.store.clone().unwrap_or_else(|| args.out.join("trace.sqlite"));
    let mut store = Store::open(&store_path)?;
    let run = store.run(&args.run, &settings.to_json())?;
    super::judge::check_into_store(&store, run, &judge, args.judge_check)?;
    eprintln!(
        "store: {} (run '{}'): {} checkpoints x {} questions x {} samples",
        store_path.display(),
        args.run,
        specs.len(),
        questions.len(),
        settings.samples
    );
    let speed = Throughput { batch_size: args.batch_size, ..Throughput::default() };
    let load = super::generator_loader(args.device.clone(), args.matmul);
    let mut local = pipeline::LocalGenerators { load: &load, batch_size: speed.batch_size };
    let mut remote = super::engines::remote_generators(generator_engine);
    let generators: &mut dyn pipeline::Generators = match &mut remote {
        Some(r) => r,
        None => &mut local,
    };
    let started = std::time::Instant::now();
    pipeline::trace(&mut store, run, &specs, &questions, &settings, &speed, judge.judge.as_ref(), generators, &mut Bars::default())?;
    // With --follow: look again until every watched trainer has finished and nothing is new.
    if args.follow {
        loop {
            let (now, finished) = live_specs(&args.checkpoints, &args.phase)?;
            let traced = store.checkpoints(run)?.len();
            pipeline::trace(&mut store, run, &now, &questions, &settings, &speed, judge.judge.as_ref(), generators, &mut Bars::default())?;
            if finished && store.checkpoints(run)?.len() == traced {
                eprintln!("every watched trainer has finished and its checkpoints are traced");
                break;
            }
            if !finished {
                eprintln!("following: {} checkpoints traced; next look in {} s (Ctrl-C stops; the same command resumes)", now.len(), args.poll_s);
                std::thread::sleep(std::time::Duration::from_secs(args.poll_s));
            }
        }
    }
    if let Some((plan, _)) = &capability {
        trace_capability(&mut store, run, plan, &load, &mut Bars::default())?;
    }
    eprintln!("traced in {:.1} min; store: {}", started.elapsed().as_secs_f64() / 60.0, store_path.display());
    let written = report::write_report(&store, run, &args.out.join("report"))?;
    valuedrift_trace::html::write_html(&store, run, &written, None, &audit::read_summaries(&args.out.join("audit")))?;
    print_summary(&written);
    Ok(())
}

pub fn report(args: ReportArgs) -> Result<()> {
    let store = open_existing(&args.store)?;
    let run = find_run(&store, &args.run)?;
    let written = report::write_report(&store, run, &args.out)?;
    // A run directory (`valuedrift run`) keeps the experiment file and audits beside the store.
    let run_dir = args.store.parent().unwrap_or(Path::new("."));
    let experiment = std::fs::read_to_string(run_dir.join("experiment.toml")).ok();
    valuedrift_trace::html::write_html(&store, run, &written, experiment.as_deref(), &audit::read_summaries(&run_dir.join("audit")))?;
    print_summary(&written);
    Ok(())
}

fn open_existing(path: &Path) -> Result<Store> {
    if !path.is_file() {
        bail!("{}: no such store", path.display());
    }
    Ok(Store::open(path)?)
}

fn find_run(store: &Store, name: &str) -> Result<i64> {
    let runs = store.runs()?;
    runs.iter().find(|(_, n)| n == name).map(|(id, _)| *id).ok_or_else(|| {
        anyhow!("{}: no run named '{name}' (runs: {})", store.path().display(), runs.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>().join(", "))
    })
}

/// The drift table on the terminal, and where the files are.
pub fn print_summary(w: &Written) {
    let md = report::drift_markdown(&w.drifts);
    println!("{}", md.split_once("\n## ").map(|(_, rest)| format!("## {rest}")).unwrap_or(md));
    let last = w.values.last().map(|v| (&v.checkpoint.phase, v.checkpoint.step));
    if let Some((phase, step)) = last {
        println!("values at the last checkpoint ({phase} step {step}):");
        for v in w.values.iter().filter(|v| (&v.checkpoint.phase, v.checkpoint.step) == (phase, step)) {
            let cells: Vec<String> =
                Stance::ALL.iter().map(|&s| format!("{} {:.3} ± {:.3}", s.name(), v.value.mean[s as usize], v.value.ci_half[s as usize])).collect();
            println!("  {:24} {}", v.category, cells.join("  "));
        }
    }
    eprintln!("report: {} (report.html, drift.md, values.csv, drift.csv, samples.md, plots/*.png|svg)", w.dir.display());
}

pub fn dump(args: DumpArgs) -> Result<()> {
    let store = open_existing(&args.store)?;
    let run = find_run(&store, &args.run)?;
    let records = store.records(run)?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?)),
        None => Box::new(std::io::stdout().lock()),
    };
    match args.format {
        DumpFormat::Jsonl => {
            for r in &records {
                writeln!(out, "{}", serde_json::to_string(r)?)?;
            }
        }
        DumpFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            for r in &records {
                w.serialize(r)?;
            }
            w.flush()?;
        }
    }
    if let Some(p) = &args.out {
        eprintln!("wrote {} records to {}", records.len(), p.display());
    }
    Ok(())
}
