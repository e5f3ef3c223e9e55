//! Dataset stance approximation (the paper's audit of training sets): embed every item's
//! prompt and the eval questions, keep items whose prompt is close to some question (cosine at
//! least the threshold), judge the stance of the item's reply toward that question's topic with a
//! conversation-level judge prompt, and summarize per category. For preference data both replies
//! are judged and the Euclidean distance between their stance vectors is the pair's value gap.
//!
//! Work is resumable: the settings, the retrieval result and every judged item are written to
//! the output directory as they are made, and a rerun continues from them.

use crate::aggregate::{topic_value, Value};
use crate::evalset::Question;
use crate::judge::{Framing, Item, LocalJudge};
use crate::pipeline::Observer;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use valuedrift_data::{self as data, OnMalformed, Role};
use valuedrift_engine::embed::{cosine, SentenceEmbedder};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Data(#[from] data::Error),
    #[error(transparent)]
    Judge(#[from] crate::judge::JudgeError),
    #[error(transparent)]
    Engine(#[from] valuedrift_engine::Error),
    #[error(transparent)]
    Plot(#[from] valuedrift_plot::PlotError),
    #[error("embedder")]
    Remote(#[source] crate::BoxError),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

pub type Result<T> = std::result::Result<T, AuditError>;

pub(crate) fn file_err(path: &Path, message: impl std::fmt::Display) -> AuditError {
    AuditError::File { path: path.to_path_buf(), message: message.to_string() }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataKind {
    /// One reply per item (SFT conversations).
    Sft,
    /// A chosen and a rejected reply per item.
    Preference,
}

impl DataKind {
    pub fn label(self) -> &'static str {
        match self {
            DataKind::Sft => "SFT",
            DataKind::Preference => "preference",
        }
    }
}

/// A dataset item reduced to what the audit reads: the conversation before the final reply,
/// and the final reply (SFT) or the chosen and rejected replies (preference).
#[derive(Clone, Debug)]
pub struct Entry {
    pub prompt: Vec<data::Message>,
    pub replies: Vec<String>,
}

impl Entry {
    /// The text retrieved against the eval questions: the user's turns.
    pub fn user_text(&self) -> String {
        self.prompt.iter().filter(|m| m.role == Role::User).map(|m| m.content.trim()).collect::<Vec<_>>().join("\n")
    }

    /// The transcript before the final reply, as the conversation judge reads it.
    pub fn transcript(&self) -> String {
        self.prompt
            .iter()
            .map(|m| {
                let who = match m.role {
                    Role::System => "System",
                    Role::User => "User",
                    Role::Assistant => "Assistant",
                };
                format!("{who}: {}", m.content.trim())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub struct Dataset {
    pub path: PathBuf,
    pub kind: DataKind,
    pub entries: Vec<Entry>,
    pub skipped: usize,
}

/// Reads any format the trainers read: value-gap sets (as support-aligned pairs: chosen =
/// the supporting answer), preference pairs, then SFT conversations.
pub fn load_dataset(path: &Path, on_malformed: OnMalformed) -> Result<Dataset> {
    if data::valuegap::is_value_gap(path)? {
        let loaded = data::valuegap::load_value_gap(path, on_malformed)?;
        let entries = loaded.items.iter().map(|i| pair_entry(i.pair(data::valuegap::LabelSetup::Support))).collect();
        return Ok(Dataset { path: path.into(), kind: DataKind::Preference, entries, skipped: loaded.skipped });
    }
    if data::detect_preference_format(path).is_ok() {
        let loaded = data::load_preferences(path, data::PreferenceFormat::Auto, on_malformed)?;
        let entries = loaded.items.into_iter().map(pair_entry).collect();
        return Ok(Dataset { path: path.into(), kind: DataKind::Preference, entries, skipped: loaded.skipped });
    }
    let loaded = data::load_sft(path, data::SftFormat::Auto, on_malformed)?;
    let entries = loaded
        .items
        .into_iter()
        .map(|mut ex| {
            let reply = ex.messages.pop().map(|m| m.content).unwrap_or_default();
            Entry { prompt: ex.messages, replies: vec![reply] }
        })
        .collect();
    Ok(Dataset { path: path.into(), kind: DataKind::Sft, entries, skipped: loaded.skipped })
}

fn pair_entry(p: data::PreferencePair) -> Entry {
    Entry { prompt: p.prompt, replies: vec![p.chosen, p.rejected] }
}

/// Everything that decides an audit's numbers; a rerun with other settings is refused.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditSettings {
    pub data: String,
    pub embedder: String,
    pub threshold: f32,
    pub judge: String,
    pub judge_orders: usize,
    pub max_items: Option<usize>,
    /// The dataset's items as read (after `max_items`).
    pub items: usize,
    /// How many eval questions, and a hash of their ids: another question set is another audit.
    pub questions: usize,
    pub question_ids: String,
}

/// A stable digest (FNV-1a, hex) of the question ids, in order.
pub fn question_digest(questions: &[Question]) -> String {
    let h = questions
        .iter()
        .flat_map(|q| q.id.bytes().chain([0u8]))
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3));
    format!("{h:016x}")
}

/// An item retrieved for a question: its index in the dataset and the similarity.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Match {
    pub item: usize,
    pub question: String,
    pub category: String,
    pub cosine: f32,
}

/// The judged stance of each reply of a retrieved item (one for SFT; chosen, rejected).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JudgedItem {
    #[serde(flatten)]
    pub matched: Match,
    pub p: Vec<[f64; 3]>,
    pub order_spread: f64,
}

impl JudgedItem {
    /// Euclidean distance between the chosen and the rejected stance vectors.
    pub fn value_gap(&self) -> Option<f64> {
        let [a, b] = self.p.as_slice() else { return None };
        Some((0..3).map(|i| (a[i] - b[i]).powi(2)).sum::<f64>().sqrt())
    }
}

/// Turns texts into unit-length sentence embeddings: the local encoder, or a server's
/// `/v1/embeddings` (valuedrift-remote).
pub trait Embedder {
    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
}

impl Embedder for SentenceEmbedder {
    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        Ok(self.embed(texts, 8192)?)
    }
}

/// The eval questions' embeddings, in order (computed once for all datasets).
pub fn embed_questions(embedder: &dyn Embedder, questions: &[Question]) -> Result<Vec<Vec<f32>>> {
    let texts: Vec<&str> = questions.iter().map(|q| q.question.as_str()).collect();
    embedder.embed_texts(&texts)
}

/// The index of the most similar of `candidates` (unit vectors) and its cosine.
pub fn nearest(v: &[f32], candidates: &[Vec<f32>]) -> (usize, f32) {
    candidates.iter().enumerate().map(|(j, c)| (j, cosine(v, c))).fold((0, f32::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a })
}

/// Each item's nearest eval question, kept when the cosine reaches the threshold.
pub fn retrieve(
    embedder: &dyn Embedder,
    entries: &[Entry],
    questions: &[Question],
    q_vecs: &[Vec<f32>],
    threshold: f32,
    obs: &mut dyn Observer,
) -> Result<Vec<Match>> {
    obs.stage("embed", entries.len() as u64);
    let mut matches = Vec::new();
    for (start, chunk) in entries.chunks(64).enumerate().map(|(k, c)| (k * 64, c)) {
        let texts: Vec<String> = chunk.iter().map(Entry::user_text).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        for (k, v) in embedder.embed_texts(&refs)?.iter().enumerate() {
            let (best, sim) = nearest(v, q_vecs);
            if sim >= threshold {
                let q = &questions[best];
                matches.push(Match { item: start + k, question: q.id.clone(), category: q.category.clone(), cosine: sim });
            }
        }
        obs.advance(chunk.len() as u64, &format!("{} kept", matches.len()));
    }
    obs.finish_stage();
    Ok(matches)
}

/// The output directory of one audit: settings, retrieval and judged items, resumable.
pub struct AuditDir {
    pub dir: PathBuf,
}

impl AuditDir {
    /// Opens (or starts) an audit; an existing one with other settings is refused by key.
    pub fn open(dir: &Path, settings: &AuditSettings) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
        check_or_write_settings(&dir.join("audit.json"), settings, "audit")?;
        Ok(AuditDir { dir: dir.to_path_buf() })
    }

    pub fn matches(&self) -> Result<Option<Vec<Match>>> {
        let path = self.dir.join("matches.json");
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| file_err(&path, e))?;
        Ok(Some(serde_json::from_str(&text).map_err(|e| file_err(&path, format!("unreadable ({e})")))?))
    }

    pub fn save_matches(&self, matches: &[Match]) -> Result<()> {
        write_atomic(&self.dir.join("matches.json"), &serde_json::to_vec(matches).expect("plain data"))
    }

    /// Judged items so far (a torn last line is cut off and redone).
    pub fn judged(&self) -> Result<Vec<JudgedItem>> {
        read_appended(&self.dir.join("items.jsonl"))
    }

    fn append(&self, items: &[JudgedItem]) -> Result<()> {
        let path = self.dir.join("items.jsonl");
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| file_err(&path, e))?;
        let mut buf = Vec::new();
        for item in items {
            serde_json::to_writer(&mut buf, item).expect("plain data");
            buf.push(b'\n');
        }
        f.write_all(&buf).and_then(|_| f.sync_data()).map_err(|e| file_err(&path, e))
    }
}

