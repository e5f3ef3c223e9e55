//! The training loop shared by SFT, the reward model, DPO and SimPO: an epoch plan of shuffled
//! global batches, each cut into length-bucketed micro-batches whose gradients accumulate, then
//! clipping, the learning-rate schedule and one AdamW update; metrics to `metrics.jsonl`;
//! checkpoints every N steps and at the end; resume from the newest checkpoint.
//!
//! Losses are normalized over the global batch (each micro-batch's loss is divided by the
//! batch's total weight: answer tokens for SFT, pairs for preference losses), so accumulation
//! gives exactly the gradient of the whole batch whatever the micro-batch size.

use crate::accumulate::Accumulated;
use crate::checkpoint::{self, Extras, TrainerState, WeightsDtype};
use crate::schedule::{Decay, Schedule};
use crate::{file_err, Result, TrainError};
use candle_core::{Tensor, Var};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use valuedrift_engine::optim::{clip_scale, grad_norm, AdamW, AdamWConfig};
use valuedrift_engine::{LanguageModel, Model};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub phase: String,
    pub algo: String,
    pub lr: f64,
    pub warmup_ratio: f64,
    pub decay: Decay,
    pub weight_decay: f64,
    pub epochs: u32,
    /// Stop after this many updates even if epochs remain.
    pub max_steps: Option<u64>,
    /// Examples (sequences or pairs) per update.
    pub global_batch: usize,
    /// Padded tokens per micro-batch (at least one example each): bounds memory.
    pub micro_tokens: usize,
    pub max_grad_norm: Option<f64>,
    /// Save a checkpoint every this many updates (and always at the end).
    pub save_every: u64,
    pub seed: u64,
    pub max_len: usize,
    /// Algorithm-specific settings (beta, gamma, ...), recorded and checked on resume.
    pub extra: serde_json::Value,
    /// The dtype checkpoints keep once compacted (runs recorded before it existed were f32
    /// throughout and resume as bf16 runs: only the checkpoints still to come change).
    #[serde(default)]
    pub checkpoint_dtype: WeightsDtype,
}

/// One training objective over a fixed list of examples.
#[allow(clippy::len_without_is_empty)]
pub trait Objective {
    fn len(&self) -> usize;
    /// Padded length of example i (for micro-batching).
    fn tokens(&self, i: usize) -> usize;
    /// Its share of the batch normalization (answer tokens for SFT, 1 for a pair).
    fn weight(&self, i: usize) -> f64;
    /// The micro-batch's loss divided by `denominator`, and metrics summed over the micro-batch
    /// (the loop divides them by the batch's example count, except `loss`, which is normalized).
    fn micro_loss(&mut self, model: &Model, batch: &[usize], denominator: f64) -> Result<(Tensor, Vec<(&'static str, f64)>)>;
    /// Trainable tensors besides the language model (heads), saved with each checkpoint.
    fn heads(&self) -> Vec<(&'static str, Var)> {
        Vec::new()
    }
}

/// How the loop reports (progress bars live in the binary).
pub trait Progress {
    fn start(&mut self, total: u64, done: u64);
    fn step(&mut self, step: u64, metrics: &serde_json::Value);
    fn saved(&mut self, dir: &Path);
}

pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _: u64, _: u64) {}
    fn step(&mut self, _: u64, _: &serde_json::Value) {}
    fn saved(&mut self, _: &Path) {}
}

/// The global batches of the whole run, in order: each epoch a fresh shuffle from the seed.
pub fn plan(n: usize, cfg: &TrainConfig) -> Vec<Vec<usize>> {
    let mut batches = Vec::new();
    for epoch in 0..cfg.epochs {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(cfg.seed.wrapping_add(epoch as u64)));
        batches.extend(order.chunks(cfg.global_batch.max(1)).map(<[usize]>::to_vec));
    }
    if let Some(max) = cfg.max_steps {
        batches.truncate(max as usize);
    }
    batches
}

/// Cuts a global batch into micro-batches of similar lengths within the token budget.
pub fn micro_batches(batch: &[usize], tokens: impl Fn(usize) -> usize, budget: usize) -> Vec<Vec<usize>> {
    let lens: Vec<usize> = batch.iter().map(|&i| tokens(i)).collect();
    valuedrift_engine::score::length_batches(&lens, budget).into_iter().map(|idx| idx.into_iter().map(|k| batch[k]).collect()).collect()
}

