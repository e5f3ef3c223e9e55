//! `valuedrift run exp.toml`: train every phase of an experiment (SFT from the base, preference
//! phases from an SFT phase's final checkpoint, reward models for PPO), trace every checkpoint of
//! every policy phase into one store (the base as step 0 of SFT, the parent's final model as
//! step 0 of each later phase), and write the report. Re-running resumes: finished training
//! phases are skipped by the trainer's resume, traced samples by the store.

use super::budget;
use crate::cli::RunArgs;
use crate::settings::{defaults, AuditPlan, EmbedderEngine, EvalSelection, Hyperparameters, JudgeChoice, JudgeMode, Matmul, PhaseTarget, TrainPlan};
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use valuedrift_data::valuegap::LabelSetup;
use valuedrift_data::OnMalformed;
use valuedrift_trace::capability::traced::trace_capability;
use valuedrift_trace::checkpoints::{discover, CheckpointSpec};
use valuedrift_trace::pipeline::{self, PromptStyle, Settings, Throughput};
use valuedrift_trace::report;
use valuedrift_trace::store::Store;
use valuedrift_train::checkpoint::WeightsDtype;
use valuedrift_train::presets::Algo;

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub name: String,
    /// The model every SFT phase starts from.
    pub base: PathBuf,
    #[serde(default)]
    pub eval: EvalConfig,
    #[serde(default)]
    pub judge: JudgeConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub checkpoints: CheckpointConfig,
    /// Capability checks on every traced checkpoint (`[capability]`, docs/capability.md).
    pub capability: Option<CapabilityConfig>,
    #[serde(rename = "phase")]
    pub phases: Vec<Phase>,
    /// Remote engines by name (`[engine.NAME]`, docs/remote.md), chosen by `eval.engine` and
    /// `judge.engine`.
    #[serde(default)]
    pub engine: BTreeMap<String, valuedrift_remote::config::EngineConfig>,
    /// External trainers by name (`[trainer.NAME]`, docs/scale.md), chosen by a phase's `trainer`.
    #[serde(default)]
    pub trainer: BTreeMap<String, super::external::TrainerConfig>,
}

/// `[capability]`: tasks as FORMAT=PATH (none: the bundled smoke set) and few-shot examples.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CapabilityConfig {
    pub tasks: Vec<String>,
    pub fewshot: usize,
}

/// What the run keeps of its checkpoints on disk.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Weights of every checkpoint but the newest of an unfinished phase (that one stays f32,
    /// with its optimizer, for an exact resume).
    pub dtype: WeightsDtype,
    pub keep: KeepCheckpoints,
}

/// Which checkpoints stay once every one has been traced (the store holds their samples and
/// judgments, so the report is the same either way).
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeepCheckpoints {
    #[default]
    All,
    /// Each phase's final checkpoint: what later phases start from and what a re-run needs.
    Last,
}

/// The training-data audit (`valuedrift audit`) run before the report; its stance
/// distributions and value gaps go into the report page.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    pub enabled: bool,
    /// Datasets to audit; default: every distinct data file of the phases.
    pub data: Option<Vec<PathBuf>>,
    pub embedder: PathBuf,
    /// `local` (the `embedder` directory), an `[engine.NAME]`, or a base URL serving /v1/embeddings.
    pub engine: Option<String>,
    pub threshold: f32,
    /// Read only the first N items of each dataset.
    pub max_items: Option<usize>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: true,
            data: None,
            embedder: defaults::EMBEDDER.into(),
            engine: None,
            threshold: defaults::AUDIT_THRESHOLD,
            max_items: None,
        }
    }
}

