//! Tracing a run: for each checkpoint, sample K answers per question and judge them, with
//! everything going through the store so that an interrupted trace resumes where it stopped.
//!
//! Results do not depend on interruptions: each (question, sample) draws from an RNG seeded by
//! the run's seed, the question id and the sample number (the same across checkpoints, so two
//! checkpoints answer with common random numbers), and stored rows are never redone.

use crate::checkpoints::CheckpointSpec;
use crate::evalset::Question;
use crate::judge::{Item, Judge};
use crate::store::{Generation, Judged, Store};
use std::collections::HashMap;
use std::path::Path;
use valuedrift_engine::generate::{generate_seeded, request_rng_seed, Finish, Request, SamplingParams};
use valuedrift_engine::kv::KvStore;
use valuedrift_engine::{ChatFormat, LanguageModel, Message};

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Judge(#[from] crate::judge::JudgeError),
    #[error(transparent)]
    Engine(#[from] valuedrift_engine::Error),
    #[error("{0}")]
    Input(String),
    /// A checkpoint could not be opened; the cause is kept as the error's source.
    #[error("cannot open {path}")]
    Load { path: std::path::PathBuf, source: crate::BoxError },
    /// An engine behind a server failed (the cause names the endpoint, never a key).
    #[error(transparent)]
    Remote(crate::BoxError),
}

pub type Result<T> = std::result::Result<T, TraceError>;

pub use crate::prompt::PromptStyle;

/// Everything that decides a trace's numbers (stored with the run and checked on resume).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Settings {
    pub samples: u32,
    pub temperature: f64,
    pub max_new_tokens: usize,
    pub seed: u64,
    pub prompt: PromptStyle,
    /// The judge model's file name and how many option orders it averages.
    pub judge: String,
    pub judge_orders: usize,
    /// The capability tasks and few-shot setting, where the run measures capability (absent
    /// otherwise, so runs from before capability checks reopen unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capability: Option<serde_json::Value>,
}

impl Settings {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("plain data")
    }
}

/// How the work reports progress: a named stage with a total, then advances.
pub trait Observer {
    fn stage(&mut self, name: &str, total: u64);
    fn advance(&mut self, n: u64, message: &str);
    fn finish_stage(&mut self);
}

/// Silent observer (tests, library use).
pub struct Quiet;

impl Observer for Quiet {
    fn stage(&mut self, _: &str, _: u64) {}
    fn advance(&mut self, _: u64, _: &str) {}
    fn finish_stage(&mut self) {}
}

/// Options that change speed, not results.
#[derive(Clone, Debug)]
pub struct Throughput {
    pub batch_size: usize,
    /// Completions buffered before a store transaction (a kill loses at most these, and they
    /// are drawn again identically on resume).
    pub flush_every: usize,
    pub judge_chunk: usize,
}

impl Default for Throughput {
    fn default() -> Self {
        Throughput { batch_size: 64, flush_every: 16, judge_chunk: 32 }
    }
}

/// A stable 64-bit hash of a question id (FNV-1a), so seeds survive reordering of the eval set.
fn id_hash(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

pub fn seed_key(question_id: &str, sample: u32) -> u64 {
    id_hash(question_id) ^ ((sample as u64) << 48)
}

/// The prompt ids for a question under the chosen style.
pub fn question_prompt(lm: &LanguageModel, question: &str, style: PromptStyle) -> Result<Vec<u32>> {
    let msgs = [Message::user(question)];
    let base = match style {
        PromptStyle::Base => true,
        PromptStyle::Chat => {
            if matches!(lm.chat, ChatFormat::Base) {
                return Err(TraceError::Input(format!("{} has no chat template; use the base prompt style", lm.source.display())));
            }
            false
        }
        PromptStyle::Auto => matches!(lm.chat, ChatFormat::Base),
    };
    if base {
        Ok(lm.encode_prompt_text(&ChatFormat::Base.render(&msgs, true)?)?)
    } else {
        Ok(lm.prompt_ids(&msgs)?)
    }
}

/// One answer to draw: a question, the sample number, and the seed of the answer's own RNG.
#[derive(Clone, Debug)]
pub struct Draw<'a> {
    pub question: &'a Question,
    pub sample: u32,
    pub rng_seed: u64,
}

/// A drawn answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub response: String,
    pub n_tokens: u32,
    /// "stop" or "length".
    pub finish: String,
}