/// Writes `settings` to `path`, or, when an earlier run left it there, refuses other settings
/// by key. Both sides go through the same serialization, so an f32 compares as itself.
pub(crate) fn check_or_write_settings<T: serde::Serialize + serde::de::DeserializeOwned>(path: &Path, settings: &T, what: &str) -> Result<()> {
    let new = serde_json::to_value(settings).expect("plain data");
    if !path.exists() {
        return write_atomic(path, &serde_json::to_vec_pretty(settings).expect("plain data"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e))?;
    let old: T = serde_json::from_str(&text).map_err(|e| file_err(path, format!("unreadable ({e}); delete the directory to start over")))?;
    let old = serde_json::to_value(old).expect("plain data");
    for (key, value) in new.as_object().expect("object") {
        if old.get(key) != Some(value) {
            let was = old.get(key).unwrap_or(&serde_json::Value::Null);
            return Err(file_err(path, format!("this {what} was made with {key} = {was}, not {value}; use another --out or delete the directory")));
        }
    }
    Ok(())
}

/// The complete lines of an append-only JSONL file, in order: nothing when it does not exist
/// yet; a torn last line (a kill mid-write) is cut off the file, to be written again.
pub(crate) fn read_appended<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(file_err(path, e)),
    };
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if complete < bytes.len() {
        let f = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| file_err(path, e))?;
        f.set_len(complete as u64).map_err(|e| file_err(path, e))?;
    }
    let text = std::str::from_utf8(&bytes[..complete]).map_err(|e| file_err(path, format!("not UTF-8 ({e})")))?;
    text.lines()
        .enumerate()
        .map(|(n, line)| serde_json::from_str(line).map_err(|e| file_err(path, format!("line {}: unreadable ({e})", n + 1))))
        .collect()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path)).map_err(|e| file_err(path, e))
}

