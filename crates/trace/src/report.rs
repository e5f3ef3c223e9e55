//! From the store to what a reader looks at: values per checkpoint and topic, drift per phase,
//! trajectory plots with 95% bands, and sample generations per checkpoint.
//!
//! Files written into the report directory:
//! - `values.csv`: one row per (checkpoint, category, stance) with the mean and the 95% interval;
//! - `drift.csv`, `drift.md`: magnitude and time per (phase, topic, stance), the paper's layout,
//!   each with its evidence (crate::evidence): M's paired bootstrap interval, a sign-flip
//!   p-value corrected across the table, η's interval and the minimum detectable drift;
//! - `plots/<category>.svg` and `.png`: the three stance trajectories, phases marked;
//! - `plots/capability[--<last phase>].svg` and `.png` (per line of descent), `capability.csv`,
//!   `capability.md`: accuracy per checkpoint
//!   and each phase's tested change, where the run measured capability;
//! - `samples.md`: one answer per checkpoint for the first question of each category.

use crate::aggregate::{topic_value, Value};
use crate::capability::tables;
use crate::capability::traced::{capability_changes, capability_table, CapabilityChange, CheckpointCapability};
use crate::drift::{drift, Drift, Point};
use crate::evidence::{correct, phase_evidence, question_mean, seed_for, Evidence, Judged, Samples};
use crate::significance::Correction;
use crate::store::{Checkpoint, Store};
use crate::Stance;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("plot {path}: {message}")]
    Plot { path: PathBuf, message: String },
    #[error("capability results: {0}")]
    Capability(String),
}

pub type Result<T> = std::result::Result<T, ReportError>;

/// v(T) of one category at one checkpoint.
#[derive(Clone, Debug)]
pub struct CheckpointValue {
    pub checkpoint: Checkpoint,
    pub category: String,
    pub topic: String,
    pub value: Value,
    /// Judged samples behind the value.
    pub samples: usize,
    /// The judgments behind the value, per question id and sample index.
    pub judged: BTreeMap<String, Samples>,
}

/// Drift of one stance of one topic over one phase.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PhaseDrift {
    pub phase: String,
    pub category: String,
    pub stance: Stance,
    pub start: f64,
    pub end: f64,
    pub drift: Drift,
    pub evidence: Evidence,
}

/// The correction applied across a report's drift table (every phase, topic and stance).
pub const CORRECTION: Correction = Correction::Bh;

/// Values of every (checkpoint, category) that has judgments, in checkpoint order.
pub fn values(store: &Store, run: i64) -> Result<Vec<CheckpointValue>> {
    let questions: HashMap<String, (String, String)> = store.questions(run)?.into_iter().map(|q| (q.id, (q.category, q.topic))).collect();
    let mut out = Vec::new();
    for ck in store.checkpoints(run)? {
        // category -> question -> sample -> judgment
        let mut grouped: BTreeMap<&str, BTreeMap<String, Samples>> = BTreeMap::new();
        for j in store.judgments(run, Some(ck.id))? {
            if let Some((category, _)) = questions.get(&j.question) {
                grouped.entry(category).or_default().entry(j.question).or_default().insert(j.sample, j.p);
            }
        }
        for (category, judged) in grouped {
            let samples = judged.values().map(BTreeMap::len).sum();
            let qv: Vec<[f64; 3]> = judged.values().filter_map(question_mean).collect();
            let topic = questions.values().find(|(c, _)| c == category).map(|(_, t)| t.clone()).unwrap_or_default();
            if let Some(value) = topic_value(&qv) {
                out.push(CheckpointValue { checkpoint: ck.clone(), category: category.to_string(), topic, value, samples, judged });
            }
        }
    }
    Ok(out)
}

/// Phases in order of first appearance.
fn phase_order(values: &[CheckpointValue]) -> Vec<String> {
    let mut phases: Vec<String> = Vec::new();
    for v in values {
        if !phases.contains(&v.checkpoint.phase) {
            phases.push(v.checkpoint.phase.clone());
        }
    }
    phases
}

