//! valuedrift's engine: trainable causal LMs on candle.
//!
//! It knows tensors, models, tokenizers, sampling and log-probs, and nothing of stances.

mod chat;
mod config;
mod decoder_grad;
pub mod embed;
mod error;
pub mod generate;
pub mod kv;
mod layer_math;
mod load;
pub mod matmul;
mod model;
pub mod optim;
pub mod score;
mod simd;
mod tokenizer;
mod train_ops;
mod weights;

pub use chat::{ChatFormat, Message};
pub use config::{Family, ModelConfig};
pub use decoder_grad::backward;
pub use error::{Error, Result};
pub use load::LanguageModel;
pub use model::{Build, KvContext, Mode, Model};
pub use tokenizer::Tokenizer;
pub use weights::save_safetensors;
