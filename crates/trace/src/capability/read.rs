//! Benchmark files into items, each formatted as lm-evaluation-harness's task writes it
//! (`doc_to_text`, `doc_to_choice`, `doc_to_target`):
//! - `plain`: JSONL `{"id", "question" | "context", "choices": [..], "answer": index}`; a
//!   `question` is asked as "Question: ...\nAnswer:", a `context` is continued as it stands;
//!   an optional `task` field splits one file into tasks;
//! - `mmlu`: the original CSV files (question, A, B, C, D, answer letter; no header; the subject
//!   from the file name) or JSONL rows with `question`, `subject`, `choices`, `answer` (index);
//! - `hellaswag`: the published JSONL (`activity_label`, `ctx_a`, `ctx_b`, `endings`, `label`);
//! - `piqa`: JSONL with `goal`, `sol1`, `sol2` and `label`, or the original layout with the labels
//!   in `NAME-labels.lst` beside `NAME.jsonl`;
//! - `arc`: AI2's JSONL (`question.stem`, `question.choices[].text/label`, `answerKey`) or the
//!   flattened one (`question`, `choices.text/label`, `answerKey`);
//! - `gpqa`: the published CSV (`Question`, `Correct Answer`, `Incorrect Answer 1..3`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::McItem;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Format {
    Plain,
    Mmlu,
    Hellaswag,
    Piqa,
    Arc,
    Gpqa,
}

impl Format {
    pub const ALL: [Format; 6] = [Format::Plain, Format::Mmlu, Format::Hellaswag, Format::Piqa, Format::Arc, Format::Gpqa];

    pub fn name(self) -> &'static str {
        match self {
            Format::Plain => "plain",
            Format::Mmlu => "mmlu",
            Format::Hellaswag => "hellaswag",
            Format::Piqa => "piqa",
            Format::Arc => "arc",
            Format::Gpqa => "gpqa",
        }
    }

    pub fn parse(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CapabilityError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}:{line}: {message}")]
    Row { path: PathBuf, line: usize, message: String },
    #[error("{0}")]
    Engine(#[from] valuedrift_engine::Error),
}

type Result<T> = std::result::Result<T, CapabilityError>;

fn row_err(path: &Path, line: usize, message: impl Into<String>) -> CapabilityError {
    CapabilityError::Row { path: path.into(), line, message: message.into() }
}

fn file_err(path: &Path, message: impl Into<String>) -> CapabilityError {
    CapabilityError::File { path: path.into(), message: message.into() }
}

/// Reads one benchmark file. Every item must have at least two choices and a gold index among
/// them; ids are unique within a task.
pub fn load(path: &Path, format: Format) -> Result<Vec<McItem>> {
    let items = match format {
        Format::Mmlu if is_csv(path) => mmlu_csv(path)?,
        Format::Gpqa => gpqa_csv(path)?,
        _ => {
            let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e.to_string()))?;
            from_jsonl(path, &text, format)?
        }
    };
    check(path, &items)?;
    Ok(items)
}

/// The bundled smoke set (data/capability/smoke.jsonl, written for this project: 48 easy items in
/// four tasks), compiled in for the built-in run and the tests.
pub const SMOKE_NAME: &str = "bundled:data/capability/smoke.jsonl";
const SMOKE: &str = include_str!("../../../../data/capability/smoke.jsonl");

pub fn load_smoke() -> Result<Vec<McItem>> {
    let path = Path::new(SMOKE_NAME);
    let items = from_jsonl(path, SMOKE, Format::Plain)?;
    check(path, &items)?;
    Ok(items)
}

fn from_jsonl(path: &Path, text: &str, format: Format) -> Result<Vec<McItem>> {
    let rows = jsonl_rows(path, text)?;
    let labels = if format == Format::Piqa { piqa_labels(path, rows.len())? } else { None };
    let mut items = Vec::with_capacity(rows.len());
    for (i, (line, row)) in rows.iter().enumerate() {
        let item = match format {
            Format::Plain => plain(path, *line, row),
            Format::Mmlu => mmlu_json(path, *line, row),
            Format::Hellaswag => hellaswag(path, *line, row),
            Format::Piqa => piqa(path, *line, row, labels.as_ref().map(|l| l[i])),
            Format::Arc => arc(path, *line, row),
            Format::Gpqa => Err(file_err(path, "GPQA is read from its published CSV")),
        }?;
        items.push(item);
    }
    Ok(items)
}

