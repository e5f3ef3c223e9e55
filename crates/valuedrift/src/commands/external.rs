//! Training phases run by an external trainer (`[trainer.NAME]` in an experiment, docs/scale.md):
//! valuedrift writes the phase's data in the conversational format TRL reads, with the label
//! setup applied, and the phase's resolved settings as `phase.json`; fills the trainer's command
//! template from them; and runs it, its output teed to `trainer.log` in the phase directory. The
//! trainer writes `checkpoint-N/` directories (traced like ours) and, when done, the final model
//! with `trainer_state.json` at the top of the directory, which marks the phase finished. Running
//! the experiment again re-runs the command, which resumes from its newest checkpoint.

use crate::settings::TrainPlan;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use valuedrift_data::{load_sft, SftFormat};
use valuedrift_engine::LanguageModel;
use valuedrift_train::presets::Algo;

/// `[trainer.NAME]`: a command line with `{placeholders}` (see [`PLACEHOLDERS`]) and extra
/// environment variables.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct TrainerConfig {
    pub command: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// What a command template may name; each is filled shell-quoted.
pub const PLACEHOLDERS: &[&str] = &[
    "config",
    "model",
    "data",
    "source_data",
    "out",
    "algo",
    "phase",
    "save_every",
    "reward_model",
    "label_setup",
    "lr",
    "epochs",
    "max_steps",
    "global_batch",
    "max_len",
    "warmup_ratio",
    "schedule",
    "weight_decay",
    "max_grad_norm",
    "beta",
    "gamma",
    "kl_coef",
    "rollout_tokens",
    "ppo_epochs",
    "missing_eos_penalty",
    "seed",
];

impl TrainerConfig {
    /// Refuses an empty command or an unknown placeholder, by name.
    pub fn validate(&self) -> Result<()> {
        if self.command.trim().is_empty() {
            bail!("key 'command' is empty");
        }
        for name in placeholders(&self.command) {
            if !PLACEHOLDERS.contains(&name) {
                bail!("key 'command': unknown placeholder {{{name}}} (known: {})", PLACEHOLDERS.join(", "));
            }
        }
        Ok(())
    }
}

/// The `{name}` placeholders of a template, in order.
fn placeholders(template: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) if after[..close].chars().all(|c| c.is_ascii_lowercase() || c == '_') && close > 0 => {
                found.push(&after[..close]);
                rest = &after[close + 1..];
            }
            _ => rest = after,
        }
    }
    found
}

