//! Finding the checkpoints to trace. The tracer treats a checkpoint as an opaque model (a GGUF
//! file or a Hugging Face directory) at a step of a training phase. It understands the output
//! directories of Hugging Face/TRL trainers and of our own trainers: `checkpoint-N/`
//! subdirectories, each with a `trainer_state.json` (`global_step`, `max_steps`; ours add
//! `phase`), and possibly a final model at the top level.

use crate::prompt::PromptStyle;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointSpec {
    pub phase: String,
    pub step: u64,
    /// The phase's total steps (trainer_state.json's `max_steps`), when known.
    pub phase_steps: Option<u64>,
    pub path: PathBuf,
    /// How this checkpoint is asked, where it differs from the run's prompt style (the paper
    /// asks a pretrained base model with its base prompt, the models trained from it with their
    /// chat template).
    pub prompt: Option<PromptStyle>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {message}")]
    Bad { path: PathBuf, message: String },
}

pub type Result<T> = std::result::Result<T, CheckpointError>;

fn bad(path: &Path, message: impl Into<String>) -> CheckpointError {
    CheckpointError::Bad { path: path.into(), message: message.into() }
}

/// What trainer_state.json tells about a checkpoint.
#[derive(Default)]
struct TrainerState {
    global_step: Option<u64>,
    max_steps: Option<u64>,
    phase: Option<String>,
}

fn trainer_state(dir: &Path) -> Result<TrainerState> {
    let path = dir.join("trainer_state.json");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(TrainerState::default()) };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(&path, format!("invalid JSON ({e})")))?;
    let number = |key: &str| -> Result<Option<u64>> {
        match v.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(x) => x.as_u64().map(Some).ok_or_else(|| bad(&path, format!("field '{key}' must be a non-negative integer"))),
        }
    };
    Ok(TrainerState { global_step: number("global_step")?, max_steps: number("max_steps")?, phase: v["phase"].as_str().map(str::to_string) })
}

/// A GGUF file, or a directory with config.json and safetensors weights.
pub fn is_model(path: &Path) -> bool {
    if path.is_file() {
        return path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    }
    let has_weights =
        std::fs::read_dir(path).map(|entries| entries.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".safetensors"))).unwrap_or(false);
    path.join("config.json").is_file() && has_weights
}

/// The step in a `checkpoint-N` directory name.
fn step_from_name(path: &Path) -> Option<u64> {
    path.file_name()?.to_str()?.strip_prefix("checkpoint-")?.parse().ok()
}

fn has_checkpoint_dirs(dir: &Path) -> bool {
    std::fs::read_dir(dir).map(|entries| entries.flatten().any(|e| e.path().is_dir() && step_from_name(&e.path()).is_some())).unwrap_or(false)
}

/// Parses one command-line checkpoint: `[PHASE=]PATH[@STEP]`. PATH is a model (its step from
/// `@STEP`, its trainer_state.json or a `checkpoint-N` name) or a training output directory
/// (every `checkpoint-N/` inside, plus a final top-level model at a step not already listed).
/// The phase comes from `PHASE=`, else trainer_state.json, else `default_phase`.
pub fn discover(arg: &str, default_phase: &str) -> Result<Vec<CheckpointSpec>> {
    let (phase, rest) = match arg.split_once('=') {
        Some((p, r)) if !p.is_empty() && !p.contains('/') => (Some(p.to_string()), r),
        _ => (None, arg),
    };
    let (path_text, step) = match rest.rsplit_once('@') {
        Some((p, s)) if s.chars().all(|c| c.is_ascii_digit()) && !s.is_empty() => {
            let step = s.parse::<u64>().map_err(|_| bad(Path::new(p), format!("@{s}: the step does not fit in 64 bits")))?;
            (p, Some(step))
        }
        _ => (rest, None),
    };
    let path = PathBuf::from(path_text);
    if !path.exists() {
        return Err(bad(&path, "no such file or directory"));
    }
    let mut found = if is_model(&path) && (step.is_some() || !has_checkpoint_dirs(&path)) {
        vec![model_checkpoint(&path, step)?]
    } else if path.is_dir() {
        if step.is_some() {
            return Err(bad(&path, "@STEP names the step of one model, but this is not a model directory"));
        }
        run_directory(&path)?
    } else {
        return Err(bad(&path, "not a model: expected a .gguf file or a directory with config.json and *.safetensors"));
    };
    for c in &mut found {
        if let Some(p) = &phase {
            c.phase = p.clone();
        } else if c.phase.is_empty() {
            c.phase = default_phase.to_string();
        }
    }
    Ok(found)
}

