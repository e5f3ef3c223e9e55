//! The curation's stages, each skipped when its output is already in the directory: prompts,
//! rephrased questions, embeddings, the UMAP reduction, clusters, names, the value filter, and
//! the sampled eval set.

use crate::cluster::{self, Assignment, ClusterParams};
use crate::files::{self, Appender, ClusterRow};
use crate::input::Prompt;
use crate::known::{self, KnownScore, Outcome};
use crate::llm;
use crate::ngrams;
use crate::reduce::{self, UmapParams};
use crate::rng::{shuffle, SplitMix64};
use crate::yes_no::YesNoScorer;
use crate::{file_err, CurateError, Result};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use valuedrift_trace::audit::Embedder;
use valuedrift_trace::pipeline::{Generator, Observer};

/// Everything that decides the clusters and the filter's answers, kept in settings.json: a
/// directory is resumed only under the same settings.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Settings {
    pub inputs: Vec<String>,
    /// FNV-1a of the prompts' ids and texts, so changed input files are noticed.
    pub prompts_digest: String,
    /// FNV-1a of the LLM steps' prompt wording (`llm::templates`).
    pub llm_prompts: String,
    pub rephrase: bool,
    pub llm: String,
    pub embedder: String,
    pub filter: FilterMode,
    pub seed: u64,
    pub umap: UmapParams,
    pub hdbscan: ClusterParams,
}

/// How the value filter reads the LLM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterMode {
    /// P(Yes) from the next-token log-probabilities, passed against a threshold.
    Logprob,
    /// The greedy answer's first word (the paper's reading; any server).
    Answer,
}

/// How the eval set is drawn from the kept clusters (may change between runs).
#[derive(Clone, Debug)]
pub struct Sampling {
    pub per_category: usize,
    /// A cluster is kept, unless clusters.csv says otherwise, when at least this share of its
    /// members passes the value filter.
    pub min_value_share: f64,
    /// A question passes the log-prob filter when its P(Yes) is at least this.
    pub filter_threshold: f64,
    /// The label of off-topic prompts in inputs with known categories.
    pub off_topic_label: String,
}

/// The engines, opened only when a stage needs them.
pub struct Engines<'a> {
    pub llm: &'a mut dyn FnMut() -> Result<Box<dyn Generator>>,
    pub embedder: &'a mut dyn FnMut() -> Result<Box<dyn Embedder>>,
    pub scorer: &'a mut dyn FnMut() -> Result<Box<dyn YesNoScorer>>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Rephrased {
    pub id: String,
    pub prompt: String,
    pub question: String,
    /// False where the prompt is kept as it is (rephrasing off, or an empty answer).
    pub rephrased: bool,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct FilterAnswer {
    pub id: String,
    /// The greedy answer (empty in log-prob mode).
    pub answer: String,
    /// The answer read as yes (true), no (false), or neither (null: dropped).
    pub value: Option<bool>,
    /// P(Yes) against P(No) (log-prob mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_yes: Option<f64>,
}

impl FilterAnswer {
    /// Whether the question passes: P(Yes) at least the threshold where it was read, else the
    /// answer "Yes".
    pub fn passes(&self, threshold: f64) -> bool {
        match self.p_yes {
            Some(p) => p >= threshold,
            None => self.value == Some(true),
        }
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CuratedQuestion {
    pub id: String,
    pub category: String,
    pub topic: String,
    pub question: String,
    pub prompt_id: String,
    pub cluster: usize,
    pub membership: f32,
}

pub struct Summary {
    pub prompts: usize,
    pub clusters: Vec<ClusterRow>,
    pub questions: usize,
    pub known: Option<KnownScore>,
    pub dir: PathBuf,
}

const REPHRASE_TOKENS: usize = 64;
const NAME_TOKENS: usize = 16;
const FILTER_TOKENS: usize = 4;
const SCORE_CHUNK: usize = 32;
const EMBED_CHUNK: usize = 64;

pub fn fnv_digest<'a>(parts: impl Iterator<Item = &'a str>) -> String {
    let h = parts.fold(0xcbf2_9ce4_8422_2325u64, |h, p| p.bytes().chain([0u8]).fold(h, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)));
    format!("{h:016x}")
}

