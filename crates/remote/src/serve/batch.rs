//! Running a wave of requests on the engine. One-token requests (judge questions, log-prob
//! probes) are scored together with shared prompt prefixes computed once; longer ones are
//! sampled by the engine's continuous batching, one batch per distinct set of sampling settings.
//! Every sample draws from its own RNG, so answers do not depend on what shares the wave.

use super::request::{ApiError, Parsed, Prompt};
use super::respond;
use super::sampled::{Choice, Prepared, TokenLogprob};
use super::ServeOptions;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;
use std::collections::HashMap;
use valuedrift_engine::generate::{generate_seeded, sample_token, Finish, Request, SamplingParams};
use valuedrift_engine::kv::KvStore;
use valuedrift_engine::score::{map_position_distributions, next_token_distributions_grouped};
use valuedrift_engine::LanguageModel;

pub struct Engine {
    pub lm: LanguageModel,
    batch_size: usize,
    tokens_per_batch: usize,
}

/// A sample to draw: (request, choice index).
#[derive(Clone, Copy)]
struct Draw {
    job: usize,
    choice: usize,
}

impl Engine {
    pub fn new(lm: LanguageModel, opts: &ServeOptions) -> Self {
        Engine { lm, batch_size: opts.batch_size, tokens_per_batch: opts.tokens_per_batch }
    }

    pub fn run_wave(&self, wave: Vec<Parsed>, model_name: &str) -> Vec<Result<Value, ApiError>> {
        let prepared: Vec<Result<Prepared, ApiError>> = wave.into_iter().map(|p| self.prepare(p)).collect();
        let ok: Vec<&Prepared> = prepared.iter().filter_map(|p| p.as_ref().ok()).collect();
        let computed = self.compute(&ok);
        let mut per_job = match computed {
            Ok(choices) => choices.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => (0..ok.len()).map(|_| Err(ApiError::server(format!("engine: {e}")))).collect(),
        }
        .into_iter();
        prepared
            .into_iter()
            .map(|p| {
                let p = p?;
                let choices = per_job.next().expect("one result per prepared request")?;
                let echoes = if p.parsed.echo { Some(self.echo(&p).map_err(|e| ApiError::server(format!("engine: {e}")))?) } else { None };
                Ok(respond::render(&self.lm, model_name, &p, choices, echoes))
            })
            .collect()
    }

    fn prepare(&self, parsed: Parsed) -> Result<Prepared, ApiError> {
        let lm = &self.lm;
        let bad_input = |e: valuedrift_engine::Error| ApiError::bad(e.to_string());
        let vocab = lm.config().vocab_size as u32;
        let ids: Vec<Vec<u32>> = parsed
            .prompts
            .iter()
            .map(|p| match p {
                Prompt::Chat(msgs) => lm.prompt_ids(msgs).map_err(bad_input),
                Prompt::Text(t) => lm.encode_prompt_text(t).map_err(bad_input),
                Prompt::Ids(ids) => match ids.iter().find(|&&i| i >= vocab) {
                    Some(bad) => Err(ApiError::bad(format!("token id {bad} is outside the vocabulary of {vocab}"))),
                    None => Ok(ids.clone()),
                },
            })
            .collect::<Result<_, _>>()?;
        let context = lm.config().max_position_embeddings;
        if let Some(long) = ids.iter().find(|p| p.len().saturating_add(parsed.max_tokens).saturating_add(1) > context) {
            return Err(ApiError::bad(format!(
                "a prompt of {} tokens plus max_tokens {} exceeds the model's context of {context} tokens",
                long.len(),
                parsed.max_tokens
            )));
        }
        // Stop strings that are one token stop generation there; all are also cut after decoding.
        let mut stop_ids = lm.stop_ids();
        stop_ids.extend(parsed.stop.iter().filter_map(|s| lm.tokenizer.token_to_id(s)));
        Ok(Prepared { parsed, ids, stop_ids })
    }

