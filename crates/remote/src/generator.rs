//! Sampling answers through a server: one request per (question, sample), carrying the seed the
//! local engine would draw that answer with, so `valuedrift serve` reproduces local answers and
//! other servers that honour `seed` give repeatable ones.

use crate::client::{Client, Failure};
use crate::config::EngineConfig;
use crate::launch::Server;
use crate::wire::{chat_request, completion_request, Api, Reader, Sampling};
use crate::{RemoteError, Result};
use std::sync::Arc;
use valuedrift_engine::{ChatFormat, Message};
use valuedrift_trace::checkpoints::CheckpointSpec;
use valuedrift_trace::pipeline::{self, Answer, Draw, Generator, Generators, PromptStyle, Settings};

pub struct RemoteGenerator {
    pub client: Arc<Client>,
    /// The model name requests carry.
    pub model: String,
    /// A server started for this checkpoint, stopped when the generator is dropped.
    pub server: Option<Server>,
}

impl RemoteGenerator {
    fn draw(&self, d: &Draw, settings: &Settings) -> Result<Answer> {
        let sampling = Sampling { temperature: settings.temperature, max_tokens: settings.max_new_tokens, seed: Some(d.rng_seed) };
        let user = [Message::user(&d.question.question)];
        // Base prompts are plain text; chat prompts go through the server's template.
        let (api, body) = match settings.prompt {
            PromptStyle::Base => (Api::Completions, completion_request(&self.model, &ChatFormat::Base.render(&user, true)?, &sampling, None, false)),
            PromptStyle::Chat | PromptStyle::Auto => (Api::Chat, chat_request(&self.model, &user, &sampling, None)),
        };
        let (url, answer) = self.client.post(api.path(), &body)?;
        let r = Reader::new(&url, &answer);
        let finish = match r.finish_reason()? {
            "length" => "length",
            _ => "stop",
        };
        Ok(Answer { response: r.text(api)?.to_string(), n_tokens: r.completion_tokens().unwrap_or(0), finish: finish.into() })
    }
}

impl Generator for RemoteGenerator {
    fn generate(&mut self, draws: &[Draw], settings: &Settings, done: &mut dyn FnMut(usize, Answer) -> pipeline::Result<()>) -> pipeline::Result<()> {
        self.client.run_all(draws, |d| self.draw(d, settings), done).map_err(|f| match f {
            Failure::Remote(e) => e.into(),
            Failure::Caller(e) => e,
        })
    }
}

/// Generators for each checkpoint from an engine's configuration: a server started per
/// checkpoint, a fixed endpoint per checkpoint, or one pool for all.
pub struct RemoteGenerators {
    pub name: String,
    pub config: EngineConfig,
}

impl Generators for RemoteGenerators {
    fn open(&mut self, spec: &CheckpointSpec) -> pipeline::Result<Box<dyn Generator>> {
        Ok(Box::new(self.open_remote(spec)?))
    }
}

impl RemoteGenerators {
    pub fn open_remote(&self, spec: &CheckpointSpec) -> Result<RemoteGenerator> {
        let path = spec.path.display().to_string();
        let model = self.config.model.as_deref().unwrap_or("{model}").replace("{model}", &path);
        let (urls, server) = if let Some(command) = &self.config.launch {
            let server = Server::start(command, &spec.path, self.config.ready_timeout())?;
            (vec![server.base_url()], Some(server))
        } else if let Some(url) = self.config.checkpoints.get(&path).or_else(|| self.config.checkpoints.get(&format!("{}@{}", spec.phase, spec.step)))
        {
            (vec![url.clone()], None)
        } else if !self.config.urls.is_empty() {
            (self.config.urls.clone(), None)
        } else {
            return Err(RemoteError::Config(format!(
                "engine '{}' has no endpoint for {} step {} ({path}): give it `launch`, `urls`, or a `checkpoints` entry for the path or \"{}@{}\"",
                self.name, spec.phase, spec.step, spec.phase, spec.step
            )));
        };
        let client = Client::new(self.config.endpoint(urls))?;
        Ok(RemoteGenerator { client: Arc::new(client), model, server })
    }
}