/// Anything that samples answers from one checkpoint: the local engine or a server.
pub trait Generator {
    /// Draws every answer under the run's settings, calling `done(i, answer)` for `draws[i]` as
    /// each finishes (in any order). An error from `done` stops the work and is returned.
    fn generate(&mut self, draws: &[Draw], settings: &Settings, done: &mut dyn FnMut(usize, Answer) -> Result<()>) -> Result<()>;
}

/// Opens a generator for a checkpoint (loads a model, starts a server, names an endpoint).
pub trait Generators {
    fn open(&mut self, checkpoint: &CheckpointSpec) -> Result<Box<dyn Generator>>;
}

/// The local engine on a loaded checkpoint.
pub struct LocalGenerator {
    pub lm: LanguageModel,
    pub batch_size: usize,
}

impl Generator for LocalGenerator {
    fn generate(&mut self, draws: &[Draw], settings: &Settings, done: &mut dyn FnMut(usize, Answer) -> Result<()>) -> Result<()> {
        let lm = &self.lm;
        let mut prompts: HashMap<&str, Vec<u32>> = HashMap::new();
        for d in draws {
            if !prompts.contains_key(d.question.id.as_str()) {
                prompts.insert(&d.question.id, question_prompt(lm, &d.question.question, settings.prompt)?);
            }
        }
        let requests: Vec<Request> = draws.iter().map(|d| Request { prompt: prompts[d.question.id.as_str()].clone(), seed_key: 0 }).collect();
        let seeds: Vec<u64> = draws.iter().map(|d| d.rng_seed).collect();
        let params = SamplingParams { temperature: settings.temperature, top_p: 1.0, max_new_tokens: settings.max_new_tokens, seed: settings.seed };
        let mut failed = None;
        let store = KvStore::for_device(lm.model.device());
        generate_seeded(&lm.model, &requests, &seeds, &params, &lm.stop_ids(), self.batch_size, store, |c| {
            let answer = Answer {
                response: lm.tokenizer.decode(&c.tokens, true)?,
                n_tokens: c.tokens.len() as u32,
                finish: match c.finish {
                    Finish::Stop(_) => "stop",
                    Finish::Length => "length",
                }
                .into(),
            };
            done(c.request, answer).map_err(|e| {
                failed = Some(e);
                valuedrift_engine::Error::Input("stopped by the caller".into())
            })
        })
        .map_err(|e| failed.take().unwrap_or(e.into()))
    }
}

/// Local generators: each checkpoint loaded with `load`.
pub struct LocalGenerators<'a> {
    pub load: &'a dyn Fn(&Path) -> Result<LanguageModel>,
    pub batch_size: usize,
}

impl Generators for LocalGenerators<'_> {
    fn open(&mut self, checkpoint: &CheckpointSpec) -> Result<Box<dyn Generator>> {
        Ok(Box::new(LocalGenerator { lm: (self.load)(&checkpoint.path)?, batch_size: self.batch_size }))
    }
}

/// A checkpoint of a run in the store: where a tracing step reads and writes.
#[derive(Clone, Copy, Debug)]
pub struct At {
    pub run: i64,
    pub checkpoint: i64,
}

/// Samples the answers a checkpoint still lacks. `open` is only called when there is work.
pub fn generate_missing(
    store: &mut Store,
    At { run, checkpoint }: At,
    questions: &[Question],
    settings: &Settings,
    speed: &Throughput,
    open: &mut dyn FnMut() -> Result<Box<dyn Generator>>,
    obs: &mut dyn Observer,
) -> Result<()> {
    let done = store.generated(run, checkpoint)?;
    let todo: Vec<Draw> = questions
        .iter()
        .flat_map(|q| (0..settings.samples).map(move |k| (q, k)))
        .filter(|(q, k)| !done.contains(&(q.id.clone(), *k)))
        .map(|(q, k)| Draw { question: q, sample: k, rng_seed: request_rng_seed(settings.seed, seed_key(&q.id, k)) })
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    let mut generator = open()?;
    obs.stage("generate", todo.len() as u64);
    let started = std::time::Instant::now();
    let (mut buffer, mut tokens) = (Vec::new(), 0usize);
    generator
        .generate(&todo, settings, &mut |i, answer| {
            let d = &todo[i];
            tokens += answer.n_tokens as usize;
            buffer.push(Generation {
                checkpoint,
                question: d.question.id.clone(),
                sample: d.sample,
                response: answer.response,
                n_tokens: answer.n_tokens,
                finish: answer.finish,
            });
            if buffer.len() >= speed.flush_every {
                store.add_generations(run, &std::mem::take(&mut buffer))?;
            }
            obs.advance(1, &format!("{:.0} tok/s", tokens as f64 / started.elapsed().as_secs_f64()));
            Ok(())
        })
        .inspect_err(|_| {
            // Whatever finished before the failure is kept: a rerun draws only the rest.
            let _ = store.add_generations(run, &buffer);
        })?;
    store.add_generations(run, &buffer)?;
    obs.finish_stage();
    Ok(())
}

