//! Preference rows: a prompt ending with a user turn and two responses, from
//! prompt/chosen/rejected rows, HH-RLHF transcripts or ShareGPT pairs.

use std::path::Path;

use serde_json::Value;

use crate::fields::{self, non_empty, Row, RowError, RowResult};
use crate::read::{self, Record};
use crate::{hh, Message, PreferenceFormat, PreferencePair, Result, Role};

pub(crate) fn detect(path: &Path, records: &[Record]) -> Result<PreferenceFormat> {
    let first = read::first_object(records).ok_or_else(|| read::file_error(path, "no JSON object to detect the preference format from"))?;
    let chosen = first.get("chosen");
    if first.contains_key("conversations") && chosen.is_some() {
        Ok(PreferenceFormat::ShareGpt)
    } else if first.contains_key("prompt") && chosen.is_some() {
        Ok(PreferenceFormat::PromptChosenRejected)
    } else if chosen.and_then(Value::as_str).is_some_and(hh::is_transcript) {
        Ok(PreferenceFormat::HhRlhf)
    } else if chosen.is_some_and(Value::is_array) {
        // Full conversations without a separate prompt: the prompt is their shared prefix.
        Ok(PreferenceFormat::PromptChosenRejected)
    } else {
        let found: Vec<&str> = first.keys().map(String::as_str).collect();
        let message = format!(
            "cannot detect the preference format: the first record has fields {found:?}, expected prompt/chosen/rejected, \
             HH-RLHF chosen/rejected transcripts, or conversations/chosen/rejected"
        );
        Err(read::file_error(path, message))
    }
}

pub(crate) fn parse(format: PreferenceFormat, row: &Row) -> RowResult<PreferencePair> {
    match format {
        // Auto is resolved by `detect` before any row is parsed.
        PreferenceFormat::PromptChosenRejected | PreferenceFormat::Auto => prompt_chosen_rejected(row),
        PreferenceFormat::HhRlhf => checked(hh::pair(row)?, "chosen"),
        PreferenceFormat::ShareGpt => sharegpt(row),
    }
}

fn prompt_chosen_rejected(row: &Row) -> RowResult<PreferencePair> {
    let prompt = match row.get("prompt") {
        Some(Value::String(text)) => vec![Message::new(Role::User, non_empty(text, "prompt")?)],
        Some(list @ Value::Array(_)) => fields::messages(list, "prompt")?,
        Some(_) => return Err(RowError::field("prompt", "expected a string or a list of messages")),
        None => implied_prompt(row)?,
    };
    let chosen = response(row, "chosen", &prompt)?;
    let rejected = response(row, "rejected", &prompt)?;
    checked(PreferencePair { prompt, chosen, rejected }, "prompt")
}

/// Without a `prompt` field, `chosen` must be a full conversation: all but its last message.
fn implied_prompt(row: &Row) -> RowResult<Vec<Message>> {
    let chosen = fields::required(row, "chosen")?;
    if !chosen.is_array() {
        return Err(RowError::field("prompt", "missing"));
    }
    let mut conversation = fields::messages(chosen, "chosen")?;
    conversation.pop();
    Ok(conversation)
}

/// `conversations` is the prompt; `chosen` and `rejected` are single assistant messages.
fn sharegpt(row: &Row) -> RowResult<PreferencePair> {
    let conversation = fields::messages(fields::required(row, "conversations")?, "conversations")?;
    let prompt = fields::with_system(row, conversation)?;
    let chosen = response(row, "chosen", &prompt)?;
    let rejected = response(row, "rejected", &prompt)?;
    checked(PreferencePair { prompt, chosen, rejected }, "conversations")
}

/// A response given as a string, one message, or a conversation that starts with the prompt
/// (UltraFeedback binarized): what remains after the prompt must be one assistant message.
fn response(row: &Row, field: &str, prompt: &[Message]) -> RowResult<String> {
    let value = fields::required(row, field)?;
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Object(_) => only_assistant(&[fields::message(value, field)?], field)?,
        Value::Array(_) => {
            let conversation = fields::messages(value, field)?;
            only_assistant(conversation.strip_prefix(prompt).unwrap_or(&conversation), field)?
        }
        _ => return Err(RowError::field(field, "expected a string, a message or a list of messages")),
    };
    non_empty(&text, field)?;
    Ok(text)
}

fn only_assistant(messages: &[Message], field: &str) -> RowResult<String> {
    match messages {
        [message] if message.role == Role::Assistant => Ok(message.content.clone()),
        _ => Err(RowError::field(field, "expected a single assistant response")),
    }
}

/// The prompt must hold a user turn and end with one; no prompt turn may be empty.
fn checked(pair: PreferencePair, prompt_field: &str) -> RowResult<PreferencePair> {
    fields::require_user(&pair.prompt, prompt_field)?;
    if pair.prompt.last().is_some_and(|m| m.role != Role::User) {
        return Err(RowError::field(prompt_field, "the prompt must end with a user turn"));
    }
    if pair.prompt.iter().any(|m| m.content.trim().is_empty()) {
        return Err(RowError::field(prompt_field, "the prompt has an empty turn"));
    }
    Ok(pair)
}
