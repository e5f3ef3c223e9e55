//! Reading a file into records: gzip transparently, then a JSON array or JSONL. Rows are
//! parsed one at a time so a malformed row can be reported (or skipped) on its own.

use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;
use serde_json::{Map, Value};

use crate::fields::RowError;
use crate::{Error, Loaded, Location, OnMalformed, Result, MAX_SKIP_REASONS};

/// One row as read: its place in the file and its JSON (or why that line is not JSON).
pub(crate) struct Record {
    pub location: Location,
    pub value: std::result::Result<Value, RowError>,
}

pub(crate) fn file_error(path: &Path, message: impl Into<String>) -> Error {
    Error::File { path: path.into(), message: message.into() }
}

/// The file's records; a file without any is an error (an empty training set is never meant).
pub(crate) fn records(path: &Path) -> Result<Vec<Record>> {
    let text = read_text(path)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let records = if text.trim_start().starts_with('[') { array_records(path, text)? } else { jsonl_records(text) };
    if records.is_empty() {
        return Err(file_error(path, "contains no records"));
    }
    Ok(records)
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.into(), source })?;
    let gzipped = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz")) || bytes.starts_with(&[0x1f, 0x8b]);
    let bytes = if gzipped { gunzip(path, &bytes)? } else { bytes };
    String::from_utf8(bytes).map_err(|e| file_error(path, format!("not UTF-8 text ({e})")))
}

fn gunzip(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    // Multi-member: concatenated gzip streams (e.g. `cat a.gz b.gz`) are one valid file.
    MultiGzDecoder::new(bytes).read_to_end(&mut out).map_err(|e| file_error(path, format!("not valid gzip ({e})")))?;
    Ok(out)
}

fn array_records(path: &Path, text: &str) -> Result<Vec<Record>> {
    let values: Vec<Value> = serde_json::from_str(text).map_err(|e| file_error(path, format!("invalid JSON array ({e})")))?;
    let records = values.into_iter().enumerate().map(|(i, value)| Record { location: Location::Record(i + 1), value: Ok(value) });
    Ok(records.collect())
}

fn jsonl_records(text: &str) -> Vec<Record> {
    let lines = text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty());
    lines
        .map(|(i, line)| Record {
            location: Location::Line(i + 1),
            value: serde_json::from_str(line).map_err(|e| RowError::row(format!("invalid JSON ({e})"))),
        })
        .collect()
}

/// The first record that is a JSON object: the one formats are detected from.
pub(crate) fn first_object(records: &[Record]) -> Option<&Map<String, Value>> {
    records.iter().find_map(|r| r.value.as_ref().ok()?.as_object())
}

/// Parses every record, stopping at the first malformed one or skipping it as asked.
pub(crate) fn collect<T>(
    path: &Path,
    records: Vec<Record>,
    on_malformed: OnMalformed,
    parse: impl Fn(&Map<String, Value>) -> std::result::Result<T, RowError>,
) -> Result<Loaded<T>> {
    let mut loaded = Loaded { items: Vec::with_capacity(records.len()), skipped: 0, skip_reasons: Vec::new() };
    for record in records {
        let parsed = record.value.and_then(|v| parse(v.as_object().ok_or_else(|| RowError::row("expected a JSON object"))?));
        match parsed {
            Ok(item) => loaded.items.push(item),
            Err(e) => {
                let error = e.at(path, record.location);
                if on_malformed == OnMalformed::Error {
                    return Err(error);
                }
                loaded.skipped += 1;
                if loaded.skip_reasons.len() < MAX_SKIP_REASONS {
                    loaded.skip_reasons.push(error.to_string());
                }
            }
        }
    }
    Ok(loaded)
}