fn check(path: &Path, items: &[McItem]) -> Result<()> {
    if items.is_empty() {
        return Err(file_err(path, "no items"));
    }
    let mut seen = HashSet::new();
    for it in items {
        if !seen.insert((it.task.as_str(), it.id.as_str())) {
            return Err(file_err(path, format!("id '{}' appears twice in task '{}'", it.id, it.task)));
        }
    }
    Ok(())
}

fn is_csv(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

fn jsonl_rows(path: &Path, text: &str) -> Result<Vec<(usize, serde_json::Map<String, Value>)>> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).map_err(|e| row_err(path, i + 1, format!("invalid JSON ({e})")))?;
        match v {
            Value::Object(o) => rows.push((i + 1, o)),
            _ => return Err(row_err(path, i + 1, "expected a JSON object")),
        }
    }
    Ok(rows)
}

type Row = serde_json::Map<String, Value>;

fn text<'a>(path: &Path, line: usize, row: &'a Row, field: &str) -> Result<&'a str> {
    match row.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) => Err(row_err(path, line, format!("field '{field}' is empty"))),
        Some(_) => Err(row_err(path, line, format!("field '{field}' must be a string"))),
        None => Err(row_err(path, line, format!("missing field '{field}'"))),
    }
}

fn strings(path: &Path, line: usize, v: Option<&Value>, field: &str) -> Result<Vec<String>> {
    let arr = v.and_then(Value::as_array).ok_or_else(|| row_err(path, line, format!("field '{field}' must be a list of strings")))?;
    arr.iter()
        .map(|c| c.as_str().map(str::to_string).ok_or_else(|| row_err(path, line, format!("field '{field}' must be a list of strings"))))
        .collect()
}

/// An index given as a number or a numeric string (HellaSwag's `label` is either).
fn index(path: &Path, line: usize, row: &Row, field: &str, n_choices: usize) -> Result<usize> {
    let i = match row.get(field) {
        Some(Value::Number(n)) => n.as_u64().map(|x| x as usize),
        Some(Value::String(s)) => s.trim().parse().ok(),
        None => return Err(row_err(path, line, format!("missing field '{field}'"))),
        _ => None,
    };
    match i {
        Some(i) if i < n_choices => Ok(i),
        _ => Err(row_err(path, line, format!("field '{field}' must be a choice index below {n_choices}"))),
    }
}

fn id_of(row: &Row, line: usize) -> String {
    match row.get("id").or_else(|| row.get("ind")) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => format!("line-{line}"),
    }
}

fn two_or_more(path: &Path, line: usize, choices: &[String]) -> Result<()> {
    if choices.len() < 2 {
        return Err(row_err(path, line, "an item needs at least two choices"));
    }
    Ok(())
}

fn question_prompt(question: &str) -> String {
    format!("Question: {}\nAnswer:", question.trim())
}

fn plain(path: &Path, line: usize, row: &Row) -> Result<McItem> {
    let context = match (row.contains_key("question"), row.contains_key("context")) {
        (true, false) => question_prompt(text(path, line, row, "question")?),
        (false, true) => text(path, line, row, "context")?.to_string(),
        _ => return Err(row_err(path, line, "give exactly one of 'question' (asked) and 'context' (continued)")),
    };
    let choices = strings(path, line, row.get("choices"), "choices")?;
    two_or_more(path, line, &choices)?;
    let gold = index(path, line, row, "answer", choices.len())?;
    let task = match row.get("task") {
        None => "plain".to_string(),
        Some(_) => text(path, line, row, "task")?.to_string(),
    };
    Ok(McItem { id: id_of(row, line), task, context, description: None, choices, gold })
}

/// MMLU's template: the subject's description once before the examples, then each question
/// with its lettered options; the continuations are the letters.
fn mmlu_item(id: String, subject: &str, question: &str, options: &[String], gold: usize) -> McItem {
    let letters = ["A", "B", "C", "D", "E", "F", "G", "H"];
    let mut context = question.trim().to_string();
    for (l, o) in letters.iter().zip(options) {
        context.push_str(&format!("\n{l}. {o}"));
    }
    context.push_str("\nAnswer:");
    let subject = subject.replace('_', " ");
    McItem {
        id,
        task: format!("mmlu/{}", subject.replace(' ', "_")),
        context,
        description: Some(format!("The following are multiple choice questions (with answers) about {subject}.\n\n")),
        choices: letters[..options.len()].iter().map(|s| s.to_string()).collect(),
        gold,
    }
}