fn model_checkpoint(path: &Path, step: Option<u64>) -> Result<CheckpointSpec> {
    let state = if path.is_dir() { trainer_state(path)? } else { TrainerState::default() };
    let step = step
        .or(state.global_step)
        .or_else(|| step_from_name(path))
        .ok_or_else(|| bad(path, "unknown training step: name it as PATH@STEP (no trainer_state.json or checkpoint-N name to read it from)"))?;
    Ok(CheckpointSpec { phase: state.phase.unwrap_or_default(), step, phase_steps: state.max_steps, path: path.into(), prompt: None })
}

/// Every `checkpoint-N/` model of a training output directory, by step, and the final model at
/// the top when its step is new. Subdirectories named checkpoint-N that are not models are an
/// error, not a silent skip: a half-written checkpoint should be seen.
fn run_directory(dir: &Path) -> Result<Vec<CheckpointSpec>> {
    let entries = std::fs::read_dir(dir).map_err(|e| bad(dir, e.to_string()))?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let sub = entry.path();
        if sub.is_dir() && step_from_name(&sub).is_some() {
            if !is_model(&sub) {
                return Err(bad(&sub, "a checkpoint directory without a model (config.json and *.safetensors)"));
            }
            found.push(model_checkpoint(&sub, None)?);
        }
    }
    if found.is_empty() {
        return Err(bad(dir, "not a model (no config.json and *.safetensors) and no checkpoint-N/ subdirectories"));
    }
    Ok(with_final_model(dir, found))
}

/// The checkpoints in step order, the final top-level model added when its step is new, and
/// the phase and total steps any of them knows given to all.
fn with_final_model(dir: &Path, mut found: Vec<CheckpointSpec>) -> Vec<CheckpointSpec> {
    found.sort_by_key(|c| c.step);
    if is_model(dir) {
        if let Ok(last) = model_checkpoint(dir, None) {
            if !found.iter().any(|c| c.step == last.step) {
                found.push(last);
            }
        }
    }
    // The total steps of the phase, if any checkpoint knows it, hold for all.
    let total = found.iter().filter_map(|c| c.phase_steps).max();
    let phase = found.iter().find(|c| !c.phase.is_empty()).map(|c| c.phase.clone()).unwrap_or_default();
    for c in &mut found {
        c.phase_steps = c.phase_steps.or(total);
        if c.phase.is_empty() {
            c.phase = phase.clone();
        }
    }
    found
}

