//! valuedrift's engine: trainable causal LMs on candle.
//!
//! It knows tensors, models, tokenizers, sampling and log-probs, and nothing of stances.

pub mod chat;
pub mod config;
pub mod decoder_grad;
pub mod embed;
pub mod error;
pub mod generate;
pub mod kv;
mod layer_math;
pub mod load;
pub mod matmul;
pub mod model;
pub mod optim;
pub mod score;
pub mod simd;
pub mod tokenizer;
pub mod train_ops;
pub mod weights;

pub use chat::{ChatFormat, Message};
pub use config::{Family, ModelConfig};
pub use decoder_grad::backward;
pub use error::{Error, Result};
pub use load::LanguageModel;
pub use model::{KvContext, Mode, Model};
pub use tokenizer::Tokenizer;
