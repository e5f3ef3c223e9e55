//! `valuedrift fit-head`: fits a stance head on the judge model's hidden states over labelled
//! items (by default the constructed set data/judge/constructed.jsonl), and writes it with the
//! provenance of its data. The features are kept beside the output as they are computed, so an
//! interrupted fit resumes where it stopped.

use crate::cli::FitHeadArgs;
use crate::settings::file_name;
use crate::{jsonl, progress};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use valuedrift_trace::head_judge::sha256_hex;
use valuedrift_trace::judge::{Item, LocalJudge};
use valuedrift_trace::stance_head::{self, Example, TrainingSource};
use valuedrift_trace::Stance;

/// One training item: what the judge reads, its label and category.
struct TrainingItem {
    item: Item,
    label: Stance,
    category: String,
}

pub fn run(args: FitHeadArgs) -> Result<()> {
    let (items, sources) = read_training(&args.train)?;
    let cache = features_cache(&args.out);
    let key = CacheKey { judge_model: file_name(&args.judge.judge), layers: args.layers.clone() };
    let mut features = cached_features(&cache, &items, &key)?;
    if features.len() < items.len() {
        eprintln!("judge features: {} of {} items cached in {}", features.len(), items.len(), cache.display());
        let judge = super::engines::load_judge(&args.judge.choice(), &args.device)?;
        add_features(&judge, &items, &key, &cache, &mut features)?;
    }
    let examples: Vec<Example> = items.iter().zip(&features).map(|(t, f)| Example { features: f, label: t.label, category: &t.category }).collect();
    eprintln!("fitting on {} items (L2 chosen by leaving each category out)", examples.len());
    let head = stance_head::fit(&examples, &file_name(&args.judge.judge), args.judge.orders as usize, &args.layers, sources)?;
    let text = serde_json::to_string(&head)?;
    std::fs::write(&args.out, &text).with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("stance head written to {} (sha256 {})", args.out.display(), sha256_hex(text.as_bytes()));
    for (l2, loss) in &head.fit.l2_log_loss {
        println!("  L2 {l2}: leave-one-category-out log loss {loss:.4}");
    }
    println!(
        "chosen L2 {}; leave-one-category-out accuracy on the training items {:.3}; temperature {:.3}",
        head.fit.l2, head.fit.loco_accuracy, head.fit.temperature
    );
    println!("features kept in {} (delete it after a change of judge or data)", cache.display());
    Ok(())
}

/// Every labelled item of the training files, and each file's provenance.
fn read_training(files: &[PathBuf]) -> Result<(Vec<TrainingItem>, Vec<TrainingSource>)> {
    let mut items = Vec::new();
    let mut sources = Vec::new();
    for path in files {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let rows = jsonl::read(path)?;
        if rows.is_empty() {
            bail!("{}: no items", path.display());
        }
        let labels = super::judge::labels(path, &rows)?;
        for ((item, label), row) in super::judge::items(path, &rows)?.into_iter().zip(labels).zip(&rows) {
            items.push(TrainingItem { item, label, category: row.str_field(path, "category")?.to_string() });
        }
        sources.push(TrainingSource { file: path.display().to_string(), sha256: sha256_hex(&bytes), items: rows.len() });
    }
    Ok((items, sources))
}

/// What cached features were computed with: they are only reused for the same.
struct CacheKey {
    judge_model: String,
    layers: Vec<usize>,
}

fn features_cache(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".features.jsonl");
    out.with_file_name(name)
}

/// The judge's features of the items after those already in `out`, appended to the cache as
/// they are computed.
fn add_features(judge: &LocalJudge, items: &[TrainingItem], key: &CacheKey, cache: &Path, out: &mut Vec<Vec<f32>>) -> Result<()> {
    const CHUNK: usize = 32;
    let pb = progress::bar(items.len() as u64, "features");
    pb.inc(out.len() as u64);
    let mut appender = jsonl::Appender::open(cache)?;
    while out.len() < items.len() {
        let chunk: Vec<Item> = items[out.len()..].iter().take(CHUNK).map(|t| t.item.clone()).collect();
        for (item, f) in chunk.iter().zip(judge.features(&chunk, &key.layers)?) {
            let line =
                json!({"judge_model": key.judge_model, "layers": key.layers, "question": item.question, "response": item.response, "features": f});
            appender.write(&line)?;
            out.push(f);
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish();
    Ok(())
}

/// The cached features that belong to the leading items (an interrupted fit); a cache of other
/// items is an error (it would silently mix two data sets).
fn cached_features(cache: &Path, items: &[TrainingItem], key: &CacheKey) -> Result<Vec<Vec<f32>>> {
    if !cache.exists() {
        return Ok(Vec::new());
    }
    let rows = jsonl::read(cache)?;
    if rows.len() > items.len() {
        bail!("{}: {} cached features for {} items: delete it to start over", cache.display(), rows.len(), items.len());
    }
    rows.iter()
        .zip(items)
        .map(|(row, t)| {
            if row.str_field(cache, "question")? != t.item.question || row.str_field(cache, "response")? != t.item.response {
                bail!("{}:{}: cached features of another item: delete the file to start over", cache.display(), row.line);
            }
            if row.str_field(cache, "judge_model")? != key.judge_model || row.fields.get("layers") != Some(&json!(key.layers)) {
                bail!("{}:{}: cached features of another judge model or other layers: delete the file to start over", cache.display(), row.line);
            }
            match row.fields.get("features") {
                Some(Value::Array(xs)) => xs.iter().map(|x| x.as_f64().map(|x| x as f32)).collect::<Option<Vec<f32>>>(),
                _ => None,
            }
            .with_context(|| format!("{}:{}: field 'features' must be an array of numbers", cache.display(), row.line))
        })
        .collect()
}