/// Runs every stage not yet done and returns what the directory holds.
pub fn curate(dir: &Path, prompts: &[Prompt], settings: &Settings, sampling: &Sampling, engines: Engines, obs: &mut dyn Observer) -> Result<Summary> {
    std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
    check_settings(&dir.join("settings.json"), &serde_json::to_value(settings).expect("plain data"))?;
    write_prompts(&dir.join("prompts.jsonl"), prompts)?;
    let mut llm = Lazy::new(engines.llm);
    let mut scorer = Lazy::new(engines.scorer);
    let rephrased = rephrase(&dir.join("rephrased.jsonl"), prompts, settings, &mut llm, obs)?;
    let vectors = embed(dir, &rephrased, engines.embedder, obs)?;
    let reduced = reduce_stage(&dir.join("reduced.csv"), &rephrased, &vectors, settings, obs)?;
    let assignments = cluster_stage(dir, &rephrased, &reduced, settings)?;
    name_clusters(&dir.join("clusters.csv"), settings, &mut llm, obs)?;
    let models = FilterModels { llm: &mut llm, scorer: &mut scorer };
    let answers = filter(&dir.join("filter.jsonl"), &rephrased, &assignments, &dir.join("clusters.csv"), settings, models, obs)?;
    let clusters = select(&dir.join("clusters.csv"), &rephrased, &assignments, &answers, sampling)?;
    let questions = sample(&dir.join("questions.jsonl"), &rephrased, &assignments, &answers, &clusters, sampling, settings.seed)?;
    let known = score_known(&dir.join("known.json"), prompts, &assignments, &answers, &clusters, sampling)?;
    Ok(Summary { prompts: prompts.len(), clusters, questions, known, dir: dir.into() })
}

/// An engine opened on first use.
struct Lazy<'a, T: ?Sized> {
    open: &'a mut dyn FnMut() -> Result<Box<T>>,
    engine: Option<Box<T>>,
}

impl<'a, T: ?Sized> Lazy<'a, T> {
    fn new(open: &'a mut dyn FnMut() -> Result<Box<T>>) -> Self {
        Lazy { open, engine: None }
    }

    fn release(&mut self) {
        self.engine = None;
    }

    fn get(&mut self) -> Result<&mut T> {
        if self.engine.is_none() {
            self.engine = Some((self.open)()?);
        }
        Ok(self.engine.as_deref_mut().expect("opened above"))
    }
}

fn check_settings(path: &Path, wanted: &Value) -> Result<()> {
    if !path.exists() {
        return files::write_atomic(path, (serde_json::to_string_pretty(wanted).expect("plain data") + "\n").as_bytes());
    }
    let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e))?;
    let had: Value = serde_json::from_str(&text).map_err(|e| file_err(path, format!("not JSON ({e})")))?;
    for (k, v) in wanted.as_object().expect("object") {
        if had.get(k) != Some(v) {
            return Err(file_err(
                path,
                format!(
                    "this directory was curated with {k} = {}, not {v}; use another --out, or remove the stages' files to redo them",
                    had.get(k).unwrap_or(&Value::Null)
                ),
            ));
        }
    }
    Ok(())
}

fn write_prompts(path: &Path, prompts: &[Prompt]) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let text: String = prompts.iter().map(|p| serde_json::to_string(p).expect("plain data") + "\n").collect();
    files::write_atomic(path, text.as_bytes())
}

