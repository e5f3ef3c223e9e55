//! The store: one SQLite file holding runs, their checkpoints and questions, every generation and
//! every judgment, keyed by (run, checkpoint, question, sample).
//!
//! Every write is its own committed transaction (or one per batch), in WAL mode, so a process
//! killed at any moment leaves only whole rows behind; a re-run asks the store what is missing
//! and does only that. Rows are never rewritten: a finished generation or judgment is final.

use crate::evalset::Question;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Sql { path: PathBuf, source: rusqlite::Error },
    #[error("store {path}: {message}")]
    Mismatch { path: PathBuf, message: String },
}

pub type Result<T> = std::result::Result<T, StoreError>;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, settings TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    run INTEGER NOT NULL REFERENCES runs(id), id INTEGER NOT NULL, phase TEXT NOT NULL, step INTEGER NOT NULL,
    phase_steps INTEGER, path TEXT NOT NULL,
    PRIMARY KEY (run, id), UNIQUE (run, phase, step));
CREATE TABLE IF NOT EXISTS questions (
    run INTEGER NOT NULL REFERENCES runs(id), id TEXT NOT NULL, category TEXT NOT NULL, topic TEXT NOT NULL,
    question TEXT NOT NULL, PRIMARY KEY (run, id));
CREATE TABLE IF NOT EXISTS generations (
    run INTEGER NOT NULL, checkpoint INTEGER NOT NULL, question TEXT NOT NULL, sample INTEGER NOT NULL,
    response TEXT NOT NULL, n_tokens INTEGER NOT NULL, finish TEXT NOT NULL,
    PRIMARY KEY (run, checkpoint, question, sample));
CREATE TABLE IF NOT EXISTS judgments (
    run INTEGER NOT NULL, checkpoint INTEGER NOT NULL, question TEXT NOT NULL, sample INTEGER NOT NULL,
    p_support REAL NOT NULL, p_neutral REAL NOT NULL, p_oppose REAL NOT NULL, order_spread REAL NOT NULL,
    floored INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run, checkpoint, question, sample));
CREATE TABLE IF NOT EXISTS judge_checks (
    run INTEGER NOT NULL, judge TEXT NOT NULL, labelled_set TEXT NOT NULL, figures TEXT NOT NULL,
    PRIMARY KEY (run, judge, labelled_set));
CREATE TABLE IF NOT EXISTS capability (
    run INTEGER NOT NULL, checkpoint INTEGER NOT NULL, task TEXT NOT NULL, item TEXT NOT NULL, result TEXT NOT NULL,
    PRIMARY KEY (run, checkpoint, task, item));
";

/// Stores made before the second labelled set keyed judge checks by (run, judge) alone; their
/// checks ran on the hand-written set. Run inside `rekey_judge_checks`'s transaction.
const REKEY_JUDGE_CHECKS: &str = "
ALTER TABLE judge_checks RENAME TO judge_checks_by_judge;
CREATE TABLE judge_checks (
    run INTEGER NOT NULL, judge TEXT NOT NULL, labelled_set TEXT NOT NULL, figures TEXT NOT NULL,
    PRIMARY KEY (run, judge, labelled_set));
INSERT INTO judge_checks SELECT run, judge, 'hand-written', figures FROM judge_checks_by_judge;
DROP TABLE judge_checks_by_judge;
";

/// Columns added after a store format was first released: (table, column, definition). Older
/// stores get them on open, with the default that was true of every row they hold.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    // Judgments before remote judges never floored a missing option.
    ("judgments", "floored", "INTEGER NOT NULL DEFAULT 0"),
    // Before per-checkpoint prompts every checkpoint was asked with the run's style (NULL).
    ("checkpoints", "prompt", "TEXT"),
];

/// A checkpoint of a run: a model at a step of a training phase.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Checkpoint {
    pub id: i64,
    pub phase: String,
    pub step: u64,
    /// The phase's total steps when known (from trainer_state.json); drift time divides by it.
    pub phase_steps: Option<u64>,
    pub path: String,
}

/// One sampled answer.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Generation {
    pub checkpoint: i64,
    pub question: String,
    pub sample: u32,
    pub response: String,
    pub n_tokens: u32,
    pub finish: String,
}

