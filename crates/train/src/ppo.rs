//! PPO as TRL's PPOTrainer does it (the trainer the paper used): per batch of prompts, sample
//! responses from the policy (temperature 0.7), score them with the reward model (responses that
//! do not end with EOS lose `missing_eos_penalty`), add a per-token KL penalty to the frozen
//! reference, estimate advantages with GAE on a value model (initialized from the reward model),
//! whiten them, and take clipped policy and value steps for a few PPO epochs.
//!
//! Responses are kept as ragged sequences, flattened into one vector of response tokens: a
//! "masked mean" over the padded batch is then just the mean over that vector.

use crate::checkpoint::{self, Extras, TrainerState, WeightsDtype};
use crate::reward::{load_head, RewardModel, HEAD_NAME};
use crate::schedule::Schedule;
use crate::trainer::{plan, Progress, TrainConfig};
use crate::{file_err, Result, TrainError};
use candle_core::{DType, Tensor, Var, D};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use valuedrift_engine::generate::{generate, Finish, Request, SamplingParams};
use valuedrift_engine::matmul::Precision;
use valuedrift_engine::optim::{clip_scale, grad_norm, AdamW, AdamWConfig};
use valuedrift_engine::score::{masked_token_logps_at, token_logps_and_entropy};
use valuedrift_engine::{LanguageModel, Mode, Model};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PpoConfig {
    pub kl_coef: f64,
    pub gamma: f64,
    pub lam: f64,
    pub cliprange: f64,
    pub cliprange_value: f64,
    pub vf_coef: f64,
    pub ppo_epochs: usize,
    pub temperature: f64,
    pub response_tokens: usize,
    /// Subtracted from the score of a response that does not end with EOS (the "EOS trick").
    pub missing_eos_penalty: Option<f64>,
}

impl Default for PpoConfig {
    /// TRL's PPOConfig defaults, with the paper's KL coefficient and temperature.
    fn default() -> Self {
        PpoConfig {
            kl_coef: 0.05,
            gamma: 1.0,
            lam: 0.95,
            cliprange: 0.2,
            cliprange_value: 0.2,
            vf_coef: 0.1,
            ppo_epochs: 4,
            temperature: 0.7,
            response_tokens: 64,
            missing_eos_penalty: Some(1.0),
        }
    }
}

/// Per-token rewards: -kl_coef * (logp - ref_logp), plus the score on each response's last token.
pub fn token_rewards(logps: &[f32], ref_logps: &[f32], ranges: &[std::ops::Range<usize>], scores: &[f64], kl_coef: f64) -> Vec<f64> {
    let mut r: Vec<f64> = logps.iter().zip(ref_logps).map(|(&l, &rl)| -kl_coef * (l as f64 - rl as f64)).collect();
    for (range, &s) in ranges.iter().zip(scores) {
        r[range.end - 1] += s;
    }
    r
}

/// Generalized advantage estimation over each response (the value after its end is 0);
/// returns (advantages, returns = advantages + values).
pub fn gae(rewards: &[f64], values: &[f64], ranges: &[std::ops::Range<usize>], gamma: f64, lam: f64) -> (Vec<f64>, Vec<f64>) {
    let mut adv = vec![0.0; rewards.len()];
    for range in ranges {
        let mut last = 0.0;
        for t in range.clone().rev() {
            let next_value = if t + 1 < range.end { values[t + 1] } else { 0.0 };
            let delta = rewards[t] + gamma * next_value - values[t];
            last = delta + gamma * lam * last;
            adv[t] = last;
        }
    }
    let returns = adv.iter().zip(values).map(|(a, v)| a + v).collect();
    (adv, returns)
}

/// TRL's masked_whiten: (x - mean) / sqrt(var + 1e-8) with the unbiased variance.
pub fn whiten(x: &[f64]) -> Vec<f64> {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    x.iter().map(|v| (v - mean) / (var + 1e-8).sqrt()).collect()
}