/// Where a run starts: fresh, from the newest resumable checkpoint in `out`, or nowhere: the run
/// in `out` has finished.
pub enum Start {
    Fresh,
    Resume { dir: std::path::PathBuf, state: TrainerState },
    Finished { dir: std::path::PathBuf, state: TrainerState },
}

/// The checkpoint to resume from, if any; a checkpoint made with other settings is an error.
pub fn find_start(out: &Path, cfg: &TrainConfig) -> Result<Start> {
    if let Some((dir, state)) = checkpoint::finished(out) {
        check_same_settings(out, &dir, &state, cfg)?;
        return Ok(Start::Finished { dir, state });
    }
    let Some((dir, state)) = checkpoint::resumable(out) else { return Ok(Start::Fresh) };
    check_same_settings(out, &dir, &state, cfg)?;
    Ok(Start::Resume { dir, state })
}

fn check_same_settings(out: &Path, dir: &Path, state: &TrainerState, cfg: &TrainConfig) -> Result<()> {
    let stored: TrainConfig =
        serde_json::from_value(state.config.clone()).map_err(|e| file_err(&dir.join("trainer_state.json"), format!("field 'config': {e}")))?;
    if &stored != cfg {
        let (a, b) = (serde_json::to_value(&stored).unwrap(), serde_json::to_value(cfg).unwrap());
        let key = a.as_object().unwrap().keys().find(|k| a[k.as_str()] != b[k.as_str()]).cloned().unwrap_or_default();
        return Err(TrainError::Input(format!(
            "{} holds a run with {key} = {}, not {}: resume with the same settings or use another output directory",
            out.display(),
            a[key.as_str()],
            b[key.as_str()]
        )));
    }
    Ok(())
}

/// Runs (or resumes) training. `lm` must already hold the weights to start from (the base, or
/// the resumed checkpoint's); the optimizer and log are restored here.
pub fn train(
    lm: &mut LanguageModel,
    objective: &mut dyn Objective,
    cfg: &TrainConfig,
    out: &Path,
    start: Start,
    progress: &mut dyn Progress,
    stop: &AtomicBool,
) -> Result<TrainerState> {
    std::fs::create_dir_all(out).map_err(|e| file_err(out, e))?;
    if objective.len() == 0 {
        return Err(TrainError::Input("no training examples".into()));
    }
    let batches = plan(objective.len(), cfg);
    let total = batches.len() as u64;
    let steps_per_epoch = objective.len().div_ceil(cfg.global_batch.max(1)) as f64;
    let schedule = Schedule::new(cfg.lr, cfg.warmup_ratio, total, cfg.decay);
    let mut params: Vec<Var> = lm.model.params().iter().map(|(_, v)| v.clone()).collect();
    params.extend(objective.heads().into_iter().map(|(_, v)| v));
    let mut opt = AdamW::new(params.clone(), AdamWConfig { lr: cfg.lr, weight_decay: cfg.weight_decay, ..Default::default() })?;
    let mut state = TrainerState {
        global_step: 0,
        max_steps: total,
        phase: cfg.phase.clone(),
        algo: cfg.algo.clone(),
        epoch: 0.0,
        log_history: Vec::new(),
        config: serde_json::to_value(cfg).expect("plain data"),
    };
    match start {
        Start::Fresh => {}
        Start::Resume { dir, state: saved } => {
            checkpoint::restore_optimizer(&dir, &mut opt, lm.model.device())?;
            state = saved;
        }
        Start::Finished { state, .. } => return Ok(state),
    }
    rewrite_metrics(out, &state.log_history)?;
    progress.start(total, state.global_step);
    while state.global_step < total {
        if stop.load(Ordering::Relaxed) {
            save(lm, objective, &state, &opt, cfg, out, progress)?;
            return Err(TrainError::Stopped(state.global_step));
        }
        let step = state.global_step;
        let batch = &batches[step as usize];
        let metrics = update_step(lm, objective, &params, &mut opt, batch, schedule.lr(step), cfg.max_grad_norm, cfg.micro_tokens)?;
        state.global_step += 1;
        state.epoch = state.global_step as f64 / steps_per_epoch;
        let mut entry = serde_json::json!({"step": state.global_step, "epoch": state.epoch});
        for (k, v) in metrics {
            entry[k] = serde_json::json!(v);
        }
        append_metric(out, &entry)?;
        progress.step(state.global_step, &entry);
        state.log_history.push(entry);
        if state.global_step.is_multiple_of(cfg.save_every.max(1)) || state.global_step == total {
            save(lm, objective, &state, &opt, cfg, out, progress)?;
        }
    }
    Ok(state)
}

