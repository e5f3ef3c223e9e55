//! `valuedrift train`: SFT, reward model, PPO, DPO or SimPO into checkpoint-N/ directories;
//! an interrupt (Ctrl-C) saves a checkpoint first, and re-running resumes from the newest one.

use crate::progress::{summarize_training, TrainBar};
use crate::settings::TrainPlan;
use anyhow::{bail, Context, Result};
use candle_core::DType;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use valuedrift_data::valuegap::{is_value_gap, load_value_gap};
use valuedrift_data::{load_preferences, load_sft, PreferenceFormat, PreferencePair, SftFormat};
use valuedrift_engine::LanguageModel;
use valuedrift_train::preference::{cached_reference, compute_reference, reference_path, PreferenceLoss, PreferenceObjective, ReferenceKey};
use valuedrift_train::presets::Algo;
use valuedrift_train::reward::{self, RewardObjective};
use valuedrift_train::sft::SftObjective;
use valuedrift_train::tokenize::{pair_tokens, training_chat, PairTokens};
use valuedrift_train::trainer::{find_start, train, Objective, Start, TrainConfig};
use valuedrift_train::TrainError;

/// The trainer's configuration for a plan; what it records in trainer_state.json.
pub fn config(plan: &TrainPlan) -> TrainConfig {
    let h = &plan.hyper;
    // Recorded as earlier versions did ("Some(Support)"): a resume compares the whole config,
    // so a run started by an older build resumes under this one.
    let label_setup = format!("{:?}", plan.label_setup);
    let extra = match plan.algo {
        Algo::Dpo => serde_json::json!({"beta": h.beta, "label_setup": label_setup}),
        Algo::Simpo => serde_json::json!({"beta": h.beta, "gamma": h.gamma, "label_setup": label_setup}),
        Algo::Ppo => {
            let ppo = &plan.ppo;
            serde_json::json!({"kl_coef": h.kl_coef, "rollout_tokens": ppo.rollout_tokens, "ppo_epochs": ppo.ppo_epochs, "missing_eos_penalty": ppo.missing_eos_penalty,
            "reward_model": plan.reward_model.as_ref().map(|p| p.display().to_string())})
        }
        _ => serde_json::Value::Null,
    };
    TrainConfig {
        phase: plan.phase.clone(),
        algo: plan.algo.name().into(),
        lr: h.lr,
        warmup_ratio: h.warmup_ratio,
        decay: h.decay,
        weight_decay: h.weight_decay,
        epochs: h.epochs,
        max_steps: plan.max_steps,
        global_batch: h.global_batch,
        micro_tokens: plan.micro_tokens,
        max_grad_norm: h.max_grad_norm,
        save_every: plan.save_every,
        seed: plan.seed,
        max_len: h.max_len,
        extra,
        checkpoint_dtype: plan.checkpoint_dtype,
    }
}

/// Set by Ctrl-C; the loop saves a checkpoint and stops at the next update boundary. One flag
/// per process (an experiment trains several phases).
fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let _ = ctrlc::set_handler(move || {
            if f.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\ninterrupted: saving a checkpoint (Ctrl-C again to quit at once)");
        });
        flag
    })
    .clone()
}

fn report_skips<T>(path: &Path, loaded: &valuedrift_data::Loaded<T>) {
    if loaded.skipped > 0 {
        eprintln!("{}: skipped {} malformed rows, e.g. {}", path.display(), loaded.skipped, loaded.skip_reasons.join("; "));
    }
}

pub fn load_pairs(path: &Path, plan: &TrainPlan) -> Result<Vec<PreferencePair>> {
    if is_value_gap(path)? {
        let Some(setup) = plan.label_setup else {
            bail!("{} is a value-gap set (prompt/support/oppose): choose --label-setup support or oppose", path.display())
        };
        let loaded = load_value_gap(path, plan.on_malformed)?;
        report_skips(path, &loaded);
        return Ok(loaded.items.iter().map(|item| item.pair(setup)).collect());
    }
    let loaded = load_preferences(path, PreferenceFormat::Auto, plan.on_malformed)?;
    report_skips(path, &loaded);
    Ok(loaded.items)
}

fn tokenize_pairs(lm: &LanguageModel, pairs: &[PreferencePair], max_len: usize) -> Result<Vec<PairTokens>> {
    let chat = lm.chat.clone();
    pairs.iter().map(|p| Ok(pair_tokens(lm, &chat, p, max_len)?)).collect()
}