impl AuditConfig {
    fn datasets(&self, phases: &[Phase]) -> Vec<PathBuf> {
        if let Some(d) = &self.data {
            return d.clone();
        }
        let mut seen = Vec::new();
        for p in phases {
            if !seen.contains(&p.data) {
                seen.push(p.data.clone());
            }
        }
        seen
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    pub questions: Option<PathBuf>,
    pub categories: Vec<String>,
    pub quick: bool,
    pub questions_per_category: Option<usize>,
    pub samples: u32,
    pub temperature: f64,
    pub max_new_tokens: usize,
    pub seed: u64,
    pub prompt: PromptStyle,
    /// How the experiment's `base` model (step 0 of the phases that start from it) is asked;
    /// "base" for a pretrained model, as the paper does even when it ships a chat template.
    pub base_model_prompt: PromptStyle,
    pub batch_size: usize,
    /// The engine that samples answers: "local" (default) or an `[engine.NAME]`.
    pub engine: Option<String>,
}

impl Default for EvalConfig {
    /// The paper's evaluation: every question, 5 samples at 0.7, 256 new tokens.
    fn default() -> Self {
        EvalConfig {
            questions: None,
            categories: Vec::new(),
            quick: false,
            questions_per_category: None,
            samples: defaults::SAMPLES,
            temperature: defaults::TEMPERATURE,
            max_new_tokens: defaults::MAX_NEW_TOKENS,
            seed: defaults::SEED,
            prompt: PromptStyle::Auto,
            base_model_prompt: PromptStyle::Auto,
            batch_size: defaults::GENERATION_BATCH,
            engine: None,
        }
    }
}

impl EvalConfig {
    fn selection(&self) -> EvalSelection {
        EvalSelection {
            questions: self.questions.clone(),
            quick: self.quick,
            categories: self.categories.clone(),
            per_category: self.questions_per_category,
        }
    }

