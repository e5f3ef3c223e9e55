//! `valuedrift train --algo ppo`: prompts from any SFT or preference file, the policy from
//! --model, the reward model (and the value model's start) from --reward-model.

use crate::cli::TrainArgs;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Var};
use std::sync::atomic::AtomicBool;
use valuedrift_data::{load_preferences, load_sft, OnMalformed, PreferenceFormat, Role, SftFormat};
use valuedrift_engine::matmul::Precision;
use valuedrift_engine::{LanguageModel, Message};
use valuedrift_train::ppo::{self, PpoConfig, PpoModels};
use valuedrift_train::presets::Hyper;
use valuedrift_train::reward::RewardModel;
use valuedrift_train::tokenize::engine_message;
use valuedrift_train::trainer::{Start, TrainConfig};
use valuedrift_train::TrainError;

/// Prompt conversations: preference prompts, or SFT conversations up to their last user turn.
fn prompt_messages(args: &TrainArgs) -> Result<Vec<Vec<Message>>> {
    let on_bad = if args.skip_malformed { OnMalformed::Skip } else { OnMalformed::Error };
    if valuedrift_data::valuegap::is_value_gap(&args.data)? {
        let loaded = valuedrift_data::valuegap::load_value_gap(&args.data, on_bad)?;
        return Ok(loaded.items.iter().map(|item| vec![Message::user(&item.prompt)]).collect());
    }
    if let Ok(loaded) = load_preferences(&args.data, PreferenceFormat::Auto, on_bad) {
        return Ok(loaded.items.iter().map(|p| p.prompt.iter().map(engine_message).collect()).collect());
    }
    let loaded = load_sft(&args.data, SftFormat::Auto, on_bad)
        .with_context(|| format!("{}: neither preference pairs nor SFT conversations", args.data.display()))?;
    Ok(loaded
        .items
        .iter()
        .filter_map(|ex| {
            let last_user = ex.messages.iter().rposition(|m| m.role == Role::User)?;
            Some(ex.messages[..=last_user].iter().map(engine_message).collect())
        })
        .collect())
}

pub fn run(args: &TrainArgs, h: &Hyper, tc: &TrainConfig, policy: LanguageModel, start: Start, stop: &AtomicBool) -> Result<()> {
    let Some(rm_dir) = &args.reward_model else { bail!("PPO needs --reward-model (a directory written by `valuedrift train --algo rm`)") };
    let dev = policy.model.device().clone();
    let reward = RewardModel::load(rm_dir, &dev).with_context(|| format!("loading the reward model {}", rm_dir.display()))?;
    // The value model starts as the reward model (as in TRL) and resumes from its own state.
    let (value_from, resume) = match start {
        Start::Resume { dir, state } => (dir.join("training/value"), Some((dir, state))),
        Start::Fresh => (rm_dir.clone(), None),
    };
    let value = LanguageModel::load(&value_from, &dev, DType::F32)?;
    let value_head = Var::from_tensor(&RewardModel::load(&value_from, &dev)?.head)?;
    let reference = LanguageModel::load_for_inference(&args.model, &dev, Precision::F32)?;
    let max_prompt = h.max_len.saturating_sub(args.rollout_tokens).max(1);
    let prompts: Vec<Vec<u32>> = prompt_messages(args)?
        .iter()
        .map(|msgs| Ok(policy.prompt_ids(msgs)?))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter(|p| p.len() <= max_prompt)
        .collect();
    eprintln!("PPO on {} prompts; reward model {}", prompts.len(), rm_dir.display());
    let cfg = PpoConfig {
        kl_coef: h.kl_coef,
        response_tokens: args.rollout_tokens,
        ppo_epochs: args.ppo_epochs,
        missing_eos_penalty: (args.missing_eos_penalty != 0.0).then_some(args.missing_eos_penalty),
        ..PpoConfig::default()
    };
    let models = PpoModels { policy: &policy, reference: &reference, reward: &reward, value: &value, value_head: &value_head };
    let mut bar = crate::progress::TrainBar::default();
    let state = match ppo::train(&models, &prompts, &cfg, tc, &args.out, resume, &mut bar, stop) {
        Err(TrainError::Stopped(step)) => bail!("stopped at step {step}; run the same command again to resume"),
        other => other?,
    };
    let first = state.log_history.first().and_then(|e| e["reward"].as_f64()).unwrap_or(f64::NAN);
    let last = state.log_history.last().and_then(|e| e["reward"].as_f64()).unwrap_or(f64::NAN);
    println!("PPO: mean reward {first:.3} at the first update, {last:.3} at the last");
    crate::progress::summarize_training(&state.log_history, &args.out);
    Ok(())
}
