//! `valuedrift train --algo ppo`: prompts from any SFT or preference file, the policy from
//! --model, the reward model (and the value model's start) from --reward-model.

use crate::settings::TrainPlan;
use anyhow::{bail, Context, Result};
use std::sync::atomic::AtomicBool;
use valuedrift_data::{load_preferences, load_sft, PreferenceFormat, Role, SftFormat};
use valuedrift_engine::{LanguageModel, Message};
use valuedrift_train::ppo::{self, PpoCompanions, PpoConfig};
use valuedrift_train::tokenize::engine_message;
use valuedrift_train::trainer::{Start, TrainConfig};
use valuedrift_train::TrainError;

/// Prompt conversations: preference prompts, or SFT conversations up to their last user turn.
pub(super) fn prompt_messages(plan: &TrainPlan) -> Result<Vec<Vec<Message>>> {
    let on_bad = plan.on_malformed;
    if valuedrift_data::valuegap::is_value_gap(&plan.data)? {
        let loaded = valuedrift_data::valuegap::load_value_gap(&plan.data, on_bad)?;
        return Ok(loaded.items.iter().map(|item| vec![Message::user(&item.prompt)]).collect());
    }
    if let Ok(loaded) = load_preferences(&plan.data, PreferenceFormat::Auto, on_bad) {
        return Ok(loaded.items.iter().map(|p| p.prompt.iter().map(engine_message).collect()).collect());
    }
    let loaded = load_sft(&plan.data, SftFormat::Auto, on_bad)
        .with_context(|| format!("{}: neither preference pairs nor SFT conversations", plan.data.display()))?;
    Ok(loaded
        .items
        .iter()
        .filter_map(|ex| {
            let last_user = ex.messages.iter().rposition(|m| m.role == Role::User)?;
            Some(ex.messages[..=last_user].iter().map(engine_message).collect())
        })
        .collect())
}

pub fn run(plan: &TrainPlan, tc: &TrainConfig, policy: LanguageModel, start: Start, stop: &AtomicBool) -> Result<()> {
    let Some(rm_dir) = &plan.reward_model else { bail!("PPO needs --reward-model (a directory written by `valuedrift train --algo rm`)") };
    let dev = policy.model.device().clone();
    let resume = match start {
        Start::Resume { dir, state } => Some((dir, state)),
        Start::Fresh => None,
        Start::Finished { .. } => return Ok(()),
    };
    let companions = PpoCompanions::load(&plan.model, rm_dir, resume.as_ref().map(|(dir, _)| dir.as_path()), &dev)?;
    let max_prompt = plan.hyper.max_len.saturating_sub(plan.ppo.rollout_tokens).max(1);
    let prompts: Vec<Vec<u32>> = prompt_messages(plan)?
        .iter()
        .map(|msgs| Ok(policy.prompt_ids(msgs)?))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter(|p| p.len() <= max_prompt)
        .collect();
    eprintln!("PPO on {} prompts; reward model {}", prompts.len(), rm_dir.display());
    let cfg = PpoConfig {
        kl_coef: plan.hyper.kl_coef,
        response_tokens: plan.ppo.rollout_tokens,
        ppo_epochs: plan.ppo.ppo_epochs,
        missing_eos_penalty: (plan.ppo.missing_eos_penalty != 0.0).then_some(plan.ppo.missing_eos_penalty),
        ..PpoConfig::default()
    };
    let models = companions.with_policy(&policy);
    let mut bar = crate::progress::TrainBar::default();
    let state = match ppo::train(&models, &prompts, &cfg, tc, &plan.out, resume, &mut bar, stop) {
        Err(TrainError::Stopped(step)) => bail!("stopped at step {step}; run the same command again to resume"),
        other => other?,
    };
    let first = state.log_history.first().and_then(|e| e["reward"].as_f64()).unwrap_or(f64::NAN);
    let last = state.log_history.last().and_then(|e| e["reward"].as_f64()).unwrap_or(f64::NAN);
    println!("PPO: mean reward {first:.3} at the first update, {last:.3} at the last");
    crate::progress::summarize_training(&state.log_history, &plan.out);
    Ok(())
}