    /// Every request's choices, in request order.
    fn compute(&self, jobs: &[&Prepared]) -> valuedrift_engine::Result<Vec<Vec<Choice>>> {
        let mut out: Vec<Vec<Option<Choice>>> = jobs.iter().map(|j| vec![None; j.ids.len() * j.parsed.n]).collect();
        let draws: Vec<Draw> =
            jobs.iter().enumerate().flat_map(|(job, j)| (0..j.ids.len() * j.parsed.n).map(move |choice| Draw { job, choice })).collect();
        let (short, long): (Vec<Draw>, Vec<Draw>) = draws.into_iter().partition(|d| jobs[d.job].parsed.max_tokens <= 1);
        for (d, c) in self.one_token(jobs, &short)?.into_iter().chain(self.sample(jobs, &long)?) {
            out[d.job][d.choice] = Some(c);
        }
        Ok(out.into_iter().map(|cs| cs.into_iter().map(|c| c.expect("every choice drawn")).collect()).collect())
    }

    fn prompt_of<'a>(&self, jobs: &[&'a Prepared], d: Draw) -> &'a [u32] {
        &jobs[d.job].ids[d.choice / jobs[d.job].parsed.n]
    }

    fn params(p: &Parsed) -> SamplingParams {
        SamplingParams { temperature: p.temperature, top_p: p.top_p, max_new_tokens: p.max_tokens, seed: 0 }
    }

    /// One-token (or zero-token) draws: each distinct prompt scored once, prefixes shared.
    fn one_token(&self, jobs: &[&Prepared], draws: &[Draw]) -> valuedrift_engine::Result<Vec<(Draw, Choice)>> {
        let mut distinct: Vec<&[u32]> = draws.iter().map(|&d| self.prompt_of(jobs, d)).filter(|_| true).collect();
        distinct.sort();
        distinct.dedup();
        let groups = prefix_groups(&distinct);
        let owned: Vec<Vec<Vec<u32>>> = groups.iter().map(|g| g.iter().map(|p| p.to_vec()).collect()).collect();
        let rows = if owned.is_empty() { Vec::new() } else { next_token_distributions_grouped(&self.lm.model, &owned, self.tokens_per_batch)? };
        let mut row_of: HashMap<&[u32], &Vec<f32>> = HashMap::new();
        for (g, group) in groups.iter().enumerate() {
            for (k, p) in group.iter().enumerate() {
                row_of.insert(p, &rows[g][k]);
            }
        }
        Ok(draws
            .iter()
            .map(|&d| {
                let job = jobs[d.job];
                let row = row_of[self.prompt_of(jobs, d)];
                let prompt = d.choice / job.parsed.n;
                if job.parsed.max_tokens == 0 {
                    return (
                        d,
                        Choice { index: d.choice, prompt, tokens: Vec::new(), finish: "length", logprobs: job.parsed.logprobs.map(|_| Vec::new()) },
                    );
                }
                let mut rng = StdRng::seed_from_u64(job.parsed.seed.wrapping_add(d.choice as u64));
                let tok = sample_token(row, &Self::params(&job.parsed), &mut rng);
                let logprobs = job.parsed.logprobs.map(|k| vec![token_logprob(row, tok, k)]);
                let (tokens, finish) = if job.stop_ids.contains(&tok) { (Vec::new(), "stop") } else { (vec![tok], "length") };
                (d, Choice { index: d.choice, prompt, tokens, finish, logprobs })
            })
            .collect())
    }

    /// Longer draws: continuous batching, one run per distinct sampling settings.
    fn sample(&self, jobs: &[&Prepared], draws: &[Draw]) -> valuedrift_engine::Result<Vec<(Draw, Choice)>> {
        let mut by_settings: HashMap<(u64, u64, usize, Vec<u32>), Vec<Draw>> = HashMap::new();
        for &d in draws {
            let p = &jobs[d.job].parsed;
            by_settings.entry((p.temperature.to_bits(), p.top_p.to_bits(), p.max_tokens, jobs[d.job].stop_ids.clone())).or_default().push(d);
        }
        let mut out = Vec::with_capacity(draws.len());
        for ((_, _, _, stop_ids), group) in by_settings {
            let first = &jobs[group[0].job].parsed;
            let requests: Vec<Request> = group.iter().map(|&d| Request { prompt: self.prompt_of(jobs, d).to_vec(), seed_key: 0 }).collect();
            let seeds: Vec<u64> = group.iter().map(|&d| jobs[d.job].parsed.seed.wrapping_add(d.choice as u64)).collect();
            let store = KvStore::for_device(self.lm.model.device());
            let mut done = Vec::new();
            generate_seeded(&self.lm.model, &requests, &seeds, &Self::params(first), &stop_ids, self.batch_size, store, |c| {
                done.push(c);
                Ok(())
            })?;
            for c in done {
                let d = group[c.request];
                let job = jobs[d.job];
                let finish = if matches!(c.finish, Finish::Stop(_)) { "stop" } else { "length" };
                let logprobs = match job.parsed.logprobs {
                    Some(k) => Some(self.continuation_logprobs(&requests[c.request].prompt, &c.tokens, k)?),
                    None => None,
                };
                out.push((d, Choice { index: d.choice, prompt: d.choice / job.parsed.n, tokens: c.tokens, finish, logprobs }));
            }
        }
        Ok(out)
    }

    /// Log-probs of sampled tokens (and their alternatives), by scoring prompt + continuation.
    fn continuation_logprobs(&self, prompt: &[u32], tokens: &[u32], k: usize) -> valuedrift_engine::Result<Vec<TokenLogprob>> {
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let seq = [prompt, tokens].concat();
        let positions: Vec<usize> = (prompt.len() - 1..seq.len() - 1).collect();
        map_position_distributions(&self.lm.model, &seq, &positions, |i, row| token_logprob(row, tokens[i], k))
    }

    /// With echo: each prompt's tokens with their log-probs (None for the first token).
    pub fn echo(&self, p: &Prepared) -> valuedrift_engine::Result<Vec<Vec<Option<TokenLogprob>>>> {
        let k = p.parsed.logprobs.unwrap_or(0);
        p.ids
            .iter()
            .map(|ids| {
                let positions: Vec<usize> = (0..ids.len() - 1).collect();
                let mut out = vec![None];
                out.extend(map_position_distributions(&self.lm.model, ids, &positions, |i, row| Some(token_logprob(row, ids[i + 1], k)))?);
                Ok(out)
            })
            .collect()
    }
}