/// A training output directory that a trainer is still writing (`[PHASE=]DIR`): the
/// checkpoints complete so far, and whether the trainer has finished. A `checkpoint-N/` counts
/// once its trainer_state.json is there (trainers write it last); the run is finished once the
/// final model and its trainer_state.json are at the top, or a checkpoint is at the phase's
/// total steps. Nothing there yet is no error.
pub fn discover_live(arg: &str, default_phase: &str) -> Result<(Vec<CheckpointSpec>, bool)> {
    let (phase, dir) = match arg.split_once('=') {
        Some((p, rest)) if !p.is_empty() && !p.contains('/') => (Some(p), Path::new(rest)),
        _ => (None, Path::new(arg)),
    };
    if dir.is_file() {
        return Err(bad(dir, "--follow watches a training output directory, not a model file"));
    }
    let complete = |d: &Path| d.join("trainer_state.json").is_file() && is_model(d);
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if step_from_name(&entry.path()).is_some() && complete(&entry.path()) {
            // A state file caught half-written is read again at the next look.
            if let Ok(c) = model_checkpoint(&entry.path(), None) {
                found.push(c);
            }
        }
    }
    let mut found = if complete(dir) || !found.is_empty() { with_final_model(dir, found) } else { found };
    // Ours write no top-level model: their last checkpoint is at the phase's total steps.
    let finished = complete(dir) || found.last().is_some_and(|c| c.phase_steps.is_some_and(|total| c.step >= total));
    for c in &mut found {
        c.phase = phase.map(str::to_string).unwrap_or_else(|| if c.phase.is_empty() { default_phase.to_string() } else { c.phase.clone() });
    }
    Ok((found, finished))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_model(dir: &Path, state: Option<&str>) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        std::fs::write(dir.join("model.safetensors"), "").unwrap();
        if let Some(s) = state {
            std::fs::write(dir.join("trainer_state.json"), s).unwrap();
        }
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("valuedrift-ckpt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_live_run_shows_its_complete_checkpoints_and_when_it_is_finished() {
        let d = temp("live");
        let arg = format!("dpo={}", d.display());
        let steps = |(found, finished): (Vec<CheckpointSpec>, bool)| (found.iter().map(|c| (c.phase.clone(), c.step)).collect::<Vec<_>>(), finished);
        assert_eq!(steps(discover_live(&arg, "train").unwrap()), (vec![], false), "nothing written yet");
        fake_model(&d.join("checkpoint-2"), None);
        assert_eq!(steps(discover_live(&arg, "train").unwrap()), (vec![], false), "a checkpoint without its state is still being written");
        std::fs::write(d.join("checkpoint-2/trainer_state.json"), r#"{"global_step": 2, "max_steps": 5}"#).unwrap();
        fake_model(&d.join("checkpoint-4"), None);
        assert_eq!(steps(discover_live(&arg, "train").unwrap()), (vec![("dpo".into(), 2)], false));
        std::fs::write(d.join("checkpoint-4/trainer_state.json"), r#"{"global_step": 4, "max_steps": 5}"#).unwrap();
        fake_model(&d, Some(r#"{"global_step": 5, "max_steps": 5}"#));
        assert_eq!(steps(discover_live(&arg, "train").unwrap()), (vec![("dpo".into(), 2), ("dpo".into(), 4), ("dpo".into(), 5)], true));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn reads_a_trl_output_directory() {
        let root = temp("trl");
        fake_model(&root.join("checkpoint-20"), Some(r#"{"global_step": 20, "max_steps": 30, "log_history": []}"#));
        fake_model(&root.join("checkpoint-10"), Some(r#"{"global_step": 10, "max_steps": 30}"#));
        fake_model(&root, Some(r#"{"global_step": 30, "max_steps": 30}"#));
        std::fs::create_dir_all(root.join("runs")).unwrap();
        let found = discover(root.to_str().unwrap(), "dpo").unwrap();
        let steps: Vec<(u64, &str, Option<u64>)> = found.iter().map(|c| (c.step, c.phase.as_str(), c.phase_steps)).collect();
        assert_eq!(steps, [(10, "dpo", Some(30)), (20, "dpo", Some(30)), (30, "dpo", Some(30))]);
    }

    #[test]
    fn our_trainers_phase_and_explicit_steps() {
        let root = temp("ours");
        fake_model(&root.join("checkpoint-4"), Some(r#"{"global_step": 4, "max_steps": 8, "phase": "simpo"}"#));
        let found = discover(root.to_str().unwrap(), "train").unwrap();
        assert_eq!(found[0].phase, "simpo");
        let base = root.join("base");
        fake_model(&base, None);
        let spec = format!("sft={}@0", base.display());
        assert_eq!(
            discover(&spec, "train").unwrap(),
            [CheckpointSpec { phase: "sft".into(), step: 0, phase_steps: None, path: base.clone(), prompt: None }]
        );
        let err = discover(base.to_str().unwrap(), "train").unwrap_err().to_string();
        assert!(err.contains("PATH@STEP"), "{err}");
        // A step past u64 is an error naming it, not a panic.
        let err = discover(&format!("{}@99999999999999999999999", base.display()), "train").unwrap_err().to_string();
        assert!(err.contains("@99999999999999999999999: the step does not fit in 64 bits"), "{err}");
    }

    #[test]
    fn directories_that_are_not_models_are_named() {
        let root = temp("bad");
        let err = discover(root.to_str().unwrap(), "t").unwrap_err().to_string();
        assert!(err.contains("not a model") && err.contains(root.to_str().unwrap()), "{err}");
        std::fs::create_dir_all(root.join("checkpoint-5")).unwrap();
        let err = discover(root.to_str().unwrap(), "t").unwrap_err().to_string();
        assert!(err.contains("checkpoint-5") && err.contains("without a model"), "{err}");
        assert!(discover("/no/such/place", "t").unwrap_err().to_string().contains("no such file"));
    }
}