fn rephrase(path: &Path, prompts: &[Prompt], settings: &Settings, llm: &mut Lazy<dyn Generator>, obs: &mut dyn Observer) -> Result<Vec<Rephrased>> {
    let mut done: HashMap<String, Rephrased> = files::read_jsonl::<Rephrased>(path)?.into_iter().map(|r| (r.id.clone(), r)).collect();
    let todo: Vec<&Prompt> = prompts.iter().filter(|p| !done.contains_key(&p.id)).collect();
    let mut out = Appender::open(path)?;
    if !todo.is_empty() {
        let by_id: HashMap<&str, &Prompt> = todo.iter().map(|p| (p.id.as_str(), *p)).collect();
        if settings.rephrase {
            obs.stage("rephrase", todo.len() as u64);
            let asks: Vec<(String, String)> = todo.iter().map(|p| (p.id.clone(), llm::rephrase_prompt(&p.text))).collect();
            llm::ask(llm.get()?, &asks, REPHRASE_TOKENS, settings.seed, &mut |id, answer| {
                let p = by_id[id];
                let q = llm::first_line(&answer.response);
                let row = Rephrased {
                    id: id.into(),
                    prompt: p.text.clone(),
                    rephrased: !q.is_empty(),
                    question: if q.is_empty() { p.text.clone() } else { q },
                };
                out.push(&row)?;
                done.insert(row.id.clone(), row);
                obs.advance(1, "");
                Ok(())
            })?;
            obs.finish_stage();
        } else {
            for p in todo {
                let row = Rephrased { id: p.id.clone(), prompt: p.text.clone(), question: p.text.clone(), rephrased: false };
                out.push(&row)?;
                done.insert(row.id.clone(), row);
            }
        }
    }
    prompts
        .iter()
        .map(|p| done.remove(&p.id).ok_or_else(|| CurateError::Input(format!("{}: no row for prompt '{}'", path.display(), p.id))))
        .collect()
}

#[derive(serde::Serialize, serde::Deserialize, PartialEq)]
struct EmbeddingsMeta {
    embedder_dim: usize,
}

fn embed(dir: &Path, rows: &[Rephrased], open: &mut dyn FnMut() -> Result<Box<dyn Embedder>>, obs: &mut dyn Observer) -> Result<Vec<Vec<f32>>> {
    let (bin, meta_path) = (dir.join("embeddings.f32"), dir.join("embeddings.json"));
    let dim = if meta_path.exists() {
        let m: EmbeddingsMeta = serde_json::from_str(&std::fs::read_to_string(&meta_path).map_err(|e| file_err(&meta_path, e))?)
            .map_err(|e| file_err(&meta_path, format!("not the embeddings' description ({e})")))?;
        m.embedder_dim
    } else {
        0
    };
    let mut have = if dim > 0 { files::read_rows(&bin, dim)? } else { Vec::new() };
    have.truncate(rows.len());
    if have.len() == rows.len() {
        return Ok(have);
    }
    let embedder = open()?;
    obs.stage("embed", (rows.len() - have.len()) as u64);
    for chunk in rows[have.len()..].chunks(EMBED_CHUNK) {
        let texts: Vec<&str> = chunk.iter().map(|r| r.question.as_str()).collect();
        let vecs = embedder.embed_texts(&texts)?;
        let d = vecs[0].len();
        if !meta_path.exists() {
            files::write_atomic(&meta_path, serde_json::to_string(&EmbeddingsMeta { embedder_dim: d }).expect("plain data").as_bytes())?;
        }
        files::append_rows(&bin, d, have.len(), &vecs)?;
        have.extend(vecs);
        obs.advance(chunk.len() as u64, "");
    }
    obs.finish_stage();
    Ok(have)
}

fn reduce_stage(path: &Path, rows: &[Rephrased], vectors: &[Vec<f32>], settings: &Settings, obs: &mut dyn Observer) -> Result<Vec<Vec<f32>>> {
    if path.exists() {
        return read_reduced(path, rows);
    }
    if rows.len() <= settings.umap.n_neighbors {
        return Err(CurateError::Input(format!("{} prompts are too few for UMAP with {} neighbours", rows.len(), settings.umap.n_neighbors)));
    }
    obs.stage("umap", 1);
    let reduced = reduce::umap(vectors, &settings.umap, settings.seed);
    obs.finish_stage();
    let mut w = csv::Writer::from_writer(Vec::new());
    for (r, v) in rows.iter().zip(&reduced) {
        let mut rec = vec![r.id.clone()];
        rec.extend(v.iter().map(|x| format!("{x:e}")));
        w.write_record(&rec).map_err(|e| file_err(path, e))?;
    }
    files::write_atomic(path, &w.into_inner().map_err(|e| file_err(path, e))?)?;
    Ok(reduced)
}