fn mmlu_csv(path: &Path) -> Result<Vec<McItem>> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("unknown");
    let subject = ["_test", "_dev", "_val"].iter().fold(stem, |s, suffix| s.strip_suffix(suffix).unwrap_or(s));
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_path(path).map_err(|e| file_err(path, e.to_string()))?;
    let mut items = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let line = i + 1;
        let rec = rec.map_err(|e| row_err(path, line, e.to_string()))?;
        if rec.len() != 6 {
            return Err(row_err(path, line, format!("expected 6 columns (question, A, B, C, D, answer), found {}", rec.len())));
        }
        let options: Vec<String> = (1..5).map(|c| rec[c].to_string()).collect();
        let gold = match rec[5].trim() {
            "A" => 0,
            "B" => 1,
            "C" => 2,
            "D" => 3,
            other => return Err(row_err(path, line, format!("column 6 (answer) must be A, B, C or D, not '{other}'"))),
        };
        items.push(mmlu_item(format!("line-{line}"), subject, &rec[0], &options, gold));
    }
    Ok(items)
}

fn mmlu_json(path: &Path, line: usize, row: &Row) -> Result<McItem> {
    let options = strings(path, line, row.get("choices"), "choices")?;
    if !(2..=8).contains(&options.len()) {
        return Err(row_err(path, line, "field 'choices' must hold 2 to 8 options"));
    }
    let gold = index(path, line, row, "answer", options.len())?;
    Ok(mmlu_item(id_of(row, line), text(path, line, row, "subject")?, text(path, line, row, "question")?, &options, gold))
}

/// HellaSwag's cleanup of WikiHow text: "[title]" ends a sentence, other bracketed tags go,
/// double spaces become one.
fn hellaswag_clean(text: &str) -> String {
    let text = text.trim().replace(" [title]", ". ");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(open) = rest.find('[') {
        match rest[open..].find(']') {
            Some(close) => {
                out.push_str(&rest[..open]);
                rest = &rest[open + close + 1..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out.replace("  ", " ")
}

/// Python's `str.capitalize`: the first character upper case, the rest lower case.
fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars.flat_map(char::to_lowercase)).collect(),
        None => String::new(),
    }
}

fn hellaswag(path: &Path, line: usize, row: &Row) -> Result<McItem> {
    let ctx_b = match row.get("ctx_b") {
        Some(Value::String(s)) => s.as_str(),
        _ => return Err(row_err(path, line, "field 'ctx_b' must be a string")),
    };
    let ctx = format!("{} {}", text(path, line, row, "ctx_a")?, capitalize(ctx_b));
    let context = hellaswag_clean(&format!("{}: {ctx}", text(path, line, row, "activity_label")?));
    let choices: Vec<String> = strings(path, line, row.get("endings"), "endings")?.iter().map(|e| hellaswag_clean(e)).collect();
    two_or_more(path, line, &choices)?;
    let gold = index(path, line, row, "label", choices.len())?;
    Ok(McItem { id: id_of(row, line), task: "hellaswag".into(), context, description: None, choices, gold })
}

/// The labels of the original PIQA layout: one per line in `NAME-labels.lst` beside `NAME.jsonl`,
/// read only when the rows carry no `label`.
fn piqa_labels(path: &Path, n_rows: usize) -> Result<Option<Vec<usize>>> {
    let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else { return Ok(None) };
    let lst = path.with_file_name(format!("{stem}-labels.lst"));
    if !lst.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&lst).map_err(|e| file_err(&lst, e.to_string()))?;
    let labels: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| l.trim().parse::<usize>().ok().filter(|&x| x < 2).ok_or_else(|| row_err(&lst, i + 1, "a label must be 0 or 1")))
        .collect::<Result<_>>()?;
    if labels.len() != n_rows {
        return Err(file_err(&lst, format!("{} labels for {} rows of {}", labels.len(), n_rows, path.display())));
    }
    Ok(Some(labels))
}

fn piqa(path: &Path, line: usize, row: &Row, label: Option<usize>) -> Result<McItem> {
    let choices = vec![text(path, line, row, "sol1")?.to_string(), text(path, line, row, "sol2")?.to_string()];
    let gold = match (row.contains_key("label"), label) {
        (true, _) => index(path, line, row, "label", 2)?,
        (false, Some(l)) => l,
        (false, None) => return Err(row_err(path, line, "missing field 'label' (and no NAME-labels.lst beside the file)")),
    };
    Ok(McItem {
        id: id_of(row, line),
        task: "piqa".into(),
        context: question_prompt(text(path, line, row, "goal")?),
        description: None,
        choices,
        gold,
    })
}

