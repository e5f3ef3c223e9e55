//! A training phase's plan: the paper preset for its algorithm with the overrides of the command
//! line (`valuedrift train --lr ...`) or of the experiment file (`[phase.hyper]`) applied.

use super::{defaults, Matmul};
use clap::Args;
use serde::Deserialize;
use std::path::PathBuf;
use valuedrift_data::valuegap::LabelSetup;
use valuedrift_data::OnMalformed;
use valuedrift_train::checkpoint::WeightsDtype;
use valuedrift_train::presets::{paper, Algo, Hyper};
use valuedrift_train::schedule::Decay;

/// Overrides of the paper preset and the run-shape settings: `valuedrift train`'s flags and an
/// experiment phase's `hyper` table are this one struct. Any override left out keeps the preset's.
#[derive(Args, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct Hyperparameters {
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub epochs: Option<u32>,
    /// Stop after this many updates.
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Examples (sequences or pairs; prompts for PPO) per update.
    #[arg(long)]
    pub global_batch: Option<usize>,
    /// Longest sequence in tokens (longer ones are cut).
    #[arg(long)]
    pub max_len: Option<usize>,
    #[arg(long)]
    pub warmup_ratio: Option<f64>,
    #[arg(long, value_enum)]
    pub schedule: Option<Decay>,
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Gradient clipping by global norm (0 turns it off).
    #[arg(long)]
    pub max_grad_norm: Option<f64>,
    /// DPO/SimPO beta.
    #[arg(long)]
    pub beta: Option<f64>,
    /// SimPO margin gamma.
    #[arg(long)]
    pub gamma: Option<f64>,
    /// PPO KL coefficient.
    #[arg(long)]
    pub kl_coef: Option<f64>,
    /// PPO: new tokens per rollout.
    #[arg(long, default_value_t = defaults::ROLLOUT_TOKENS)]
    pub rollout_tokens: usize,
    /// PPO: subtracted from the score of a response that does not end with EOS (0 turns it off).
    #[arg(long, default_value_t = defaults::MISSING_EOS_PENALTY)]
    pub missing_eos_penalty: f64,
    /// PPO: optimization epochs over each batch of rollouts (TRL's default is 4).
    #[arg(long, default_value_t = defaults::PPO_EPOCHS)]
    pub ppo_epochs: usize,
    /// Padded tokens per micro-batch (gradient accumulation fills the global batch).
    #[arg(long, default_value_t = defaults::MICRO_TOKENS)]
    pub micro_tokens: usize,
    #[arg(long, default_value_t = defaults::SEED)]
    pub seed: u64,
}

impl Default for Hyperparameters {
    fn default() -> Self {
        Hyperparameters {
            lr: None,
            epochs: None,
            max_steps: None,
            global_batch: None,
            max_len: None,
            warmup_ratio: None,
            schedule: None,
            weight_decay: None,
            max_grad_norm: None,
            beta: None,
            gamma: None,
            kl_coef: None,
            rollout_tokens: defaults::ROLLOUT_TOKENS,
            missing_eos_penalty: defaults::MISSING_EOS_PENALTY,
            ppo_epochs: defaults::PPO_EPOCHS,
            micro_tokens: defaults::MICRO_TOKENS,
            seed: defaults::SEED,
        }
    }
}

/// The hyperparameters a sweep may vary.
const SWEEPABLE: &str = "lr, beta, gamma, kl_coef, warmup_ratio, epochs, max_steps, global_batch";

impl Hyperparameters {
    /// Sets one sweepable hyperparameter (an experiment's `sweep`); counts must be whole.
    pub fn set(&mut self, key: &str, value: f64) -> Result<(), String> {
        let count = || {
            if value >= 0.0 && value.fract() == 0.0 {
                Ok(value as u64)
            } else {
                Err(format!("{key} = {value}: expected a whole number"))
            }
        };
        match key {
            "lr" => self.lr = Some(value),
            "beta" => self.beta = Some(value),
            "gamma" => self.gamma = Some(value),
            "kl_coef" => self.kl_coef = Some(value),
            "warmup_ratio" => self.warmup_ratio = Some(value),
            "epochs" => self.epochs = Some(u32::try_from(count()?).map_err(|_| format!("epochs = {value}: too many"))?),
            "max_steps" => self.max_steps = Some(count()?),
            "global_batch" => self.global_batch = Some(count()? as usize),
            other => return Err(format!("sweep over '{other}' is not supported ({SWEEPABLE})")),
        }
        Ok(())
    }

    /// The paper preset of `algo` with these overrides applied.
    pub fn resolve(&self, algo: Algo) -> Hyper {
        let mut h = paper(algo);
        h.lr = self.lr.unwrap_or(h.lr);
        h.epochs = self.epochs.unwrap_or(h.epochs);
        h.global_batch = self.global_batch.unwrap_or(h.global_batch);
        h.max_len = self.max_len.unwrap_or(h.max_len);
        h.warmup_ratio = self.warmup_ratio.unwrap_or(h.warmup_ratio);
        h.weight_decay = self.weight_decay.unwrap_or(h.weight_decay);
        h.beta = self.beta.unwrap_or(h.beta);
        h.gamma = self.gamma.unwrap_or(h.gamma);
        h.kl_coef = self.kl_coef.unwrap_or(h.kl_coef);
        h.decay = self.schedule.unwrap_or(h.decay);
        if let Some(n) = self.max_grad_norm {
            h.max_grad_norm = (n > 0.0).then_some(n);
        }
        h
    }
}

