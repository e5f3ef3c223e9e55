//! `valuedrift eval`: one model's values on the eval set. Sampling goes through `generate`
//! (resumable), judging through `judge`, then p(s|x) = mean over samples and v(T) = mean over
//! questions with 95% t-intervals, per category.

use crate::cli::{EvalArgs, GenerateArgs, JudgeArgs};
use crate::settings::defaults;
use anyhow::{anyhow, Context, Result};
use std::collections::BTreeMap;
use std::io::Write;
use valuedrift_trace::aggregate::{question_value, topic_value};
use valuedrift_trace::evalset;

pub fn run(args: EvalArgs) -> Result<()> {
    let questions = evalset::load(&args.questions)?;
    let questions = evalset::select(questions, &args.categories, args.quick).map_err(|e| anyhow!("{}: {e}", args.questions.display()))?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let qpath = args.out.join("questions.jsonl");
    let lines: Vec<String> = questions.iter().map(serde_json::to_string).collect::<Result<_, _>>()?;
    std::fs::write(&qpath, lines.join("\n") + "\n")?;
    let gens = args.out.join("generations.jsonl");
    super::generate::run(GenerateArgs {
        model: args.model.clone(),
        input: qpath,
        output: gens.clone(),
        samples: args.samples,
        temperature: args.temperature,
        top_p: 1.0,
        max_new_tokens: args.max_new_tokens,
        seed: args.seed,
        batch_size: args.batch_size,
        base_prompt: args.base_prompt,
        system: None,
    })?;
    // Judging is cheap next to sampling and is redone whole unless it finished.
    let judged = args.out.join("judgments.jsonl");
    let count = |p: &std::path::Path| std::fs::read_to_string(p).map(|t| t.lines().filter(|l| !l.trim().is_empty()).count()).unwrap_or(0);
    if count(&judged) != count(&gens) {
        let _ = std::fs::remove_file(&judged);
        super::judge::run(JudgeArgs {
            input: Some(gens.clone()),
            output: Some(judged.clone()),
            validate: None,
            agreement: None,
            features: None,
            feature_layers: Vec::new(),
            judge: args.judge.clone(),
            orders: args.orders,
            device: args.model.device.clone(),
            matmul: defaults::JUDGE_MATMUL,
            reading: args.reading.clone(),
        })?;
    }
    report(&judged, &args.out.join("values.csv"))
}

/// Per category: its topic, and each question's sample judgments.
type JudgedByCategory = BTreeMap<String, (String, BTreeMap<String, Vec<[f64; 3]>>)>;

/// Per category: v(T) with intervals, from the judged samples.
fn report(judged: &std::path::Path, csv_path: &std::path::Path) -> Result<()> {
    let rows = crate::jsonl::read(judged)?;
    let mut by_cat = JudgedByCategory::new();
    for r in &rows {
        let f = |k: &str| r.fields.get(k).and_then(|v| v.as_f64()).ok_or_else(|| anyhow!("{}:{}: missing field '{k}'", judged.display(), r.line));
        let p = [f("p_support")?, f("p_neutral")?, f("p_oppose")?];
        let entry = by_cat
            .entry(r.str_field(judged, "category")?.to_string())
            .or_insert_with(|| (r.str_field(judged, "topic").unwrap_or("").to_string(), BTreeMap::new()));
        entry.1.entry(r.str_field(judged, "id")?.to_string()).or_default().push(p);
    }
    let mut csv = std::fs::File::create(csv_path).with_context(|| format!("cannot write {}", csv_path.display()))?;
    writeln!(csv, "category,topic,questions,support,support_ci95,neutral,neutral_ci95,oppose,oppose_ci95")?;
    println!("{:24} {:>4}  {:>15}  {:>15}  {:>15}", "category", "n", "support", "neutral", "oppose");
    for (cat, (topic, per_q)) in &by_cat {
        let qv: Vec<[f64; 3]> = per_q.values().filter_map(|s| question_value(s)).collect();
        let v = topic_value(&qv).expect("a category has questions");
        writeln!(
            csv,
            "{cat},\"{}\",{},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4}",
            topic.replace('"', "\"\""),
            v.questions,
            v.mean[0],
            v.ci_half[0],
            v.mean[1],
            v.ci_half[1],
            v.mean[2],
            v.ci_half[2]
        )?;
        let cell = |i: usize| format!("{:.3} ± {:.3}", v.mean[i], v.ci_half[i]);
        println!("{cat:24} {:>4}  {:>15}  {:>15}  {:>15}", v.questions, cell(0), cell(1), cell(2));
    }
    eprintln!("values: {}", csv_path.display());
    Ok(())
}