/// Clipped policy loss (mean over response tokens) and the fraction of clipped tokens.
pub fn policy_loss(new_logps: &Tensor, old_logps: &Tensor, advantages: &Tensor, cliprange: f64) -> Result<(Tensor, f64)> {
    let ratio = (new_logps - old_logps)?.exp()?;
    let unclipped = (advantages.neg()? * &ratio)?;
    let clipped = (advantages.neg()? * ratio.clamp(1.0 - cliprange, 1.0 + cliprange)?)?;
    let clipfrac = clipped.gt(&unclipped)?.to_dtype(DType::F32)?.mean_all()?.to_scalar::<f32>()? as f64;
    Ok((unclipped.maximum(&clipped)?.mean_all()?, clipfrac))
}

/// Clipped value loss: 0.5 * mean(max((v - R)², (clip(v, v_old ± c) - R)²)).
pub fn value_loss(values: &Tensor, old_values: &Tensor, returns: &Tensor, cliprange_value: f64) -> Result<Tensor> {
    let low = (old_values - cliprange_value)?;
    let high = (old_values + cliprange_value)?;
    let clipped = values.maximum(&low)?.minimum(&high)?;
    let a = (values - returns)?.sqr()?;
    let b = (clipped - returns)?.sqr()?;
    Ok((a.maximum(&b)?.mean_all()? * 0.5)?)
}

/// The value model's estimate at each response position (the state before each response token),
/// flattened like the response log-probs.
pub fn token_values(model: &Model, head: &Tensor, pairs: &[(&[u32], &[u32])], mode: Mode) -> Result<Tensor> {
    let t = pairs.iter().map(|(p, r)| p.len() + r.len()).max().unwrap_or(0);
    let b = pairs.len();
    let (mut ids, mut rows) = (Vec::with_capacity(b * t), Vec::new());
    for (i, (p, r)) in pairs.iter().enumerate() {
        ids.extend_from_slice(p);
        ids.extend_from_slice(r);
        ids.extend(std::iter::repeat_n(0u32, t - p.len() - r.len()));
        rows.extend((0..r.len()).map(|j| (i * t + p.len() - 1 + j) as u32));
    }
    let dev = model.device();
    let hidden = model.forward_hidden(&Tensor::from_vec(ids, (b, t), dev)?, mode, None)?;
    let h = hidden.dim(D::Minus1)?;
    let n = rows.len();
    let picked = hidden.reshape((b * t, h))?.index_select(&Tensor::from_vec(rows, n, dev)?, 0)?;
    Ok(picked.to_dtype(DType::F32)?.matmul(&head.to_dtype(DType::F32)?.t()?)?.squeeze(1)?)
}

/// One batch of rollouts with everything PPO needs from them.
pub struct Rollouts {
    pub prompts: Vec<Vec<u32>>,
    /// Sampled tokens, with the stop token when the response ended.
    pub responses: Vec<Vec<u32>>,
    pub ended: Vec<bool>,
    pub ranges: Vec<std::ops::Range<usize>>,
    pub old_logps: Vec<f32>,
    pub ref_logps: Vec<f32>,
    pub entropy: Vec<f32>,
    pub values: Vec<f32>,
    pub scores: Vec<f64>,
}

impl Rollouts {
    fn pairs(&self) -> Vec<(&[u32], &[u32])> {
        self.prompts.iter().zip(&self.responses).map(|(p, r)| (p.as_slice(), r.as_slice())).collect()
    }
}

fn seqs_with_targets(pairs: &[(&[u32], &[u32])]) -> Vec<(Vec<u32>, Vec<bool>)> {
    pairs.iter().map(|(p, r)| ([*p, *r].concat(), (0..p.len() + r.len()).map(|j| j >= p.len()).collect())).collect()
}

fn logps_at(model: &Model, pairs: &[(&[u32], &[u32])], mode: Mode, temperature: f64) -> Result<Tensor> {
    let owned = seqs_with_targets(pairs);
    let refs: Vec<(&[u32], &[bool])> = owned.iter().map(|(i, t)| (i.as_slice(), t.as_slice())).collect();
    Ok(masked_token_logps_at(model, &refs, mode, temperature)?.0)
}

