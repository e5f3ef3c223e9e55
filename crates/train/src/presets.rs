//! Hyperparameter presets. `paper`: the settings of the paper's appendix B (as quoted in issue 13;
//! docs/training.md lists each with its source). SFT: lr 2e-5, global batch 128, sequences of
//! 2048, 3% warmup, 3 epochs. Reward model: lr 1e-5, batch 128, 1 epoch. PPO, DPO and SimPO:
//! global batch 32, 3 epochs, 10% warmup, cosine decay; PPO lr 5e-7 with KL 0.05 and responses
//! of up to 1024 tokens; DPO beta 0.1 at 1e-5; SimPO beta 2.0, gamma 0.5 at 5e-7.

use crate::schedule::Decay;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Algo {
    Sft,
    Rm,
    Ppo,
    Dpo,
    Simpo,
}

impl Algo {
    pub fn name(self) -> &'static str {
        match self {
            Algo::Sft => "sft",
            Algo::Rm => "rm",
            Algo::Ppo => "ppo",
            Algo::Dpo => "dpo",
            Algo::Simpo => "simpo",
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Hyper {
    pub lr: f64,
    pub epochs: u32,
    pub global_batch: usize,
    pub max_len: usize,
    pub warmup_ratio: f64,
    pub decay: Decay,
    pub weight_decay: f64,
    pub max_grad_norm: Option<f64>,
    /// DPO/SimPO beta.
    pub beta: f64,
    /// SimPO margin.
    pub gamma: f64,
    /// PPO per-token KL coefficient.
    pub kl_coef: f64,
}

pub fn paper(algo: Algo) -> Hyper {
    let base = Hyper {
        lr: 1e-5,
        epochs: 1,
        global_batch: 32,
        max_len: 2048,
        warmup_ratio: 0.1,
        decay: Decay::Cosine,
        weight_decay: 0.0,
        max_grad_norm: Some(1.0),
        beta: 0.1,
        gamma: 0.5,
        kl_coef: 0.05,
    };
    let preference = Hyper { global_batch: 32, epochs: 3, ..base };
    match algo {
        Algo::Sft => Hyper { lr: 2e-5, epochs: 3, global_batch: 128, warmup_ratio: 0.03, ..base },
        Algo::Rm => Hyper { lr: 1e-5, epochs: 1, global_batch: 128, ..base },
        Algo::Ppo => Hyper { lr: 5e-7, ..preference },
        Algo::Dpo => Hyper { lr: 1e-5, beta: 0.1, ..preference },
        Algo::Simpo => Hyper { lr: 5e-7, beta: 2.0, gamma: 0.5, ..preference },
    }
}
