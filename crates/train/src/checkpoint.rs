//! Checkpoints: `OUT/checkpoint-N/` is a Hugging Face model directory (loadable by transformers,
//! vLLM and the tracer) plus `trainer_state.json` (global step, total steps, phase, the log so
//! far). The newest checkpoint of an unfinished run is written in f32 with `training/` (optimizer
//! moments, PPO's value model): what an exact resume needs. Once a newer checkpoint lands, or the
//! run finishes, a checkpoint is compacted: its weights are rewritten in the checkpoint dtype
//! (bf16 by default, as Hugging Face stores bf16 models) and `training/` is dropped.
//!
//! A checkpoint is written under a temporary name and renamed when complete, so a run killed
//! while saving leaves no half-written checkpoint behind.

use crate::{file_err, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use valuedrift_engine::optim::AdamW;
use valuedrift_engine::LanguageModel;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainerState {
    pub global_step: u64,
    pub max_steps: u64,
    pub phase: String,
    pub algo: String,
    pub epoch: f64,
    /// Every logged step so far: {"step", "loss", "lr", ...}.
    pub log_history: Vec<serde_json::Value>,
    /// The hyperparameters, checked on resume.
    pub config: serde_json::Value,
}

/// The dtype of a compacted checkpoint's model weights (they load as f32 either way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum WeightsDtype {
    /// Half the disk; rounding moves each weight by at most 2^-9 of itself.
    #[default]
    Bf16,
    F32,
}

pub fn checkpoint_dir(out: &Path, step: u64) -> PathBuf {
    out.join(format!("checkpoint-{step}"))
}

/// What a checkpoint carries besides the model: named extra tensors (a reward or value head) and,
/// for resuming, the optimizer and any further training state (PPO's value model), written into
/// the checkpoint's `training/` before it is renamed into place.
pub struct Extras<'a> {
    pub heads: Vec<(&'a str, Tensor)>,
    pub optimizer: Option<&'a AdamW>,
    pub more_training_state: Option<&'a WriteTrainingState<'a>>,
    /// What the weights become when the checkpoint is compacted.
    pub weights: WeightsDtype,
}

/// Writes further training state into the checkpoint's `training/` directory it is given.
pub type WriteTrainingState<'a> = dyn Fn(&Path) -> Result<()> + 'a;

pub fn save(out: &Path, lm: &LanguageModel, state: &TrainerState, extras: Extras) -> Result<PathBuf> {
    let dir = checkpoint_dir(out, state.global_step);
    let tmp = out.join(format!(".checkpoint-{}.partial", state.global_step));
    let _ = std::fs::remove_dir_all(&tmp);
    lm.save_hf(&tmp)?;
    write_json(&tmp.join("trainer_state.json"), &serde_json::to_value(state).expect("plain data"))?;
    if !extras.heads.is_empty() {
        let heads: HashMap<String, Tensor> = extras.heads.iter().map(|(n, t)| (n.to_string(), t.clone())).collect();
        save_tensors(&tmp.join("heads.safetensors"), &heads)?;
    }
    if is_finished(state) {
        // Nothing resumes from the last step: it is written compact, without training state.
        compact(&tmp, extras.weights)?;
    } else {
        write_training_state(&tmp.join("training"), &extras)?;
    }
    // Only a complete checkpoint appears under its name (a kill before this leaves the
    // previous one, with its training state, as the newest).
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).map_err(|e| file_err(&dir, e))?;
    for (step, older) in list(out) {
        if step < state.global_step && older.join("training").exists() {
            compact(&older, extras.weights)?;
        }
    }
    Ok(dir)
}

fn write_training_state(training: &Path, extras: &Extras) -> Result<()> {
    std::fs::create_dir_all(training).map_err(|e| file_err(training, e))?;
    if let Some(opt) = extras.optimizer {
        let mut tensors = HashMap::new();
        for (i, (m, v)) in opt.moments()?.into_iter().enumerate() {
            tensors.insert(format!("m.{i}"), m);
            tensors.insert(format!("v.{i}"), v);
        }
        save_tensors(&training.join("optimizer.safetensors"), &tensors)?;
        write_json(&training.join("optimizer.json"), &serde_json::json!({"steps_taken": opt.steps_taken()}))?;
    }
    if let Some(write) = extras.more_training_state {
        write(training)?;
    }
    Ok(())
}

/// Whether a run has taken all its steps (its checkpoints are then never resumed from).
pub fn is_finished(state: &TrainerState) -> bool {
    state.global_step >= state.max_steps
}

