//! The report as one self-contained HTML page (`report.html`): the trajectory plots inlined as
//! SVG, the drift tables in the paper's layout, values per checkpoint, sample answers per
//! checkpoint, the run's settings and the experiment file.

use crate::audit::{self, DataKind, Summary};
use crate::report::{ReportError, Result, Written};
use crate::store::Store;
use crate::Stance;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:'DejaVu Sans',Arial,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}h3{margin-bottom:.4em}
.meta{color:#555;font-size:.92em}.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:14px}
.plots figure{margin:0;border:1px solid #eee;padding:4px}.plots svg{width:100%;height:auto}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #ddd;padding:3px 8px;text-align:right;vertical-align:top}
th{background:#f5f5f5}td.l,th.l{text-align:left}.pos{color:#1b7e3c}.neg{color:#b5431b}td.sig{font-weight:bold;background:#fff6d6}
td.answer{max-width:620px;text-align:left;white-space:pre-wrap}pre{background:#f7f7f7;padding:10px;overflow-x:auto;font-size:.85em}";

/// Writes `dir/report.html` for a report already written into `dir`.
/// `audits` are the dataset audits to show (the summaries `audit::read_summaries` finds).
pub fn write_html(store: &Store, run: i64, written: &Written, experiment: Option<&str>, audits: &[Summary]) -> Result<PathBuf> {
    let mut h = String::new();
    let name = store.runs()?.into_iter().find(|(id, _)| *id == run).map(|(_, n)| n).unwrap_or_default();
    let settings = store.settings(run)?;
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset='utf-8'><title>valuedrift: {n}</title><style>{STYLE}</style></head><body>",
        n = esc(&name)
    );
    let _ = write!(
        h,
        "<h1>Value drift report: {}</h1><p class='meta'>valuedrift {} · store {} · {} checkpoints · settings: {}</p>",
        esc(&name),
        env!("CARGO_PKG_VERSION"),
        esc(&store.path().display().to_string()),
        store.checkpoints(run)?.len(),
        esc(&settings.to_string())
    );
    h.push_str(
        "<p>v(T): the mean over a category's questions of each question's mean stance probabilities over its sampled answers, \
        as judged; bands and ± are 95% Student-t intervals over questions. Drift magnitude M is the change of a stance's value from \
        the first to the last checkpoint of a phase; drift time η is the fraction of the phase's steps taken to come within the 95% \
        interval of the stance's extremum in the phase.</p>",
    );
    judge_section(&mut h, &store.judge_checks(run)?);
    plots(&mut h, &written.plots)?;
    drift_tables(&mut h, written);
    values_table(&mut h, written);
    capability_section(&mut h, written);
    samples(&mut h, store, run)?;
    audit_sections(&mut h, audits);
    if let Some(text) = experiment {
        let _ = write!(h, "<h2>Experiment file</h2><pre>{}</pre>", esc(text));
    }
    h.push_str("</body></html>\n");
    let path = written.dir.join("report.html");
    std::fs::write(&path, h).map_err(|source| ReportError::Io { path: path.clone(), source })?;
    Ok(path)
}

/// Which judge judged the run and how it does on the bundled labelled sample.
fn judge_section(h: &mut String, checks: &[crate::judge_check::JudgeCheck]) {
    h.push_str("<h2>The judge</h2>");
    if checks.is_empty() {
        h.push_str("<p class='meta'>No judge check is kept for this run (traced with --judge-check 0, or before checks were kept).</p>");
        return;
    }
    for c in checks {
        let _ = write!(h, "<p><b>{}</b>: {}.</p>", esc(&c.judge), esc(&crate::judge_check::summary(c)));
        h.push_str("<table><tr><th>category</th><th>accuracy</th></tr>");
        for (category, accuracy) in &c.by_category {
            let _ = write!(h, "<tr><td>{}</td><td>{accuracy:.2}</td></tr>", esc(category));
        }
        h.push_str("</table>");
    }
    h.push_str(
        "<p class='meta'>On fixed samples of two labelled sets: data/judge/labelled.jsonl (hand-written answers, the first items \
        of each label in each category) and data/judge/real-samples.jsonl (answers the bundled models really sampled, labelled by \
        hand; the first items of each category). The judge's stance probabilities average into v(T), so its errors and \
        miscalibration carry into every value above. `valuedrift judge --validate FILE` measures it on a whole set.</p>",
    );
}

fn plots(h: &mut String, pngs: &[PathBuf]) -> Result<()> {
    h.push_str("<h2>Stance trajectories (and capability, where measured)</h2><div class='plots'>");
    for png in pngs {
        let svg_path = png.with_extension("svg");
        let svg = std::fs::read_to_string(&svg_path).map_err(|source| ReportError::Io { path: svg_path.clone(), source })?;
        let _ = write!(h, "<figure>{}</figure>", inline_svg(&svg));
    }
    h.push_str("</div>");
    Ok(())
}

/// An M cell: coloured by direction, bold when significant after correction, with its interval.
fn magnitude(d: &crate::report::PhaseDrift) -> String {
    let x = d.drift.magnitude;
    let class = if x > 0.005 {
        "pos"
    } else if x < -0.005 {
        "neg"
    } else {
        ""
    };
    let weight = if d.evidence.significant { " sig" } else { "" };
    format!(
        "<td class='{class}{weight}' title='p = {:.4}, corrected {:.4}'>{}</td>",
        d.evidence.p_value,
        d.evidence.p_adjusted,
        esc(&crate::report::magnitude_cell(d))
    )
}

fn drift_tables(h: &mut String, w: &Written) {
    h.push_str("<h2>Drift per phase</h2>");
    let _ = write!(h, "<p class='meta'>{}</p>", esc(&crate::report::evidence_legend(&w.drifts)));
    let mut phases: Vec<&str> = Vec::new();
    for d in &w.drifts {
        if !phases.contains(&d.phase.as_str()) {
            phases.push(&d.phase);
        }
    }
    for phase in phases {
        let _ = write!(h, "<h3>{}</h3><table><tr><th class='l'>topic</th>", esc(phase));
        for s in Stance::ALL {
            let _ = write!(h, "<th>{n} M</th><th>{n} η</th>", n = s.name());
        }
        h.push_str("</tr>");
        let mut rows: BTreeMap<&str, Vec<&crate::report::PhaseDrift>> = BTreeMap::new();
        for d in w.drifts.iter().filter(|d| d.phase == phase) {
            rows.entry(&d.category).or_default().push(d);
        }
        for (cat, ds) in rows {
            let _ = write!(h, "<tr><td class='l'>{}</td>", esc(cat));
            for s in Stance::ALL {
                match ds.iter().find(|d| d.stance == s) {
                    Some(d) => {
                        h.push_str(&magnitude(d));
                        let _ = write!(h, "<td>{}</td>", esc(&crate::report::time_cell(d)));
                    }
                    None => h.push_str("<td></td><td></td>"),
                }
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
    }
}

/// Capability beside the values: accuracy per checkpoint and each phase's tested change.
fn capability_section(h: &mut String, w: &Written) {
    if w.capability.is_empty() {
        return;
    }
    h.push_str(
        "<h2>Capability at each checkpoint</h2><p>Multiple-choice accuracy (acc) as lm-evaluation-harness computes it, with Wilson 95% \
        intervals; below, each phase's first against last checkpoint on the same items (exact McNemar, Benjamini-Hochberg adjusted; \
        * adjusted p &lt; 0.05). docs/capability.md.</p><table><tr><th class='l'>phase</th><th>step</th><th class='l'>task</th><th>n</th><th>chance</th><th>acc</th><th>acc_norm</th></tr>",
    );
    for ck in &w.capability {
        for t in &ck.tasks {
            let ((lo, hi), (nlo, nhi)) = (t.acc_interval(), t.acc_norm_interval());
            let _ = write!(
                h,
                "<tr><td class='l'>{}</td><td>{}</td><td class='l'>{}</td><td>{}</td><td>{:.2}</td><td>{:.3} [{:.3}, {:.3}]</td><td>{:.3} [{:.3}, {:.3}]</td></tr>",
                esc(&ck.checkpoint.phase),
                ck.checkpoint.step,
                esc(&t.task),
                t.n,
                t.chance,
                t.acc(),
                lo,
                hi,
                t.acc_norm(),
                nlo,
                nhi
            );
        }
    }
    h.push_str("</table><table><tr><th class='l'>phase</th><th class='l'>task</th><th>n</th><th>acc start</th><th>acc end</th><th>lost</th><th>gained</th><th>p</th><th>p adj</th></tr>");
    for c in &w.capability_changes {
        let mark = if c.significant() { " *" } else { "" };
        let _ = write!(
            h,
            "<tr><td class='l'>{}</td><td class='l'>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}{mark}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td></tr>",
            esc(&c.phase),
            esc(&c.task),
            c.n,
            c.acc_start,
            c.acc_end,
            c.lost,
            c.gained,
            c.p,
            c.p_adjusted
        );
    }
    h.push_str("</table>");
}

fn values_table(h: &mut String, w: &Written) {
    h.push_str("<h2>Values at each checkpoint</h2><table><tr><th class='l'>phase</th><th>step</th><th class='l'>category</th><th>support</th><th>neutral</th><th>oppose</th><th>questions</th><th>answers</th></tr>");
    for v in &w.values {
        let _ = write!(h, "<tr><td class='l'>{}</td><td>{}</td><td class='l'>{}</td>", esc(&v.checkpoint.phase), v.checkpoint.step, esc(&v.category));
        for s in 0..3 {
            let _ = write!(h, "<td>{:.3} ± {:.3}</td>", v.value.mean[s], v.value.ci_half[s]);
        }
        let _ = write!(h, "<td>{}</td><td>{}</td></tr>", v.value.questions, v.samples);
    }
    h.push_str("</table>");
}

fn samples(h: &mut String, store: &Store, run: i64) -> Result<()> {
    h.push_str(
        "<h2>Sample answers per checkpoint</h2><p>Sample 0 of the first question of each category, with the judge's (support, neutral, oppose).</p>",
    );
    let questions = store.questions(run)?;
    let checkpoints = store.checkpoints(run)?;
    let records = store.records(run)?;
    let mut firsts: BTreeMap<&str, &crate::evalset::Question> = BTreeMap::new();
    for q in &questions {
        firsts.entry(&q.category).or_insert(q);
    }
    for (cat, q) in firsts {
        let _ = write!(
            h,
            "<h3>{}: {}</h3><table><tr><th class='l'>phase</th><th>step</th><th class='l'>answer</th><th>p</th></tr>",
            esc(cat),
            esc(&q.question)
        );
        for ck in &checkpoints {
            let Some(r) = records.iter().find(|r| r.phase == ck.phase && r.step == ck.step && r.question_id == q.id && r.sample == 0) else {
                continue;
            };
            let p = match (r.p_support, r.p_neutral, r.p_oppose) {
                (Some(a), Some(b), Some(c)) => format!("{a:.2} / {b:.2} / {c:.2}"),
                _ => String::new(),
            };
            let _ = write!(
                h,
                "<tr><td class='l'>{}</td><td>{}</td><td class='answer'>{}</td><td>{p}</td></tr>",
                esc(&ck.phase),
                ck.step,
                esc(r.response.trim())
            );
        }
        h.push_str("</table>");
    }
    Ok(())
}

/// The SVG document without its XML prolog, for inlining.
fn inline_svg(svg: &str) -> &str {
    svg.find("<svg").map(|i| &svg[i..]).unwrap_or(svg)
}

fn audit_sections(h: &mut String, audits: &[Summary]) {
    if audits.is_empty() {
        return;
    }
    h.push_str(
        "<h2>Training data: stance distributions and value gaps</h2><p>Each dataset's items whose prompt is within the \
        cosine threshold of an eval question (sentence embeddings) were judged for the stance of their reply toward that question's \
        topic. For preference data both replies are judged; the value gap of a pair is the Euclidean distance between the chosen and \
        rejected stance vectors (0 to √2). ± are 95% t-intervals over items.</p>",
    );
    for a in audits {
        let _ = write!(
            h,
            "<h3>{}</h3><p class='meta'>{} ({}): {} of {} items within cosine {}</p><div class='plots'>",
            esc(&a.name),
            esc(&a.data),
            a.kind.label(),
            a.matched,
            a.items,
            a.threshold
        );
        for role in audit::roles(a.kind) {
            let svg = valuedrift_plot::bar_groups_svg(&audit::stance_bars(a, role));
            let _ = write!(h, "<figure>{}</figure>", inline_svg(&svg));
        }
        if a.kind == DataKind::Preference {
            let svg = valuedrift_plot::histogram_svg(&audit::gap_histogram(a));
            let _ = write!(h, "<figure>{}</figure>", inline_svg(&svg));
        }
        h.push_str(
            "</div><table><tr><th class='l'>category</th><th class='l'>reply</th><th>items</th><th>support</th><th>neutral</th><th>oppose</th></tr>",
        );
        for s in &a.stances {
            let _ = write!(h, "<tr><td class='l'>{}</td><td class='l'>{}</td><td>{}</td>", esc(&s.category), esc(&s.role), s.items);
            for i in 0..3 {
                let _ = write!(h, "<td>{:.3} ± {:.3}</td>", s.mean[i], s.ci_half[i]);
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
    }
}

/// The path of the page for a report directory.
pub fn page(dir: &Path) -> PathBuf {
    dir.join("report.html")
}
