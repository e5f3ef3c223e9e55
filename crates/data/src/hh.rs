//! Anthropic HH-RLHF rows: `chosen` and `rejected` are whole transcripts
//! ("\n\nHuman: ...\n\nAssistant: ..."). The turns before the last "\n\nAssistant:" are the
//! prompt, which both transcripts must share; the final assistant turn is the response.

use crate::fields::{non_empty, string, Row, RowError, RowResult};
use crate::{Message, PreferencePair, Role};

/// Turn markers. Only the "\n\n" forms start a turn: the data also has "Human:" inside turns.
const MARKERS: [(&str, Role); 2] = [("\n\nHuman:", Role::User), ("\n\nAssistant:", Role::Assistant)];

pub(crate) fn is_transcript(text: &str) -> bool {
    text.trim_start().starts_with("Human:")
}

pub(crate) fn pair(row: &Row) -> RowResult<PreferencePair> {
    let (prompt, chosen) = prompt_and_response(row, "chosen")?;
    let (rejected_prompt, rejected) = prompt_and_response(row, "rejected")?;
    if rejected_prompt != prompt {
        return Err(RowError::field("rejected", "its prompt turns differ from those of 'chosen'"));
    }
    Ok(PreferencePair { prompt, chosen, rejected })
}

fn prompt_and_response(row: &Row, field: &str) -> RowResult<(Vec<Message>, String)> {
    let mut turns = turns(string(row, field)?).ok_or_else(|| RowError::field(field, "expected a transcript starting with 'Human:'"))?;
    match turns.pop() {
        Some(last) if last.role == Role::Assistant => {
            non_empty(&last.content, field)?;
            Ok((turns, last.content))
        }
        _ => Err(RowError::field(field, "the transcript must end with an Assistant turn")),
    }
}

/// The transcript's turns, trimmed (the format puts a space after each marker); `None` when it
/// does not start with a marker.
fn turns(transcript: &str) -> Option<Vec<Message>> {
    let text = format!("\n\n{}", transcript.trim_start());
    let (0, mut role, marker_len) = next_marker(&text)? else { return None };
    let mut rest = &text[marker_len..];
    let mut turns = Vec::new();
    loop {
        let next = next_marker(rest);
        let end = next.map_or(rest.len(), |(at, ..)| at);
        turns.push(Message::new(role, rest[..end].trim()));
        let Some((at, next_role, len)) = next else { return Some(turns) };
        (role, rest) = (next_role, &rest[at + len..]);
    }
}

/// The earliest turn marker in `text`: its offset, role and length.
fn next_marker(text: &str) -> Option<(usize, Role, usize)> {
    MARKERS.iter().filter_map(|&(marker, role)| text.find(marker).map(|at| (at, role, marker.len()))).min_by_key(|&(at, ..)| at)
}