/// The models PPO works with.
pub struct PpoModels<'a> {
    pub policy: &'a LanguageModel,
    pub reference: &'a LanguageModel,
    pub reward: &'a RewardModel,
    pub value: &'a LanguageModel,
    pub value_head: &'a Var,
}

/// Where a checkpoint keeps the value model (inside its training state).
fn value_dir(checkpoint: &Path) -> std::path::PathBuf {
    checkpoint.join("training/value")
}

/// The models PPO works with beside the policy, owned: the frozen reference (the policy's
/// starting model), the reward model, and the value model with its head, which starts as the
/// reward model (as in TRL) and, on resume, continues from the state the checkpoint saved.
pub struct PpoCompanions {
    pub reference: LanguageModel,
    pub reward: RewardModel,
    pub value: LanguageModel,
    pub value_head: Var,
}

impl PpoCompanions {
    /// `start_model` is the policy's starting model; `resume_from` the checkpoint a resumed run
    /// continues from.
    pub fn load(start_model: &Path, reward_model: &Path, resume_from: Option<&Path>, device: &candle_core::Device) -> Result<Self> {
        let context =
            |what: &str, path: &Path, e: TrainError| TrainError::File { path: path.to_path_buf(), message: format!("loading the {what}: {e}") };
        // The reward model and the reference only score, so they are built frozen (weights held
        // once, packed); the policy and value model train.
        let reward = RewardModel::load_frozen(reward_model, device).map_err(|e| context("reward model", reward_model, e))?;
        let value_from = resume_from.map(value_dir).unwrap_or_else(|| reward_model.to_path_buf());
        let value = LanguageModel::load(&value_from, device, DType::F32).map_err(|e| context("value model", &value_from, e.into()))?;
        let value_head = Var::from_tensor(&load_head(&value_from, device).map_err(|e| context("value head", &value_from, e))?)?;
        let reference =
            LanguageModel::load_for_inference(start_model, device, Precision::F32).map_err(|e| context("reference model", start_model, e.into()))?;
        Ok(PpoCompanions { reference, reward, value, value_head })
    }

    pub fn with_policy<'a>(&'a self, policy: &'a LanguageModel) -> PpoModels<'a> {
        PpoModels { policy, reference: &self.reference, reward: &self.reward, value: &self.value, value_head: &self.value_head }
    }
}

/// Samples a response per prompt and computes log-probs, values and scores (no gradients).
pub fn rollout(m: &PpoModels, prompts: &[Vec<u32>], cfg: &PpoConfig, seed: u64) -> Result<Rollouts> {
    let requests: Vec<Request> = prompts.iter().enumerate().map(|(i, p)| Request { prompt: p.clone(), seed_key: i as u64 }).collect();
    let params = SamplingParams { temperature: cfg.temperature, top_p: 1.0, max_new_tokens: cfg.response_tokens, seed };
    let mut done: Vec<Option<(Vec<u32>, bool)>> = vec![None; prompts.len()];
    generate(&m.policy.model, &requests, &params, &m.policy.stop_ids(), prompts.len(), |c| {
        let mut toks = c.tokens;
        let ended = matches!(c.finish, Finish::Stop(_));
        if let Finish::Stop(t) = c.finish {
            toks.push(t);
        }
        done[c.request] = Some((toks, ended));
        Ok(())
    })?;
    let (responses, ended): (Vec<Vec<u32>>, Vec<bool>) = done.into_iter().map(|d| d.expect("every prompt answered")).unzip();
    let pairs: Vec<(&[u32], &[u32])> = prompts.iter().zip(&responses).map(|(p, r)| (p.as_slice(), r.as_slice())).collect();
    let owned = seqs_with_targets(&pairs);
    let refs: Vec<(&[u32], &[bool])> = owned.iter().map(|(i, t)| (i.as_slice(), t.as_slice())).collect();
    let policy = token_logps_and_entropy(&m.policy.model, &refs, cfg.temperature)?;
    let (old_logps, entropy, ranges) = (policy.logps, policy.entropy, policy.ranges);
    // Only one trainable model's packed weights at a time: the update repacks the policy's.
    m.policy.model.weights_updated();
    let ref_logps = token_logps_and_entropy(&m.reference.model, &refs, cfg.temperature)?.logps;
    let values: Vec<f32> = token_values(&m.value.model, m.value_head.as_tensor(), &pairs, Mode::Infer)?.to_vec1()?;
    m.value.model.weights_updated();
    let full: Vec<Vec<u32>> = owned.iter().map(|(ids, _)| ids.clone()).collect();
    let raw = m.reward.score(&full)?;
    let scores = raw.iter().zip(&ended).map(|(&s, &e)| s as f64 - if e { 0.0 } else { cfg.missing_eos_penalty.unwrap_or(0.0) }).collect();
    Ok(Rollouts { prompts: prompts.to_vec(), responses, ended, ranges, old_logps, ref_logps, entropy, values, scores })
}