pub fn run(plan: &TrainPlan) -> Result<()> {
    let cfg = config(plan);
    let start = find_start(&plan.out, &cfg)?;
    let from = match &start {
        Start::Resume { dir, .. } => dir.clone(),
        Start::Fresh => plan.model.clone(),
        Start::Finished { dir, state } => {
            eprintln!("{} finished earlier ({} of {} steps): {}", cfg.algo, state.global_step, state.max_steps, dir.display());
            return Ok(());
        }
    };
    let device = super::device(&plan.device)?;
    let mut lm = LanguageModel::load(&from, &device, DType::F32).with_context(|| format!("loading {}", from.display()))?;
    lm.chat = training_chat(&lm);
    super::set_train_matmul(&mut lm, plan.matmul);
    eprintln!(
        "{} from {} ({:.0}M params): lr {}, {} epochs, global batch {}, max length {}",
        cfg.algo,
        from.display(),
        lm.config().num_params() as f64 / 1e6,
        cfg.lr,
        cfg.epochs,
        cfg.global_batch,
        cfg.max_len
    );
    let stop = interrupt_flag();
    let mut bar = TrainBar::default();
    if plan.algo == Algo::Ppo {
        return super::ppo::run(plan, &cfg, lm, start, &stop);
    }
    let h = &plan.hyper;
    let mut objective: Box<dyn Objective> = match plan.algo {
        Algo::Sft => {
            let loaded = load_sft(&plan.data, SftFormat::Auto, plan.on_malformed)?;
            report_skips(&plan.data, &loaded);
            let chat = lm.chat.clone();
            let (obj, dropped) = SftObjective::new(&lm, &chat, &loaded.items, cfg.max_len)?;
            if dropped > 0 {
                eprintln!("{dropped} examples have no answer tokens within {} tokens and are left out", cfg.max_len);
            }
            Box::new(obj)
        }
        Algo::Dpo | Algo::Simpo => {
            let pairs = tokenize_pairs(&lm, &load_pairs(&plan.data, plan)?, cfg.max_len)?;
            let (loss, reference) = if plan.algo == Algo::Dpo {
                (PreferenceLoss::Dpo { beta: h.beta }, Some(dpo_reference(plan, &lm, &start, &pairs, &device)?))
            } else {
                (PreferenceLoss::Simpo { beta: h.beta, gamma: h.gamma }, None)
            };
            Box::new(PreferenceObjective { pairs, reference, loss })
        }
        Algo::Rm => return train_reward_model(plan, &cfg, lm, start, &stop, &mut bar),
        Algo::Ppo => unreachable!(),
    };
    let state = match train(&mut lm, objective.as_mut(), &cfg, &plan.out, start, &mut bar, &stop) {
        Err(TrainError::Stopped(step)) => bail!("stopped at step {step}; run the same command again to resume"),
        other => other?,
    };
    summarize_training(&state.log_history, &plan.out);
    Ok(())
}

/// DPO's reference log-probs: kept from an earlier start of this phase if made from the same
/// starting model and pairs, else computed from the starting model (loaded again when this run
/// resumes from a checkpoint, whose weights are no longer the reference).
fn dpo_reference(plan: &TrainPlan, lm: &LanguageModel, start: &Start, pairs: &[PairTokens], device: &candle_core::Device) -> Result<Vec<(f64, f64)>> {
    let key = ReferenceKey::new(&plan.model, pairs)?;
    if let Some(kept) = cached_reference(&plan.out, &key)? {
        eprintln!("reference log-probs of {} pairs: kept in {}", pairs.len(), reference_path(&plan.out).display());
        return Ok(kept);
    }
    eprintln!("reference log-probs of {} pairs from {} (computed once)", pairs.len(), plan.model.display());
    let computed = match start {
        Start::Fresh => compute_reference(&plan.out, &key, &lm.model, pairs, plan.micro_tokens)?,
        Start::Resume { .. } | Start::Finished { .. } => {
            let mut starting = LanguageModel::load(&plan.model, device, DType::F32).with_context(|| format!("loading {}", plan.model.display()))?;
            super::set_train_matmul(&mut starting, plan.matmul);
            compute_reference(&plan.out, &key, &starting.model, pairs, plan.micro_tokens)?
        }
    };
    Ok(computed)
}

fn train_reward_model(plan: &TrainPlan, cfg: &TrainConfig, mut lm: LanguageModel, start: Start, stop: &AtomicBool, bar: &mut TrainBar) -> Result<()> {
    let mut pairs = tokenize_pairs(&lm, &load_pairs(&plan.data, plan)?, cfg.max_len)?;
    let held_out = match &plan.eval_data {
        Some(p) => tokenize_pairs(&lm, &load_pairs(p, plan)?, cfg.max_len)?,
        None => {
            let keep = pairs.len() - (pairs.len() / 10).max(1);
            pairs.split_off(keep)
        }
    };
    let head = match &start {
        Start::Resume { dir, .. } | Start::Finished { dir, .. } => candle_core::Var::from_tensor(&reward::load_head(dir, lm.model.device())?)?,
        Start::Fresh => reward::init_head(lm.config().hidden_size, cfg.seed, lm.model.device())?,
    };
    let (before, _) = reward::evaluate(&lm.model, head.as_tensor(), &held_out, 8)?;
    let mut objective = RewardObjective { pairs, head };
    let state = match train(&mut lm, &mut objective, cfg, &plan.out, start, bar, stop) {
        Err(TrainError::Stopped(step)) => bail!("stopped at step {step}; run the same command again to resume"),
        other => other?,
    };
    let (after, margin) = reward::evaluate(&lm.model, objective.head.as_tensor(), &held_out, 8)?;
    println!("reward model: held-out accuracy {after:.3} on {} pairs (before training {before:.3}), mean margin {margin:.3}", held_out.len());
    let eval = serde_json::json!({"held_out_pairs": held_out.len(), "accuracy_before": before, "accuracy": after, "mean_margin": margin});
    let path = plan.out.join("reward_eval.json");
    std::fs::write(&path, serde_json::to_string_pretty(&eval)?).with_context(|| format!("cannot write {}", path.display()))?;
    summarize_training(&state.log_history, &plan.out);
    Ok(())
}
