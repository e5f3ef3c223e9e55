//! `valuedrift train` on real data and SmolLM2, small but real runs: learning happens (SFT lowers
//! held-out loss on its kind of answers, DPO raises the held-out chosen-minus-rejected margin, the
//! reward model beats chance on held-out pairs, every PPO update raises the expected score of
//! its own rollouts with bounded KL), and a
//! run killed with SIGKILL (SFT, PPO) resumes from its newest checkpoint with the same losses.

mod common;

use common::{model, root};

use candle_core::{DType, Device};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use valuedrift_data::valuegap::{load_value_gap, LabelSetup};
use valuedrift_data::{load_sft, OnMalformed, SftFormat};
use valuedrift_engine::LanguageModel;
use valuedrift_train::preference::pair_logps;
use valuedrift_train::sft::SftObjective;
use valuedrift_train::tokenize::{pair_tokens, sft_tokens, training_chat};

fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir("train", name)
}

fn train(args: &[&str]) -> Output {
    let m = model();
    Command::new(env!("CARGO_BIN_EXE_valuedrift")).arg("train").args(["--model", m.to_str().unwrap()]).args(args).output().unwrap()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Lines [from, to) of a bundled JSONL file, written to `dir/name`.
fn slice(src: &str, from: usize, to: usize, dir: &Path, name: &str) -> PathBuf {
    pick(src, |i| (from..to).contains(&i), dir, name)
}

/// The lines of a bundled JSONL file whose (0-based) index passes `keep`, written to `dir/name`.
fn pick(src: &str, keep: impl Fn(usize) -> bool, dir: &Path, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join(src)).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).enumerate().filter(|(i, _)| keep(*i)).map(|(_, l)| l).collect();
    let p = dir.join(name);
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

/// Value-gap pairs from every category (20 per category in file order): two per category to
/// train on, one other per category held out.
fn value_gap_split(dir: &Path) -> (PathBuf, PathBuf) {
    const SRC: &str = "data/valuegap/handwritten.jsonl";
    (pick(SRC, |i| i % 20 < 2, dir, "train.jsonl"), pick(SRC, |i| i % 20 == 10, dir, "held_out.jsonl"))
}

/// Runs `valuedrift train ARGS` writing to `out`, kills it (SIGKILL) once `out/checkpoint-2` is
/// complete, checks it had not reached `last`, then runs the same command to the end.
fn kill_after_second_checkpoint_then_resume(args: &[String], out: &Path, last: &str) {
    let m = model();
    let child = Command::new(env!("CARGO_BIN_EXE_valuedrift"))
        .arg("train")
        .args(["--model", m.to_str().unwrap()])
        .args(args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    common::kill_once_exists(child, &out.join("checkpoint-2"), Duration::from_secs(600));
    assert!(!out.join(last).exists(), "the run was killed before its end");
    ok(&train(&args.iter().map(String::as_str).collect::<Vec<_>>()));
}

/// The dtype a checkpoint's model weights are stored in.
fn weights_dtype(checkpoint: &Path) -> DType {
    let tensors = candle_core::safetensors::load(checkpoint.join("model.safetensors"), &Device::Cpu).unwrap();
    tensors.values().next().unwrap().dtype()
}

fn losses(out: &Path) -> Vec<f64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap())
        .collect()
}

fn load(path: &Path) -> LanguageModel {
    LanguageModel::load(path, &Device::Cpu, DType::F32).unwrap()
}

/// Mean answer-token NLL of SFT examples under a model.
fn sft_nll(lm: &LanguageModel, data: &Path) -> f64 {
    let examples = load_sft(data, SftFormat::Auto, OnMalformed::Error).unwrap().items;
    let chat = training_chat(lm);
    let toks: Vec<_> = examples.iter().filter_map(|e| sft_tokens(lm, &chat, e, 256).unwrap()).collect();
    let per = SftObjective::nll(&lm.model, &toks).unwrap();
    per.iter().map(|(s, _)| s).sum::<f64>() / per.iter().map(|(_, n)| *n as f64).sum::<f64>()
}