/// Metrics of one PPO update.
pub fn update(
    m: &PpoModels,
    r: &Rollouts,
    cfg: &PpoConfig,
    policy_opt: &mut AdamW,
    value_opt: &mut AdamW,
    max_grad_norm: Option<f64>,
) -> Result<serde_json::Value> {
    let rewards = token_rewards(&r.old_logps, &r.ref_logps, &r.ranges, &r.scores, cfg.kl_coef);
    let values: Vec<f64> = r.values.iter().map(|&v| v as f64).collect();
    let (adv, returns) = gae(&rewards, &values, &r.ranges, cfg.gamma, cfg.lam);
    let adv = whiten(&adv);
    let dev = m.policy.model.device();
    let tensor = |v: Vec<f32>| Tensor::from_vec(v.clone(), v.len(), dev);
    let (old, adv_t) = (tensor(r.old_logps.clone())?, tensor(adv.iter().map(|&a| a as f32).collect())?);
    let (old_v, ret_t) = (tensor(r.values.clone())?, tensor(returns.iter().map(|&x| x as f32).collect())?);
    let pairs = r.pairs();
    let policy_params: Vec<Var> = m.policy.model.params().iter().map(|(_, v)| v.clone()).collect();
    let mut value_params: Vec<Var> = m.value.model.params().iter().map(|(_, v)| v.clone()).collect();
    value_params.push(m.value_head.clone());
    let (mut pg, mut vf, mut clipfrac, mut approx_kl) = (0.0, 0.0, 0.0, 0.0);
    for _ in 0..cfg.ppo_epochs.max(1) {
        let new = logps_at(&m.policy.model, &pairs, Mode::Grad, cfg.temperature)?;
        let (pg_loss, cf) = policy_loss(&new, &old, &adv_t, cfg.cliprange)?;
        approx_kl += 0.5 * (&new - &old)?.sqr()?.mean_all()?.to_scalar::<f32>()? as f64;
        let grads = valuedrift_engine::backward(&pg_loss)?;
        let norm = grad_norm(&policy_params, &grads)?;
        policy_opt.step(&grads, clip_scale(norm, max_grad_norm))?;
        m.policy.model.weights_updated();
        let v = token_values(&m.value.model, m.value_head.as_tensor(), &pairs, Mode::Grad)?;
        let v_loss = (value_loss(&v, &old_v, &ret_t, cfg.cliprange_value)? * cfg.vf_coef)?;
        let grads = valuedrift_engine::backward(&v_loss)?;
        let norm = grad_norm(&value_params, &grads)?;
        value_opt.step(&grads, clip_scale(norm, max_grad_norm))?;
        m.value.model.weights_updated();
        pg += pg_loss.to_scalar::<f32>()? as f64;
        vf += v_loss.to_scalar::<f32>()? as f64 / cfg.vf_coef;
        clipfrac += cf;
    }
    let epochs = cfg.ppo_epochs.max(1) as f64;
    let n = r.prompts.len() as f64;
    let updated = logps_at(&m.policy.model, &pairs, Mode::Infer, cfg.temperature)?.to_vec1::<f32>()?;
    let kl_sum: f64 = r.old_logps.iter().zip(&r.ref_logps).map(|(a, b)| (a - b) as f64).sum();
    Ok(serde_json::json!({
        "reward": r.scores.iter().sum::<f64>() / n,
        "kl": kl_sum / n,
        "entropy": r.entropy.iter().map(|&e| e as f64).sum::<f64>() / r.entropy.len().max(1) as f64,
        "policy_loss": pg / epochs, "value_loss": vf / epochs, "clipfrac": clipfrac / epochs, "approx_kl": approx_kl / epochs,
        "ended_with_eos": r.ended.iter().filter(|&&e| e).count() as f64 / n,
        "response_tokens": r.old_logps.len() as f64 / n,
        "score_gain": score_gain(&r.old_logps, &updated, &r.ranges, &r.scores),
    }))
}