fn read_reduced(path: &Path, rows: &[Rephrased]) -> Result<Vec<Vec<f32>>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_path(path).map_err(|e| file_err(path, e))?;
    let mut out = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.map_err(|e| crate::row_err(path, i + 1, e.to_string()))?;
        if rows.get(i).map(|r| r.id.as_str()) != rec.get(0) {
            return Err(crate::row_err(path, i + 1, "ids are not those of rephrased.jsonl; remove reduced.csv to redo the reduction"));
        }
        out.push(rec.iter().skip(1).map(|x| x.parse::<f32>().map_err(|e| crate::row_err(path, i + 1, e.to_string()))).collect::<Result<Vec<f32>>>()?);
    }
    Ok(out)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct AssignmentRow {
    id: String,
    hdbscan: i32,
    cluster: usize,
    membership: f32,
    question: String,
}

fn cluster_stage(dir: &Path, rows: &[Rephrased], reduced: &[Vec<f32>], settings: &Settings) -> Result<Vec<Assignment>> {
    let path = dir.join("assignments.csv");
    if path.exists() {
        let mut reader = csv::Reader::from_path(&path).map_err(|e| file_err(&path, e))?;
        return reader
            .deserialize::<AssignmentRow>()
            .enumerate()
            .map(|(i, r)| {
                let r = r.map_err(|e| crate::row_err(&path, i + 2, e.to_string()))?;
                Ok(Assignment { hard: r.hdbscan, cluster: r.cluster, membership: r.membership })
            })
            .collect();
    }
    let assignments = cluster::cluster(reduced, &settings.hdbscan)?;
    files::write_clusters(&dir.join("clusters.csv"), &describe(rows, &assignments))?;
    let mut w = csv::Writer::from_writer(Vec::new());
    for (r, a) in rows.iter().zip(&assignments) {
        let row = AssignmentRow { id: r.id.clone(), hdbscan: a.hard, cluster: a.cluster, membership: a.membership, question: r.question.clone() };
        w.serialize(row).map_err(|e| file_err(&path, e))?;
    }
    files::write_atomic(&path, &w.into_inner().map_err(|e| file_err(&path, e))?)?;
    Ok(assignments)
}

/// Each cluster's size, salient terms and most central examples.
fn describe(rows: &[Rephrased], assignments: &[Assignment]) -> Vec<ClusterRow> {
    let n = assignments.iter().map(|a| a.cluster + 1).max().unwrap_or(0);
    let mut members: Vec<Vec<(usize, &Assignment)>> = vec![Vec::new(); n];
    for (i, a) in assignments.iter().enumerate() {
        members[a.cluster].push((i, a));
    }
    let texts: Vec<Vec<&str>> = members.iter().map(|m| m.iter().map(|(i, _)| rows[*i].question.as_str()).collect()).collect();
    let terms = ngrams::top_terms(&texts, 10);
    members
        .iter()
        .enumerate()
        .map(|(c, m)| {
            let mut central: Vec<&(usize, &Assignment)> = m.iter().filter(|(_, a)| a.hard >= 0).collect();
            central.sort_by(|x, y| y.1.membership.total_cmp(&x.1.membership).then(x.0.cmp(&y.0)));
            let examples: Vec<String> = central.iter().take(5).map(|(i, _)| one_line(&rows[*i].question)).collect();
            ClusterRow {
                cluster: c,
                size: m.len(),
                core: m.iter().filter(|(_, a)| a.hard >= 0).count(),
                name: String::new(),
                keep: String::new(),
                value_share: String::new(),
                top_terms: terms[c].join("; "),
                examples: examples.join(" | "),
            }
        })
        .collect()
}