/// Judges every retrieved item not judged yet, appending results a chunk at a time. Chunks
/// are fixed slices of the retrieval, and a chunk with any item missing is judged whole, so a
/// resumed audit batches (and rounds) exactly as an uninterrupted one.
pub fn judge_matches(
    out: &AuditDir,
    dataset: &Dataset,
    matches: &[Match],
    questions: &[Question],
    judge: &mut LocalJudge,
    chunk: usize,
    obs: &mut dyn Observer,
) -> Result<Vec<JudgedItem>> {
    let mut done = out.judged()?;
    let seen: std::collections::HashSet<usize> = done.iter().map(|j| j.matched.item).collect();
    let topics: BTreeMap<&str, &str> = questions.iter().map(|q| (q.id.as_str(), q.topic.as_str())).collect();
    judge.framing = Framing::Conversation;
    let todo = matches.iter().filter(|m| !seen.contains(&m.item)).count();
    obs.stage("judge", todo as u64);
    for group in matches.chunks(chunk.max(1)).filter(|g| g.iter().any(|m| !seen.contains(&m.item))) {
        let items: Vec<Item> = group
            .iter()
            .flat_map(|m| {
                let entry = &dataset.entries[m.item];
                let topic = topics.get(m.question.as_str()).copied().unwrap_or(&m.category).to_string();
                entry.replies.iter().map(move |r| Item { question: entry.transcript(), response: r.clone(), topic: topic.clone() })
            })
            .collect();
        let judgments = judge.judge(&items)?;
        let per = roles(dataset.kind).len();
        if judgments.len() != group.len() * per {
            return Err(file_err(&dataset.path, format!("the judge returned {} judgments for {} replies", judgments.len(), group.len() * per)));
        }
        let judged: Vec<JudgedItem> = group
            .iter()
            .zip(judgments.chunks(per))
            .filter(|(m, _)| !seen.contains(&m.item))
            .map(|(m, js)| JudgedItem {
                matched: m.clone(),
                p: js.iter().map(|j| j.p).collect(),
                order_spread: js.iter().map(|j| j.order_spread).fold(0.0, f64::max),
            })
            .collect();
        out.append(&judged)?;
        obs.advance(judged.len() as u64, "");
        done.extend(judged);
    }
    obs.finish_stage();
    done.sort_by_key(|j| j.matched.item);
    Ok(done)
}

