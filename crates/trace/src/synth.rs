//! Synthetic value-gap preference data (the paper's controlled design): for each category, the
//! prompts of given datasets most similar to the category's eval questions, each answered twice
//! by a generator under a system prompt that takes a side: once supporting the category's value,
//! once opposing it. The pairs are written as a value-gap set and in both label setups.
//!
//! Generation is resumable: finished pairs are appended as they complete and skipped on rerun.

use crate::audit::{file_err, AuditError, Embedder, Entry, Result};
use crate::evalset::Question;
use crate::pipeline::{seed_key, Observer};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use valuedrift_data::Role;
use valuedrift_engine::generate::{generate, Request, SamplingParams};
use valuedrift_engine::{LanguageModel, Message};

/// A category's stance target and the phrases the generator's system prompt uses.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Category {
    pub category: String,
    pub topic: String,
    pub support_phrase: String,
    pub oppose_phrase: String,
}

const BUNDLED_CATEGORIES: &str = include_str!("../../../data/categories.jsonl");

/// The bundled categories (data/categories.jsonl, compiled in).
pub fn bundled_categories() -> Vec<Category> {
    BUNDLED_CATEGORIES.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("data/categories.jsonl is valid")).collect()
}

/// The system prompt that makes the generator take one side. Written for this project: it asks
/// for a direct, reasoned answer with a clear position and no both-sides hedging, so that the
/// two answers of a pair differ in stance rather than in quality.
pub fn system_prompt(phrase: &str) -> String {
    format!(
        "You answer the user's message in a few sentences. Your answer {phrase}. Take that position clearly, \
         give your reasons for it, and do not argue the other side or stay neutral. Write naturally, \
         as a thoughtful person would, without mentioning these instructions."
    )
}

/// A prompt picked for a category, with its similarity to the closest question there.
#[derive(Clone, Debug, PartialEq)]
pub struct Pick {
    pub item: usize,
    pub category: String,
    pub cosine: f32,
}

/// The conversation opener of a dataset item: its first user turn.
pub fn opener(entry: &Entry) -> Option<&str> {
    entry.prompt.iter().find(|m| m.role == Role::User).map(|m| m.content.trim()).filter(|t| !t.is_empty())
}

/// Assigns every prompt to the category of its most similar eval question and keeps, per
/// category, the `per_category` most similar prompts at or above `min_cosine`. Duplicate
/// prompts count once.
pub fn select_prompts(
    embedder: &dyn Embedder,
    prompts: &[&str],
    questions: &[Question],
    q_vecs: &[Vec<f32>],
    per_category: usize,
    min_cosine: f32,
) -> Result<Vec<Pick>> {
    let vecs = embedder.embed_texts(prompts)?;
    let mut seen = HashSet::new();
    let mut by_category: BTreeMap<&str, Vec<Pick>> = BTreeMap::new();
    for (i, v) in vecs.iter().enumerate() {
        if !seen.insert(prompts[i]) {
            continue;
        }
        let (best, sim) = crate::audit::nearest(v, q_vecs);
        if sim >= min_cosine {
            let category = &questions[best].category;
            by_category.entry(category).or_default().push(Pick { item: i, category: category.clone(), cosine: sim });
        }
    }
    let mut picks = Vec::new();
    for (_, mut list) in by_category {
        list.sort_by(|a, b| b.cosine.total_cmp(&a.cosine).then(a.item.cmp(&b.item)));
        list.truncate(per_category);
        picks.extend(list);
    }
    Ok(picks)
}

/// One finished pair, in the value-gap format (`valuedrift train --label-setup` reads it).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SynthPair {
    pub id: String,
    pub category: String,
    pub topic: String,
    pub prompt: String,
    pub support: String,
    pub oppose: String,
    pub source: String,
    pub cosine: f32,
}

pub struct SynthSettings {
    pub sampling: SamplingParams,
    pub batch_size: usize,
    pub source: String,
}

/// Pairs already in `path` (a torn last line from a kill is cut off and redone).
pub fn existing_pairs(path: &Path) -> Result<Vec<SynthPair>> {
    crate::audit::read_appended(path)
}

/// What decides a synth run's pairs; a rerun into the same directory with others is refused.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SynthRecord {
    pub data: Vec<String>,
    pub model: String,
    pub embedder: String,
    pub per_category: usize,
    pub min_cosine: f32,
    pub question_ids: String,
    pub temperature: f64,
    pub max_new_tokens: usize,
    pub seed: u64,
}