fn arc(path: &Path, line: usize, row: &Row) -> Result<McItem> {
    let (stem, texts, labels) = match row.get("question") {
        // AI2's layout: the choices inside the question object.
        Some(Value::Object(q)) => {
            let stem = text(path, line, q, "stem")?.to_string();
            let list = q.get("choices").and_then(Value::as_array).ok_or_else(|| row_err(path, line, "field 'question.choices' must be a list"))?;
            let mut texts = Vec::new();
            let mut labels = Vec::new();
            for c in list {
                let c = c.as_object().ok_or_else(|| row_err(path, line, "each of 'question.choices' must be an object"))?;
                texts.push(text(path, line, c, "text")?.to_string());
                labels.push(text(path, line, c, "label")?.to_string());
            }
            (stem, texts, labels)
        }
        _ => {
            let stem = text(path, line, row, "question")?.to_string();
            let ch = row
                .get("choices")
                .and_then(Value::as_object)
                .ok_or_else(|| row_err(path, line, "field 'choices' must be an object with 'text' and 'label'"))?;
            (stem, strings(path, line, ch.get("text"), "choices.text")?, strings(path, line, ch.get("label"), "choices.label")?)
        }
    };
    if texts.len() != labels.len() {
        return Err(row_err(path, line, "the choices' texts and labels differ in number"));
    }
    two_or_more(path, line, &texts)?;
    let key = text(path, line, row, "answerKey")?;
    let gold = labels.iter().position(|l| l == key).ok_or_else(|| row_err(path, line, format!("field 'answerKey' ('{key}') names no choice")))?;
    Ok(McItem { id: id_of(row, line), task: "arc".into(), context: question_prompt(&stem), description: None, choices: texts, gold })
}

/// GPQA lists the correct answer first; the options are put in an order fixed by a hash of the
/// question and each option (the harness shuffles with Python's `random`, so positions, not the
/// options, differ from its runs).
fn gpqa_csv(path: &Path) -> Result<Vec<McItem>> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| file_err(path, e.to_string()))?;
    let headers = reader.headers().map_err(|e| file_err(path, e.to_string()))?.clone();
    let columns = ["Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3"];
    let at: Vec<usize> = columns
        .iter()
        .map(|c| headers.iter().position(|h| h == *c).ok_or_else(|| file_err(path, format!("missing column '{c}'"))))
        .collect::<Result<_>>()?;
    let id_col = headers.iter().position(|h| h == "Record ID");
    let mut items = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| row_err(path, line, e.to_string()))?;
        let field = |k: usize| -> Result<String> {
            let v = hellaswag_clean(rec.get(at[k]).unwrap_or(""));
            if v.is_empty() {
                return Err(row_err(path, line, format!("column '{}' is empty", columns[k])));
            }
            Ok(v)
        };
        let question = field(0)?;
        let mut options: Vec<(String, bool)> = (1..5).map(|k| field(k).map(|o| (o, k == 1))).collect::<Result<_>>()?;
        options.sort_by_key(|(o, _)| Sha256::digest(format!("{question}\u{0}{o}").as_bytes()).to_vec());
        let gold = options.iter().position(|(_, correct)| *correct).expect("one correct option");
        let mut context = format!("What is the correct answer to this question:{question}\nChoices:\n");
        for (l, (o, _)) in ["A", "B", "C", "D"].iter().zip(&options) {
            context.push_str(&format!("({l}) {o}\n"));
        }
        context.push_str("Answer:");
        let id = id_col.and_then(|c| rec.get(c)).filter(|s| !s.is_empty()).map(str::to_string).unwrap_or(format!("line-{line}"));
        items.push(McItem {
            id,
            task: "gpqa".into(),
            context,
            description: None,
            choices: ["(A)", "(B)", "(C)", "(D)"].map(String::from).to_vec(),
            gold,
        });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hellaswag_cleanup_follows_the_harness() {
        assert_eq!(hellaswag_clean(" Removing ice: [header] How to x [title] Do it.  Now "), "Removing ice: How to x. Do it. Now");
        assert_eq!(capitalize("then the man"), "Then the man");
        assert_eq!(capitalize("a CAR"), "A car");
    }
}