/// How much the update raised the policy's expected score on this batch: the self-normalized
/// importance-sampling estimate of the updated policy's mean score over the batch's own
/// responses (weights π_new(y) / π_old(y) per response) minus their plain mean. Paired on the
/// same responses, so it measures the update, not the luck of the next batch's samples.
pub fn score_gain(old_logps: &[f32], new_logps: &[f32], ranges: &[std::ops::Range<usize>], scores: &[f64]) -> f64 {
    let log_w: Vec<f64> = ranges.iter().map(|r| r.clone().map(|t| new_logps[t] as f64 - old_logps[t] as f64).sum()).collect();
    let top = log_w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = log_w.iter().map(|l| (l - top).exp()).collect();
    let weighted = w.iter().zip(scores).map(|(w, s)| w * s).sum::<f64>() / w.iter().sum::<f64>();
    weighted - scores.iter().sum::<f64>() / scores.len() as f64
}

/// The whole PPO run: rollouts and updates per batch of prompts, checkpoints of the policy (with
/// the value model and both optimizers in `training/` for resuming).
#[allow(clippy::too_many_arguments)]
pub fn train(
    m: &PpoModels,
    prompts: &[Vec<u32>],
    cfg: &PpoConfig,
    tc: &TrainConfig,
    out: &Path,
    resume: Option<(std::path::PathBuf, TrainerState)>,
    progress: &mut dyn Progress,
    stop: &AtomicBool,
) -> Result<TrainerState> {
    if prompts.is_empty() {
        return Err(TrainError::Input("no prompts".into()));
    }
    if m.policy.config().vocab_size != m.reward.lm.config().vocab_size {
        return Err(TrainError::Input("the reward model's vocabulary differs from the policy's; PPO needs one tokenizer".into()));
    }
    std::fs::create_dir_all(out).map_err(|e| file_err(out, e))?;
    let batches = plan(prompts.len(), tc);
    let total = batches.len() as u64;
    let schedule = Schedule::new(tc.lr, tc.warmup_ratio, total, tc.decay);
    let policy_params: Vec<Var> = m.policy.model.params().iter().map(|(_, v)| v.clone()).collect();
    let mut value_params: Vec<Var> = m.value.model.params().iter().map(|(_, v)| v.clone()).collect();
    value_params.push(m.value_head.clone());
    let adam = AdamWConfig { lr: tc.lr, weight_decay: tc.weight_decay, ..Default::default() };
    let mut policy_opt = AdamW::new(policy_params, adam.clone())?;
    let mut value_opt = AdamW::new(value_params, adam)?;
    let mut state = TrainerState {
        global_step: 0,
        max_steps: total,
        phase: tc.phase.clone(),
        algo: "ppo".into(),
        epoch: 0.0,
        log_history: Vec::new(),
        config: serde_json::to_value(tc).expect("plain data"),
    };
    if let Some((dir, saved)) = resume {
        checkpoint::restore_optimizer(&dir, &mut policy_opt, m.policy.model.device())?;
        checkpoint::restore_optimizer(&value_dir(&dir), &mut value_opt, m.policy.model.device())?;
        state = saved;
    }
    crate::trainer::rewrite_metrics(out, &state.log_history)?;
    progress.start(total, state.global_step);
    let steps_per_epoch = prompts.len().div_ceil(tc.global_batch.max(1)) as f64;
    while state.global_step < total {
        if stop.load(Ordering::Relaxed) {
            save(m, &state, &policy_opt, &value_opt, tc.checkpoint_dtype, out, progress)?;
            return Err(TrainError::Stopped(state.global_step));
        }
        let step = state.global_step;
        let lr = schedule.lr(step);
        policy_opt.set_lr(lr);
        value_opt.set_lr(lr);
        let batch: Vec<Vec<u32>> = batches[step as usize].iter().map(|&i| prompts[i].clone()).collect();
        let r = rollout(m, &batch, cfg, tc.seed.wrapping_mul(1_000_003).wrapping_add(step))?;
        let mut entry = update(m, &r, cfg, &mut policy_opt, &mut value_opt, tc.max_grad_norm)?;
        state.global_step += 1;
        state.epoch = state.global_step as f64 / steps_per_epoch;
        entry["step"] = serde_json::json!(state.global_step);
        entry["lr"] = serde_json::json!(lr);
        entry["loss"] = entry["policy_loss"].clone();
        crate::trainer::append_metric(out, &entry)?;
        progress.step(state.global_step, &entry);
        state.log_history.push(entry);
        if state.global_step.is_multiple_of(tc.save_every.max(1)) || state.global_step == total {
            save(m, &state, &policy_opt, &value_opt, tc.checkpoint_dtype, out, progress)?;
        }
    }
    Ok(state)
}