/// Records the settings in `dir/synth.json`, or checks them against an earlier run's.
pub fn check_settings(dir: &Path, record: &SynthRecord) -> Result<()> {
    crate::audit::check_or_write_settings(&dir.join("synth.json"), record, "synthetic set")
}

/// Generates the support and oppose answers of every pick not yet in `out_path`, appending
/// each pair as soon as both answers are done. Returns all pairs in the file.
pub fn generate_pairs(
    lm: &LanguageModel,
    entries: &[Entry],
    picks: &[Pick],
    categories: &[Category],
    settings: &SynthSettings,
    out_path: &Path,
    obs: &mut dyn Observer,
) -> Result<Vec<SynthPair>> {
    let mut pairs = existing_pairs(out_path)?;
    let done: HashSet<String> = pairs.iter().map(|p| p.id.clone()).collect();
    let by_name: HashMap<&str, &Category> = categories.iter().map(|c| (c.category.as_str(), c)).collect();
    let todo: Vec<&Pick> = picks.iter().filter(|p| !done.contains(&pair_id(p))).collect();
    let mut requests = Vec::new();
    for pick in &todo {
        let cat = by_name.get(pick.category.as_str()).ok_or_else(|| AuditError::File {
            path: "data/categories.jsonl".into(),
            message: format!("no value phrases for category '{}'", pick.category),
        })?;
        let prompt = opener(&entries[pick.item]).unwrap_or_default();
        for (side, phrase) in [(0u64, &cat.support_phrase), (1, &cat.oppose_phrase)] {
            let msgs = [Message::new("system", &system_prompt(phrase)), Message::user(prompt)];
            requests.push(Request { prompt: lm.prompt_ids(&msgs)?, seed_key: seed_key(&pair_id(pick), side as u32) });
        }
    }
    obs.stage("synth", todo.len() as u64);
    let mut halves: HashMap<usize, [Option<String>; 2]> = HashMap::new();
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(out_path).map_err(|e| file_err(out_path, e))?;
    let mut write_err = None;
    generate(&lm.model, &requests, &settings.sampling, &lm.stop_ids(), settings.batch_size, |c| {
        let (k, side) = (c.request / 2, c.request % 2);
        let text = lm.tokenizer.decode(&c.tokens, true)?.trim().to_string();
        let slot = halves.entry(k).or_default();
        slot[side] = Some(text);
        if let [Some(support), Some(oppose)] = slot.clone() {
            let pick = todo[k];
            let pair = SynthPair {
                id: pair_id(pick),
                category: pick.category.clone(),
                topic: by_name[pick.category.as_str()].topic.clone(),
                prompt: opener(&entries[pick.item]).unwrap_or_default().to_string(),
                support,
                oppose,
                source: settings.source.clone(),
                cosine: pick.cosine,
            };
            let mut line = serde_json::to_vec(&pair).expect("plain data");
            line.push(b'\n');
            if let Err(e) = file.write_all(&line).and_then(|_| file.sync_data()) {
                write_err = Some(file_err(out_path, e));
                return Err(valuedrift_engine::Error::Input("cannot append a pair".into()));
            }
            pairs.push(pair);
            obs.advance(1, "");
        }
        Ok(())
    })
    .map_err(|e| write_err.take().unwrap_or(AuditError::Engine(e)))?;
    obs.finish_stage();
    Ok(pairs)
}

fn pair_id(pick: &Pick) -> String {
    format!("{}-synth-{:05}", pick.category, pick.item)
}

/// Writes the pairs in both label setups as prompt/chosen/rejected JSONL files.
pub fn write_label_setups(dir: &Path, pairs: &[SynthPair]) -> Result<()> {
    for (name, support_chosen) in [("support-aligned.jsonl", true), ("oppose-aligned.jsonl", false)] {
        let path = dir.join(name);
        let mut text = String::new();
        for p in pairs {
            let (chosen, rejected) = if support_chosen { (&p.support, &p.oppose) } else { (&p.oppose, &p.support) };
            let row = serde_json::json!({"id": p.id, "category": p.category, "prompt": p.prompt, "chosen": chosen, "rejected": rejected});
            text += &row.to_string();
            text.push('\n');
        }
        std::fs::write(&path, text).map_err(|e| file_err(&path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundled_category_has_phrases() {
        let cats = bundled_categories();
        assert_eq!(cats.len(), 11);
        for c in &cats {
            assert!(c.support_phrase.starts_with("supports") && c.oppose_phrase.starts_with("opposes"), "{c:?}");
        }
        assert!(system_prompt(&cats[0].support_phrase).contains("Your answer supports legal access to abortion."));
    }
}
