//! `valuedrift curate`: an eval set from a prompt corpus (see valuedrift_curate).

use crate::cli::{CurateArgs, FilterArg};
use crate::progress::Bars;
use anyhow::{bail, Result};
use valuedrift_curate::cluster::ClusterParams;
use valuedrift_curate::input;
use valuedrift_curate::reduce::UmapParams;
use valuedrift_curate::stages::{self, Engines, FilterMode, Sampling, Settings, Summary};
use valuedrift_curate::yes_no::{LocalYesNo, YesNoScorer};
use valuedrift_curate::CurateError;
use valuedrift_trace::checkpoints::CheckpointSpec;
use valuedrift_trace::pipeline::{self, Generator, Generators};

pub fn run(args: CurateArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.min_value_share) {
        bail!("--min-value-share must be between 0 and 1, not {}", args.min_value_share);
    }
    if !(0.0..=1.0).contains(&args.filter_threshold) {
        bail!("--filter-threshold must be between 0 and 1, not {}", args.filter_threshold);
    }
    let filter = filter_mode(&args)?;
    let (prompts, repeats) = input::read_all(&args.input)?;
    eprintln!("{} prompts ({repeats} repeated texts kept once)", prompts.len());
    let digest = stages::fnv_digest(prompts.iter().flat_map(|p| [p.id.as_str(), p.text.as_str()]));
    let settings = Settings {
        inputs: args.input.iter().map(|p| p.display().to_string()).collect(),
        prompts_digest: digest,
        llm_prompts: stages::fnv_digest(valuedrift_curate::llm::templates().iter().map(String::as_str)),
        rephrase: !args.no_rephrase,
        llm: args.llm_engine.clone().unwrap_or_else(|| args.llm.display().to_string()),
        embedder: args.embedder_engine.embedder_engine.clone().unwrap_or_else(|| args.embedder.display().to_string()),
        filter,
        seed: args.seed,
        umap: UmapParams { n_neighbors: args.neighbors, n_components: args.dims, min_dist: 0.0, n_epochs: args.epochs },
        hdbscan: ClusterParams { min_cluster_size: args.min_cluster_size, min_samples: args.min_samples },
    };
    let sampling = Sampling {
        per_category: args.per_category,
        min_value_share: args.min_value_share,
        filter_threshold: args.filter_threshold,
        off_topic_label: args.off_topic_label.clone(),
    };
    let known = super::engines::read_file(args.embedder_engine.embedder_engines.as_deref())?;
    let mut open_llm = || open_llm(&args, &known).map_err(|e| CurateError::Input(format!("{e:#}")));
    let mut open_embedder = || {
        let engine = super::engines::resolve(args.embedder_engine.embedder_engine.as_deref(), &known, "embedder")
            .map_err(|e| CurateError::Input(format!("{e:#}")))?;
        super::engines::embedder(engine, &args.embedder, &args.device).map_err(|e| CurateError::Input(format!("{e:#}")))
    };
    let mut open_scorer = || open_scorer(&args).map_err(|e| CurateError::Input(format!("{e:#}")));
    let engines = Engines { llm: &mut open_llm, embedder: &mut open_embedder, scorer: &mut open_scorer };
    let summary = stages::curate(&args.out, &prompts, &settings, &sampling, engines, &mut Bars::default())?;
    print_summary(&summary);
    Ok(())
}

fn open_llm(args: &CurateArgs, known: &std::collections::BTreeMap<String, valuedrift_remote::config::EngineConfig>) -> Result<Box<dyn Generator>> {
    let spec = CheckpointSpec { phase: "curate".into(), step: 0, phase_steps: None, path: args.llm.clone(), prompt: None };
    let engine = super::engines::resolve(args.llm_engine.as_deref(), known, "llm")?;
    if let Some(mut remote) = super::engines::remote_generators(engine) {
        return Ok(remote.open(&spec)?);
    }
    let load = super::generator_loader(args.device.clone(), args.matmul);
    Ok(pipeline::LocalGenerators { load: &load, batch_size: args.batch_size }.open(&spec)?)
}

/// Log-prob filtering by default; a server's answers are read as words, since servers differ
/// in whether and how they report log-probs of chosen tokens.
fn filter_mode(args: &CurateArgs) -> Result<FilterMode> {
    let remote = args.llm_engine.as_deref().is_some_and(|e| e != "local");
    match (args.filter, remote) {
        (Some(FilterArg::Logprob), true) => bail!("--filter logprob reads a local --llm's log-probs; with --llm-engine use --filter answer"),
        (Some(FilterArg::Logprob), false) | (None, false) => Ok(FilterMode::Logprob),
        (Some(FilterArg::Answer), _) | (None, true) => Ok(FilterMode::Answer),
    }
}

fn open_scorer(args: &CurateArgs) -> Result<Box<dyn YesNoScorer>> {
    let model = super::generator_loader(args.device.clone(), args.matmul)(&args.llm)?;
    Ok(Box::new(LocalYesNo::new(model)?))
}

fn print_summary(s: &Summary) {
    eprintln!("{} prompts in {} clusters:", s.prompts, s.clusters.len());
    for c in &s.clusters {
        eprintln!("  {:>3} {:>5} {:>3} {:>6}  {}", c.cluster, c.size, c.keep, c.value_share, c.name);
    }
    if let Some(k) = &s.known {
        let off_topic = match k.off_topic {
            0 => "no off-topic prompts".to_string(),
            n => format!("off-topic dropped {:.1}% of {n}", 100.0 * k.off_topic_dropped),
        };
        eprintln!(
            "known categories: purity {:.3}, {} of {} categories the majority of a cluster, ARI {:.3} (on-topic) / {:.3} (all), \
             {off_topic}, on-topic kept {:.1}%",
            k.purity,
            k.categories_recovered,
            k.categories,
            k.ari_on_topic,
            k.ari_all,
            100.0 * k.on_topic_kept
        );
    }
    eprintln!(
        "{} questions in {} (edit clusters.csv's name and keep columns and run again to redo the selection)",
        s.questions,
        s.dir.join("questions.jsonl").display()
    );
}
