//! Evaluation sets: value-laden questions with a category and a topic (the stance target), from
//! JSONL or CSV files with the fields `id`, `category`, `topic`, `question` (and optionally
//! `quick`). The bundled set is data/eval/questions.jsonl (11 categories x 50 questions).
//! Errors name the file, the line and the field; nothing is silently skipped.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Question {
    pub id: String,
    pub category: String,
    pub topic: String,
    pub question: String,
    /// In the documented quick subset.
    #[serde(default)]
    pub quick: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalSetError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path}:{line}: {message}")]
    Row { path: PathBuf, line: usize, message: String },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

pub type Result<T> = std::result::Result<T, EvalSetError>;

const FIELDS: [&str; 4] = ["id", "category", "topic", "question"];

/// A row as read: its line, the fields present, and the quick flag.
type RawRow = (usize, HashMap<String, String>, bool);

/// Reads an eval set (JSONL, or CSV when the name ends in .csv) and checks it: every field
/// present and non-empty, ids unique, one topic per category (so "support" has one meaning).
pub fn load(path: &Path) -> Result<Vec<Question>> {
    let rows = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) { read_csv(path)? } else { read_jsonl(path)? };
    validate(path, rows)
}

fn row_err(path: &Path, line: usize, message: impl Into<String>) -> EvalSetError {
    EvalSetError::Row { path: path.into(), line, message: message.into() }
}

/// The bundled eval set (11 categories x 50 questions), compiled into the binary so that it
/// works from any directory.
pub const BUNDLED_NAME: &str = "bundled:data/eval/questions.jsonl";
const BUNDLED: &str = include_str!("../../../data/eval/questions.jsonl");

pub fn load_bundled() -> Result<Vec<Question>> {
    let path = Path::new(BUNDLED_NAME);
    validate(path, parse_jsonl(path, BUNDLED)?)
}

fn read_jsonl(path: &Path) -> Result<Vec<RawRow>> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalSetError::Io { path: path.into(), message: e.to_string() })?;
    parse_jsonl(path, &text)
}

fn parse_jsonl(path: &Path, text: &str) -> Result<Vec<RawRow>> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| row_err(path, i + 1, format!("invalid JSON ({e})")))?;
        let obj = v.as_object().ok_or_else(|| row_err(path, i + 1, "expected a JSON object"))?;
        let mut fields = HashMap::new();
        for f in FIELDS {
            match obj.get(f) {
                Some(serde_json::Value::String(s)) => {
                    fields.insert(f.to_string(), s.clone());
                }
                Some(_) => return Err(row_err(path, i + 1, format!("field '{f}' must be a string"))),
                None => {}
            }
        }
        let quick = obj.get("quick").and_then(|q| q.as_bool()).unwrap_or(false);
        rows.push((i + 1, fields, quick));
    }
    Ok(rows)
}

fn read_csv(path: &Path) -> Result<Vec<RawRow>> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| EvalSetError::File { path: path.into(), message: e.to_string() })?;
    let headers = reader.headers().map_err(|e| EvalSetError::File { path: path.into(), message: e.to_string() })?.clone();
    let mut rows = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
            row_err(path, line, format!("unreadable CSV row ({e})"))
        })?;
        let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
        let get = |name: &str| headers.iter().position(|h| h.trim() == name).and_then(|i| rec.get(i)).map(str::to_string);
        let fields = FIELDS.iter().filter_map(|f| get(f).map(|v| (f.to_string(), v))).collect();
        let quick = get("quick").is_some_and(|q| matches!(q.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"));
        rows.push((line, fields, quick));
    }
    Ok(rows)
}