fn categories(values: &[CheckpointValue]) -> Vec<String> {
    let mut cats: Vec<String> = values.iter().map(|v| v.category.clone()).collect();
    cats.sort();
    cats.dedup();
    cats
}

/// Drift of every (phase, category, stance) with at least one checkpoint, with its evidence;
/// p-values are corrected across the whole table (`CORRECTION`).
pub fn drifts(values: &[CheckpointValue]) -> Vec<PhaseDrift> {
    let mut out = Vec::new();
    for phase in phase_order(values) {
        for category in categories(values) {
            let ours: Vec<&CheckpointValue> = values.iter().filter(|v| v.checkpoint.phase == phase && v.category == category).collect();
            let points: Vec<Point> = ours.iter().map(|v| Point { step: v.checkpoint.step, value: v.value.clone() }).collect();
            let judged: Vec<Judged> = ours.iter().map(|v| Judged { step: v.checkpoint.step, questions: &v.judged }).collect();
            let Some(evidence) = phase_evidence(&judged, seed_for(&[&phase, &category])) else { continue };
            for (s, evidence) in Stance::ALL.into_iter().zip(evidence) {
                if let Some(d) = drift(&points, s as usize) {
                    let (start, end) = (points[0].value.mean[s as usize], points.last().unwrap().value.mean[s as usize]);
                    out.push(PhaseDrift { phase: phase.clone(), category: category.clone(), stance: s, start, end, drift: d, evidence });
                }
            }
        }
    }
    correct(out.iter_mut().map(|d| &mut d.evidence), CORRECTION);
    out
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|source| ReportError::Io { path: path.into(), source })
}

fn values_csv(values: &[CheckpointValue]) -> String {
    let mut s = String::from("phase,step,checkpoint,category,topic,stance,mean,ci_low,ci_high,questions,samples\n");
    for v in values {
        for st in Stance::ALL {
            let i = st as usize;
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{:.6},{:.6},{:.6},{},{}",
                csv_field(&v.checkpoint.phase),
                v.checkpoint.step,
                csv_field(&v.checkpoint.path),
                v.category,
                csv_field(&v.topic),
                st.name(),
                v.value.mean[i],
                v.value.low(i),
                v.value.high(i),
                v.value.questions,
                v.samples
            );
        }
    }
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn drift_csv(drifts: &[PhaseDrift]) -> String {
    let mut s = String::from(
        "phase,category,stance,start,end,magnitude,magnitude_ci_low,magnitude_ci_high,p_value,p_adjusted,\
        significant,drift_time,drift_time_ci_low,drift_time_ci_high,extremum_step,min_detectable_drift,smallest_p,paired_questions\n",
    );
    let opt = |x: Option<f64>| x.map(|v| format!("{v:.6}")).unwrap_or_default();
    for d in drifts {
        let e = &d.evidence;
        let _ = writeln!(
            s,
            "{},{},{},{:.6},{:.6},{:.6},{},{},{:.6},{:.6},{},{},{},{},{},{},{:.6},{}",
            csv_field(&d.phase),
            d.category,
            d.stance.name(),
            d.start,
            d.end,
            d.drift.magnitude,
            opt(e.interval.map(|i| i.0)),
            opt(e.interval.map(|i| i.1)),
            e.p_value,
            e.p_adjusted,
            e.significant,
            opt(d.drift.time),
            opt(e.time_interval.map(|i| i.0)),
            opt(e.time_interval.map(|i| i.1)),
            d.drift.extremum_step,
            opt(e.min_detectable),
            e.smallest_p,
            e.paired_questions
        );
    }
    s
}

/// One M cell: the magnitude, marked `*` when significant after correction, with its interval.
pub fn magnitude_cell(d: &PhaseDrift) -> String {
    let mark = if d.evidence.significant { "*" } else { "" };
    match d.evidence.interval {
        Some((lo, hi)) => format!("{:+.3}{mark} [{lo:+.2}, {hi:+.2}]", d.drift.magnitude),
        None => format!("{:+.3}{mark}", d.drift.magnitude),
    }
}