fn save(
    lm: &LanguageModel,
    objective: &dyn Objective,
    state: &TrainerState,
    opt: &AdamW,
    cfg: &TrainConfig,
    out: &Path,
    progress: &mut dyn Progress,
) -> Result<()> {
    let heads = objective.heads().into_iter().map(|(n, v)| (n, v.as_tensor().clone())).collect();
    let extras = Extras { heads, optimizer: Some(opt), more_training_state: None, weights: cfg.checkpoint_dtype };
    let dir = checkpoint::save(out, lm, state, extras)?;
    progress.saved(&dir);
    Ok(())
}

/// One optimizer update on a global batch (micro-batches of at most `micro_tokens` padded
/// tokens); returns its metrics.
#[allow(clippy::too_many_arguments)]
pub fn update_step(
    lm: &LanguageModel,
    objective: &mut dyn Objective,
    params: &[Var],
    opt: &mut AdamW,
    batch: &[usize],
    lr: f64,
    max_grad_norm: Option<f64>,
    micro_tokens: usize,
) -> Result<Vec<(&'static str, f64)>> {
    let denominator: f64 = batch.iter().map(|&i| objective.weight(i)).sum();
    let mut acc = Accumulated::default();
    let mut loss = 0.0;
    let mut sums: Vec<(&'static str, f64)> = Vec::new();
    for micro in micro_batches(batch, |i| objective.tokens(i), micro_tokens) {
        let (l, metrics) = objective.micro_loss(&lm.model, &micro, denominator)?;
        loss += l.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        acc.add(params, valuedrift_engine::backward(&l)?)?;
        for (k, v) in metrics {
            match sums.iter_mut().find(|(name, _)| *name == k) {
                Some(slot) => slot.1 += v,
                None => sums.push((k, v)),
            }
        }
    }
    let norm = grad_norm(params, acc.grads())?;
    opt.set_lr(lr);
    opt.step(acc.grads(), clip_scale(norm, max_grad_norm))?;
    lm.model.weights_updated();
    let mut metrics = vec![("loss", loss), ("grad_norm", norm), ("lr", lr)];
    metrics.extend(sums.into_iter().map(|(k, v)| (k, v / batch.len() as f64)));
    Ok(metrics)
}

pub fn rewrite_metrics(out: &Path, history: &[serde_json::Value]) -> Result<()> {
    let path = out.join("metrics.jsonl");
    let text: String = history.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(&path, text).map_err(|e| file_err(&path, e))
}

pub fn append_metric(out: &Path, entry: &serde_json::Value) -> Result<()> {
    let path = out.join("metrics.jsonl");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| file_err(&path, e))?;
    writeln!(f, "{entry}").map_err(|e| file_err(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(global_batch: usize, epochs: u32, max_steps: Option<u64>) -> TrainConfig {
        TrainConfig {
            phase: "sft".into(),
            algo: "sft".into(),
            lr: 1e-5,
            warmup_ratio: 0.0,
            decay: Decay::Constant,
            weight_decay: 0.0,
            epochs,
            max_steps,
            global_batch,
            micro_tokens: 64,
            max_grad_norm: None,
            save_every: 1,
            seed: 3,
            max_len: 64,
            extra: serde_json::Value::Null,
            checkpoint_dtype: WeightsDtype::Bf16,
        }
    }

    #[test]
    fn plans_cover_each_epoch_once_and_depend_only_on_the_seed() {
        let p = plan(10, &cfg(4, 2, None));
        assert_eq!(p.len(), 6, "ceil(10 / 4) = 3 batches per epoch");
        let mut first: Vec<usize> = p[..3].concat();
        first.sort();
        assert_eq!(first, (0..10).collect::<Vec<_>>());
        assert_ne!(p[..3].concat(), p[3..].concat(), "each epoch reshuffles");
        assert_eq!(p, plan(10, &cfg(4, 2, None)));
        assert_eq!(plan(10, &cfg(4, 2, Some(4))).len(), 4);
    }

    #[test]
    fn micro_batches_respect_the_token_budget() {
        let lens = [10, 30, 12, 31, 5];
        let m = micro_batches(&[0, 1, 2, 3, 4], |i| lens[i], 64);
        let mut all: Vec<usize> = m.concat();
        all.sort();
        assert_eq!(all, [0, 1, 2, 3, 4]);
        for mb in &m {
            let longest = mb.iter().map(|&i| lens[i]).max().unwrap();
            assert!(longest * mb.len() <= 64 || mb.len() == 1);
        }
    }
}
