//! The curation directory's files: JSON lines appended as work finishes, the embeddings as
//! little-endian f32 rows, and the cluster table a user may edit.

use crate::{file_err, row_err, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// Every row of a JSON-lines file (none when it does not exist). A last line cut short by an
/// interrupted write is dropped; any other bad line is an error naming it.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e))?;
    let lines: Vec<(usize, &str)> = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).collect();
    let mut out = Vec::with_capacity(lines.len());
    for (k, (i, line)) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(v) => out.push(v),
            Err(_) if k + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => return Err(row_err(path, i + 1, format!("not a valid row ({e})"))),
        }
    }
    Ok(out)
}

/// Appends rows as they finish, each flushed, so an interruption loses none of them.
pub struct Appender {
    file: std::fs::File,
    path: std::path::PathBuf,
}

impl Appender {
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| file_err(path, e))?;
        Ok(Appender { file, path: path.into() })
    }

    pub fn push<T: Serialize>(&mut self, row: &T) -> Result<()> {
        let line = serde_json::to_string(row).expect("plain data");
        writeln!(self.file, "{line}").and_then(|_| self.file.flush()).map_err(|e| file_err(&self.path, e))
    }
}

/// Writes a whole file through a temporary name, so a reader never sees half of it.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, contents).map_err(|e| file_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| file_err(path, e))
}

/// The rows of an f32 matrix file of `dim` columns; a partial last row is dropped.
pub fn read_rows(path: &Path, dim: usize) -> Result<Vec<Vec<f32>>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let bytes = std::fs::read(path).map_err(|e| file_err(path, e))?;
    let row_bytes = dim * 4;
    Ok(bytes.chunks_exact(row_bytes).map(|row| row.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()).collect())
}

/// Appends rows to an f32 matrix file, first cutting it back to `keep_rows` whole rows.
pub fn append_rows(path: &Path, dim: usize, keep_rows: usize, rows: &[Vec<f32>]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(|e| file_err(path, e))?;
    file.set_len((keep_rows * dim * 4) as u64).map_err(|e| file_err(path, e))?;
    let mut buf = Vec::with_capacity(rows.len() * dim * 4);
    for v in rows.iter().flatten() {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    use std::io::Seek;
    file.seek(std::io::SeekFrom::End(0)).and_then(|_| file.write_all(&buf)).map_err(|e| file_err(path, e))
}

/// A row of clusters.csv. `name` and `keep` are the user's to edit: a stage fills them only
/// where they are empty.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ClusterRow {
    pub cluster: usize,
    pub size: usize,
    /// Members HDBSCAN put there itself (the rest joined by soft assignment).
    pub core: usize,
    pub name: String,
    /// yes or no; empty until the selection stage.
    pub keep: String,
    /// Share of members the value filter passed; empty until the filter has run.
    pub value_share: String,
    pub top_terms: String,
    pub examples: String,
}

pub fn read_clusters(path: &Path) -> Result<Vec<ClusterRow>> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| file_err(path, e))?;
    let mut rows = Vec::new();
    for (i, rec) in reader.deserialize::<ClusterRow>().enumerate() {
        let row = rec.map_err(|e| row_err(path, i + 2, e.to_string()))?;
        if !matches!(row.keep.trim(), "" | "yes" | "no") {
            return Err(row_err(path, i + 2, format!("field 'keep' must be yes, no or empty, not '{}'", row.keep)));
        }
        rows.push(row);
    }
    Ok(rows)
}

pub fn write_clusters(path: &Path, rows: &[ClusterRow]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).map_err(|e| file_err(path, e))?;
    }
    write_atomic(path, &w.into_inner().map_err(|e| file_err(path, e))?)
}