    fn settings(&self, judge: &JudgeChoice) -> Settings {
        Settings {
            samples: self.samples,
            temperature: self.temperature,
            max_new_tokens: self.max_new_tokens,
            seed: self.seed,
            prompt: self.prompt,
            judge: judge.identity(),
            judge_orders: judge.orders as usize,
            capability: None,
        }
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct JudgeConfig {
    pub model: PathBuf,
    pub orders: u8,
    /// The engine that judges: "local" (default) or an `[engine.NAME]`.
    pub engine: Option<String>,
    /// Items per category of the bundled labelled set the judge is checked on (0: none).
    pub check_per_category: usize,
    /// How a local judge's answer is read (auto, paper, head) and the stance head file.
    pub mode: JudgeMode,
    pub head: Option<PathBuf>,
    /// The local judge's CPU matmuls (f32, bf16, q8, candle).
    pub matmul: Matmul,
}

impl JudgeConfig {
    fn choice(&self) -> JudgeChoice {
        JudgeChoice { model: self.model.clone(), orders: self.orders, matmul: self.matmul, mode: self.mode, head: self.head.clone() }
    }
}

impl Default for JudgeConfig {
    fn default() -> Self {
        JudgeConfig {
            model: defaults::JUDGE_MODEL.into(),
            orders: defaults::JUDGE_ORDERS,
            engine: None,
            check_per_category: defaults::JUDGE_CHECK_PER_CATEGORY,
            mode: JudgeMode::default(),
            head: None,
            matmul: defaults::JUDGE_MATMUL,
        }
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub name: String,
    pub algo: Algo,
    pub data: PathBuf,
    /// "base" or the name of the phase whose final checkpoint this one starts from.
    #[serde(default = "base_name")]
    pub from: String,
    /// For value-gap data: which answer is chosen.
    pub label_setup: Option<LabelSetup>,
    /// PPO: the name of an rm phase.
    pub reward_model: Option<String>,
    #[serde(default = "default_save_every")]
    pub save_every: u64,
    #[serde(default)]
    pub hyper: Hyperparameters,
    /// One hyperparameter and its values: the phase becomes one phase per value.
    #[serde(default)]
    pub sweep: BTreeMap<String, Vec<f64>>,
    /// "builtin" (default) or the name of a `[trainer.NAME]` that trains this phase.
    pub trainer: Option<String>,
    /// The data's size, for the dry run's estimate where the file is not on this machine.
    pub rows: Option<usize>,
}

impl Phase {
    /// The external trainer's name, if the phase has one.
    fn external_trainer(&self) -> Option<&str> {
        self.trainer.as_deref().filter(|t| *t != "builtin")
    }
}

fn base_name() -> String {
    "base".into()
}

fn default_save_every() -> u64 {
    defaults::SAVE_EVERY
}

/// Reads and checks an experiment file; errors name the key at fault.
pub fn load(path: &Path, require_data: bool) -> Result<Experiment> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut exp: Experiment = toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    exp.phases = expand_sweeps(&exp.phases).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    validate(&exp, require_data).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(exp)
}

/// A phase with a sweep becomes one phase per value, named `<name>-<key><value>`; phases that
/// started from it follow the first value.
fn expand_sweeps(phases: &[Phase]) -> Result<Vec<Phase>> {
    let mut out = Vec::new();
    for p in phases {
        if p.sweep.is_empty() {
            out.push(p.clone());
            continue;
        }
        if p.sweep.len() > 1 {
            bail!("phase '{}': key 'sweep' may hold one hyperparameter", p.name);
        }
        let (key, values) = p.sweep.iter().next().unwrap();
        for v in values {
            let mut q = p.clone();
            q.sweep.clear();
            q.name = format!("{}-{key}{v}", p.name);
            q.hyper.set(key, *v).map_err(|e| anyhow!("phase '{}': key 'sweep': {e}", p.name))?;
            out.push(q);
        }
    }
    Ok(out)
}

fn validate(exp: &Experiment, require_data: bool) -> Result<()> {
    let mut seen: Vec<&str> = Vec::new();
    for (i, p) in exp.phases.iter().enumerate() {
        let at = format!("phase[{i}] ('{}')", p.name);
        if p.name == "base" || p.name.is_empty() || p.name.contains(['/', '=', '@']) {
            bail!("{at}: key 'name' must be a plain name other than 'base'");
        }
        if seen.contains(&p.name.as_str()) {
            bail!("{at}: key 'name': another phase is already called '{}'", p.name);
        }
        if p.from != "base" && !seen.contains(&p.from.as_str()) {
            bail!("{at}: key 'from' = '{}': no earlier phase has that name", p.from);
        }
        match (p.algo, &p.reward_model) {
            (Algo::Ppo, None) => bail!("{at}: key 'reward_model' is required for ppo (the name of an rm phase)"),
            (Algo::Ppo, Some(rm)) => match exp.phases.iter().find(|q| &q.name == rm && q.algo == Algo::Rm) {
                None => bail!("{at}: key 'reward_model' = '{rm}': no rm phase has that name"),
                // Each trainer stores a reward model its own way (ours: a separate head file).
                Some(q) if q.external_trainer() != p.external_trainer() => bail!(
                    "{at}: key 'reward_model' = '{rm}': trained by {}, but this phase by {}; give both the same trainer",
                    q.trainer.as_deref().unwrap_or("builtin"),
                    p.trainer.as_deref().unwrap_or("builtin")
                ),
                Some(_) => {}
            },
            _ => {}
        }
        if let Some(t) = p.external_trainer().filter(|t| !exp.trainer.contains_key(*t)) {
            bail!("{at}: key 'trainer' = '{t}': no [trainer.{t}] table (or 'builtin')");
        }
        if require_data && !p.data.exists() {
            bail!("{at}: key 'data' = '{}': no such file", p.data.display());
        }
        seen.push(&p.name);
    }
    if let Some(data) = exp.audit.data.as_ref().filter(|_| require_data && exp.audit.enabled) {
        if let Some((i, missing)) = data.iter().enumerate().find(|(_, d)| !d.exists()) {
            bail!("audit: key 'data[{i}]' = '{}': no such file", missing.display());
        }
    }
    valuedrift_trace::judge_check::check_size(exp.judge.check_per_category).map_err(|e| anyhow!("judge: key 'check_per_category': {e}"))?;
    if !(0.0..=1.0).contains(&exp.audit.threshold) {
        bail!("audit: key 'threshold' = {}: expected a cosine between 0 and 1", exp.audit.threshold);
    }
    for (name, trainer) in &exp.trainer {
        trainer.validate().map_err(|e| anyhow!("trainer.{name}: {e}"))?;
    }
    for (name, engine) in &exp.engine {
        engine.validate(name).map_err(|e| anyhow!("engine.{name}: {e}"))?;
    }
    for (key, choice) in [("eval.engine", &exp.eval.engine), ("judge.engine", &exp.judge.engine), ("audit.engine", &exp.audit.engine)] {
        if let Some(name) = choice.as_deref().filter(|n| *n != "local" && !n.starts_with("http")) {
            if !exp.engine.contains_key(name) {
                bail!("key '{key}' = '{name}': no [engine.{name}] table");
            }
        }
    }
    Ok(())
}

/// The final model of a trained phase: for an external trainer's finished phase the path the
/// tracer lists for its last step (the checkpoint at that step, else the final model at the
/// top), so the next phase's step 0 reuses its traced answers; else the newest checkpoint.
fn final_checkpoint(out: &Path, phase: &str) -> Result<PathBuf> {
    let dir = out.join(phase);
    if super::external::finished(&dir) {
        let last = discover(&dir.display().to_string(), phase)?.pop();
        return Ok(last.map_or(dir, |c| c.path));
    }
    valuedrift_train::checkpoint::list(&out.join(phase))
        .pop()
        .map(|(_, d)| d)
        .ok_or_else(|| anyhow!("phase '{phase}' has no checkpoint in {}", out.join(phase).display()))
}

fn start_model(exp: &Experiment, out: &Path, p: &Phase) -> Result<PathBuf> {
    if p.from == "base" {
        Ok(exp.base.clone())
    } else {
        final_checkpoint(out, &p.from)
    }
}

fn train_plan(exp: &Experiment, out: &Path, p: &Phase, matmul: Matmul, device: &str) -> Result<TrainPlan> {
    let target = PhaseTarget {
        algo: p.algo,
        model: start_model(exp, out, p)?,
        data: p.data.clone(),
        out: out.join(&p.name),
        phase: Some(p.name.clone()),
        save_every: p.save_every,
    };
    Ok(TrainPlan {
        label_setup: p.label_setup,
        reward_model: p.reward_model.as_ref().map(|rm| final_checkpoint(out, rm)).transpose()?,
        checkpoint_dtype: exp.checkpoints.dtype,
        ..TrainPlan::new(target, &p.hyper, device, matmul)
    })
}

/// Every checkpoint to trace, phase by phase: the starting model as step 0, then the phase's own.
fn checkpoints(exp: &Experiment, out: &Path) -> Result<Vec<CheckpointSpec>> {
    let mut specs = Vec::new();
    for p in exp.phases.iter().filter(|p| p.algo != Algo::Rm) {
        let start = start_model(exp, out, p)?;
        // The pretrained base model is asked as the paper asks base models, where the file says so.
        let prompt = (p.from == "base" && exp.eval.base_model_prompt != exp.eval.prompt).then_some(exp.eval.base_model_prompt);
        specs.push(CheckpointSpec { phase: p.name.clone(), step: 0, phase_steps: None, path: start, prompt });
        let mut own = discover(&out.join(&p.name).display().to_string(), &p.name)?;
        for c in &mut own {
            c.phase = p.name.clone();
        }
        specs.extend(own.into_iter().filter(|c| c.step > 0));
    }
    Ok(specs)
}

pub fn run(args: RunArgs) -> Result<()> {
    let exp = load(&args.experiment, !args.dry_run)?;
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(&exp.name));
    if args.dry_run {
        return dry_run(&exp, &out);
    }
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::copy(&args.experiment, out.join("experiment.toml")).with_context(|| format!("cannot copy {}", args.experiment.display()))?;
    let started = std::time::Instant::now();
    for p in &exp.phases {
        eprintln!("== phase {} ({} from {})", p.name, p.algo.name(), p.from);
        let plan = train_plan(&exp, &out, p, args.matmul, &args.device)?;
        match p.external_trainer() {
            Some(name) => super::external::run(&plan, name, &exp.trainer[name])?,
            None => super::train::run(&plan)?,
        }
    }
    if args.train_only {
        eprintln!(
            "experiment '{}': every phase trained in {:.1} min (--train-only): {}",
            exp.name,
            started.elapsed().as_secs_f64() / 60.0,
            out.display()
        );
        return Ok(());
    }
    let e = &exp.eval;
    let eval = exp.eval.selection();
    let judge = exp.judge.choice();
    let questions = super::trace::questions(&eval)?;
    let mut settings = exp.eval.settings(&judge);
    let capability = match &exp.capability {
        Some(c) => Some(super::capability::plan(&c.tasks, c.fewshot)?),
        None => None,
    };
    settings.capability = capability.as_ref().map(|(_, s)| s.clone());
    let specs = checkpoints(&exp, &out)?;
    // Engines per role: the command line's choice over the experiment's.
    let known = super::engines::known(&args.engines, &exp.engine)?;
    let generator_engine = super::engines::resolve(args.engines.generator_engine.as_deref().or(e.engine.as_deref()), &known, "generator")?;
    let judge_engine = super::engines::resolve(args.engines.judge_engine.as_deref().or(exp.judge.engine.as_deref()), &known, "judge")?;
    let judge_model = super::engines::judge(judge_engine, &judge, &args.device)?;
    settings.judge = judge_model.identity.clone();
    let mut store = Store::open(&out.join("trace.sqlite"))?;
    let run = store.run(&exp.name, &settings.to_json())?;
    super::judge::check_into_store(&store, run, &judge_model, exp.judge.check_per_category)?;
    eprintln!(
        "== tracing {} checkpoints x {} questions x {} samples; store {}",
        specs.len(),
        questions.len(),
        settings.samples,
        out.join("trace.sqlite").display()
    );
    let speed = Throughput { batch_size: e.batch_size, ..Throughput::default() };
    let load = super::generator_loader(args.device.clone(), defaults::RUN_GENERATOR_MATMUL);
    let mut local = pipeline::LocalGenerators { load: &load, batch_size: speed.batch_size };
    let mut remote = super::engines::remote_generators(generator_engine);
    let generators: &mut dyn pipeline::Generators = match &mut remote {
        Some(r) => r,
        None => &mut local,
    };
    pipeline::trace(
        &mut store,
        run,
        &specs,
        &questions,
        &settings,
        &speed,
        judge_model.judge.as_ref(),
        generators,
        &mut crate::progress::Bars::default(),
    )?;
    if let Some((plan, _)) = &capability {
        trace_capability(&mut store, run, plan, &load, &mut crate::progress::Bars::default())?;
    }
    if exp.checkpoints.keep == KeepCheckpoints::Last {
        prune_traced_checkpoints(&exp, &out)?;
    }
    let audits = if exp.audit.enabled { run_audits(&exp, &out, &eval, judge, judge_model.judge.into_local(), &args.device)? } else { Vec::new() };
    let written = report::write_report(&store, run, &out.join("report"))?;
    let experiment_text = std::fs::read_to_string(&args.experiment).ok();
    let page = valuedrift_trace::html::write_html(&store, run, &written, experiment_text.as_deref(), &audits)?;
    super::trace::print_summary(&written);
    eprintln!("page: {}", page.display());
    eprintln!("experiment '{}' done in {:.1} min: {}", exp.name, started.elapsed().as_secs_f64() / 60.0, out.display());
    Ok(())
}

/// Removes every checkpoint but each phase's final one, once all are traced.
fn prune_traced_checkpoints(exp: &Experiment, out: &Path) -> Result<()> {
    let mut freed = 0u64;
    for p in &exp.phases {
        freed += valuedrift_train::checkpoint::keep_only_final(&out.join(&p.name))?;
    }
    if freed > 0 {
        eprintln!("checkpoints: kept each phase's final one, freed {:.1} GB (keep = \"last\")", freed as f64 / 1e9);
    }
    Ok(())
}

/// Audits the experiment's datasets into OUT/audit/<name>/ (resumable like the trace).
/// `local_judge` is the trace's judge when it ran here; otherwise the judge model is loaded.
fn run_audits(
    exp: &Experiment,
    out: &Path,
    eval: &EvalSelection,
    judge: JudgeChoice,
    local_judge: Option<valuedrift_trace::judge::LocalJudge>,
    device: &str,
) -> Result<Vec<valuedrift_trace::audit::Summary>> {
    let a = &exp.audit;
    // Retrieval compares with every question of the traced categories, not only those traced.
    let all_of_categories = EvalSelection { quick: false, per_category: None, ..eval.clone() };
    let plan = AuditPlan {
        data: a.datasets(&exp.phases),
        out: out.join("audit"),
        embedder: a.embedder.clone(),
        embedder_engine: EmbedderEngine { choice: a.engine.clone(), engines_file: None },
        threshold: a.threshold,
        max_items: a.max_items,
        on_malformed: OnMalformed::Error,
        eval: all_of_categories.clone(),
        judge,
        device: device.into(),
    };
    let questions = super::trace::questions(&all_of_categories)?;
    let mut tools = super::audit::Tools::new(&plan).with_engines(exp.engine.clone());
    if let Some(j) = local_judge {
        tools = tools.with_judge(j);
    }
    let mut summaries = Vec::new();
    for path in &plan.data {
        eprintln!("== audit {}", path.display());
        let dir = plan.out.join(super::audit::dataset_name(path));
        summaries.push(super::audit::audit_one(&plan, path, &dir, &questions, &mut tools)?);
    }
    Ok(summaries)
}

/// Checks the whole plan without training: the phases in order with their starting models,
/// data sizes and settings, then what the run will cost (updates, checkpoints, tokens, judge
/// calls), so a user can budget before starting.
fn dry_run(exp: &Experiment, out: &Path) -> Result<()> {
    println!("experiment '{}': base {}, {} phases", exp.name, exp.base.display(), exp.phases.len());
    for p in &exp.phases {
        let from = if p.from == "base" { exp.base.display().to_string() } else { format!("{}/checkpoint-<final>", out.join(&p.from).display()) };
        let data = if p.data.exists() { "present" } else { "missing: put your copy there before running" };
        let trainer = p.trainer.as_deref().unwrap_or("builtin");
        println!(
            "  {:30} {:5} from {from}; data {} ({data}); save every {}; trainer {trainer}",
            p.name,
            p.algo.name(),
            p.data.display(),
            p.save_every
        );
    }
    let e = &exp.eval;
    if exp.audit.enabled {
        let data: Vec<String> = exp.audit.datasets(&exp.phases).iter().map(|d| d.display().to_string()).collect();
        println!("  audit: {} with {} at cosine >= {}", data.join(", "), exp.audit.embedder.display(), exp.audit.threshold);
    }
    println!(
        "  eval: categories {:?}, {} samples, temperature {}, {} new tokens; judge {} ({} orders, {} weights)",
        e.categories,
        e.samples,
        e.temperature,
        e.max_new_tokens,
        exp.judge.model.display(),
        exp.judge.orders,
        exp.judge.matmul.weights()
    );
    if let Some(c) = &exp.capability {
        let tasks = if c.tasks.is_empty() { vec![valuedrift_trace::capability::SMOKE_NAME.to_string()] } else { c.tasks.clone() };
        println!("  capability: {} ({}-shot) at every traced checkpoint", tasks.join(", "), c.fewshot);
    }
    print_budget(exp)
}

/// The dry run's cost table: per phase, then in total.
fn print_budget(exp: &Experiment) -> Result<()> {
    let questions = super::trace::questions(&exp.eval.selection())?.len() as u64;
    let trace = budget::TracePerCheckpoint {
        answers: questions * exp.eval.samples as u64,
        max_new_tokens: exp.eval.max_new_tokens as u64,
        judge_orders: exp.judge.orders as u64,
    };
    println!("\nbudget ({questions} questions x {} samples per traced checkpoint; tokens are upper bounds):", exp.eval.samples);
    let w = exp.phases.iter().map(|p| p.name.len()).max().unwrap_or(5).max(5);
    println!(
        "  {:w$} {:>8} {:>8} {:>11} {:>14} {:>14} {:>12}",
        "phase", "rows", "updates", "checkpoints", "PPO rollout tk", "eval tokens", "judge calls"
    );
    let mut total = budget::Budget::default();
    let mut unknown = 0;
    for p in &exp.phases {
        let h = p.hyper.resolve(p.algo);
        let rows = data_rows(p)?;
        let shape = budget::PhaseShape {
            algo: p.algo,
            rows,
            epochs: h.epochs,
            global_batch: h.global_batch,
            max_steps: p.hyper.max_steps,
            save_every: p.save_every,
            rollout_tokens: p.hyper.rollout_tokens,
        };
        match budget::phase(&shape, &trace) {
            Some(b) => {
                let rows = rows.map_or("?".into(), |r| r.to_string());
                println!(
                    "  {:w$} {rows:>8} {:>8} {:>11} {:>14} {:>14} {:>12}",
                    p.name, b.updates, b.checkpoints, b.rollout_tokens, b.generated_tokens, b.judge_calls
                );
                total += b;
            }
            None => {
                println!("  {:w$} {:>8} (data absent, no `rows` key: not estimated)", p.name, "?");
                unknown += 1;
            }
        }
    }
    println!(
        "  {:w$} {:>8} {:>8} {:>11} {:>14} {:>14} {:>12}",
        "total", "", total.updates, total.checkpoints, total.rollout_tokens, total.generated_tokens, total.judge_calls
    );
    if unknown > 0 {
        println!("  not in the total: {unknown} phases whose size is unknown (put their data in place or give `rows`)");
    }
    Ok(())
}

/// The records of a phase's data file, or the phase's `rows` when the file is not here.
fn data_rows(p: &Phase) -> Result<Option<usize>> {
    if p.data.exists() {
        return Ok(Some(valuedrift_data::count_records(&p.data)?));
    }
    Ok(p.rows)
}