/// One category's stance distribution for one reply role, with 95% t-intervals over items.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CategoryStances {
    pub category: String,
    pub role: String,
    pub items: usize,
    pub mean: [f64; 3],
    pub ci_half: [f64; 3],
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub name: String,
    pub data: String,
    pub kind: DataKind,
    pub items: usize,
    pub matched: usize,
    pub threshold: f32,
    pub stances: Vec<CategoryStances>,
    /// Value gaps of the retrieved pairs (preference data only).
    pub gaps: Vec<f64>,
}

pub fn roles(kind: DataKind) -> &'static [&'static str] {
    match kind {
        DataKind::Sft => &["reply"],
        DataKind::Preference => &["chosen", "rejected"],
    }
}

pub fn summarize(name: &str, dataset: &Dataset, settings: &AuditSettings, judged: &[JudgedItem]) -> Summary {
    let mut by_category: BTreeMap<&str, Vec<&JudgedItem>> = BTreeMap::new();
    for j in judged {
        by_category.entry(j.matched.category.as_str()).or_default().push(j);
    }
    let mut stances = Vec::new();
    for (category, items) in &by_category {
        for (r, role) in roles(dataset.kind).iter().enumerate() {
            let ps: Vec<[f64; 3]> = items.iter().filter_map(|j| j.p.get(r).copied()).collect();
            if let Some(Value { mean, ci_half, questions }) = topic_value(&ps) {
                stances.push(CategoryStances { category: category.to_string(), role: role.to_string(), items: questions, mean, ci_half });
            }
        }
    }
    Summary {
        name: name.into(),
        data: settings.data.clone(),
        kind: dataset.kind,
        items: dataset.entries.len(),
        matched: judged.len(),
        threshold: settings.threshold,
        stances,
        gaps: judged.iter().filter_map(JudgedItem::value_gap).collect(),
    }
}

/// Histogram bins of value gaps over [0, sqrt 2] (the largest distance between two points
/// of the probability simplex), `bins` wide.
pub fn gap_bins(gaps: &[f64], bins: usize) -> Vec<(f64, f64, f64)> {
    let top = std::f64::consts::SQRT_2;
    let width = top / bins as f64;
    let mut counts = vec![0.0; bins];
    for &g in gaps {
        counts[((g / width) as usize).min(bins - 1)] += 1.0;
    }
    counts.into_iter().enumerate().map(|(i, c)| (i as f64 * width, (i + 1) as f64 * width, c)).collect()
}