fn validate(path: &Path, rows: Vec<RawRow>) -> Result<Vec<Question>> {
    if rows.is_empty() {
        return Err(EvalSetError::File { path: path.into(), message: "no questions".into() });
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut topics: HashMap<String, (String, usize)> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for (line, mut fields, quick) in rows {
        let mut take = |f: &str| -> Result<String> {
            match fields.remove(f) {
                Some(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
                Some(_) => Err(row_err(path, line, format!("field '{f}' is empty"))),
                None => Err(row_err(path, line, format!("missing field '{f}'"))),
            }
        };
        let q = Question { id: take("id")?, category: take("category")?, topic: take("topic")?, question: take("question")?, quick };
        if let Some(first) = seen.insert(q.id.clone(), line) {
            return Err(row_err(path, line, format!("duplicate id '{}' (first on line {first})", q.id)));
        }
        match topics.get(&q.category) {
            Some((t, first)) if *t != q.topic => {
                return Err(row_err(
                    path,
                    line,
                    format!("field 'topic' is '{}' but category '{}' has topic '{t}' on line {first}: one topic per category", q.topic, q.category),
                ));
            }
            None => {
                topics.insert(q.category.clone(), (q.topic.clone(), line));
            }
            _ => {}
        }
        out.push(q);
    }
    Ok(out)
}

/// Keeps the given categories (all when empty); an unknown category is an error naming the
/// categories the set has.
pub fn select(questions: Vec<Question>, categories: &[String], quick_only: bool) -> std::result::Result<Vec<Question>, String> {
    let known: HashSet<&str> = questions.iter().map(|q| q.category.as_str()).collect();
    if let Some(bad) = categories.iter().find(|c| !known.contains(c.as_str())) {
        let mut names: Vec<&str> = known.into_iter().collect();
        names.sort();
        return Err(format!("unknown category '{bad}' (the set has: {})", names.join(", ")));
    }
    Ok(questions.into_iter().filter(|q| categories.is_empty() || categories.contains(&q.category)).filter(|q| !quick_only || q.quick).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("valuedrift-evalset-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn the_bundled_set_has_550_questions_in_11_categories_and_a_quick_subset() {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/eval/questions.jsonl");
        let qs = load(&p).unwrap();
        assert_eq!(qs.len(), 550);
        let cats: HashSet<&str> = qs.iter().map(|q| q.category.as_str()).collect();
        assert_eq!(cats.len(), 11);
        for c in &cats {
            assert_eq!(qs.iter().filter(|q| q.category == *c).count(), 50, "{c}");
            assert_eq!(qs.iter().filter(|q| q.category == *c && q.quick).count(), 5, "{c}");
        }
        let quick = select(qs.clone(), &["abortion".into()], true).unwrap();
        assert_eq!(quick.len(), 5);
        let err = select(qs, &["astrology".into()], false).unwrap_err();
        assert!(err.contains("unknown category 'astrology'") && err.contains("abortion"), "{err}");
    }

    #[test]
    fn csv_and_jsonl_load_the_same_rows() {
        let j =
            write("a.jsonl", "{\"id\": \"q1\", \"category\": \"c\", \"topic\": \"t\", \"question\": \"Is it, \\\"fair\\\"?\", \"quick\": true}\n");
        let c = write("a.csv", "id,category,topic,question,quick\nq1,c,t,\"Is it, \"\"fair\"\"?\",true\n");
        assert_eq!(load(&j).unwrap(), load(&c).unwrap());
    }

    #[test]
    fn bad_rows_name_file_line_and_field() {
        let err = |name: &str, text: &str| load(&write(name, text)).unwrap_err().to_string();
        let e = err(
            "missing.jsonl",
            "{\"id\": \"a\", \"category\": \"c\", \"topic\": \"t\", \"question\": \"q\"}\n{\"id\": \"b\", \"category\": \"c\", \"topic\": \"t\"}\n",
        );
        assert!(e.ends_with("missing.jsonl:2: missing field 'question'"), "{e}");
        let e = err("empty.csv", "id,category,topic,question\na,c,t,q\nb,c,t,  \n");
        assert!(e.ends_with("empty.csv:3: field 'question' is empty"), "{e}");
        let e = err("dup.jsonl", "{\"id\": \"a\", \"category\": \"c\", \"topic\": \"t\", \"question\": \"q\"}\n\n{\"id\": \"a\", \"category\": \"c\", \"topic\": \"t\", \"question\": \"r\"}\n");
        assert!(e.ends_with("dup.jsonl:3: duplicate id 'a' (first on line 1)"), "{e}");
        let e = err("topic.jsonl", "{\"id\": \"a\", \"category\": \"c\", \"topic\": \"t\", \"question\": \"q\"}\n{\"id\": \"b\", \"category\": \"c\", \"topic\": \"u\", \"question\": \"r\"}\n");
        assert!(e.contains("topic.jsonl:2: field 'topic' is 'u'"), "{e}");
        let e = err("json.jsonl", "{\"id\": \"a\",\n");
        assert!(e.contains("json.jsonl:1: invalid JSON"), "{e}");
    }
}