/// A token's log-prob and the `k` most likely tokens at its position.
fn token_logprob(row: &[f32], token: u32, k: usize) -> TokenLogprob {
    let mut top: Vec<(u32, f32)> = Vec::new();
    if k > 0 {
        let mut idx: Vec<u32> = (0..row.len() as u32).collect();
        let k = k.min(idx.len());
        idx.select_nth_unstable_by(k - 1, |&a, &b| row[b as usize].total_cmp(&row[a as usize]));
        top = idx[..k].iter().map(|&i| (i, row[i as usize])).collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
    }
    TokenLogprob { id: token, logprob: row[token as usize], top }
}

/// Sorted prompts grouped with their neighbours when they share most of their tokens (a judge's
/// option orders of one item), so that each group's common part is computed once.
fn prefix_groups<'a>(sorted: &[&'a [u32]]) -> Vec<Vec<&'a [u32]>> {
    let mut groups: Vec<Vec<&[u32]>> = Vec::new();
    for &p in sorted {
        let joins = groups.last().is_some_and(|g| {
            let first = g[0];
            let shared = first.iter().zip(p).take_while(|(a, b)| a == b).count();
            shared * 2 >= first.len().min(p.len())
        });
        if joins {
            groups.last_mut().unwrap().push(p);
        } else {
            groups.push(vec![p]);
        }
    }
    groups
}
