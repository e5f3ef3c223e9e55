//! The prompts to curate, from JSONL, a JSON array or CSV. A row's text is the first of
//! `opening_prompt` (PRISM's conversations.jsonl), `prompt`, `question`, `text`, `instruction`
//! (Alpaca, with its `input` appended), or the first user turn of `conversation_history`
//! (PRISM), `conversations` (ShareGPT) or `messages` (chat). An optional `label` (or
//! `category`) is never used to curate; it only scores a run on data with a known answer.
//! Errors name the file, the line and the field; repeated texts are kept once.

use crate::{file_err, row_err, Result};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::path::Path;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Prompt {
    pub id: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

const TEXT_FIELDS: [&str; 5] = ["opening_prompt", "prompt", "question", "text", "instruction"];
const TURN_FIELDS: [&str; 3] = ["conversation_history", "conversations", "messages"];

/// Reads every file, in order, and keeps the first of repeated texts. Returns the prompts and
/// how many repeats were dropped.
pub fn read_all(paths: &[std::path::PathBuf]) -> Result<(Vec<Prompt>, usize)> {
    let mut seen = HashSet::new();
    let mut ids = HashSet::new();
    let (mut prompts, mut repeats) = (Vec::new(), 0);
    for path in paths {
        for (line, p) in read(path)? {
            if !ids.insert(p.id.clone()) {
                return Err(row_err(path, line, format!("id '{}' appears twice (ids must be unique over all inputs)", p.id)));
            }
            if seen.insert(p.text.trim().to_lowercase()) {
                prompts.push(p);
            } else {
                repeats += 1;
            }
        }
    }
    if prompts.is_empty() {
        return Err(crate::CurateError::Input("the inputs hold no prompts".into()));
    }
    Ok((prompts, repeats))
}

/// One file's prompts with their line numbers.
pub fn read(path: &Path) -> Result<Vec<(usize, Prompt)>> {
    let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "csv" => read_csv(path),
        "json" => {
            let v: Value = serde_json::from_str(&text).map_err(|e| file_err(path, format!("invalid JSON ({e})")))?;
            let rows = v.as_array().ok_or_else(|| file_err(path, "expected a JSON array of objects"))?;
            rows.iter().enumerate().map(|(i, r)| row_prompt(path, i + 1, r)).collect()
        }
        _ => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                let v: Value = serde_json::from_str(l).map_err(|e| row_err(path, i + 1, format!("invalid JSON ({e})")))?;
                row_prompt(path, i + 1, &v)
            })
            .collect(),
    }
}

fn row_prompt(path: &Path, line: usize, v: &Value) -> Result<(usize, Prompt)> {
    let obj = v.as_object().ok_or_else(|| row_err(path, line, "expected a JSON object"))?;
    let text = object_text(obj).map_err(|m| row_err(path, line, m))?;
    let id = match obj.get("id").or_else(|| obj.get("conversation_id")) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(row_err(path, line, "field 'id' must be a string or a number")),
        None => format!("{}:{line}", file_stem(path)),
    };
    let label = match obj.get("label").or_else(|| obj.get("category")) {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => None,
        Some(_) => return Err(row_err(path, line, "field 'label' must be a string")),
    };
    Ok((line, Prompt { id, text, label }))
}

fn file_stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

fn object_text(obj: &Map<String, Value>) -> std::result::Result<String, String> {
    for f in TEXT_FIELDS {
        match obj.get(f) {
            Some(Value::String(s)) if !s.trim().is_empty() => {
                let extra = if f == "instruction" { obj.get("input").and_then(Value::as_str).unwrap_or("").trim() } else { "" };
                return Ok(if extra.is_empty() { s.trim().to_string() } else { format!("{}\n{extra}", s.trim()) });
            }
            Some(Value::String(_)) => return Err(format!("field '{f}' is empty")),
            Some(_) => return Err(format!("field '{f}' must be a string")),
            None => {}
        }
    }
    for f in TURN_FIELDS {
        if let Some(turns) = obj.get(f) {
            let turns = turns.as_array().ok_or_else(|| format!("field '{f}' must be a list of turns"))?;
            return first_user_turn(turns).ok_or_else(|| format!("field '{f}' has no non-empty user turn"));
        }
    }
    Err(format!("no prompt field: expected one of {}, or a list of turns in {}", TEXT_FIELDS.join(", "), TURN_FIELDS.join(", ")))
}

fn first_user_turn(turns: &[Value]) -> Option<String> {
    turns.iter().find_map(|t| {
        let role = t.get("role").or_else(|| t.get("from"))?.as_str()?;
        let content = t.get("content").or_else(|| t.get("value"))?.as_str()?.trim();
        (matches!(role, "user" | "human") && !content.is_empty()).then(|| content.to_string())
    })
}

fn read_csv(path: &Path) -> Result<Vec<(usize, Prompt)>> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| file_err(path, e))?;
    let headers = reader.headers().map_err(|e| file_err(path, e))?.clone();
    let col = |names: &[&str]| names.iter().find_map(|n| headers.iter().position(|h| h == *n));
    let text_col = col(&TEXT_FIELDS).ok_or_else(|| file_err(path, format!("no prompt column: expected one of {}", TEXT_FIELDS.join(", "))))?;
    let (id_col, label_col) = (col(&["id", "conversation_id"]), col(&["label", "category"]));
    let mut out = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| row_err(path, line, e.to_string()))?;
        let text = rec.get(text_col).unwrap_or("").trim();
        if text.is_empty() {
            return Err(row_err(path, line, format!("field '{}' is empty", &headers[text_col])));
        }
        let id = id_col.and_then(|c| rec.get(c)).filter(|s| !s.is_empty()).map_or_else(|| format!("{}:{line}", file_stem(path)), str::to_string);
        let label = label_col.and_then(|c| rec.get(c)).filter(|s| !s.is_empty()).map(str::to_string);
        out.push((line, Prompt { id, text: text.to_string(), label }));
    }
    Ok(out)
}