fn save(
    m: &PpoModels,
    state: &TrainerState,
    policy_opt: &AdamW,
    value_opt: &AdamW,
    weights: WeightsDtype,
    out: &Path,
    progress: &mut dyn Progress,
) -> Result<()> {
    // The value model is training state: it lives (and is dropped) with training/, and is
    // written inside the policy checkpoint before that appears, so no kill can part them.
    let value_state = TrainerState { log_history: Vec::new(), ..state.clone() };
    let write_value = |training: &Path| -> Result<()> {
        let staging = training.join(".value");
        // Training state stays f32, so the value model resumes exactly.
        let extras = Extras {
            heads: vec![(HEAD_NAME, m.value_head.as_tensor().clone())],
            optimizer: Some(value_opt),
            more_training_state: None,
            weights: WeightsDtype::F32,
        };
        let saved = checkpoint::save(&staging, m.value, &value_state, extras)?;
        let value_dir = training.join("value");
        std::fs::rename(&saved, &value_dir).map_err(|e| file_err(&value_dir, e))?;
        std::fs::remove_dir_all(&staging).map_err(|e| file_err(&staging, e))
    };
    let dir = checkpoint::save(
        out,
        m.policy,
        state,
        Extras { heads: Vec::new(), optimizer: Some(policy_opt), more_training_state: Some(&write_value), weights },
    )?;
    progress.saved(&dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::single_range_in_vec_init)]
    fn gae_by_hand() {
        // One response of two tokens: rewards [0, 1], values [0.5, 0.2], gamma 1, lam 0.5.
        // t=1: delta = 1 - 0.2 = 0.8; adv = 0.8. t=0: delta = 0 + 0.2 - 0.5 = -0.3; adv = -0.3 + 0.5*0.8 = 0.1.
        let (adv, ret) = gae(&[0.0, 1.0], &[0.5, 0.2], &[0..2], 1.0, 0.5);
        assert!((adv[0] - 0.1).abs() < 1e-12 && (adv[1] - 0.8).abs() < 1e-12);
        assert!((ret[0] - 0.6).abs() < 1e-12 && (ret[1] - 1.0).abs() < 1e-12);
        let w = whiten(&[1.0, 2.0, 3.0]);
        assert!((w[0] + 1.0).abs() < 1e-6 && w[1].abs() < 1e-12, "{w:?}");
    }
}