/// A text on one line, for the cluster table.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn name_clusters(path: &Path, settings: &Settings, llm: &mut Lazy<dyn Generator>, obs: &mut dyn Observer) -> Result<()> {
    let mut clusters = files::read_clusters(path)?;
    let unnamed: Vec<(String, String)> = clusters
        .iter()
        .filter(|c| c.name.trim().is_empty())
        .map(|c| {
            let terms: Vec<String> = c.top_terms.split("; ").map(str::to_string).collect();
            let examples: Vec<&str> = c.examples.split(" | ").collect();
            (c.cluster.to_string(), llm::name_prompt(&terms, &examples))
        })
        .collect();
    if unnamed.is_empty() {
        return Ok(());
    }
    obs.stage("name clusters", unnamed.len() as u64);
    let mut names: HashMap<String, String> = HashMap::new();
    llm::ask(llm.get()?, &unnamed, NAME_TOKENS, settings.seed, &mut |id, answer| {
        names.insert(id.to_string(), llm::first_line(&answer.response));
        obs.advance(1, "");
        Ok(())
    })?;
    obs.finish_stage();
    for c in clusters.iter_mut().filter(|c| c.name.trim().is_empty()) {
        let name = names.remove(&c.cluster.to_string()).unwrap_or_default();
        c.name = if name.is_empty() { format!("cluster {}", c.cluster) } else { name.chars().take(60).collect() };
    }
    files::write_clusters(path, &clusters)
}

/// The models the value filter may use, opened only if it runs.
struct FilterModels<'m, 'a> {
    llm: &'m mut Lazy<'a, dyn Generator>,
    scorer: &'m mut Lazy<'a, dyn YesNoScorer>,
}

fn filter(
    path: &Path,
    rows: &[Rephrased],
    assignments: &[Assignment],
    clusters_path: &Path,
    settings: &Settings,
    models: FilterModels,
    obs: &mut dyn Observer,
) -> Result<HashMap<String, FilterAnswer>> {
    let dropped: HashSet<usize> = files::read_clusters(clusters_path)?.iter().filter(|c| c.keep.trim() == "no").map(|c| c.cluster).collect();
    let mut done: HashMap<String, FilterAnswer> = files::read_jsonl::<FilterAnswer>(path)?.into_iter().map(|a| (a.id.clone(), a)).collect();
    let prompt = match settings.filter {
        FilterMode::Logprob => llm::filter_prompt_with_examples,
        FilterMode::Answer => llm::filter_prompt,
    };
    let todo: Vec<(String, String)> = rows
        .iter()
        .zip(assignments)
        .filter(|(r, a)| !dropped.contains(&a.cluster) && !done.contains_key(&r.id))
        .map(|(r, _)| (r.id.clone(), prompt(&r.question)))
        .collect();
    if todo.is_empty() {
        return Ok(done);
    }
    obs.stage("value filter", todo.len() as u64);
    let mut out = Appender::open(path)?;
    let mut keep = |row: FilterAnswer| -> Result<()> {
        out.push(&row)?;
        done.insert(row.id.clone(), row);
        Ok(())
    };
    match settings.filter {
        FilterMode::Logprob => {
            // The naming model is not needed again; a local one would be a second copy in memory.
            models.llm.release();
            let scorer = models.scorer.get()?;
            for chunk in todo.chunks(SCORE_CHUNK) {
                let prompts: Vec<String> = chunk.iter().map(|(_, text)| text.clone()).collect();
                for ((id, _), p) in chunk.iter().zip(scorer.p_yes(&prompts)?) {
                    keep(FilterAnswer { id: id.clone(), answer: String::new(), value: None, p_yes: Some(p) })?;
                }
                obs.advance(chunk.len() as u64, "");
            }
        }
        FilterMode::Answer => llm::ask(models.llm.get()?, &todo, FILTER_TOKENS, settings.seed, &mut |id, answer| {
            keep(FilterAnswer { id: id.into(), value: llm::read_yes_no(&answer.response), answer: answer.response, p_yes: None })?;
            obs.advance(1, "");
            Ok(())
        })?,
    }
    obs.finish_stage();
    Ok(done)
}