/// A value as one shell word.
fn shell_quote(value: &str) -> String {
    if !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=+,".contains(c)) {
        return value.to_string();
    }
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// The template with every placeholder replaced by its value from `values`, in one pass (a
/// value that itself holds `{name}` is not filled again); other braces are left as written.
fn fill(template: &str, values: &BTreeMap<&str, String>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}').and_then(|close| values.get(&after[..close]).map(|v| (close, v))) {
            Some((close, value)) => {
                out.push_str(&shell_quote(value));
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// True once the trainer wrote its final model and state at the top of `out`.
pub fn finished(out: &Path) -> bool {
    out.join("trainer_state.json").is_file() && valuedrift_trace::checkpoints::is_model(out)
}

/// Runs one phase through the external trainer `name`.
pub fn run(plan: &TrainPlan, name: &str, trainer: &TrainerConfig) -> Result<()> {
    if finished(&plan.out) {
        eprintln!("{} finished earlier (trainer '{name}'): {}", plan.algo.name(), plan.out.display());
        return Ok(());
    }
    std::fs::create_dir_all(&plan.out).with_context(|| format!("cannot create {}", plan.out.display()))?;
    let model = hf_model(&plan.model, &plan.out)?;
    let data = plan.out.join("trainer-data.jsonl");
    let rows = write_trainer_data(plan, &data)?;
    let config = plan.out.join("phase.json");
    let values = values(plan, &model, &data, &config);
    let settings: BTreeMap<&str, &String> = values.iter().map(|(k, v)| (*k, v)).collect();
    std::fs::write(&config, serde_json::to_string_pretty(&settings)?).with_context(|| format!("cannot write {}", config.display()))?;
    let command = fill(&trainer.command, &values);
    eprintln!("{} with trainer '{name}' on {rows} rows: {command}", plan.algo.name());
    launch(&command, &trainer.env, &plan.out.join("trainer.log"))?;
    if !finished(&plan.out) {
        bail!(
            "trainer '{name}' exited without writing its final model and trainer_state.json to {}; see {}",
            plan.out.display(),
            plan.out.join("trainer.log").display()
        );
    }
    Ok(())
}

/// The placeholders' values for this phase.
fn values<'a>(plan: &TrainPlan, model: &Path, data: &Path, config: &Path) -> BTreeMap<&'a str, String> {
    let h = &plan.hyper;
    let text = |v: Value| match v {
        Value::String(s) => s,
        other => other.to_string(),
    };
    let pairs: [(&str, Value); 26] = [
        ("config", json!(config.display().to_string())),
        ("model", json!(model.display().to_string())),
        ("data", json!(data.display().to_string())),
        ("source_data", json!(plan.data.display().to_string())),
        ("out", json!(plan.out.display().to_string())),
        ("algo", json!(plan.algo.name())),
        ("phase", json!(plan.phase)),
        ("save_every", json!(plan.save_every)),
        ("reward_model", json!(plan.reward_model.as_ref().map(|p| p.display().to_string()).unwrap_or_default())),
        ("label_setup", json!(plan.label_setup.map(|s| text(json!(s))).unwrap_or_default())),
        ("lr", json!(h.lr)),
        ("epochs", json!(h.epochs)),
        ("max_steps", json!(plan.max_steps.map(|s| s as i64).unwrap_or(-1))),
        ("global_batch", json!(h.global_batch)),
        ("max_len", json!(h.max_len)),
        ("warmup_ratio", json!(h.warmup_ratio)),
        ("schedule", json!(h.decay)),
        ("weight_decay", json!(h.weight_decay)),
        ("max_grad_norm", json!(h.max_grad_norm.unwrap_or(0.0))),
        ("beta", json!(h.beta)),
        ("gamma", json!(h.gamma)),
        ("kl_coef", json!(h.kl_coef)),
        ("rollout_tokens", json!(plan.ppo.rollout_tokens)),
        ("ppo_epochs", json!(plan.ppo.ppo_epochs)),
        ("missing_eos_penalty", json!(plan.ppo.missing_eos_penalty)),
        ("seed", json!(plan.seed)),
    ];
    debug_assert_eq!(pairs.len(), PLACEHOLDERS.len());
    pairs.into_iter().map(|(k, v)| (k, text(v))).collect()
}

/// The starting model as a Hugging Face directory: a directory as it is, a GGUF file exported
/// once beside the phase directories (`hf-start/<file stem>/`).
fn hf_model(model: &Path, out: &Path) -> Result<PathBuf> {
    if model.is_dir() {
        return Ok(model.to_path_buf());
    }
    let stem = model.file_stem().and_then(|s| s.to_str()).ok_or_else(|| anyhow!("{}: not a model file name", model.display()))?;
    let dir = out.parent().unwrap_or(Path::new(".")).join("hf-start").join(stem);
    if valuedrift_trace::checkpoints::is_model(&dir) {
        return Ok(dir);
    }
    eprintln!("exporting {} for the external trainer: {}", model.display(), dir.display());
    let lm = LanguageModel::load(model, &Device::Cpu, DType::F32).with_context(|| format!("loading {}", model.display()))?;
    // Not with_extension: a stem like "Llama-3.1-8B" has a dot of its own.
    let partial = dir.with_file_name(format!("{stem}.partial"));
    let _ = std::fs::remove_dir_all(&partial);
    lm.save_hf(&partial)?;
    std::fs::rename(&partial, &dir).with_context(|| format!("cannot move {} to {}", partial.display(), dir.display()))?;
    Ok(dir)
}

/// A conversation as role/content objects (the data crate's and the engine's messages alike).
fn messages<M: serde::Serialize>(msgs: &[M]) -> Value {
    json!(msgs)
}

fn assistant(text: &str) -> Value {
    json!([{"role": "assistant", "content": text}])
}

/// Writes the phase's data as TRL's conversational JSONL: SFT as prompt/completion (the loss on
/// the completion), PPO as prompts (read as the built-in trainer reads them), the rest as
/// prompt/chosen/rejected with the label setup already applied. Returns the number of rows.
fn write_trainer_data(plan: &TrainPlan, path: &Path) -> Result<usize> {
    let rows: Vec<Value> = match plan.algo {
        Algo::Sft => {
            let loaded = load_sft(&plan.data, SftFormat::Auto, plan.on_malformed)?;
            let split = |ex: &valuedrift_data::SftExample| {
                let (last, prompt) = ex.messages.split_last().expect("an SFT example ends with an assistant message");
                json!({"prompt": messages(prompt), "completion": assistant(&last.content)})
            };
            loaded.items.iter().map(split).collect()
        }
        Algo::Ppo => super::ppo::prompt_messages(plan)?.iter().map(|p| json!({"prompt": messages(p.as_slice())})).collect(),
        Algo::Rm | Algo::Dpo | Algo::Simpo => {
            let pairs = super::train::load_pairs(&plan.data, plan)?;
            pairs.iter().map(|p| json!({"prompt": messages(&p.prompt), "chosen": assistant(&p.chosen), "rejected": assistant(&p.rejected)})).collect()
        }
    };
    let partial = path.with_extension("partial");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?);
    for row in &rows {
        writeln!(file, "{row}")?;
    }
    file.flush()?;
    drop(file);
    std::fs::rename(&partial, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(rows.len())
}

/// Runs `command` through `sh -c`, its output echoed and appended to `log`; an exit other than
/// success is an error that names the log.
fn launch(command: &str, env: &BTreeMap<String, String>, log: &Path) -> Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(log).with_context(|| format!("cannot open {}", log.display()))?;
    writeln!(file, "$ {command}")?;
    let mut child = Command::new("sh")
        .arg("-c")
        // Merged so the log keeps the order the trainer printed in.
        .arg(format!("exec 2>&1; {command}"))
        .envs(env)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start sh for the external trainer")?;
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).split(b'\n') {
        let line = line?;
        file.write_all(&line)?;
        file.write_all(b"\n")?;
        eprintln!("  | {}", String::from_utf8_lossy(&line));
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("the external trainer failed ({status}); its output is in {}", log.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_filled_shell_quoted_and_unknown_names_refused() {
        let t = TrainerConfig { command: "python train.py {config} --lr {lr} # {not a placeholder}".into(), env: BTreeMap::new() };
        t.validate().unwrap();
        let values = BTreeMap::from([("config", "runs/my exp/phase.json".to_string()), ("lr", "1e-5".to_string())]);
        assert_eq!(fill(&t.command, &values), "python train.py 'runs/my exp/phase.json' --lr 1e-5 # {not a placeholder}");
        let bad = TrainerConfig { command: "train {modle}".into(), env: BTreeMap::new() };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("{modle}") && err.contains("model"), "{err}");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        let sneaky = BTreeMap::from([("data", "{lr}".to_string()), ("lr", "1e-5".to_string())]);
        assert_eq!(fill("t {data} {lr}", &sneaky), "t '{lr}' 1e-5", "a value is not filled again");
    }
}