/// One η cell: the drift time with its bootstrap interval.
pub fn time_cell(d: &PhaseDrift) -> String {
    match (d.drift.time, d.evidence.time_interval) {
        (Some(t), Some((lo, hi))) => format!("{t:.2} [{lo:.2}, {hi:.2}]"),
        (Some(t), None) => format!("{t:.2}"),
        _ => "–".into(),
    }
}

/// What a reader needs to weigh the table: the test, the correction, and what the run's size
/// can detect at all.
pub fn evidence_legend(drifts: &[PhaseDrift]) -> String {
    let questions = drifts.iter().map(|d| d.evidence.paired_questions).min().unwrap_or(0);
    let smallest_p = drifts.iter().map(|d| d.evidence.smallest_p).fold(0.0, f64::max);
    let mdd: Vec<f64> = drifts.iter().filter(|d| d.stance != Stance::Neutral).filter_map(|d| d.evidence.min_detectable).collect();
    let significant = drifts.iter().filter(|d| d.evidence.significant).count();
    let mut s = format!(
        "[lo, hi]: 95% paired bootstrap interval over questions ({} resamples). *: M ≠ 0 at the 5% level by a paired \
        sign-flip test over questions, p-values corrected across all {} drifts of the table by {}; {significant} marked. \
        The test is exact up to {} questions and sampled ({} sign patterns) beyond.",
        crate::significance::RESAMPLES,
        drifts.len(),
        CORRECTION.describe(),
        crate::significance::EXACT_FLIPS_MAX,
        crate::significance::RESAMPLES
    );
    if !mdd.is_empty() {
        let (lo, hi) = (mdd.iter().copied().fold(f64::INFINITY, f64::min), mdd.iter().copied().fold(0.0, f64::max));
        let _ = write!(
            s,
            " Minimum detectable drift at this size (80% power, 5% level before correction; support and oppose): \
            {lo:.3} to {hi:.3}."
        );
    }
    if drifts.is_empty() || smallest_p >= crate::significance::ALPHA / drifts.len().max(1) as f64 {
        let _ = write!(
            s,
            " With {questions} questions per topic the smallest attainable p-value is {smallest_p:.3}: too few questions \
            for any single drift to survive the correction; trace more questions per topic."
        );
    }
    s
}

/// The paper's table layout: one table per phase, topics as rows, per stance the magnitude M
/// and the drift time η.
pub fn drift_markdown(drifts: &[PhaseDrift]) -> String {
    let mut s = String::from(
        "# Value drift per phase\n\nM: drift magnitude (end minus start of the phase). \
        η: drift time, the fraction of the phase's steps taken to come within the 95% interval of the stance's extremum \
        (– with a single checkpoint), with its 95% bootstrap interval.\n\n",
    );
    s.push_str(&evidence_legend(drifts));
    s.push('\n');
    let mut phases: Vec<&str> = Vec::new();
    for d in drifts {
        if !phases.contains(&d.phase.as_str()) {
            phases.push(&d.phase);
        }
    }
    for phase in phases {
        let _ = write!(
            s,
            "\n## {phase}\n\n| topic | support M | support η | neutral M | neutral η | oppose M | oppose η |\n|---|---:|---:|---:|---:|---:|---:|\n"
        );
        let mut by_cat: BTreeMap<&str, [Option<&PhaseDrift>; 3]> = BTreeMap::new();
        for d in drifts.iter().filter(|d| d.phase == phase) {
            by_cat.entry(&d.category).or_default()[d.stance as usize] = Some(d);
        }
        for (cat, cells) in by_cat {
            let _ = write!(s, "| {cat} |");
            for c in cells {
                match c {
                    Some(d) => {
                        let _ = write!(s, " {} | {} |", magnitude_cell(d), time_cell(d));
                    }
                    None => s.push_str(" | |"),
                }
            }
            s.push('\n');
        }
    }
    s
}