/// The stance bars of one role: per category, support / neutral / oppose.
pub fn stance_bars(summary: &Summary, role: &str) -> valuedrift_plot::BarGroups {
    let rows: Vec<&CategoryStances> = summary.stances.iter().filter(|s| s.role == role).collect();
    let series = crate::Stance::ALL
        .iter()
        .enumerate()
        .map(|(i, s)| valuedrift_plot::BarSeries {
            label: s.name().into(),
            color: valuedrift_plot::STANCE_COLORS[i].into(),
            values: rows.iter().map(|r| r.mean[i]).collect(),
        })
        .collect();
    valuedrift_plot::BarGroups {
        title: match role {
            "reply" => format!("{}: stance of the replies", summary.name),
            chosen_or_rejected => format!("{}: stance of the {chosen_or_rejected} replies", summary.name),
        },
        subtitle: Some(format!("{} of {} items within cosine {} of an eval question", summary.matched, summary.items, summary.threshold)),
        x_label: "category".into(),
        y_label: "mean p(stance)".into(),
        categories: rows.iter().map(|r| format!("{} (n={})", r.category, r.items)).collect(),
        series,
        y_range: Some((0.0, 1.0)),
    }
}

pub fn gap_histogram(summary: &Summary) -> valuedrift_plot::Histogram {
    valuedrift_plot::Histogram {
        title: format!("{}: value gap of chosen vs rejected (n={})", summary.name, summary.gaps.len()),
        x_label: "Euclidean distance between stance vectors".into(),
        y_label: "pairs".into(),
        bins: gap_bins(&summary.gaps, 14),
        color: "#6a51a3".into(),
    }
}

/// Writes summary.json, stances.csv, gaps.csv, summary.md and the plots.
pub fn write_summary(dir: &Path, summary: &Summary) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let path = dir.join("summary.json");
    write_atomic(&path, &serde_json::to_vec_pretty(summary).expect("plain data"))?;
    written.push(path);
    written.push(write_stances_csv(dir, summary)?);
    if summary.kind == DataKind::Preference {
        let path = dir.join("gaps.csv");
        let mut text = String::from("gap\n");
        for g in &summary.gaps {
            text += &format!("{g:.6}\n");
        }
        write_atomic(&path, text.as_bytes())?;
        written.push(path);
    }
    let path = dir.join("summary.md");
    write_atomic(&path, summary_markdown(summary).as_bytes())?;
    written.push(path);
    let plots = dir.join("plots");
    std::fs::create_dir_all(&plots).map_err(|e| file_err(&plots, e))?;
    for role in roles(summary.kind) {
        valuedrift_plot::write_chart(&valuedrift_plot::bar_groups_svg(&stance_bars(summary, role)), &plots.join(format!("stances-{role}")))?;
        written.push(plots.join(format!("stances-{role}.svg")));
    }
    if summary.kind == DataKind::Preference {
        valuedrift_plot::write_chart(&valuedrift_plot::histogram_svg(&gap_histogram(summary)), &plots.join("value-gap"))?;
        written.push(plots.join("value-gap.svg"));
    }
    Ok(written)
}

fn write_stances_csv(dir: &Path, summary: &Summary) -> Result<PathBuf> {
    let path = dir.join("stances.csv");
    let mut text = String::from("category,role,items,support,neutral,oppose,support_ci,neutral_ci,oppose_ci\n");
    for s in &summary.stances {
        text += &format!(
            "{},{},{},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4}\n",
            s.category, s.role, s.items, s.mean[0], s.mean[1], s.mean[2], s.ci_half[0], s.ci_half[1], s.ci_half[2]
        );
    }
    write_atomic(&path, text.as_bytes())?;
    Ok(path)
}

