//! Named engines, as experiment files and `--engines` files write them:
//!
//! ```toml
//! [engine.gpu-judge]              # a fixed pool of servers
//! urls = ["http://gpu1:8000/v1", "http://gpu2:8000/v1"]
//! model = "Qwen/Qwen2.5-7B-Instruct"
//! api_key_env = "OPENAI_API_KEY"  # the variable's name; the key itself is never stored
//!
//! [engine.vllm-per-checkpoint]    # a server started for each checkpoint
//! launch = "vllm serve {model} --port {port}"
//! ```
//! The name `local` always means the built-in engine.

use crate::client::EndpointOptions;
use crate::judge::LogprobMode;
use crate::wire::Api;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Base URLs (`http://host:port/v1`), balanced as one pool.
    #[serde(default)]
    pub urls: Vec<String>,
    /// A command that starts a server for a checkpoint: `{model}` (the checkpoint path),
    /// `{port}` (a free port), `{host}` (127.0.0.1).
    pub launch: Option<String>,
    /// Fixed endpoints per checkpoint: the checkpoint path or "phase@step" -> base URL.
    #[serde(default)]
    pub checkpoints: BTreeMap<String, String>,
    /// The model name sent with requests; `{model}` becomes the checkpoint path (the default,
    /// which is the name vLLM and SGLang give a model served from a path).
    pub model: Option<String>,
    /// The environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// Judging endpoint: chat (the server's template) or completions (prompts rendered here
    /// with `template`).
    #[serde(default = "default_api")]
    pub api: Api,
    /// A local copy of the judge model (GGUF or directory) whose chat template renders prompts.
    pub template: Option<PathBuf>,
    /// Judge log-probs: top (first token's top-k) or echo (exact, completions API).
    #[serde(default = "default_mode")]
    pub logprobs: LogprobMode,
    #[serde(default = "default_top")]
    pub top_logprobs: usize,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default = "default_backoff")]
    pub backoff_s: f64,
    /// How long a launched server may take to answer its health check.
    #[serde(default = "default_ready")]
    pub ready_timeout_s: f64,
}

fn default_api() -> Api {
    Api::Chat
}
fn default_mode() -> LogprobMode {
    LogprobMode::Top
}
fn default_top() -> usize {
    20
}
fn default_concurrency() -> usize {
    64
}
fn default_timeout() -> f64 {
    300.0
}
fn default_retries() -> u32 {
    5
}
fn default_backoff() -> f64 {
    0.5
}
fn default_ready() -> f64 {
    600.0
}

impl EngineConfig {
    /// An engine at fixed URLs with every other setting at its default.
    pub fn at(urls: Vec<String>) -> Self {
        let mut c: EngineConfig = toml_defaults();
        c.urls = urls;
        c
    }

    pub fn endpoint(&self, urls: Vec<String>) -> EndpointOptions {
        EndpointOptions {
            urls,
            api_key_env: self.api_key_env.clone(),
            concurrency: self.concurrency,
            timeout: Duration::from_secs_f64(self.timeout_s),
            retries: self.retries,
            backoff: Duration::from_secs_f64(self.backoff_s),
        }
    }

    pub fn ready_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.ready_timeout_s)
    }

    /// Checks what serde cannot: one way to reach the engine, sane numbers.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        let ways = [!self.urls.is_empty(), self.launch.is_some(), !self.checkpoints.is_empty()];
        if !ways.contains(&true) {
            return Err(format!("engine '{name}': give `urls`, `launch` or `checkpoints`"));
        }
        if self.launch.is_some() && (!self.urls.is_empty() || !self.checkpoints.is_empty()) {
            return Err(format!("engine '{name}': `launch` starts its own servers; drop `urls`/`checkpoints`"));
        }
        if let Some(l) = &self.launch {
            if !l.contains("{port}") {
                return Err(format!("engine '{name}': key 'launch' must contain {{port}}"));
            }
        }
        if self.concurrency == 0 || self.timeout_s <= 0.0 || self.top_logprobs == 0 {
            return Err(format!("engine '{name}': concurrency, timeout_s and top_logprobs must be positive"));
        }
        Ok(())
    }
}

fn toml_defaults() -> EngineConfig {
    EngineConfig {
        urls: Vec::new(),
        launch: None,
        checkpoints: BTreeMap::new(),
        model: None,
        api_key_env: None,
        api: default_api(),
        template: None,
        logprobs: default_mode(),
        top_logprobs: default_top(),
        concurrency: default_concurrency(),
        timeout_s: default_timeout(),
        retries: default_retries(),
        backoff_s: default_backoff(),
        ready_timeout_s: default_ready(),
    }
}

/// An `--engines` file: `[engine.NAME]` tables.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct EnginesFile {
    #[serde(default)]
    pub engine: BTreeMap<String, EngineConfig>,
}