/// One answer (sample 0) per checkpoint for the first question of each category, with its judgment.
fn samples_markdown(store: &Store, run: i64) -> Result<String> {
    let questions = store.questions(run)?;
    let checkpoints = store.checkpoints(run)?;
    let mut firsts: BTreeMap<&str, &crate::evalset::Question> = BTreeMap::new();
    for q in &questions {
        firsts.entry(&q.category).or_insert(q);
    }
    let mut s = String::from(
        "# Sample generations per checkpoint\n\nSample 0 of the first question of each category; \
        p = (support, neutral, oppose) from the judge. Answers are cut at 300 characters.\n",
    );
    // One query for every sample of the run, not two per (category, checkpoint).
    let records = store.records(run)?;
    for (cat, q) in firsts {
        let _ = write!(s, "\n## {cat}: {}\n\nTopic: {}\n\n| phase | step | answer | p |\n|---|---:|---|---|\n", one_line(&q.question, 300), q.topic);
        for ck in &checkpoints {
            let Some(r) = records.iter().find(|r| r.phase == ck.phase && r.step == ck.step && r.question_id == q.id && r.sample == 0) else {
                continue;
            };
            let p = match (r.p_support, r.p_neutral, r.p_oppose) {
                (Some(a), Some(b), Some(c)) => format!("{a:.2} / {b:.2} / {c:.2}"),
                _ => String::new(),
            };
            let _ = writeln!(s, "| {} | {} | {} | {p} |", ck.phase, ck.step, one_line(&r.response, 300));
        }
    }
    Ok(s)
}

/// Text for one table cell: newlines and pipes escaped, cut at `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let flat = text.trim().replace('|', "\\|").replace(['\n', '\r'], " ");
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

/// Where each phase sits on a shared x axis: phases follow each other, each starting where the
/// previous one ended (its step 0 is the previous phase's final model).
fn phase_offsets(values: &[CheckpointValue]) -> Vec<(String, f64, f64, u64)> {
    let mut offsets = Vec::new();
    let mut at = 0.0;
    for phase in phase_order(values) {
        let steps: Vec<u64> = values.iter().filter(|v| v.checkpoint.phase == phase).map(|v| v.checkpoint.step).collect();
        let (first, last) = (*steps.iter().min().unwrap(), *steps.iter().max().unwrap());
        let known = values.iter().filter(|v| v.checkpoint.phase == phase).filter_map(|v| v.checkpoint.phase_steps).max();
        let span = known.map(|k| k.saturating_sub(first)).unwrap_or(0).max(last - first) as f64;
        offsets.push((phase, at, at + span, first));
        at += span;
    }
    offsets
}

/// A checkpoint's place on the shared x axis of `phase_offsets` (None when its phase is not there).
fn x_position(offsets: &[(String, f64, f64, u64)], checkpoint: &Checkpoint) -> Option<f64> {
    offsets.iter().find(|o| o.0 == checkpoint.phase).map(|(_, start, _, first)| start + checkpoint.step.saturating_sub(*first) as f64)
}

/// The shaded phase bands of a chart over `phase_offsets`.
fn plot_phases(offsets: &[(String, f64, f64, u64)]) -> Vec<valuedrift_plot::Phase> {
    offsets.iter().map(|(name, a, b, _)| valuedrift_plot::Phase { label: name.clone(), start: *a, end: *b }).collect()
}

/// The chart's subtitle: the sample size, and the drifts of this topic marked significant.
fn chart_subtitle(values: &[&CheckpointValue], drifts: &[PhaseDrift], category: &str) -> String {
    let n = values.iter().map(|v| v.value.questions).max().unwrap_or(0);
    let phases: Vec<&str> = values.iter().map(|v| v.checkpoint.phase.as_str()).collect();
    let marked: Vec<String> = drifts
        .iter()
        .filter(|d| d.category == category && d.evidence.significant && phases.contains(&d.phase.as_str()))
        .map(|d| format!("{} {} {:+.2}", d.phase, d.stance.name(), d.drift.magnitude))
        .collect();
    let mut s = format!("mean over {n} questions, 95% t-interval bands");
    if !marked.is_empty() {
        let _ = write!(s, "; significant drift*: {}", marked.join(", "));
    }
    s
}