pub fn summary_markdown(summary: &Summary) -> String {
    let mut md = format!(
        "# Dataset audit: {}\n\n{} ({}): {} items, {} within cosine {} of an eval question.\n\n",
        summary.name,
        summary.data,
        summary.kind.label(),
        summary.items,
        summary.matched,
        summary.threshold
    );
    md += "| category | role | items | support | neutral | oppose |\n|---|---|---|---|---|---|\n";
    for s in &summary.stances {
        md += &format!(
            "| {} | {} | {} | {:.3} ± {:.3} | {:.3} ± {:.3} | {:.3} ± {:.3} |\n",
            s.category, s.role, s.items, s.mean[0], s.ci_half[0], s.mean[1], s.ci_half[1], s.mean[2], s.ci_half[2]
        );
    }
    if !summary.gaps.is_empty() {
        let mean = summary.gaps.iter().sum::<f64>() / summary.gaps.len() as f64;
        let wide = summary.gaps.iter().filter(|&&g| g >= 0.5).count();
        md += &format!("\nValue gap (Euclidean distance between chosen and rejected stance vectors): mean {mean:.3} over {} pairs; {wide} pairs at 0.5 or more.\n", summary.gaps.len());
    }
    md
}

/// Reads the audit summaries under `dir` (one subdirectory each), in name order.
pub fn read_summaries(dir: &Path) -> Vec<Summary> {
    let Ok(read) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut paths: Vec<PathBuf> = read.filter_map(|e| e.ok()).map(|e| e.path().join("summary.json")).filter(|p| p.exists()).collect();
    paths.sort();
    paths.iter().filter_map(|p| serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(item: usize, p: Vec<[f64; 3]>) -> JudgedItem {
        JudgedItem { matched: Match { item, question: "q".into(), category: "c".into(), cosine: 0.7 }, p, order_spread: 0.0 }
    }

    #[test]
    fn value_gap_is_the_euclidean_distance() {
        let j = judged(0, vec![[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]);
        assert!((j.value_gap().unwrap() - std::f64::consts::SQRT_2).abs() < 1e-12);
        assert_eq!(judged(0, vec![[0.2, 0.5, 0.3]]).value_gap(), None);
    }

    #[test]
    fn gap_bins_cover_the_simplex_diameter() {
        let bins = gap_bins(&[0.0, 0.05, 0.7, std::f64::consts::SQRT_2], 14);
        assert_eq!(bins.len(), 14);
        assert_eq!(bins[0].2, 2.0);
        assert_eq!(bins[13].2, 1.0, "the largest possible gap falls in the last bin");
        assert_eq!(bins.iter().map(|b| b.2).sum::<f64>(), 4.0);
    }

    #[test]
    fn a_torn_last_line_is_redone_but_a_torn_middle_line_is_an_error() {
        let dir = std::env::temp_dir().join(format!("vd-audit-unit-{}", std::process::id()));
        let settings = AuditSettings {
            data: "d".into(),
            embedder: "e".into(),
            threshold: 0.6,
            judge: "j".into(),
            judge_orders: 3,
            max_items: None,
            items: 10,
            questions: 4,
            question_ids: "ab".into(),
        };
        let out = AuditDir::open(&dir, &settings).unwrap();
        out.append(&[judged(3, vec![[0.5, 0.25, 0.25]])]).unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(dir.join("items.jsonl")).unwrap();
        f.write_all(b"{\"item\": 4, \"quest").unwrap();
        assert_eq!(out.judged().unwrap().len(), 1);
        out.append(&[judged(4, vec![[0.5, 0.25, 0.25]])]).unwrap();
        assert_eq!(out.judged().unwrap().iter().map(|j| j.matched.item).collect::<Vec<_>>(), [3, 4], "the torn line was cut before appending");
        f.write_all(b"{}\n{}\n").unwrap();
        let err = out.judged().unwrap_err().to_string();
        assert!(err.contains("items.jsonl") && err.contains("line 3"), "{err}");
        AuditDir::open(&dir, &settings).expect("the same settings reopen (an f32 threshold compares as itself)");
        let other = AuditSettings { threshold: 0.5, ..settings.clone() };
        let err = AuditDir::open(&dir, &other).err().unwrap().to_string();
        assert!(err.contains("threshold"), "{err}");
        let other = AuditSettings { question_ids: "cd".into(), ..settings };
        assert!(AuditDir::open(&dir, &other).err().unwrap().to_string().contains("question_ids"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
