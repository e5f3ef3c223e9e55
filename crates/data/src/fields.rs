//! Reading fields out of a row, with errors that name the field: strings, roles and message
//! lists in either the `{role, content}` or the ShareGPT `{from, value}` shape.

use std::path::Path;

use serde_json::{Map, Value};

use crate::{Error, Location, Message, Role};

pub(crate) type Row = Map<String, Value>;

/// What is wrong with a row, before the file and location are known.
#[derive(Debug)]
pub(crate) struct RowError {
    field: Option<String>,
    message: String,
}

pub(crate) type RowResult<T> = Result<T, RowError>;

impl RowError {
    /// A problem with the row as a whole.
    pub fn row(message: impl Into<String>) -> Self {
        RowError { field: None, message: message.into() }
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        RowError { field: Some(field.into()), message: message.into() }
    }

    pub fn at(self, path: &Path, location: Location) -> Error {
        Error::Row { path: path.into(), location, field: self.field, message: self.message }
    }
}

/// The part of a row error after the location: "field 'output': expected a string".
pub(crate) fn describe(field: Option<&str>, message: &str) -> String {
    match field {
        Some(field) => format!("field '{field}': {message}"),
        None => message.to_string(),
    }
}

pub(crate) fn as_str<'a>(value: &'a Value, field: &str) -> RowResult<&'a str> {
    value.as_str().ok_or_else(|| RowError::field(field, "expected a string"))
}

pub(crate) fn required<'a>(row: &'a Row, field: &str) -> RowResult<&'a Value> {
    row.get(field).ok_or_else(|| RowError::field(field, "missing"))
}

pub(crate) fn string<'a>(row: &'a Row, field: &str) -> RowResult<&'a str> {
    as_str(required(row, field)?, field)
}

/// A string field that may be absent or null.
pub(crate) fn optional_string<'a>(row: &'a Row, field: &str) -> RowResult<Option<&'a str>> {
    match row.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => as_str(value, field).map(Some),
    }
}

pub(crate) fn non_empty<'a>(text: &'a str, field: &str) -> RowResult<&'a str> {
    if text.trim().is_empty() {
        return Err(RowError::field(field, "is empty"));
    }
    Ok(text)
}

/// Both vocabularies: OpenAI-style roles and ShareGPT's `from` values.
fn role(name: &str) -> Option<Role> {
    match name {
        "system" => Some(Role::System),
        "user" | "human" => Some(Role::User),
        "assistant" | "gpt" | "model" => Some(Role::Assistant),
        _ => None,
    }
}

/// One message: `{role, content}` or ShareGPT `{from, value}`.
pub(crate) fn message(value: &Value, field: &str) -> RowResult<Message> {
    let object = value.as_object().ok_or_else(|| RowError::field(field, "expected a message object"))?;
    let (role_key, content_key) = if object.contains_key("role") { ("role", "content") } else { ("from", "value") };
    let role_field = format!("{field}.{role_key}");
    let name = as_str(object.get(role_key).ok_or_else(|| RowError::field(field, "expected {role, content} or {from, value}"))?, &role_field)?;
    let role = role(name).ok_or_else(|| RowError::field(&role_field, format!("unknown role '{name}'")))?;
    let content_field = format!("{field}.{content_key}");
    let content = as_str(object.get(content_key).ok_or_else(|| RowError::field(&content_field, "missing"))?, &content_field)?;
    Ok(Message::new(role, content))
}

/// A list of messages in order. An empty system message means "no system prompt" and is
/// dropped; any other empty message is malformed. A system message may only come first.
pub(crate) fn messages(value: &Value, field: &str) -> RowResult<Vec<Message>> {
    let list = value.as_array().ok_or_else(|| RowError::field(field, "expected a list of messages"))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let item_field = format!("{field}[{i}]");
        let message = message(item, &item_field)?;
        if message.content.trim().is_empty() {
            if message.role == Role::System {
                continue;
            }
            return Err(RowError::field(item_field, "message is empty"));
        }
        if message.role == Role::System && !out.is_empty() {
            return Err(RowError::field(item_field, "a system message may only come first"));
        }
        out.push(message);
    }
    Ok(out)
}

/// Prepends a top-level `system` string (as ShareGPT files in LLaMA-Factory have) unless the
/// messages already start with one.
pub(crate) fn with_system(row: &Row, mut messages: Vec<Message>) -> RowResult<Vec<Message>> {
    let system = optional_string(row, "system")?.filter(|s| !s.trim().is_empty());
    if let Some(system) = system {
        if messages.first().is_none_or(|m| m.role != Role::System) {
            messages.insert(0, Message::new(Role::System, system));
        }
    }
    Ok(messages)
}

/// The row must have a user turn besides any system message.
pub(crate) fn require_user(messages: &[Message], field: &str) -> RowResult<()> {
    if !messages.iter().any(|m| m.role == Role::User) {
        return Err(RowError::field(field, "no user turn"));
    }
    Ok(())
}