/// Judges the stored answers of a checkpoint that have no judgment yet.
pub fn judge_missing(
    store: &mut Store,
    run: i64,
    checkpoint: i64,
    questions: &[Question],
    judge: &dyn Judge,
    speed: &Throughput,
    obs: &mut dyn Observer,
) -> Result<()> {
    let done = store.judged(run, checkpoint)?;
    let by_id: HashMap<&str, &Question> = questions.iter().map(|q| (q.id.as_str(), q)).collect();
    let todo: Vec<Generation> = store
        .generations(run, Some(checkpoint))?
        .into_iter()
        .filter(|g| by_id.contains_key(g.question.as_str()) && !done.contains(&(g.question.clone(), g.sample)))
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    obs.stage("judge", todo.len() as u64);
    for chunk in todo.chunks(speed.judge_chunk.max(1)) {
        let items: Vec<Item> = chunk
            .iter()
            .map(|g| {
                let q = by_id[g.question.as_str()];
                Item { question: q.question.clone(), response: g.response.clone(), topic: q.topic.clone() }
            })
            .collect();
        let judged: Vec<Judged> = chunk
            .iter()
            .zip(judge.judge(&items)?)
            .map(|(g, j)| Judged {
                checkpoint,
                question: g.question.clone(),
                sample: g.sample,
                p: j.p,
                order_spread: j.order_spread,
                floored: j.floored,
            })
            .collect();
        store.add_judgments(run, &judged)?;
        obs.advance(chunk.len() as u64, "");
    }
    obs.finish_stage();
    Ok(())
}

/// Registers the checkpoints (in order) and the questions of a run; returns the checkpoint ids.
pub fn register(store: &mut Store, run: i64, specs: &[CheckpointSpec], questions: &[Question]) -> Result<Vec<i64>> {
    store.add_questions(run, questions)?;
    specs.iter().map(|c| Ok(store.checkpoint(run, &c.phase, c.step, c.phase_steps, &c.path.display().to_string())?)).collect()
}

/// Samples and judges every checkpoint in turn. A checkpoint's generator is opened only when
/// it lacks answers, and closed (a started server stopped) before its answers are judged.
#[allow(clippy::too_many_arguments)]
pub fn trace(
    store: &mut Store,
    run: i64,
    specs: &[CheckpointSpec],
    questions: &[Question],
    settings: &Settings,
    speed: &Throughput,
    judge: &dyn Judge,
    generators: &mut dyn Generators,
    obs: &mut dyn Observer,
) -> Result<()> {
    let ids = register(store, run, specs, questions)?;
    for (spec, &id) in specs.iter().zip(&ids) {
        obs.stage(&format!("{} step {} ({})", spec.phase, spec.step, spec.path.display()), 0);
        obs.finish_stage();
        store.record_prompt(run, id, spec.prompt.map(PromptStyle::name))?;
        store.reuse_same_model(run, id)?;
        let asked = Settings { prompt: spec.prompt.unwrap_or(settings.prompt), ..settings.clone() };
        generate_missing(store, At { run, checkpoint: id }, questions, &asked, speed, &mut || generators.open(spec), obs)?;
        judge_missing(store, run, id, questions, judge, speed, obs)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_keys_differ_by_question_and_sample_and_are_stable() {
        assert_ne!(seed_key("abortion-01", 0), seed_key("abortion-02", 0));
        assert_ne!(seed_key("abortion-01", 0), seed_key("abortion-01", 1));
        // FNV-1a of "a" is a published value; a changed hash would silently change every sample.
        assert_eq!(id_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
