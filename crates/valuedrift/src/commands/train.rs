//! `valuedrift train`: SFT, reward model, PPO, DPO or SimPO into checkpoint-N/ directories;
//! an interrupt (Ctrl-C) saves a checkpoint first, and re-running resumes from the newest one.

use crate::cli::{AlgoArg, LabelSetupArg, ScheduleArg, TrainArgs};
use crate::progress::{summarize_training, TrainBar};
use anyhow::{bail, Context, Result};
use candle_core::DType;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use valuedrift_data::valuegap::{is_value_gap, load_value_gap, LabelSetup};
use valuedrift_data::{load_preferences, load_sft, OnMalformed, PreferenceFormat, PreferencePair, SftFormat};
use valuedrift_engine::LanguageModel;
use valuedrift_train::preference::{cached_reference, compute_reference, reference_path, PreferenceLoss, PreferenceObjective, ReferenceKey};
use valuedrift_train::presets::{paper, Algo, Hyper};
use valuedrift_train::reward::{self, RewardObjective};
use valuedrift_train::schedule::Decay;
use valuedrift_train::sft::SftObjective;
use valuedrift_train::tokenize::{pair_tokens, training_chat, PairTokens};
use valuedrift_train::trainer::{find_start, train, Objective, Start, TrainConfig};
use valuedrift_train::TrainError;

pub fn algo(a: AlgoArg) -> Algo {
    match a {
        AlgoArg::Sft => Algo::Sft,
        AlgoArg::Rm => Algo::Rm,
        AlgoArg::Ppo => Algo::Ppo,
        AlgoArg::Dpo => Algo::Dpo,
        AlgoArg::Simpo => Algo::Simpo,
    }
}

/// The preset with the command line's overrides applied.
fn hyper(args: &TrainArgs) -> Hyper {
    let mut h = paper(algo(args.algo));
    h.lr = args.lr.unwrap_or(h.lr);
    h.epochs = args.epochs.unwrap_or(h.epochs);
    h.global_batch = args.global_batch.unwrap_or(h.global_batch);
    h.max_len = args.max_len.unwrap_or(h.max_len);
    h.warmup_ratio = args.warmup_ratio.unwrap_or(h.warmup_ratio);
    h.weight_decay = args.weight_decay.unwrap_or(h.weight_decay);
    h.beta = args.beta.unwrap_or(h.beta);
    h.gamma = args.gamma.unwrap_or(h.gamma);
    h.kl_coef = args.kl_coef.unwrap_or(h.kl_coef);
    if let Some(s) = args.schedule {
        h.decay = match s {
            ScheduleArg::Cosine => Decay::Cosine,
            ScheduleArg::Linear => Decay::Linear,
            ScheduleArg::Constant => Decay::Constant,
        };
    }
    if let Some(n) = args.max_grad_norm {
        h.max_grad_norm = (n > 0.0).then_some(n);
    }
    h
}

