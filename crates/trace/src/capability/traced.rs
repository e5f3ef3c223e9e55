//! Capability along a run: every checkpoint's items scored into the store (an interrupted pass
//! resumes item by item), then read back as per-checkpoint accuracies, with each phase's change
//! from its first to its last checkpoint tested on the paired items (exact McNemar,
//! Benjamini-Hochberg across the table).

use std::collections::BTreeMap;
use std::path::Path;

use valuedrift_engine::LanguageModel;

use super::{score_requests, summarize, ItemResult, McItem, Request, TaskSummary};
use crate::pipeline::{Observer, Result, TraceError};
use crate::significance::{benjamini_hochberg, mcnemar_exact};
use crate::store::{Checkpoint, Store};

/// Items scored per forward batch and stored together.
const ITEMS_PER_CHUNK: usize = 16;

/// What a run measures at each checkpoint.
pub struct CapabilityPlan {
    pub items: Vec<McItem>,
    pub requests: Vec<Request>,
    pub batch_tokens: usize,
}

/// Scores what each checkpoint of the run still lacks; a checkpoint's model is loaded only then.
pub fn trace_capability(
    store: &mut Store,
    run: i64,
    plan: &CapabilityPlan,
    load: &dyn Fn(&Path) -> Result<LanguageModel>,
    obs: &mut dyn Observer,
) -> Result<()> {
    for ck in store.checkpoints(run)? {
        let done = store.capability_scored(run, ck.id)?;
        let todo: Vec<usize> = (0..plan.items.len()).filter(|&i| !done.contains(&(plan.items[i].task.clone(), plan.items[i].id.clone()))).collect();
        if todo.is_empty() {
            continue;
        }
        let lm = load(Path::new(&ck.path))?;
        obs.stage(&format!("capability {} step {}", ck.phase, ck.step), todo.len() as u64);
        for chunk in todo.chunks(ITEMS_PER_CHUNK) {
            let items: Vec<McItem> = chunk.iter().map(|&i| plan.items[i].clone()).collect();
            let requests: Vec<Request> = chunk.iter().map(|&i| plan.requests[i].clone()).collect();
            let results = score_requests(&lm, &items, &requests, plan.batch_tokens).map_err(|e| TraceError::Input(e.to_string()))?;
            let rows: Vec<(String, String, String)> =
                results.iter().map(|r| (r.task.clone(), r.id.clone(), serde_json::to_string(r).expect("plain data"))).collect();
            store.add_capability(run, ck.id, &rows)?;
            obs.advance(chunk.len() as u64, "");
        }
        obs.finish_stage();
    }
    Ok(())
}

/// One checkpoint's accuracies.
pub struct CheckpointCapability {
    pub checkpoint: Checkpoint,
    pub tasks: Vec<TaskSummary>,
}

/// A phase's change in one task: its first against its last checkpoint on the same items.
pub struct CapabilityChange {
    pub phase: String,
    pub task: String,
    pub n: usize,
    pub acc_start: f64,
    pub acc_end: f64,
    /// Items right at the start and wrong at the end, and the other way round.
    pub lost: usize,
    pub gained: usize,
    pub p: f64,
    pub p_adjusted: f64,
}

impl CapabilityChange {
    pub fn significant(&self) -> bool {
        self.p_adjusted < 0.05
    }
}

type ResultsByCheckpoint = BTreeMap<i64, Vec<ItemResult>>;

fn results(store: &Store, run: i64) -> Result<ResultsByCheckpoint> {
    let mut by: ResultsByCheckpoint = BTreeMap::new();
    for (ck, json) in store.capability(run)? {
        let r: ItemResult = serde_json::from_str(&json).map_err(|e| TraceError::Input(format!("capability result of checkpoint {ck}: {e}")))?;
        by.entry(ck).or_default().push(r);
    }
    Ok(by)
}

/// Accuracies per checkpoint, in the run's checkpoint order (checkpoints without results left out).
pub fn capability_table(store: &Store, run: i64) -> Result<Vec<CheckpointCapability>> {
    let mut by = results(store, run)?;
    Ok(store
        .checkpoints(run)?
        .into_iter()
        .filter_map(|ck| by.remove(&ck.id).map(|r| CheckpointCapability { tasks: summarize(&r), checkpoint: ck }))
        .collect())
}

/// Each phase's change per task (item-level tasks only, not groups), adjusted across the table.
pub fn capability_changes(store: &Store, run: i64) -> Result<Vec<CapabilityChange>> {
    let by = results(store, run)?;
    let checkpoints = store.checkpoints(run)?;
    let mut phases: Vec<&str> = checkpoints.iter().map(|c| c.phase.as_str()).collect();
    phases.dedup();
    let mut changes = Vec::new();
    for phase in phases {
        let of_phase: Vec<&Checkpoint> = checkpoints.iter().filter(|c| c.phase == phase && by.contains_key(&c.id)).collect();
        let (Some(first), Some(last)) = (of_phase.first(), of_phase.last()) else { continue };
        if first.id == last.id {
            continue;
        }
        changes.extend(paired_changes(phase, &by[&first.id], &by[&last.id]));
    }
    let adjusted = benjamini_hochberg(&changes.iter().map(|c| c.p).collect::<Vec<_>>());
    for (c, p) in changes.iter_mut().zip(adjusted) {
        c.p_adjusted = p;
    }
    Ok(changes)
}

fn paired_changes(phase: &str, start: &[ItemResult], end: &[ItemResult]) -> Vec<CapabilityChange> {
    let end_by: BTreeMap<(&str, &str), &ItemResult> = end.iter().map(|r| ((r.task.as_str(), r.id.as_str()), r)).collect();
    let mut tasks: BTreeMap<&str, (usize, usize, usize, usize, usize)> = BTreeMap::new();
    for s in start {
        let Some(e) = end_by.get(&(s.task.as_str(), s.id.as_str())) else { continue };
        let t = tasks.entry(s.task.as_str()).or_default();
        t.0 += 1;
        t.1 += s.correct() as usize;
        t.2 += e.correct() as usize;
        t.3 += (s.correct() && !e.correct()) as usize;
        t.4 += (!s.correct() && e.correct()) as usize;
    }
    tasks
        .into_iter()
        .map(|(task, (n, a, b, lost, gained))| CapabilityChange {
            phase: phase.to_string(),
            task: task.to_string(),
            n,
            acc_start: a as f64 / n as f64,
            acc_end: b as f64 / n as f64,
            lost,
            gained,
            p: mcnemar_exact(lost, gained),
            p_adjusted: f64::NAN,
        })
        .collect()
}