/// Rewrites a checkpoint that no resume will continue from: the weights in `dtype`, the training
/// state dropped. The weights are replaced atomically before `training/` goes, so a kill in
/// between leaves a checkpoint that is compacted again (to the same bytes) next time.
pub fn compact(dir: &Path, dtype: WeightsDtype) -> Result<()> {
    if dtype == WeightsDtype::Bf16 {
        let path = dir.join("model.safetensors");
        let tensors = load_tensors(&path, &Device::Cpu)?;
        let halved = tensors
            .into_iter()
            .map(|(name, t)| Ok((name, if t.dtype() == DType::F32 { t.to_dtype(DType::BF16)? } else { t })))
            .collect::<Result<HashMap<_, _>>>()?;
        valuedrift_engine::save_safetensors(&path, &halved)?;
        record_torch_dtype(dir, "bfloat16")?;
    }
    let training = dir.join("training");
    match std::fs::remove_dir_all(&training) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(file_err(&training, e)),
        _ => Ok(()),
    }
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(v).expect("json")).map_err(|e| file_err(path, e))
}

fn save_tensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let host: HashMap<String, Tensor> = tensors.iter().map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?))).collect::<Result<_>>()?;
    candle_core::safetensors::save(&host, path).map_err(|e| file_err(path, e))
}

pub fn load_tensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, device).map_err(|e| file_err(path, format!("unreadable safetensors ({e})")))
}

/// The checkpoints in `out`, by step.
pub fn list(out: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(out)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let step = e.file_name().to_str()?.strip_prefix("checkpoint-")?.parse().ok()?;
            Some((step, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// Removes every checkpoint in `out` but the newest; returns the bytes freed.
pub fn keep_only_final(out: &Path) -> Result<u64> {
    let mut all = list(out);
    all.pop();
    let mut freed = 0;
    for (_, dir) in all {
        freed += dir_bytes(&dir);
        std::fs::remove_dir_all(&dir).map_err(|e| file_err(&dir, e))?;
    }
    Ok(freed)
}

fn dir_bytes(dir: &Path) -> u64 {
    let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
    entries
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

pub fn read_state(dir: &Path) -> Result<TrainerState> {
    let path = dir.join("trainer_state.json");
    let text = std::fs::read_to_string(&path).map_err(|e| file_err(&path, e))?;
    serde_json::from_str(&text).map_err(|e| file_err(&path, format!("not a trainer state of ours ({e})")))
}

/// Names the stored dtype in config.json, as Hugging Face does, so loaders that honour it
/// (`torch_dtype="auto"`, vLLM) run the model as stored.
fn record_torch_dtype(dir: &Path, dtype: &str) -> Result<()> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| file_err(&path, e))?;
    let mut config: serde_json::Value = serde_json::from_str(&text).map_err(|e| file_err(&path, e))?;
    config["torch_dtype"] = serde_json::json!(dtype);
    // Replaced whole, so a kill leaves the old file or the new one, never half of either.
    let tmp = dir.join("config.json.tmp");
    write_json(&tmp, &config)?;
    std::fs::rename(&tmp, &path).map_err(|e| file_err(&path, e))
}

/// The newest checkpoint, with its state, if it ends a finished run.
pub fn finished(out: &Path) -> Option<(PathBuf, TrainerState)> {
    let (_, dir) = list(out).pop()?;
    let state = read_state(&dir).ok()?;
    is_finished(&state).then_some((dir, state))
}

/// The newest checkpoint that can be resumed from (it has its optimizer state).
pub fn resumable(out: &Path) -> Option<(PathBuf, TrainerState)> {
    list(out)
        .into_iter()
        .rev()
        .find(|(_, d)| d.join("training/optimizer.safetensors").is_file())
        .and_then(|(_, d)| read_state(&d).ok().map(|s| (d, s)))
}

/// Restores the optimizer of a resumable checkpoint.
pub fn restore_optimizer(dir: &Path, opt: &mut AdamW, device: &Device) -> Result<()> {
    let tensors = load_tensors(&dir.join("training/optimizer.safetensors"), device)?;
    let info_path = dir.join("training/optimizer.json");
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&info_path).map_err(|e| file_err(&info_path, e))?).map_err(|e| file_err(&info_path, e))?;
    let n = tensors.len() / 2;
    let moments = (0..n)
        .map(|i| {
            let get = |k: String| tensors.get(&k).cloned().ok_or_else(|| file_err(dir, format!("optimizer state lacks {k}")));
            Ok((get(format!("m.{i}"))?, get(format!("v.{i}"))?))
        })
        .collect::<Result<Vec<_>>>()?;
    opt.restore(moments, info["steps_taken"].as_u64().unwrap_or(0))?;
    Ok(())
}