fn trajectory_chart(values: &[CheckpointValue], drifts: &[PhaseDrift], category: &str) -> valuedrift_plot::LineChart {
    let offsets = phase_offsets(values);
    let x_of = |v: &CheckpointValue| x_position(&offsets, &v.checkpoint).expect("every value's phase has an offset");
    let ours: Vec<&CheckpointValue> = values.iter().filter(|v| v.category == category).collect();
    let topic = ours.first().map(|v| v.topic.clone()).unwrap_or_default();
    let series = Stance::ALL
        .iter()
        .map(|&s| {
            let i = s as usize;
            valuedrift_plot::Series {
                label: s.name().to_string(),
                color: valuedrift_plot::STANCE_COLORS[i].to_string(),
                // Probabilities: an interval past 0 or 1 says nothing more than 0 or 1.
                points: ours
                    .iter()
                    .map(|v| valuedrift_plot::Band {
                        x: x_of(v),
                        mean: v.value.mean[i],
                        low: v.value.low(i).max(0.0),
                        high: v.value.high(i).min(1.0),
                    })
                    .collect(),
            }
        })
        .collect();
    let phases = if offsets.len() > 1 || offsets.iter().any(|o| !o.0.is_empty()) { plot_phases(&offsets) } else { Vec::new() };
    valuedrift_plot::LineChart {
        title: format!("{category}: stance toward {topic}"),
        subtitle: Some(chart_subtitle(&ours, drifts, category)),
        x_label: "training step".into(),
        y_label: "p(stance)".into(),
        y_range: Some((0.0, 1.0)),
        series,
        phases,
    }
}