pub fn config(args: &TrainArgs, h: &Hyper) -> TrainConfig {
    let a = algo(args.algo);
    let extra = match a {
        Algo::Dpo => serde_json::json!({"beta": h.beta, "label_setup": format!("{:?}", args.label_setup)}),
        Algo::Simpo => serde_json::json!({"beta": h.beta, "gamma": h.gamma, "label_setup": format!("{:?}", args.label_setup)}),
        Algo::Ppo => {
            serde_json::json!({"kl_coef": h.kl_coef, "rollout_tokens": args.rollout_tokens, "ppo_epochs": args.ppo_epochs, "missing_eos_penalty": args.missing_eos_penalty,
            "reward_model": args.reward_model.as_ref().map(|p| p.display().to_string())})
        }
        _ => serde_json::Value::Null,
    };
    TrainConfig {
        phase: args.phase.clone().unwrap_or_else(|| a.name().to_string()),
        algo: a.name().into(),
        lr: h.lr,
        warmup_ratio: h.warmup_ratio,
        decay: h.decay,
        weight_decay: h.weight_decay,
        epochs: h.epochs,
        max_steps: args.max_steps,
        global_batch: h.global_batch,
        micro_tokens: args.micro_tokens,
        max_grad_norm: h.max_grad_norm,
        save_every: args.save_every,
        seed: args.seed,
        max_len: h.max_len,
        extra,
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

fn on_malformed(args: &TrainArgs) -> OnMalformed {
    if args.skip_malformed {
        OnMalformed::Skip
    } else {
        OnMalformed::Error
    }
}

fn report_skips<T>(path: &Path, loaded: &valuedrift_data::Loaded<T>) {
    if loaded.skipped > 0 {
        eprintln!("{}: skipped {} malformed rows, e.g. {}", path.display(), loaded.skipped, loaded.skip_reasons.join("; "));
    }
}

pub fn load_pairs(path: &Path, args: &TrainArgs) -> Result<Vec<PreferencePair>> {
    if is_value_gap(path)? {
        let setup = match args.label_setup {
            Some(LabelSetupArg::Support) => LabelSetup::Support,
            Some(LabelSetupArg::Oppose) => LabelSetup::Oppose,
            None => bail!("{} is a value-gap set (prompt/support/oppose): choose --label-setup support or oppose", path.display()),
        };
        let loaded = load_value_gap(path, on_malformed(args))?;
        report_skips(path, &loaded);
        return Ok(loaded.items.iter().map(|item| item.pair(setup)).collect());
    }
    let loaded = load_preferences(path, PreferenceFormat::Auto, on_malformed(args))?;
    report_skips(path, &loaded);
    Ok(loaded.items)
}

fn tokenize_pairs(lm: &LanguageModel, pairs: &[PreferencePair], max_len: usize) -> Result<Vec<PairTokens>> {
    let chat = lm.chat.clone();
    pairs.iter().map(|p| Ok(pair_tokens(lm, &chat, p, max_len)?)).collect()
}

pub fn run(args: TrainArgs) -> Result<()> {
    let h = hyper(&args);
    let cfg = config(&args, &h);
    let start = find_start(&args.out, &cfg)?;
    let device = super::device(&args.device)?;
    let from = match &start {
        Start::Resume { dir, .. } => dir.clone(),
        Start::Fresh => args.model.clone(),
    };
    let mut lm = LanguageModel::load(&from, &device, DType::F32).with_context(|| format!("loading {}", from.display()))?;
    lm.chat = training_chat(&lm);
    super::set_train_matmul(&mut lm, args.matmul);
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
    let a = algo(args.algo);
    if a == Algo::Ppo {
        return super::ppo::run(&args, &h, &cfg, lm, start, &stop);
    }
    let mut objective: Box<dyn Objective> = match a {
        Algo::Sft => {
            let loaded = load_sft(&args.data, SftFormat::Auto, on_malformed(&args))?;
            report_skips(&args.data, &loaded);
            let chat = lm.chat.clone();
            let (obj, dropped) = SftObjective::new(&lm, &chat, &loaded.items, cfg.max_len)?;
            if dropped > 0 {
                eprintln!("{dropped} examples have no answer tokens within {} tokens and are left out", cfg.max_len);
            }
            Box::new(obj)
        }
        Algo::Dpo | Algo::Simpo => {
            let pairs = tokenize_pairs(&lm, &load_pairs(&args.data, &args)?, cfg.max_len)?;
            let (loss, reference) = if a == Algo::Dpo {
                (PreferenceLoss::Dpo { beta: h.beta }, Some(dpo_reference(&args, &lm, &start, &pairs, &device)?))
            } else {
                (PreferenceLoss::Simpo { beta: h.beta, gamma: h.gamma }, None)
            };
            Box::new(PreferenceObjective { pairs, reference, loss })
        }
        Algo::Rm => return train_reward_model(&args, &cfg, lm, start, &stop, &mut bar),
        Algo::Ppo => unreachable!(),
    };
    let state = match train(&mut lm, objective.as_mut(), &cfg, &args.out, start, &mut bar, &stop) {
        Err(TrainError::Stopped(step)) => bail!("stopped at step {step}; run the same command again to resume"),
        other => other?,
    };
    summarize_training(&state.log_history, &args.out);
    Ok(())
}

/// DPO's reference log-probs: kept from an earlier start of this phase if made from the same
/// starting model and pairs, else computed from the starting model (loaded again when this run
/// resumes from a checkpoint, whose weights are no longer the reference).
fn dpo_reference(args: &TrainArgs, lm: &LanguageModel, start: &Start, pairs: &[PairTokens], device: &candle_core::Device) -> Result<Vec<(f64, f64)>> {
    let key = ReferenceKey::new(&args.model, pairs)?;
    if let Some(kept) = cached_reference(&args.out, &key)? {
        eprintln!("reference log-probs of {} pairs: kept in {}", pairs.len(), reference_path(&args.out).display());
        return Ok(kept);
    }
    eprintln!("reference log-probs of {} pairs from {} (computed once)", pairs.len(), args.model.display());
    let computed = match start {
        Start::Fresh => compute_reference(&args.out, &key, &lm.model, pairs, args.micro_tokens)?,
        Start::Resume { .. } => {
            let mut starting = LanguageModel::load(&args.model, device, DType::F32).with_context(|| format!("loading {}", args.model.display()))?;
            super::set_train_matmul(&mut starting, args.matmul);
            compute_reference(&args.out, &key, &starting.model, pairs, args.micro_tokens)?
        }
    };
    Ok(computed)
}

fn train_reward_model(args: &TrainArgs, cfg: &TrainConfig, mut lm: LanguageModel, start: Start, stop: &AtomicBool, bar: &mut TrainBar) -> Result<()> {
    let mut pairs = tokenize_pairs(&lm, &load_pairs(&args.data, args)?, cfg.max_len)?;
    let held_out = match &args.eval_data {
        Some(p) => tokenize_pairs(&lm, &load_pairs(p, args)?, cfg.max_len)?,
        None => {
            let keep = pairs.len() - (pairs.len() / 10).max(1);
            pairs.split_off(keep)
        }
    };
    let head = match &start {
        Start::Resume { dir, .. } => candle_core::Var::from_tensor(&reward::RewardModel::load(dir, lm.model.device())?.head)?,
        Start::Fresh => reward::init_head(lm.config().hidden_size, cfg.seed, lm.model.device())?,
    };
    let (before, _) = reward::evaluate(&lm.model, head.as_tensor(), &held_out, 8)?;
    let mut objective = RewardObjective { pairs, head };
    let state = match train(&mut lm, &mut objective, cfg, &args.out, start, bar, stop) {
        Err(TrainError::Stopped(step)) => bail!("stopped at step {step}; run the same command again to resume"),
        other => other?,
    };
    let (after, margin) = reward::evaluate(&lm.model, objective.head.as_tensor(), &held_out, 8)?;
    println!("reward model: held-out accuracy {after:.3} on {} pairs (before training {before:.3}), mean margin {margin:.3}", held_out.len());
    let eval = serde_json::json!({"held_out_pairs": held_out.len(), "accuracy_before": before, "accuracy": after, "mean_margin": margin});
    let path = args.out.join("reward_eval.json");
    std::fs::write(&path, serde_json::to_string_pretty(&eval)?).with_context(|| format!("cannot write {}", path.display()))?;
    summarize_training(&state.log_history, &args.out);
    Ok(())
}
