//! Which engine does each role: `local`, an engine named in an `--engines` file or an
//! experiment's `[engine.NAME]` tables, or a server's base URL.

use crate::cli::{DTypeArg, EngineArgs, ModelArgs};
use crate::settings::{file_name, JudgeChoice, JudgeMode};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use valuedrift_engine::LanguageModel;
use valuedrift_remote::client::Client;
use valuedrift_remote::config::{EngineConfig, EnginesFile};
use valuedrift_remote::generator::RemoteGenerators;
use valuedrift_remote::judge::RemoteJudge;
use valuedrift_remote::launch::Server;
use valuedrift_remote::wire::Api;
use valuedrift_trace::head_judge::{HeadJudge, LoadedHead};
use valuedrift_trace::judge::{Judge, LocalJudge, ROTATIONS};

pub enum Engine {
    Local,
    /// Boxed: an engine's settings are large next to `Local`.
    Remote {
        name: String,
        config: Box<EngineConfig>,
    },
}

/// The engines of an `--engines` file (none without one).
pub fn read_file(path: Option<&Path>) -> Result<BTreeMap<String, EngineConfig>> {
    let Some(path) = path else { return Ok(BTreeMap::new()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: EnginesFile = toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(file.engine)
}

/// Resolves a role's choice among the known engines.
pub fn resolve(choice: Option<&str>, known: &BTreeMap<String, EngineConfig>, role: &str) -> Result<Engine> {
    let engine = match choice {
        None | Some("local") => return Ok(Engine::Local),
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            Engine::Remote { name: url.into(), config: Box::new(EngineConfig::at(vec![url.into()])) }
        }
        Some(name) => match known.get(name) {
            Some(config) => Engine::Remote { name: name.into(), config: Box::new(config.clone()) },
            None => bail!(
                "{role} engine '{name}' is not defined (known: local{}{})",
                if known.is_empty() { "" } else { ", " },
                known.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        },
    };
    if let Engine::Remote { name, config } = &engine {
        config.validate(name).map_err(|e| anyhow!(e))?;
    }
    Ok(engine)
}

/// A judge and the name the store records for it; a judge server started here lives as long
/// as the returned value.
pub struct ChosenJudge {
    pub judge: Box<dyn Judge>,
    pub identity: String,
    _server: Option<Server>,
}

/// The judge model on this machine, read by its option words.
pub fn load_judge(choice: &JudgeChoice, device: &str) -> Result<LocalJudge> {
    Ok(LocalJudge::new(super::load_model(&judge_model_args(choice, device))?, ROTATIONS[..choice.orders as usize].to_vec())?)
}

/// The judge model's layers up to the deepest one `head` reads: all a stance head needs (the
/// layers after it and the output head are never loaded).
fn load_judge_for_head(choice: &JudgeChoice, device: &str, head: &LoadedHead) -> Result<LocalJudge> {
    let depth = head.head.layers.iter().max().map_or(1, |&l| l + 1);
    let model = super::load_probe(&judge_model_args(choice, device), depth)?;
    Ok(LocalJudge::new(model, ROTATIONS[..choice.orders as usize].to_vec())?)
}

fn judge_model_args(choice: &JudgeChoice, device: &str) -> ModelArgs {
    ModelArgs { model: choice.model.clone(), device: device.into(), dtype: DTypeArg::F32, matmul: choice.matmul }
}

/// The stance head a choice names: its file, or the bundled one.
pub fn chosen_head(choice: &JudgeChoice) -> Result<LoadedHead> {
    match &choice.head {
        None => Ok(LoadedHead::bundled()),
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the stance head {}", path.display()))?;
            Ok(LoadedHead::parse(&path.display().to_string(), &text)?)
        }
    }
}

/// Whether a head fits a judge model (fitted on its hidden states, with as many option orders).
fn head_fits(head: &LoadedHead, choice: &JudgeChoice) -> bool {
    head.head.judge_model == file_name(&choice.model) && head.head.orders == choice.orders as usize
}

/// The local judge a choice asks for, read by a stance head or by its option words, and the
/// identity a store records: the model file name, plus the head's hash when a head reads it.
pub fn local_judge(choice: &JudgeChoice, device: &str) -> Result<(Box<dyn Judge>, String)> {
    let head = match choice.mode {
        JudgeMode::Paper => None,
        JudgeMode::Head => Some(chosen_head(choice)?),
        JudgeMode::Auto => Some(chosen_head(choice)?).filter(|h| choice.head.is_some() || head_fits(h, choice)),
    };
    match head {
        None => {
            let local = load_judge(choice, device)?;
            eprintln!("judge: {} (option words; the paper's judge)", choice.identity());
            Ok((Box::new(local), choice.identity()))
        }
        Some(head) => {
            let identity = format!("{} + stance head {}", choice.identity(), head.short_hash());
            eprintln!(
                "judge: {identity} (fitted on {} items; --judge-mode paper reads the option words)",
                head.head.training.iter().map(|t| t.items).sum::<usize>()
            );
            let local = load_judge_for_head(choice, device, &head)?;
            Ok((Box::new(HeadJudge::new(local, head)?), identity))
        }
    }
}

pub fn judge(engine: Engine, choice: &JudgeChoice, device: &str) -> Result<ChosenJudge> {
    let orders = ROTATIONS[..choice.orders as usize].to_vec();
    let Engine::Remote { name, config } = engine else {
        let (judge, identity) = local_judge(choice, device)?;
        return Ok(ChosenJudge { judge, identity, _server: None });
    };
    if choice.mode == JudgeMode::Head {
        bail!("judge engine '{name}': a stance head reads the judge's hidden states, which a server does not report; use --judge-mode paper or auto");
    }
    let server = match &config.launch {
        Some(command) => Some(Server::start(command, &choice.model, config.ready_timeout())?),
        None => None,
    };
    let urls = match &server {
        Some(s) => vec![s.base_url()],
        None if !config.urls.is_empty() => config.urls.clone(),
        None => bail!("judge engine '{name}': give it `urls` or `launch` (`checkpoints` is for generators)"),
    };
    let client = Arc::new(Client::new(config.endpoint(urls))?);
    let model = match &config.model {
        Some(m) => m.replace("{model}", &choice.model.display().to_string()),
        None => served_model(&client).with_context(|| format!("judge engine '{name}'"))?,
    };
    let format = match config.api {
        Api::Completions => {
            let template = config.template.clone().unwrap_or_else(|| choice.model.clone());
            Some(
                LanguageModel::read_chat_format(&template)
                    .with_context(|| format!("judge engine '{name}': the chat template to render prompts with"))?,
            )
        }
        Api::Chat => None,
    };
    let mut judge = RemoteJudge::new(client, &model, orders, config.api, config.logprobs, format)?;
    judge.top_logprobs = config.top_logprobs;
    // The local tokenizer is the served judge's when named as its template, when this run started
    // the server with it, or when the server reports the same model file name.
    let same_model = server.is_some() || std::path::Path::new(&model).file_name().is_some_and(|n| Some(n) == choice.model.file_name());
    let tokenizer_source = config.template.clone().or_else(|| same_model.then(|| choice.model.clone()));
    judge.option_tokens = tokenizer_source.and_then(|p| local_option_tokens(&p));
    let identity = format!("{model} (remote, {:?} log-probs)", config.logprobs).to_lowercase();
    eprintln!("judge: {model} at engine '{name}' ({:?} API, {:?} log-probs)", config.api, config.logprobs);
    Ok(ChosenJudge { judge: Box::new(judge), identity, _server: server })
}

/// The judge's first token of each option word, from a local copy of its tokenizer when there
/// is one (top-k lists are then matched exactly; see `valuedrift_remote::judge`).
fn local_option_tokens(model: &std::path::Path) -> Option<[String; 3]> {
    let tokenizer = LanguageModel::read_tokenizer(model).ok()?;
    valuedrift_remote::judge::option_tokens(&tokenizer).ok()
}

/// The first model a server lists.
fn served_model(client: &Client) -> Result<String> {
    let (url, models) = client.get("/models")?;
    models["data"][0]["id"].as_str().map(str::to_string).ok_or_else(|| anyhow!("{url}: /models lists no model; set `model`"))
}

pub fn remote_generators(engine: Engine) -> Option<RemoteGenerators> {
    match engine {
        Engine::Local => None,
        Engine::Remote { name, config } => Some(RemoteGenerators { name, config: *config }),
    }
}

/// Engines chosen on the command line, over those an experiment defines.
pub fn known(args: &EngineArgs, defined: &BTreeMap<String, EngineConfig>) -> Result<BTreeMap<String, EngineConfig>> {
    let mut all = defined.clone();
    all.extend(read_file(args.engines.as_deref())?);
    Ok(all)
}

/// The sentence embedder of the audit and synth: the local encoder in `local_dir`, or a
/// server's `/v1/embeddings` (a fixed pool: `urls`).
pub fn embedder(engine: Engine, local_dir: &Path, device: &str) -> Result<Box<dyn valuedrift_trace::audit::Embedder>> {
    let Engine::Remote { name, config } = engine else {
        let dev = super::device(device)?;
        let local = valuedrift_engine::embed::SentenceEmbedder::load(local_dir, &dev)
            .with_context(|| format!("loading the embedder {} (scripts/install-models.sh installs all-mpnet-base-v2)", local_dir.display()))?;
        return Ok(Box::new(local));
    };
    if config.urls.is_empty() {
        bail!("embedder engine '{name}': give it `urls` (servers are started per checkpoint only for generators)");
    }
    let client = Arc::new(Client::new(config.endpoint(config.urls.clone()))?);
    let model = match &config.model {
        Some(m) => m.clone(),
        None => served_model(&client).with_context(|| format!("embedder engine '{name}'"))?,
    };
    eprintln!("embedder: {model} at engine '{name}'");
    Ok(Box::new(valuedrift_remote::embed::RemoteEmbedder { client, model }))
}