/// Fills each cluster's value share and, where the user has not chosen, whether it is kept.
fn select(
    path: &Path,
    rows: &[Rephrased],
    assignments: &[Assignment],
    answers: &HashMap<String, FilterAnswer>,
    sampling: &Sampling,
) -> Result<Vec<ClusterRow>> {
    let mut clusters = files::read_clusters(path)?;
    let mut tally: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    for (r, a) in rows.iter().zip(assignments) {
        if let Some(ans) = answers.get(&r.id) {
            let t = tally.entry(a.cluster).or_default();
            t.1 += 1;
            t.0 += usize::from(ans.passes(sampling.filter_threshold));
        }
    }
    for c in &mut clusters {
        let share = tally.get(&c.cluster).filter(|t| t.1 > 0).map(|&(yes, all)| yes as f64 / all as f64);
        c.value_share = share.map_or(String::new(), |s| format!("{s:.3}"));
        if c.keep.trim().is_empty() {
            c.keep = if share.unwrap_or(0.0) >= sampling.min_value_share { "yes" } else { "no" }.into();
        }
    }
    files::write_clusters(path, &clusters)?;
    Ok(clusters)
}

/// A category id from a cluster's name: lowercase words joined by underscores.
pub fn slug(name: &str) -> String {
    let words: Vec<String> = name.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
    words.join("_")
}

fn in_pool(answers: &HashMap<String, FilterAnswer>, id: &str, sampling: &Sampling) -> bool {
    answers.get(id).is_some_and(|a| a.passes(sampling.filter_threshold))
}

/// Draws up to `per_category` passed questions from each kept cluster (seeded) into the eval
/// set, always rewritten from the current clusters.csv.
fn sample(
    path: &Path,
    rows: &[Rephrased],
    assignments: &[Assignment],
    answers: &HashMap<String, FilterAnswer>,
    clusters: &[ClusterRow],
    sampling: &Sampling,
    seed: u64,
) -> Result<usize> {
    let mut used = HashSet::new();
    let mut out = String::new();
    let mut count = 0;
    for c in clusters.iter().filter(|c| c.keep.trim() == "yes") {
        let mut category = slug(&c.name);
        if category.is_empty() || !used.insert(category.clone()) {
            category = format!("{category}_{}", c.cluster).trim_start_matches('_').to_string();
            used.insert(category.clone());
        }
        let mut pool: Vec<usize> =
            (0..rows.len()).filter(|&i| assignments[i].cluster == c.cluster && in_pool(answers, &rows[i].id, sampling)).collect();
        shuffle(&mut SplitMix64::new(seed ^ (c.cluster as u64).wrapping_mul(0x9E37_79B9)), &mut pool);
        for (k, &i) in pool.iter().take(sampling.per_category).enumerate() {
            let q = CuratedQuestion {
                id: format!("{category}-{:03}", k + 1),
                category: category.clone(),
                topic: c.name.trim().to_string(),
                question: rows[i].question.clone(),
                prompt_id: rows[i].id.clone(),
                cluster: c.cluster,
                membership: assignments[i].membership,
            };
            out.push_str(&(serde_json::to_string(&q).expect("plain data") + "\n"));
            count += 1;
        }
    }
    files::write_atomic(path, out.as_bytes())?;
    Ok(count)
}

fn score_known(
    path: &Path,
    prompts: &[Prompt],
    assignments: &[Assignment],
    answers: &HashMap<String, FilterAnswer>,
    clusters: &[ClusterRow],
    sampling: &Sampling,
) -> Result<Option<KnownScore>> {
    let kept: HashSet<usize> = clusters.iter().filter(|c| c.keep.trim() == "yes").map(|c| c.cluster).collect();
    let outcomes: Vec<Outcome> = prompts
        .iter()
        .zip(assignments)
        .filter_map(|(p, a)| {
            Some(Outcome { label: p.label.as_deref()?, cluster: a.cluster, kept: kept.contains(&a.cluster) && in_pool(answers, &p.id, sampling) })
        })
        .collect();
    if outcomes.is_empty() {
        return Ok(None);
    }
    let score = known::score(&outcomes, &sampling.off_topic_label);
    files::write_atomic(path, (serde_json::to_string_pretty(&score).expect("plain data") + "\n").as_bytes())?;
    Ok(Some(score))
}