/// The judge's stance probabilities for one generation.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Judged {
    pub checkpoint: i64,
    pub question: String,
    pub sample: u32,
    pub p: [f64; 3],
    pub order_spread: f64,
    /// A remote judge's top-k list lacked an option, whose log-prob was floored (docs/remote.md).
    pub floored: bool,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(|source| StoreError::Sql { path: path.into(), source })?;
        let store = Store { conn, path: path.into() };
        // WAL with synchronous=NORMAL survives a killed process (not a power cut, which costs
        // at most the last transactions, never consistency).
        store.sql(store.conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;"))?;
        store.sql(store.conn.execute_batch(SCHEMA))?;
        store.add_missing_columns()?;
        store.rekey_judge_checks()?;
        Ok(store)
    }

    /// Re-keys an older store's judge checks, once: the write lock is taken first and the
    /// schema checked under it, so two processes opening the same old store do it once between
    /// them, and a failure leaves the old table as it was.
    fn rekey_judge_checks(&self) -> Result<()> {
        let rekeyed = |s: &Self| -> Result<bool> { Ok(s.columns("judge_checks")?.iter().any(|c| c == "labelled_set")) };
        if rekeyed(self)? {
            return Ok(());
        }
        self.sql(self.conn.execute_batch("BEGIN IMMEDIATE"))?;
        let outcome = match rekeyed(self) {
            Ok(false) => self.sql(self.conn.execute_batch(REKEY_JUDGE_CHECKS)),
            other => other.map(|_| ()),
        };
        let end = if outcome.is_ok() { "COMMIT" } else { "ROLLBACK" };
        self.sql(self.conn.execute_batch(end))?;
        outcome
    }

    fn columns(&self, table: &str) -> Result<Vec<String>> {
        let mut st = self.sql(self.conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}')")))?;
        let names = self.sql(st.query_map([], |r| r.get(0)))?.collect::<rusqlite::Result<Vec<String>>>();
        self.sql(names)
    }

    fn add_missing_columns(&self) -> Result<()> {
        for (table, column, definition) in ADDED_COLUMNS {
            if !self.columns(table)?.iter().any(|n| n == column) {
                self.sql(self.conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {definition}")))?;
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql<T>(&self, r: rusqlite::Result<T>) -> Result<T> {
        r.map_err(|source| StoreError::Sql { path: self.path.clone(), source })
    }

    /// The run's id, creating it with `settings` (a JSON object of everything that decides its
    /// numbers). Reopening a run with different settings is an error naming the first key that
    /// differs: mixing samples drawn under two settings would silently corrupt its values.
    pub fn run(&self, name: &str, settings: &serde_json::Value) -> Result<i64> {
        let existing: Option<(i64, String)> =
            self.sql(self.conn.query_row("SELECT id, settings FROM runs WHERE name = ?1", [name], |r| Ok((r.get(0)?, r.get(1)?))).optional())?;
        if let Some((id, stored)) = existing {
            let stored: serde_json::Value = serde_json::from_str(&stored).unwrap_or_default();
            if let Some(key) = first_difference(&stored, settings) {
                return Err(StoreError::Mismatch {
                    path: self.path.clone(),
                    message: format!(
                        "run '{name}' was started with {key} = {}, now {key} = {}; use another run name or store",
                        stored.get(&key).unwrap_or(&serde_json::Value::Null),
                        settings.get(&key).unwrap_or(&serde_json::Value::Null)
                    ),
                });
            }
            return Ok(id);
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        self.sql(
            self.conn.execute("INSERT INTO runs (name, settings, created) VALUES (?1, ?2, ?3)", params![name, settings.to_string(), now.to_string()]),
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The settings a run was started with.
    pub fn settings(&self, run: i64) -> Result<serde_json::Value> {
        let text: String = self.sql(self.conn.query_row("SELECT settings FROM runs WHERE id = ?1", [run], |r| r.get(0)))?;
        Ok(serde_json::from_str(&text).unwrap_or_default())
    }

    /// Keeps a judge's figures on a labelled sample for `run` (replacing earlier ones of the
    /// same judge on the same set).
    pub fn put_judge_check(&self, run: i64, check: &crate::judge_check::JudgeCheck) -> Result<()> {
        let figures = serde_json::to_string(check).expect("plain data");
        let set = check.set.name();
        self.sql(self.conn.execute(
            "INSERT OR REPLACE INTO judge_checks (run, judge, labelled_set, figures) VALUES (?1, ?2, ?3, ?4)",
            params![run, check.judge, set, figures],
        ))?;
        Ok(())
    }

    /// The judge checks kept for `run`, by judge name.
    pub fn judge_checks(&self, run: i64) -> Result<Vec<crate::judge_check::JudgeCheck>> {
        let mut st = self.sql(self.conn.prepare("SELECT figures FROM judge_checks WHERE run = ?1 ORDER BY judge, labelled_set"))?;
        let rows: Vec<String> = self.sql(self.sql(st.query_map([run], |r| r.get(0)))?.collect())?;
        rows.iter()
            .map(|text| {
                serde_json::from_str(text)
                    .map_err(|e| StoreError::Mismatch { path: self.path.clone(), message: format!("judge_checks: unreadable figures ({e})") })
            })
            .collect()
    }

    pub fn runs(&self) -> Result<Vec<(i64, String)>> {
        let mut st = self.sql(self.conn.prepare("SELECT id, name FROM runs ORDER BY id"))?;
        let rows = self.sql(st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))))?;
        self.sql(rows.collect())
    }

    /// Records the run's questions; a question id already stored must keep its text and topic.
    pub fn add_questions(&mut self, run: i64, questions: &[Question]) -> Result<()> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|source| StoreError::Sql { path: path.clone(), source })?;
        for q in questions {
            let stored: Option<(String, String, String)> = tx
                .query_row("SELECT category, topic, question FROM questions WHERE run = ?1 AND id = ?2", params![run, q.id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()
                .map_err(|source| StoreError::Sql { path: path.clone(), source })?;
            match stored {
                Some(s) if s != (q.category.clone(), q.topic.clone(), q.question.clone()) => {
                    return Err(StoreError::Mismatch {
                        path,
                        message: format!(
                            "question '{}' is stored with a different category, topic or text; an edited eval set needs a new run",
                            q.id
                        ),
                    });
                }
                Some(_) => {}
                None => {
                    tx.execute(
                        "INSERT INTO questions (run, id, category, topic, question) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![run, q.id, q.category, q.topic, q.question],
                    )
                    .map_err(|source| StoreError::Sql { path: path.clone(), source })?;
                }
            }
        }
        tx.commit().map_err(|source| StoreError::Sql { path, source })
    }

    pub fn questions(&self, run: i64) -> Result<Vec<Question>> {
        let mut st = self.sql(self.conn.prepare("SELECT id, category, topic, question FROM questions WHERE run = ?1 ORDER BY category, id"))?;
        let rows = self
            .sql(st.query_map([run], |r| Ok(Question { id: r.get(0)?, category: r.get(1)?, topic: r.get(2)?, question: r.get(3)?, quick: false })))?;
        self.sql(rows.collect())
    }

    /// The checkpoint's id, registering it on first sight. A (phase, step) already stored with
    /// another model path is an error: its generations belong to that model.
    pub fn checkpoint(&self, run: i64, phase: &str, step: u64, phase_steps: Option<u64>, path: &str) -> Result<i64> {
        let found: Option<(i64, String)> = self.sql(
            self.conn
                .query_row("SELECT id, path FROM checkpoints WHERE run = ?1 AND phase = ?2 AND step = ?3", params![run, phase, step as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional(),
        )?;
        if let Some((id, stored)) = found {
            if stored != path {
                return Err(StoreError::Mismatch {
                    path: self.path.clone(),
                    message: format!("{phase} step {step} is stored as {stored}, not {path}"),
                });
            }
            self.sql(self.conn.execute(
                "UPDATE checkpoints SET phase_steps = ?3 WHERE run = ?1 AND id = ?2 AND ?3 IS NOT NULL",
                params![run, id, phase_steps.map(|s| s as i64)],
            ))?;
            return Ok(id);
        }
        let id: i64 = self.sql(self.conn.query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM checkpoints WHERE run = ?1", [run], |r| r.get(0)))?;
        self.sql(self.conn.execute(
            "INSERT INTO checkpoints (run, id, phase, step, phase_steps, path) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![run, id, phase, step as i64, phase_steps.map(|s| s as i64), path],
        ))?;
        Ok(id)
    }

    /// The run's checkpoints in the order they were registered (phase order), by step within a phase.
    pub fn checkpoints(&self, run: i64) -> Result<Vec<Checkpoint>> {
        let mut st = self.sql(self.conn.prepare(
            "SELECT id, phase, step, phase_steps, path FROM checkpoints c WHERE run = ?1
             ORDER BY (SELECT MIN(id) FROM checkpoints p WHERE p.run = c.run AND p.phase = c.phase), step",
        ))?;
        let rows = self.sql(st.query_map([run], |r| {
            Ok(Checkpoint {
                id: r.get(0)?,
                phase: r.get(1)?,
                step: r.get::<_, i64>(2)? as u64,
                phase_steps: r.get::<_, Option<i64>>(3)?.map(|s| s as u64),
                path: r.get(4)?,
            })
        }))?;
        self.sql(rows.collect())
    }

    /// (question, sample) pairs of a checkpoint that already have a generation.
    pub fn generated(&self, run: i64, checkpoint: i64) -> Result<HashSet<(String, u32)>> {
        self.keys("generations", run, checkpoint)
    }

    pub fn judged(&self, run: i64, checkpoint: i64) -> Result<HashSet<(String, u32)>> {
        self.keys("judgments", run, checkpoint)
    }

    fn keys(&self, table: &str, run: i64, checkpoint: i64) -> Result<HashSet<(String, u32)>> {
        let mut st = self.sql(self.conn.prepare(&format!("SELECT question, sample FROM {table} WHERE run = ?1 AND checkpoint = ?2")))?;
        let rows = self.sql(st.query_map([run, checkpoint], |r| Ok((r.get(0)?, r.get(1)?))))?;
        self.sql(rows.collect())
    }

    /// (task, item) pairs of a checkpoint that already have a capability result.
    pub fn capability_scored(&self, run: i64, checkpoint: i64) -> Result<HashSet<(String, String)>> {
        let mut st = self.sql(self.conn.prepare("SELECT task, item FROM capability WHERE run = ?1 AND checkpoint = ?2"))?;
        let rows = self.sql(st.query_map([run, checkpoint], |r| Ok((r.get(0)?, r.get(1)?))))?;
        self.sql(rows.collect())
    }

    /// Stores capability results of one checkpoint, each (task, item, result as JSON), in one
    /// transaction; a key already present is kept.
    pub fn add_capability(&mut self, run: i64, checkpoint: i64, rows: &[(String, String, String)]) -> Result<()> {
        let path = self.path.clone();
        let wrap = |source| StoreError::Sql { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(wrap)?;
        {
            let mut st = tx
                .prepare_cached("INSERT OR IGNORE INTO capability (run, checkpoint, task, item, result) VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(wrap)?;
            for (task, item, result) in rows {
                st.execute(params![run, checkpoint, task, item, result]).map_err(wrap)?;
            }
        }
        tx.commit().map_err(wrap)
    }

    /// Every capability result of a run as (checkpoint, result JSON), by checkpoint, task, item.
    pub fn capability(&self, run: i64) -> Result<Vec<(i64, String)>> {
        let mut st = self.sql(self.conn.prepare("SELECT checkpoint, result FROM capability WHERE run = ?1 ORDER BY checkpoint, task, item"))?;
        let rows = self.sql(st.query_map([run], |r| Ok((r.get(0)?, r.get(1)?))))?;
        self.sql(rows.collect())
    }

    /// Stores finished generations in one transaction. A key already present is kept as it
    /// was (the first answer drawn is the answer), so a replayed batch adds nothing.
    pub fn add_generations(&mut self, run: i64, gens: &[Generation]) -> Result<()> {
        let path = self.path.clone();
        let wrap = |source| StoreError::Sql { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(wrap)?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO generations (run, checkpoint, question, sample, response, n_tokens, finish)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(wrap)?;
            for g in gens {
                st.execute(params![run, g.checkpoint, g.question, g.sample, g.response, g.n_tokens, g.finish]).map_err(wrap)?;
            }
        }
        tx.commit().map_err(wrap)
    }

    pub fn add_judgments(&mut self, run: i64, judged: &[Judged]) -> Result<()> {
        let path = self.path.clone();
        let wrap = |source| StoreError::Sql { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(wrap)?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO judgments (run, checkpoint, question, sample, p_support, p_neutral, p_oppose, order_spread, floored)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(wrap)?;
            for j in judged {
                st.execute(params![run, j.checkpoint, j.question, j.sample, j.p[0], j.p[1], j.p[2], j.order_spread, j.floored]).map_err(wrap)?;
            }
        }
        tx.commit().map_err(wrap)
    }

    /// Generations of a checkpoint (all checkpoints with None), ordered by checkpoint, question, sample.
    pub fn generations(&self, run: i64, checkpoint: Option<i64>) -> Result<Vec<Generation>> {
        let mut st = self.sql(self.conn.prepare(
            "SELECT checkpoint, question, sample, response, n_tokens, finish FROM generations
             WHERE run = ?1 AND (?2 IS NULL OR checkpoint = ?2) ORDER BY checkpoint, question, sample",
        ))?;
        let rows = self.sql(st.query_map(params![run, checkpoint], |r| {
            Ok(Generation {
                checkpoint: r.get(0)?,
                question: r.get(1)?,
                sample: r.get(2)?,
                response: r.get(3)?,
                n_tokens: r.get(4)?,
                finish: r.get(5)?,
            })
        }))?;
        self.sql(rows.collect())
    }

    pub fn judgments(&self, run: i64, checkpoint: Option<i64>) -> Result<Vec<Judged>> {
        let mut st = self.sql(self.conn.prepare(
            "SELECT checkpoint, question, sample, p_support, p_neutral, p_oppose, order_spread, floored FROM judgments
             WHERE run = ?1 AND (?2 IS NULL OR checkpoint = ?2) ORDER BY checkpoint, question, sample",
        ))?;
        let rows = self.sql(st.query_map(params![run, checkpoint], |r| {
            Ok(Judged {
                checkpoint: r.get(0)?,
                question: r.get(1)?,
                sample: r.get(2)?,
                p: [r.get(3)?, r.get(4)?, r.get(5)?],
                order_spread: r.get(6)?,
                floored: r.get(7)?,
            })
        }))?;
        self.sql(rows.collect())
    }
}

/// One sample with everything known about it: what `valuedrift dump` exports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Record {
    pub phase: String,
    pub step: u64,
    pub checkpoint_path: String,
    /// How this checkpoint was asked where it differs from the run's prompt style ("base").
    pub prompt: Option<String>,
    pub category: String,
    pub topic: String,
    pub question_id: String,
    pub question: String,
    pub sample: u32,
    pub response: String,
    pub n_tokens: u32,
    pub finish: String,
    pub p_support: Option<f64>,
    pub p_neutral: Option<f64>,
    pub p_oppose: Option<f64>,
    pub order_spread: Option<f64>,
    pub floored: Option<bool>,
}

impl Store {
    /// Every generation of a run joined with its checkpoint, question and judgment (if judged).
    pub fn records(&self, run: i64) -> Result<Vec<Record>> {
        let mut st = self.sql(self.conn.prepare(
            "SELECT c.phase, c.step, c.path, q.category, q.topic, g.question, q.question, g.sample, g.response, g.n_tokens, g.finish,
                    j.p_support, j.p_neutral, j.p_oppose, j.order_spread, j.floored, c.prompt
             FROM generations g
             JOIN checkpoints c ON c.run = g.run AND c.id = g.checkpoint
             JOIN questions q ON q.run = g.run AND q.id = g.question
             LEFT JOIN judgments j ON j.run = g.run AND j.checkpoint = g.checkpoint AND j.question = g.question AND j.sample = g.sample
             WHERE g.run = ?1 ORDER BY g.checkpoint, q.category, g.question, g.sample",
        ))?;
        let rows = self.sql(st.query_map([run], |r| {
            Ok(Record {
                phase: r.get(0)?,
                step: r.get::<_, i64>(1)? as u64,
                checkpoint_path: r.get(2)?,
                prompt: r.get(16)?,
                category: r.get(3)?,
                topic: r.get(4)?,
                question_id: r.get(5)?,
                question: r.get(6)?,
                sample: r.get(7)?,
                response: r.get(8)?,
                n_tokens: r.get(9)?,
                finish: r.get(10)?,
                p_support: r.get(11)?,
                p_neutral: r.get(12)?,
                p_oppose: r.get(13)?,
                order_spread: r.get(14)?,
                floored: r.get(15)?,
            })
        }))?;
        self.sql(rows.collect())
    }

    /// Records how a checkpoint is asked: a prompt style name, or None for the run's style. A
    /// checkpoint keeps the style its stored answers were drawn with; another is refused.
    pub fn record_prompt(&self, run: i64, checkpoint: i64, prompt: Option<&str>) -> Result<()> {
        let (stored, phase, step, model): (Option<String>, String, i64, String) = self.sql(self.conn.query_row(
            "SELECT prompt, phase, step, path FROM checkpoints WHERE run = ?1 AND id = ?2",
            params![run, checkpoint],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        ))?;
        if stored.as_deref() != prompt && !self.generated(run, checkpoint)?.is_empty() {
            let name = |p: Option<&str>| p.map_or("the run's prompt style".to_string(), |p| format!("the {p} prompt"));
            return Err(StoreError::Mismatch {
                path: self.path.clone(),
                message: format!(
                    "{phase} step {step} ({model}) was answered with {}, not {} (eval.base_model_prompt changed?)",
                    name(stored.as_deref()),
                    name(prompt)
                ),
            });
        }
        self.sql(self.conn.execute("UPDATE checkpoints SET prompt = ?3 WHERE run = ?1 AND id = ?2", params![run, checkpoint, prompt]))?;
        Ok(())
    }

    /// Copies the generations and judgments of another checkpoint of the run with the same model
    /// path (a phase's final model is the next phase's step 0). The samples would be drawn
    /// identically anyway: seeds do not depend on the checkpoint.
    pub fn reuse_same_model(&mut self, run: i64, checkpoint: i64) -> Result<usize> {
        let path = self.path.clone();
        let wrap = |source| StoreError::Sql { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(wrap)?;
        let mut copied = 0;
        for table in ["generations", "judgments"] {
            let cols = if table == "generations" { "response, n_tokens, finish" } else { "p_support, p_neutral, p_oppose, order_spread, floored" };
            let sql = format!(
                "INSERT OR IGNORE INTO {table} (run, checkpoint, question, sample, {cols})
                 SELECT t.run, ?2, t.question, t.sample, {cols} FROM {table} t
                 JOIN checkpoints other ON other.run = t.run AND other.id = t.checkpoint
                 JOIN checkpoints me ON me.run = t.run AND me.id = ?2
                 WHERE t.run = ?1 AND other.id != ?2 AND other.path = me.path AND other.prompt IS me.prompt"
            );
            copied += tx.execute(&sql, params![run, checkpoint]).map_err(wrap)?;
        }
        tx.commit().map_err(wrap)?;
        Ok(copied)
    }
}

/// The first top-level key whose value differs between two JSON objects.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value) -> Option<String> {
    let (a, b) = (a.as_object()?, b.as_object()?);
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.into_iter().find(|k| a.get(*k) != b.get(*k)).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn temp_store(name: &str) -> (Store, PathBuf) {
        let dir = std::env::temp_dir().join(format!("valuedrift-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("trace.sqlite");
        (Store::open(&path).unwrap(), path)
    }

    fn question(id: &str) -> Question {
        Question { id: id.into(), category: "c".into(), topic: "t".into(), question: format!("{id}?"), quick: false }
    }

    #[test]
    fn rows_survive_reopening_and_replays_add_nothing() {
        let (mut s, path) = temp_store("reopen");
        let run = s.run("r", &json!({"samples": 2})).unwrap();
        s.add_questions(run, &[question("q1"), question("q2")]).unwrap();
        let ck = s.checkpoint(run, "sft", 0, Some(10), "/m0").unwrap();
        let g = Generation { checkpoint: ck, question: "q1".into(), sample: 0, response: "yes".into(), n_tokens: 1, finish: "stop".into() };
        s.add_generations(run, std::slice::from_ref(&g)).unwrap();
        let replay = Generation { response: "other".into(), ..g.clone() };
        s.add_generations(run, &[replay]).unwrap();
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.run("r", &json!({"samples": 2})).unwrap(), run);
        assert_eq!(s.generations(run, None).unwrap(), vec![g]);
        assert_eq!(s.generated(run, ck).unwrap(), HashSet::from([("q1".to_string(), 0)]));
        assert_eq!(s.checkpoint(run, "sft", 0, None, "/m0").unwrap(), ck);
        assert_eq!(s.checkpoints(run).unwrap()[0].phase_steps, Some(10), "a later None keeps the known total");
    }

    #[test]
    fn a_checkpoint_keeps_the_prompt_its_answers_were_drawn_with() {
        let (mut s, _) = temp_store("prompt");
        let run = s.run("r", &json!({})).unwrap();
        s.add_questions(run, &[question("q1")]).unwrap();
        // The base model is step 0 of SFT (asked with the base prompt) and of nothing else here;
        // a second checkpoint of the same file asked the run's way must not take its answers.
        let base = s.checkpoint(run, "sft", 0, None, "/base").unwrap();
        let same_file = s.checkpoint(run, "other", 0, None, "/base").unwrap();
        s.record_prompt(run, base, Some("base")).unwrap();
        let g = Generation { checkpoint: base, question: "q1".into(), sample: 0, response: "yes".into(), n_tokens: 1, finish: "stop".into() };
        s.add_generations(run, &[g]).unwrap();
        s.record_prompt(run, base, Some("base")).unwrap();
        let err = s.record_prompt(run, base, None).unwrap_err().to_string();
        assert!(err.contains("base prompt") && err.contains("run's prompt style"), "{err}");
        s.record_prompt(run, same_file, None).unwrap();
        assert_eq!(s.reuse_same_model(run, same_file).unwrap(), 0, "answers are shared only under the same prompt");
        s.record_prompt(run, same_file, Some("base")).unwrap();
        assert_eq!(s.reuse_same_model(run, same_file).unwrap(), 1);
    }

    #[test]
    fn judge_checks_of_an_older_store_are_kept_as_checks_on_the_hand_written_set() {
        let (s, path) = temp_store("rekey");
        let run =
            s.sql(s.conn.query_row("INSERT INTO runs (name, settings, created) VALUES ('r', '{}', 'now') RETURNING id", [], |r| r.get(0))).unwrap();
        let old = crate::judge_check::JudgeCheck {
            judge: "j.gguf".into(),
            set: crate::judge_check::LabelledSet::HandWritten,
            items: 3,
            per_category: 3,
            accuracy: 0.5,
            accuracy_low: 0.1,
            accuracy_high: 0.9,
            polar_accuracy: 1.0,
            calibration_error: 0.1,
            mean_label_probability: 0.4,
            by_category: Default::default(),
        };
        let mut figures = serde_json::to_value(&old).unwrap();
        figures.as_object_mut().unwrap().remove("set");
        s.conn
            .execute_batch("DROP TABLE judge_checks; CREATE TABLE judge_checks (run INTEGER NOT NULL, judge TEXT NOT NULL, figures TEXT NOT NULL, PRIMARY KEY (run, judge));")
            .unwrap();
        s.conn.execute("INSERT INTO judge_checks VALUES (?1, 'j.gguf', ?2)", params![run, figures.to_string()]).unwrap();
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.judge_checks(run).unwrap(), vec![old.clone()]);
        let real = crate::judge_check::JudgeCheck { set: crate::judge_check::LabelledSet::RealSamples, accuracy: 0.7, ..old.clone() };
        s.put_judge_check(run, &real).unwrap();
        assert_eq!(s.judge_checks(run).unwrap(), vec![old, real], "one check per judge and set");
    }

    #[test]
    fn changed_settings_checkpoint_paths_and_questions_are_refused() {
        let (mut s, _) = temp_store("mismatch");
        let run = s.run("r", &json!({"samples": 2, "seed": 1})).unwrap();
        let err = s.run("r", &json!({"samples": 3, "seed": 1})).unwrap_err().to_string();
        assert!(err.contains("samples = 2, now samples = 3"), "{err}");
        s.checkpoint(run, "sft", 5, None, "/a").unwrap();
        assert!(s.checkpoint(run, "sft", 5, None, "/b").unwrap_err().to_string().contains("stored as /a"));
        s.add_questions(run, &[question("q1")]).unwrap();
        let mut edited = question("q1");
        edited.question = "changed?".into();
        assert!(s.add_questions(run, &[edited]).unwrap_err().to_string().contains("question 'q1'"));
    }

    #[test]
    fn records_join_everything_and_a_repeated_model_reuses_its_samples() {
        let (mut s, _) = temp_store("records");
        let run = s.run("r", &json!({})).unwrap();
        s.add_questions(run, &[question("q1")]).unwrap();
        let last_sft = s.checkpoint(run, "sft", 10, None, "/final").unwrap();
        let g = Generation { checkpoint: last_sft, question: "q1".into(), sample: 0, response: "no".into(), n_tokens: 1, finish: "stop".into() };
        s.add_generations(run, &[g]).unwrap();
        s.add_judgments(
            run,
            &[Judged { checkpoint: last_sft, question: "q1".into(), sample: 0, p: [0.1, 0.2, 0.7], order_spread: 0.0, floored: false }],
        )
        .unwrap();
        let dpo_start = s.checkpoint(run, "dpo", 0, None, "/final").unwrap();
        assert_eq!(s.reuse_same_model(run, dpo_start).unwrap(), 2);
        assert_eq!(s.reuse_same_model(run, dpo_start).unwrap(), 0, "nothing twice");
        let recs = s.records(run).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!((recs[1].phase.as_str(), recs[1].step, recs[1].p_oppose), ("dpo", 0, Some(0.7)));
        assert_eq!(recs[0].question, "q1?");
    }

    #[test]
    fn a_store_written_before_the_floored_flag_opens_and_reads_as_not_floored() {
        let (s, path) = temp_store("migrate");
        drop(s);
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE judgments; CREATE TABLE judgments (run INTEGER NOT NULL, checkpoint INTEGER NOT NULL,
            question TEXT NOT NULL, sample INTEGER NOT NULL, p_support REAL NOT NULL, p_neutral REAL NOT NULL,
            p_oppose REAL NOT NULL, order_spread REAL NOT NULL, PRIMARY KEY (run, checkpoint, question, sample));
            INSERT INTO judgments VALUES (1, 1, 'q1', 0, 0.2, 0.3, 0.5, 0.0);",
        )
        .unwrap();
        drop(conn);
        let s = Store::open(&path).unwrap();
        let j = s.judgments(1, None).unwrap();
        assert_eq!((j.len(), j[0].floored, j[0].p[2]), (1, false, 0.5));
    }

    #[test]
    fn checkpoints_keep_phase_order_then_step_order() {
        let (s, _) = temp_store("order");
        let run = s.run("r", &json!({})).unwrap();
        s.checkpoint(run, "sft", 100, None, "/s100").unwrap();
        s.checkpoint(run, "sft", 0, None, "/s0").unwrap();
        s.checkpoint(run, "dpo", 0, None, "/d0").unwrap();
        s.checkpoint(run, "sft", 50, None, "/s50").unwrap();
        let order: Vec<(String, u64)> = s.checkpoints(run).unwrap().into_iter().map(|c| (c.phase, c.step)).collect();
        assert_eq!(order, [("sft".into(), 0), ("sft".into(), 50), ("sft".into(), 100), ("dpo".into(), 0)]);
    }
}
