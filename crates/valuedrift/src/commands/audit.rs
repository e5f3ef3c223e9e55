//! `valuedrift audit`: the stance distribution of training datasets (see valuedrift_trace::audit).

use crate::cli::AuditArgs;
use crate::progress::Bars;
use crate::settings::{file_name, AuditPlan, EmbedderEngine, JudgeChoice};
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use valuedrift_remote::config::EngineConfig;
use valuedrift_trace::audit::{self, AuditDir, AuditSettings, Embedder, Summary};
use valuedrift_trace::evalset::Question;
use valuedrift_trace::judge::LocalJudge;

pub fn run(args: AuditArgs) -> Result<()> {
    check_cosine("--threshold", args.threshold)?;
    let args = args.plan();
    let questions = super::trace::questions(&args.eval)?;
    let mut tools = Tools::new(&args);
    for path in &args.data {
        let dir = args.out.join(dataset_name(path));
        let summary = audit_one(&args, path, &dir, &questions, &mut tools)?;
        eprint!("{}", audit::summary_markdown(&summary));
        eprintln!("written to {}", dir.display());
    }
    Ok(())
}

/// The file name without data extensions: "train1000.jsonl.gz" -> "train1000".
pub fn dataset_name(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "data".into());
    let mut stem = name.as_str();
    for ext in [".gz", ".jsonl", ".json"] {
        stem = stem.strip_suffix(ext).unwrap_or(stem);
    }
    stem.to_string()
}

/// The embedder and judge, loaded once and only when some dataset needs them.
pub struct Tools {
    embedder_path: PathBuf,
    embedder_engine: EmbedderEngine,
    extra_engines: BTreeMap<String, EngineConfig>,
    device: String,
    judge_choice: JudgeChoice,
    embedder: Option<Box<dyn Embedder>>,
    question_vecs: Option<Vec<Vec<f32>>>,
    judge: Option<LocalJudge>,
}

impl Tools {
    pub fn new(args: &AuditPlan) -> Self {
        Tools {
            embedder_path: args.embedder.clone(),
            embedder_engine: args.embedder_engine.clone(),
            extra_engines: BTreeMap::new(),
            device: args.device.clone(),
            judge_choice: args.judge.clone(),
            embedder: None,
            question_vecs: None,
            judge: None,
        }
    }

    /// Engines an experiment file defines, for `--embedder-engine NAME`.
    pub fn with_engines(mut self, engines: BTreeMap<String, EngineConfig>) -> Self {
        self.extra_engines = engines;
        self
    }

    /// Reuses a judge already loaded (by the trace of `valuedrift run`).
    pub fn with_judge(mut self, judge: LocalJudge) -> Self {
        self.judge = Some(judge);
        self
    }

    fn embedder(&mut self) -> Result<&dyn Embedder> {
        if self.embedder.is_none() {
            let mut known = super::engines::read_file(self.embedder_engine.engines_file.as_deref())?;
            known.extend(self.extra_engines.clone());
            let engine = super::engines::resolve(self.embedder_engine.choice.as_deref(), &known, "embedder")?;
            self.embedder = Some(super::engines::embedder(engine, &self.embedder_path, &self.device)?);
        }
        Ok(self.embedder.as_deref().expect("loaded"))
    }

    /// The embedder and the questions' embeddings, computed on first use.
    fn retrieval(&mut self, questions: &[Question]) -> Result<(&dyn Embedder, &[Vec<f32>])> {
        if self.question_vecs.is_none() {
            let vecs = audit::embed_questions(self.embedder()?, questions)?;
            self.question_vecs = Some(vecs);
        }
        Ok((self.embedder.as_deref().expect("loaded"), self.question_vecs.as_deref().expect("embedded")))
    }

    fn judge(&mut self) -> Result<&mut LocalJudge> {
        if self.judge.is_none() {
            self.judge = Some(super::engines::load_judge(&self.judge_choice, &self.device)?);
        }
        Ok(self.judge.as_mut().expect("loaded"))
    }
}

/// A similarity threshold must be a cosine in [0, 1].
pub fn check_cosine(flag: &str, value: f32) -> Result<()> {
    if !(0.0..=1.0).contains(&value) {
        anyhow::bail!("{flag} {value}: expected a cosine between 0 and 1");
    }
    Ok(())
}

pub fn settings(args: &AuditPlan, path: &Path, questions: &[Question], items: usize) -> AuditSettings {
    AuditSettings {
        data: path.display().to_string(),
        embedder: match args.embedder_engine.choice.as_deref() {
            None | Some("local") => file_name(&args.embedder),
            Some(remote) => format!("{remote} (remote)"),
        },
        threshold: args.threshold,
        judge: args.judge.identity(),
        judge_orders: args.judge.orders as usize,
        max_items: args.max_items,
        items,
        questions: questions.len(),
        question_ids: audit::question_digest(questions),
    }
}

/// Audits one dataset into `dir`, resuming what an earlier run left there.
pub fn audit_one(args: &AuditPlan, path: &Path, dir: &Path, questions: &[Question], tools: &mut Tools) -> Result<Summary> {
    let mut dataset = audit::load_dataset(path, args.on_malformed)?;
    if let Some(n) = args.max_items {
        dataset.entries.truncate(n);
    }
    if dataset.skipped > 0 {
        eprintln!("{}: skipped {} malformed rows", path.display(), dataset.skipped);
    }
    let settings = settings(args, path, questions, dataset.entries.len());
    let out = AuditDir::open(dir, &settings)?;
    let mut bars = Bars::default();
    let matches = match out.matches()? {
        Some(m) => {
            eprintln!("{}: retrieval read back from {}", path.display(), dir.join("matches.json").display());
            m
        }
        None => {
            let (embedder, q_vecs) = tools.retrieval(questions)?;
            let m = audit::retrieve(embedder, &dataset.entries, questions, q_vecs, args.threshold, &mut bars)?;
            out.save_matches(&m)?;
            m
        }
    };
    eprintln!("{}: {} of {} items within cosine {} of an eval question", path.display(), matches.len(), dataset.entries.len(), args.threshold);
    let judged = out.judged()?;
    let judged =
        if judged.len() < matches.len() { audit::judge_matches(&out, &dataset, &matches, questions, tools.judge()?, 16, &mut bars)? } else { judged };
    let summary = audit::summarize(&dataset_name(path), &dataset, &settings, &judged);
    audit::write_summary(dir, &summary)?;
    Ok(summary)
}
