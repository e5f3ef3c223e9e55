//! JSONL reading with errors that name the file, the line and the field.

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::io::{BufRead, Write};
use std::path::Path;

pub struct Row {
    /// 1-based line number in the file.
    pub line: usize,
    pub fields: Map<String, Value>,
}

pub fn read(path: &Path) -> Result<Vec<Row>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}: cannot read line", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(fields)) => rows.push(Row { line: i + 1, fields }),
            Ok(_) => bail!("{}:{}: expected a JSON object", path.display(), i + 1),
            Err(e) => bail!("{}:{}: invalid JSON ({e})", path.display(), i + 1),
        }
    }
    Ok(rows)
}

impl Row {
    /// A number field, or an error naming the file, line and field.
    pub fn f64_field(&self, path: &Path, name: &str) -> Result<f64> {
        match self.fields.get(name) {
            Some(Value::Number(n)) => Ok(n.as_f64().unwrap_or(f64::NAN)),
            Some(_) => bail!("{}:{}: field '{name}' must be a number", path.display(), self.line),
            None => bail!("{}:{}: missing field '{name}'", path.display(), self.line),
        }
    }

    pub fn str_field(&self, path: &Path, name: &str) -> Result<&str> {
        match self.fields.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
            Some(Value::String(_)) => bail!("{}:{}: field '{name}' is empty", path.display(), self.line),
            Some(_) => bail!("{}:{}: field '{name}' must be a string", path.display(), self.line),
            None => bail!("{}:{}: missing field '{name}'", path.display(), self.line),
        }
    }
}

/// Appends JSON lines, flushing each so that an interrupted run keeps every finished line.
pub struct Appender {
    file: std::fs::File,
}

impl Appender {
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {} for writing", path.display()))?;
        Ok(Appender { file })
    }

    pub fn write(&mut self, v: &Value) -> Result<()> {
        let mut line = serde_json::to_string(v)?;
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        self.file.flush()?;
        Ok(())
    }
}

/// Lines of an existing output file, tolerating a last line cut short by an interrupt.
pub fn read_existing(path: &Path) -> Result<Vec<Map<String, Value>>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    if complete.len() < text.len() {
        // Drop the partial last line so appends start on a fresh line.
        std::fs::write(path, complete).with_context(|| format!("cannot repair {}", path.display()))?;
    }
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| match serde_json::from_str::<Value>(l) {
            Ok(Value::Object(m)) => Ok(m),
            _ => bail!("{}:{}: existing output line is not a JSON object", path.display(), i + 1),
        })
        .collect()
}
