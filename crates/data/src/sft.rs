//! SFT rows: Alpaca and chat transcripts, normalized into a conversation ending with an
//! assistant message.

use std::path::Path;

use serde_json::Value;

use crate::fields::{self, non_empty, optional_string, string, Row, RowError, RowResult};
use crate::read::{self, Record};
use crate::{Message, Result, Role, SftExample, SftFormat};

/// The keys a chat transcript may live under: `messages` (OpenAI style), `conversations`
/// (ShareGPT), `conversation` (WildChat).
const TRANSCRIPT_KEYS: [&str; 3] = ["messages", "conversations", "conversation"];

pub(crate) fn detect(path: &Path, records: &[Record]) -> Result<SftFormat> {
    let first = read::first_object(records).ok_or_else(|| read::file_error(path, "no JSON object to detect the SFT format from"))?;
    if first.contains_key("instruction") {
        Ok(SftFormat::Alpaca)
    } else if TRANSCRIPT_KEYS.iter().any(|k| first.contains_key(*k)) {
        Ok(SftFormat::Messages)
    } else {
        let found: Vec<&str> = first.keys().map(String::as_str).collect();
        let message = format!(
            "cannot detect the SFT format: the first record has fields {found:?}, expected instruction/output (Alpaca) or messages/conversations"
        );
        Err(read::file_error(path, message))
    }
}

pub(crate) fn parse(format: SftFormat, row: &Row) -> RowResult<SftExample> {
    match format {
        SftFormat::Alpaca => alpaca(row),
        // Auto is resolved by `detect` before any row is parsed.
        SftFormat::Messages | SftFormat::Auto => transcript(row),
    }
}

/// [system] + history pairs + user(instruction, then input after a blank line) + assistant(output).
fn alpaca(row: &Row) -> RowResult<SftExample> {
    let instruction = non_empty(string(row, "instruction")?, "instruction")?;
    let input = optional_string(row, "input")?.filter(|s| !s.trim().is_empty());
    let output = non_empty(string(row, "output")?, "output")?;
    let mut messages = fields::with_system(row, Vec::new())?;
    if let Some(history) = row.get("history").filter(|h| !h.is_null()) {
        messages.extend(history_turns(history)?);
    }
    let user = match input {
        Some(input) => format!("{instruction}\n\n{input}"),
        None => instruction.to_string(),
    };
    messages.push(Message::new(Role::User, user));
    messages.push(Message::new(Role::Assistant, output));
    Ok(SftExample { messages })
}

/// Alpaca `history`: earlier turns as `[user, assistant]` string pairs.
fn history_turns(history: &Value) -> RowResult<Vec<Message>> {
    let pairs = history.as_array().ok_or_else(|| RowError::field("history", "expected a list of [user, assistant] pairs"))?;
    let mut turns = Vec::with_capacity(2 * pairs.len());
    for (i, pair) in pairs.iter().enumerate() {
        let Some([user, assistant]) = pair.as_array().map(Vec::as_slice) else {
            return Err(RowError::field(format!("history[{i}]"), "expected a [user, assistant] pair"));
        };
        for (role, value, field) in [(Role::User, user, format!("history[{i}][0]")), (Role::Assistant, assistant, format!("history[{i}][1]"))] {
            turns.push(Message::new(role, non_empty(fields::as_str(value, &field)?, &field)?));
        }
    }
    Ok(turns)
}

fn transcript(row: &Row) -> RowResult<SftExample> {
    let key = TRANSCRIPT_KEYS.into_iter().find(|k| row.contains_key(*k)).ok_or_else(|| RowError::field("messages", "missing"))?;
    let messages = fields::with_system(row, fields::messages(&row[key], key)?)?;
    fields::require_user(&messages, key)?;
    if messages.last().is_none_or(|m| m.role != Role::Assistant) {
        return Err(RowError::field(key, "missing assistant turn: the conversation must end with an assistant message"));
    }
    Ok(SftExample { messages })
}