/// PPO's own settings beside the preset.
#[derive(Clone, Debug)]
pub struct PpoPlan {
    pub rollout_tokens: usize,
    pub missing_eos_penalty: f64,
    pub ppo_epochs: usize,
}

/// Everything one training phase needs, resolved.
#[derive(Clone, Debug)]
pub struct TrainPlan {
    pub algo: Algo,
    /// The model to start from.
    pub model: PathBuf,
    pub data: PathBuf,
    /// Checkpoints and metrics go here.
    pub out: PathBuf,
    pub on_malformed: OnMalformed,
    /// For value-gap data: which answer is chosen.
    pub label_setup: Option<LabelSetup>,
    /// Held-out pairs for a reward model's accuracy (default: the last 10% of `data`).
    pub eval_data: Option<PathBuf>,
    /// PPO's reward model.
    pub reward_model: Option<PathBuf>,
    /// The phase name trainer_state.json records.
    pub phase: String,
    pub hyper: Hyper,
    pub max_steps: Option<u64>,
    pub ppo: PpoPlan,
    pub micro_tokens: usize,
    pub save_every: u64,
    pub checkpoint_dtype: WeightsDtype,
    pub seed: u64,
    pub device: String,
    pub matmul: Matmul,
}

/// What a phase trains on and where it writes; the rest of a plan comes from hyperparameters.
pub struct PhaseTarget {
    pub algo: Algo,
    pub model: PathBuf,
    pub data: PathBuf,
    pub out: PathBuf,
    /// Default: the algorithm's name.
    pub phase: Option<String>,
    pub save_every: u64,
}

impl TrainPlan {
    /// The plan for `target` under `overrides`; inputs beyond the data and the runtime are left
    /// at their defaults for the caller to set.
    pub fn new(target: PhaseTarget, overrides: &Hyperparameters, device: &str, matmul: Matmul) -> Self {
        TrainPlan {
            algo: target.algo,
            phase: target.phase.unwrap_or_else(|| target.algo.name().to_string()),
            model: target.model,
            data: target.data,
            out: target.out,
            on_malformed: OnMalformed::Error,
            label_setup: None,
            eval_data: None,
            reward_model: None,
            hyper: overrides.resolve(target.algo),
            max_steps: overrides.max_steps,
            ppo: PpoPlan {
                rollout_tokens: overrides.rollout_tokens,
                missing_eos_penalty: overrides.missing_eos_penalty,
                ppo_epochs: overrides.ppo_epochs,
            },
            micro_tokens: overrides.micro_tokens,
            save_every: target.save_every,
            checkpoint_dtype: WeightsDtype::default(),
            seed: overrides.seed,
            device: device.into(),
            matmul,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        hyper: Hyperparameters,
    }

    fn debug(h: &Hyperparameters) -> String {
        format!("{h:?}")
    }

    #[test]
    fn the_command_line_and_the_experiment_file_default_alike() {
        let from_flags = Flags::try_parse_from(["train"]).unwrap().hyper;
        let from_file: Hyperparameters = toml::from_str("").unwrap();
        assert_eq!(debug(&from_flags), debug(&Hyperparameters::default()));
        assert_eq!(debug(&from_file), debug(&Hyperparameters::default()));
    }

    #[test]
    fn flags_and_keys_override_the_same_fields() {
        let from_flags =
            Flags::try_parse_from(["train", "--lr", "3e-6", "--schedule", "linear", "--max-grad-norm", "0", "--ppo-epochs", "2"]).unwrap().hyper;
        let from_file: Hyperparameters = toml::from_str("lr = 3e-6\nschedule = \"linear\"\nmax_grad_norm = 0.0\nppo_epochs = 2").unwrap();
        assert_eq!(debug(&from_flags), debug(&from_file));
        let h = from_file.resolve(Algo::Dpo);
        let preset = paper(Algo::Dpo);
        assert_eq!((h.lr, h.decay, h.max_grad_norm), (3e-6, Decay::Linear, None));
        assert_eq!((h.beta, h.global_batch, h.epochs), (preset.beta, preset.global_batch, preset.epochs));
    }

    #[test]
    fn unknown_keys_and_values_are_refused_by_name() {
        let typo = toml::from_str::<Hyperparameters>("learning_rate = 1e-5").unwrap_err().to_string();
        assert!(typo.contains("learning_rate"), "{typo}");
        let schedule = toml::from_str::<Hyperparameters>("schedule = \"step\"").unwrap_err().to_string();
        assert!(schedule.contains("step") && schedule.contains("cosine"), "{schedule}");
    }

    #[test]
    fn a_sweep_sets_counts_only_to_whole_numbers() {
        let mut h = Hyperparameters::default();
        h.set("epochs", 3.0).unwrap();
        h.set("lr", 2e-6).unwrap();
        assert_eq!((h.epochs, h.lr), (Some(3), Some(2e-6)));
        assert!(h.set("epochs", 1.5).unwrap_err().contains("whole"));
        assert!(h.set("global_batch", -4.0).is_err());
        assert!(h.set("dropout", 0.1).unwrap_err().contains("not supported"));
    }
}