#[test]
fn sft_learns_and_a_killed_run_resumes_with_the_same_losses() {
    let _one = common::one_training_at_a_time();
    let dir = temp_dir("sft");
    let data = slice("data/sft/supportive.jsonl", 0, 24, &dir, "train.jsonl");
    let held_out = slice("data/sft/supportive.jsonl", 150, 170, &dir, "held_out.jsonl");
    let args = |out: &Path| -> Vec<String> {
        [
            "--algo",
            "sft",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--global-batch",
            "4",
            "--max-steps",
            "5",
            "--save-every",
            "1",
            "--lr",
            "5e-5",
            "--max-len",
            "192",
            "--seed",
            "11",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let whole = dir.join("whole");
    let a: Vec<String> = args(&whole);
    ok(&train(&a.iter().map(String::as_str).collect::<Vec<_>>()));
    let reference = losses(&whole);
    assert_eq!(reference.len(), 5);
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(whole.join("checkpoint-5/trainer_state.json")).unwrap()).unwrap();
    assert_eq!((state["global_step"].as_u64(), state["max_steps"].as_u64(), state["phase"].as_str()), (Some(5), Some(5), Some("sft")));
    // A finished run keeps no training state; its checkpoints are bf16 (f32 only while newest).
    for step in [4, 5] {
        let c = whole.join(format!("checkpoint-{step}"));
        assert!(!c.join("training").exists(), "checkpoint-{step} kept its training state");
        assert_eq!(weights_dtype(&c), DType::BF16, "checkpoint-{step}");
        let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(c.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["torch_dtype"], "bfloat16", "checkpoint-{step}'s config.json names the stored dtype");
    }
    // Running a finished run again trains nothing.
    let o = train(&a.iter().map(String::as_str).collect::<Vec<_>>());
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("finished earlier"), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(losses(&whole), reference, "a finished run was trained again");

    let before = sft_nll(&load(&model()), &held_out);
    let after = sft_nll(&load(&whole.join("checkpoint-5")), &held_out);
    assert!(after < before - 0.05, "held-out supportive answers: NLL {before:.3} -> {after:.3}");

    // Kill as soon as checkpoint-2 is complete, then resume.
    let broken = dir.join("broken");
    kill_after_second_checkpoint_then_resume(&args(&broken), &broken, "checkpoint-5");
    let resumed = losses(&broken);
    assert_eq!(resumed.len(), 5, "the log holds each step once");
    for (a, b) in common::paired(&reference, &resumed) {
        assert!((a - b).abs() <= 1e-6 * a.abs(), "losses differ after resume: {reference:?} vs {resumed:?}");
    }

    // Other settings in the same directory are refused, naming the setting.
    let mut changed = args(&broken);
    let lr_at = changed.iter().position(|a| a == "--lr").unwrap() + 1;
    changed[lr_at] = "1e-4".into();
    let o = train(&changed.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("lr"), "{}", String::from_utf8_lossy(&o.stderr));
    let mut f32_checkpoints = args(&broken);
    f32_checkpoints.extend(["--checkpoint-dtype".to_string(), "f32".to_string()]);
    let o = train(&f32_checkpoints.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("checkpoint_dtype"), "{}", String::from_utf8_lossy(&o.stderr));
    // Checkpoints take gigabytes: leave nothing behind after a pass.
    let _ = std::fs::remove_dir_all(&dir);
}

/// Mean DPO implicit margin (policy minus reference, chosen minus rejected) on value-gap pairs.
fn held_out_margin(policy: &LanguageModel, reference: &LanguageModel, data: &Path) -> f64 {
    let items = load_value_gap(data, OnMalformed::Error).unwrap().items;
    let chat = training_chat(policy);
    let pairs: Vec<_> = items.iter().map(|i| pair_tokens(policy, &chat, &i.pair(LabelSetup::Support), 256).unwrap()).collect();
    let p = pair_logps(&policy.model, &pairs, 4096).unwrap();
    let r = pair_logps(&reference.model, &pairs, 4096).unwrap();
    common::paired(&p, &r).map(|(p, r)| (p.0 - r.0) - (p.1 - r.1)).sum::<f64>() / p.len() as f64
}

#[test]
fn dpo_and_simpo_raise_the_held_out_margin() {
    let _one = common::one_training_at_a_time();
    let dir = temp_dir("dpo");
    let (data, held_out) = value_gap_split(&dir);
    let base = load(&model());
    for (algo, lr) in [("dpo", "2e-5"), ("simpo", "2e-5")] {
        let out = dir.join(algo);
        ok(&train(&[
            "--algo",
            algo,
            "--data",
            data.to_str().unwrap(),
            "--label-setup",
            "support",
            "--out",
            out.to_str().unwrap(),
            "--global-batch",
            "8",
            "--epochs",
            "2",
            "--max-steps",
            "4",
            "--save-every",
            "4",
            "--lr",
            lr,
            "--max-len",
            "256",
            "--warmup-ratio",
            "0",
        ]));
        let margin = held_out_margin(&load(&out.join("checkpoint-4")), &base, &held_out);
        eprintln!("{algo}: held-out margin {margin:.3}");
        assert!(margin > 0.5, "{algo}: held-out margin {margin:.3} (log-prob units) should grow from 0");
    }
    // A value-gap file needs its label setup.
    let o = train(&["--algo", "dpo", "--data", data.to_str().unwrap(), "--out", dir.join("x").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--label-setup"));
    // Checkpoints take gigabytes: leave nothing behind after a pass.
    let _ = std::fs::remove_dir_all(&dir);
}

/// PPO scores with the reward model built frozen (its weights held once, packed): it must give
/// the trainable model's rewards exactly, on sequences of different lengths in one batch.
fn frozen_reward_model_scores_as_the_trained_one(dir: &Path) {
    use valuedrift_train::reward::RewardModel;
    let trainable = RewardModel::load(dir, &Device::Cpu).unwrap();
    let frozen = RewardModel::load_frozen(dir, &Device::Cpu).unwrap();
    let tok = &trainable.lm.tokenizer;
    let texts = [
        "Immigration enriches a country's culture and economy.",
        "No.",
        "The death penalty should be abolished everywhere, because mistakes cannot be undone.",
    ];
    let seqs: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t, false).unwrap()).collect();
    let (a, b) = (trainable.score(&seqs).unwrap(), frozen.score(&seqs).unwrap());
    assert_eq!(a.len(), 3);
    if valuedrift_engine::matmul::supported(valuedrift_engine::matmul::Precision::F32) {
        assert!(frozen.lm.model.is_frozen(), "the packed kernels run here, so the reward model is built frozen");
        assert!(frozen.lm.model.weight_bytes() < trainable.lm.model.weight_bytes(), "frozen holds less");
    }
    assert_eq!(a, b, "frozen rewards {b:?} vs trainable {a:?}");
}

#[test]
fn reward_model_beats_chance_and_ppo_updates_raise_its_reward() {
    let _one = common::one_training_at_a_time();
    let dir = temp_dir("rm");
    let (data, held_out) = value_gap_split(&dir);
    let rm = dir.join("rm");
    // Support-aligned: the reward model learns to prefer supporting answers.
    ok(&train(&[
        "--algo",
        "rm",
        "--data",
        data.to_str().unwrap(),
        "--label-setup",
        "support",
        "--out",
        rm.to_str().unwrap(),
        "--eval-data",
        held_out.to_str().unwrap(),
        "--global-batch",
        "11",
        "--epochs",
        "3",
        "--max-steps",
        "6",
        "--save-every",
        "6",
        "--lr",
        "3e-5",
        "--max-len",
        "256",
        "--warmup-ratio",
        "0",
    ]));
    let eval: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(rm.join("reward_eval.json")).unwrap()).unwrap();
    let acc = eval["accuracy"].as_f64().unwrap();
    assert!(eval["held_out_pairs"].as_u64() == Some(11) && acc >= 0.8, "held-out accuracy {acc} on 11 pairs: {eval}");

    // PPO against that reward model on 8 prompts: short rollouts, no EOS penalty (answers this
    // short never end), a high learning rate so that a few updates show the direction.
    let prompts = slice("data/valuegap/handwritten.jsonl", 0, 8, &dir, "prompts.jsonl");
    let reward_model = rm.join("checkpoint-6");
    frozen_reward_model_scores_as_the_trained_one(&reward_model);
    let ppo_args = |out: &Path| -> Vec<String> {
        [
            "--algo",
            "ppo",
            "--data",
            prompts.to_str().unwrap(),
            "--reward-model",
            reward_model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--global-batch",
            "8",
            "--epochs",
            "6",
            "--save-every",
            "2",
            "--lr",
            "5e-5",
            "--rollout-tokens",
            "16",
            "--ppo-epochs",
            "2",
            "--warmup-ratio",
            "0",
            "--schedule",
            "constant",
            "--missing-eos-penalty",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let ppo = dir.join("ppo");
    ok(&train(&ppo_args(&ppo).iter().map(String::as_str).collect::<Vec<_>>()));
    let read_log = |out: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let log = read_log(&ppo);
    assert_eq!(log.len(), 6);
    // The mean reward of successive batches is not asserted: each batch is 8 fresh 16-token
    // samples, and over 6 updates it wanders by ±0.3 either way (it fell on candle's kernels and
    // rose on the AVX-512 ones from the same start). What every update must do, on any kernel
    // family, is raise the policy's expected score on its own rollouts (paired on the same
    // responses, `ppo::score_gain`) and lower its clipped surrogate loss.
    for e in &log {
        for k in ["kl", "entropy", "clipfrac", "value_loss", "policy_loss", "score_gain"] {
            assert!(e[k].as_f64().is_some_and(f64::is_finite), "{k} missing in {e}");
        }
        assert!(e["score_gain"].as_f64().unwrap() > 0.0, "the update raised the expected score of its batch: {e}");
        assert!(e["policy_loss"].as_f64().unwrap() < 0.0, "the update improved its surrogate objective: {e}");
        assert!(e["kl"].as_f64().unwrap().abs() < 20.0, "KL per response stays bounded: {e}");
    }

    // Killed once checkpoint-2 is complete, then resumed: rollouts are seeded by step and the
    // policy, value model and both optimizers come back, so steps 3-6 repeat exactly.
    let broken = dir.join("ppo-broken");
    kill_after_second_checkpoint_then_resume(&ppo_args(&broken), &broken, "checkpoint-6");
    let resumed = read_log(&broken);
    assert_eq!(resumed.len(), 6, "the log holds each step once");
    for (a, b) in common::paired(&log, &resumed) {
        for k in ["reward", "policy_loss", "value_loss", "kl", "score_gain"] {
            let (x, y) = (a[k].as_f64().unwrap(), b[k].as_f64().unwrap());
            assert!((x - y).abs() <= 1e-6 * x.abs().max(1e-3), "{k} differs after resume: {a} vs {b}");
        }
    }
    // Checkpoints take gigabytes: leave nothing behind after a pass.
    let _ = std::fs::remove_dir_all(&dir);
}