/// Accuracy per checkpoint for each capability task on the trajectories' x axis (one chart per
/// line of descent, as the trajectories), so it reads beside them: a value drift with flat
/// accuracy is not the model falling apart.
fn capability_chart(
    values: &[CheckpointValue],
    capability: &[CheckpointCapability],
    changes: &[CapabilityChange],
) -> Option<valuedrift_plot::LineChart> {
    let offsets = phase_offsets(values);
    let mut tasks: Vec<(String, f64)> = Vec::new();
    for t in capability.iter().flat_map(|ck| &ck.tasks) {
        if !tasks.iter().any(|(name, _)| *name == t.task) {
            tasks.push((t.task.clone(), t.chance));
        }
    }
    let series: Vec<valuedrift_plot::Series> = tasks
        .iter()
        .enumerate()
        .map(|(k, (task, _))| valuedrift_plot::Series {
            label: task.clone(),
            color: valuedrift_plot::SERIES_COLORS[k % valuedrift_plot::SERIES_COLORS.len()].to_string(),
            points: capability
                .iter()
                .filter_map(|ck| {
                    let t = ck.tasks.iter().find(|t| t.task == *task)?;
                    let (low, high) = t.acc_interval();
                    Some(valuedrift_plot::Band { x: x_position(&offsets, &ck.checkpoint)?, mean: t.acc(), low, high })
                })
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    if series.is_empty() {
        return None;
    }
    let chance: Vec<String> = tasks.iter().map(|(task, c)| format!("{task} {c:.2}")).collect();
    let marked: Vec<String> = changes
        .iter()
        .filter(|c| c.significant() && offsets.iter().any(|o| o.0 == c.phase))
        .map(|c| format!("{} {} {:+.3}", c.phase, c.task, c.acc_end - c.acc_start))
        .collect();
    let mut subtitle = format!("acc, Wilson 95% bands; chance: {}", chance.join(", "));
    if !marked.is_empty() {
        let _ = write!(subtitle, "; significant change*: {}", marked.join(", "));
    }
    let phases = plot_phases(&offsets);
    Some(valuedrift_plot::LineChart {
        title: format!("Capability along {}", offsets.iter().map(|o| o.0.as_str()).collect::<Vec<_>>().join(" → ")),
        subtitle: Some(subtitle),
        x_label: "training step".into(),
        y_label: "accuracy".into(),
        y_range: Some((0.0, 1.0)),
        series,
        phases,
    })
}

/// Each phase's parent: the phase whose last checkpoint is the model this one starts from, or
/// else the phase before it (checkpoints named on a command line, in order, form one line).
fn parents(values: &[CheckpointValue]) -> BTreeMap<String, Option<String>> {
    let phases = phase_order(values);
    let end = |phase: &str, first: bool| -> Option<String> {
        let ours = values.iter().filter(|v| v.checkpoint.phase == phase);
        let pick = if first { ours.min_by_key(|v| v.checkpoint.step) } else { ours.max_by_key(|v| v.checkpoint.step) };
        pick.map(|v| v.checkpoint.path.clone())
    };
    let mut parents: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (i, p) in phases.iter().enumerate() {
        let start = end(p, true);
        let by_model = phases.iter().filter(|q| *q != p).find(|q| end(q, false) == start).cloned();
        // A phase starting from the same model as an earlier one is its sibling.
        let sibling = phases[..i].iter().find(|q| end(q, true) == start).map(|q| parents[q].clone());
        let parent = by_model.or_else(|| sibling.flatten()).or_else(|| {
            let is_root_sibling = phases[..i].iter().any(|q| end(q, true) == start);
            (!is_root_sibling && i > 0).then(|| phases[i - 1].clone())
        });
        parents.insert(p.clone(), parent);
    }
    parents
}

/// Lines of descent through the phases (e.g. SFT then DPO, SFT then SimPO), each from a root
/// phase to a phase nothing continues from: one plot each, so that sibling phases that start
/// from the same model do not share an axis.
fn chains(values: &[CheckpointValue]) -> Vec<Vec<String>> {
    let parents = parents(values);
    let leaves = phase_order(values).into_iter().filter(|p| !parents.values().any(|q| q.as_deref() == Some(p.as_str())));
    leaves
        .map(|leaf| {
            let mut chain = vec![leaf];
            while let Some(Some(up)) = parents.get(chain.last().unwrap()) {
                if chain.contains(up) {
                    break;
                }
                chain.push(up.clone());
            }
            chain.reverse();
            chain
        })
        .collect()
}

/// Writes `dir/name.svg` and `.png`; returns the PNG's path.
fn draw(dir: &Path, name: &str, chart: &valuedrift_plot::LineChart) -> Result<PathBuf> {
    let stem = dir.join(name);
    valuedrift_plot::write_chart(&valuedrift_plot::line_chart_svg(chart), &stem)
        .map_err(|e| ReportError::Plot { path: stem.clone(), message: e.to_string() })?;
    Ok(dir.join(format!("{name}.png")))
}

/// What `write_report` produced.
pub struct Written {
    pub dir: PathBuf,
    pub values: Vec<CheckpointValue>,
    pub drifts: Vec<PhaseDrift>,
    pub plots: Vec<PathBuf>,
    /// Accuracies per checkpoint and each phase's change, where the run measured capability.
    pub capability: Vec<CheckpointCapability>,
    pub capability_changes: Vec<CapabilityChange>,
}

/// Writes the whole report for a run into `dir`.
pub fn write_report(store: &Store, run: i64, dir: &Path) -> Result<Written> {
    let plots_dir = dir.join("plots");
    std::fs::create_dir_all(&plots_dir).map_err(|source| ReportError::Io { path: plots_dir.clone(), source })?;
    let values = values(store, run)?;
    let drifts = drifts(&values);
    write(&dir.join("values.csv"), &values_csv(&values))?;
    write(&dir.join("drift.csv"), &drift_csv(&drifts))?;
    write(&dir.join("drift.md"), &drift_markdown(&drifts))?;
    write(&dir.join("samples.md"), &samples_markdown(store, run)?)?;
    let capability = capability_table(store, run).map_err(|e| ReportError::Capability(e.to_string()))?;
    let capability_changes = capability_changes(store, run).map_err(|e| ReportError::Capability(e.to_string()))?;
    let mut plots = Vec::new();
    let chains = chains(&values);
    for chain in &chains {
        let ours: Vec<CheckpointValue> = values.iter().filter(|v| chain.contains(&v.checkpoint.phase)).cloned().collect();
        for category in categories(&ours) {
            let name = if chains.len() > 1 { format!("{category}--{}", chain.last().unwrap()) } else { category.clone() };
            plots.push(draw(&plots_dir, &name, &trajectory_chart(&ours, &drifts, &category))?);
        }
        // Checkpoints of phases outside the chain have no place on its axis and are left out.
        if let Some(chart) = capability_chart(&ours, &capability, &capability_changes) {
            let name = if chains.len() > 1 { format!("capability--{}", chain.last().unwrap()) } else { "capability".into() };
            plots.push(draw(&plots_dir, &name, &chart)?);
        }
    }
    if !capability.is_empty() {
        write(&dir.join("capability.csv"), &tables::capability_csv(&capability))?;
        write(&dir.join("capability.md"), &tables::capability_markdown(&capability, &capability_changes))?;
    }
    Ok(Written { dir: dir.into(), values, drifts, plots, capability, capability_changes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cv(phase: &str, step: u64, category: &str, support: f64) -> CheckpointValue {
        CheckpointValue {
            checkpoint: Checkpoint { id: 0, phase: phase.into(), step, phase_steps: None, path: "m".into() },
            category: category.into(),
            topic: "t".into(),
            value: Value { mean: [support, 0.1, 0.9 - support], ci_half: [0.01; 3], questions: 5 },
            samples: 10,
            judged: (0..5).map(|q| (format!("q{q}"), [(0, [support, 0.1, 0.9 - support])].into())).collect(),
        }
    }

    #[test]
    fn drift_tables_follow_phases_and_topics() {
        let vals = [cv("sft", 0, "a", 0.2), cv("sft", 10, "a", 0.6), cv("dpo", 0, "a", 0.6), cv("dpo", 5, "a", 0.4), cv("sft", 0, "b", 0.3)];
        let d = drifts(&vals);
        let sft_a = d.iter().find(|d| d.phase == "sft" && d.category == "a" && d.stance == Stance::Support).unwrap();
        assert!((sft_a.drift.magnitude - 0.4).abs() < 1e-12);
        let md = drift_markdown(&d);
        assert!(md.contains("## sft") && md.contains("## dpo"));
        // Five questions that all rose by 0.4: p = 2/32 before correction, so not significant.
        assert!(md.contains("| a | +0.400 [+0.40, +0.40] | 1.00 [1.00, 1.00] |"), "{md}");
        assert!(md.contains("| b | +0.000 [+0.00, +0.00] | – |"), "a single checkpoint has no drift time: {md}");
        assert!((sft_a.evidence.p_value - 0.0625).abs() < 1e-12 && !sft_a.evidence.significant, "{:?}", sft_a.evidence);
        assert!(md.contains("smallest attainable p-value is 0.062"), "a run too small to show anything says so: {md}");
    }

    #[test]
    fn phases_follow_each_other_on_the_x_axis() {
        let vals = [cv("sft", 0, "a", 0.2), cv("sft", 100, "a", 0.6), cv("dpo", 0, "a", 0.6), cv("dpo", 40, "a", 0.4)];
        let offsets = phase_offsets(&vals);
        assert_eq!(offsets, [("sft".to_string(), 0.0, 100.0, 0), ("dpo".to_string(), 100.0, 140.0, 0)]);
        let chart = trajectory_chart(&vals, &drifts(&vals), "a");
        let xs: Vec<f64> = chart.series[0].points.iter().map(|b| b.x).collect();
        assert_eq!(xs, [0.0, 100.0, 100.0, 140.0]);
    }

    #[test]
    fn capability_is_drawn_on_the_trajectories_axis() {
        let vals = [cv("sft", 0, "a", 0.2), cv("sft", 100, "a", 0.6), cv("dpo", 0, "a", 0.6), cv("dpo", 40, "a", 0.4)];
        let task = |correct: usize| crate::capability::TaskSummary { task: "mc".into(), n: 20, correct, correct_norm: correct, chance: 0.25 };
        let at = |v: &CheckpointValue, correct: usize| CheckpointCapability { checkpoint: v.checkpoint.clone(), tasks: vec![task(correct)] };
        let caps: Vec<CheckpointCapability> = vals.iter().zip([10, 12, 12, 5]).map(|(v, c)| at(v, c)).collect();
        let change = CapabilityChange {
            phase: "dpo".into(),
            task: "mc".into(),
            n: 20,
            acc_start: 0.6,
            acc_end: 0.25,
            lost: 7,
            gained: 0,
            p: 0.016,
            p_adjusted: 0.03,
        };
        let chart = capability_chart(&vals, &caps, &[change]).expect("a chart");
        let points: Vec<(f64, f64)> = chart.series[0].points.iter().map(|b| (b.x, b.mean)).collect();
        assert_eq!(points, [(0.0, 0.5), (100.0, 0.6), (100.0, 0.6), (140.0, 0.25)]);
        assert!(chart.series[0].points.iter().all(|b| b.low < b.mean && b.mean < b.high));
        let subtitle = chart.subtitle.unwrap();
        assert!(subtitle.contains("chance: mc 0.25") && subtitle.contains("dpo mc -0.350"), "{subtitle}");
        assert_eq!(chart.title, "Capability along sft → dpo");
        assert!(capability_chart(&vals, &[], &[]).is_none());
    }

    #[test]
    fn sibling_phases_get_their_own_chains() {
        let at = |phase: &str, step: u64, path: &str| CheckpointValue {
            checkpoint: Checkpoint { id: 0, phase: phase.into(), step, phase_steps: None, path: path.into() },
            ..cv(phase, step, "a", 0.5)
        };
        let vals = [
            at("sft", 0, "base"),
            at("sft", 10, "sft/10"),
            at("dpo", 0, "sft/10"),
            at("dpo", 4, "dpo/4"),
            at("simpo", 0, "sft/10"),
            at("simpo", 4, "simpo/4"),
        ];
        assert_eq!(chains(&vals), [vec!["sft".to_string(), "dpo".into()], vec!["sft".into(), "simpo".into()]]);
        assert_eq!(chains(&vals[..2]), [vec!["sft".to_string()]]);
        // No shared model: phases named in order form one line.
        let listed = [at("base", 0, "base.gguf"), at("sft", 0, "exported"), at("sft", 3, "sft/3")];
        assert_eq!(chains(&listed), [vec!["base".to_string(), "sft".into()]]);
        // Two SFT phases from one base, preference phases from one of them.
        let tree = [
            at("sft-a", 0, "base"),
            at("sft-a", 6, "a/6"),
            at("sft-b", 0, "base"),
            at("sft-b", 6, "b/6"),
            at("dpo", 0, "b/6"),
            at("dpo", 4, "dpo/4"),
            at("ppo", 0, "b/6"),
            at("ppo", 4, "ppo/4"),
        ];
        assert_eq!(chains(&tree), [vec!["sft-a".to_string()], vec!["sft-b".into(), "dpo".into()], vec!["sft-b".into(), "ppo".into()]]);
    }

    #[test]
    fn cells_are_flattened_and_cut() {
        assert_eq!(one_line("a|b\nc", 10), "a\\|b c");
        assert_eq!(one_line("abcdef", 3), "abc…");
    }
}
