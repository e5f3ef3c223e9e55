//! From chat data to token ids. A conversation is rendered with the model's chat template and
//! cut into segments at the turn boundaries; assistant segments (the answer and its end-of-turn
//! marker, as TRL counts them) carry the loss. Tokenizing segment by segment keeps the loss mask
//! exact whatever the tokenizer does across a boundary.

use crate::{Result, TrainError};
use valuedrift_data::{PreferencePair, Role, SftExample};
use valuedrift_engine::{ChatFormat, Family, LanguageModel, Message};

pub fn engine_message(m: &valuedrift_data::Message) -> Message {
    let role = match m.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    };
    Message::new(role, &m.content)
}

/// The chat format to train with: the model's own, or for a base model without a template the
/// family's usual one (Gemma turns, else ChatML), which is then saved with every checkpoint.
pub fn training_chat(lm: &LanguageModel) -> ChatFormat {
    match (&lm.chat, lm.config().family) {
        (ChatFormat::Base, Family::Gemma3) => ChatFormat::GemmaTurns,
        (ChatFormat::Base, _) => ChatFormat::ChatMl,
        (chat, _) => chat.clone(),
    }
}

/// Token ids of a conversation and, per token, whether it is an assistant token (trained on).
#[derive(Clone, Debug, PartialEq)]
pub struct SftTokens {
    pub ids: Vec<u32>,
    pub targets: Vec<bool>,
}

impl SftTokens {
    pub fn target_count(&self) -> usize {
        self.targets.iter().filter(|&&t| t).count()
    }
}

fn render(chat: &ChatFormat, msgs: &[Message], gen_prompt: bool) -> Result<String> {
    Ok(chat.render(msgs, gen_prompt)?)
}

/// Tokenizes a conversation for SFT. Text is cut at each assistant turn's start (the rendering
/// of the turns before it with the generation prompt) and end (the rendering through it).
/// Sequences longer than `max_len` are cut at `max_len`; None if nothing trainable is left.
pub fn sft_tokens(lm: &LanguageModel, chat: &ChatFormat, example: &SftExample, max_len: usize) -> Result<Option<SftTokens>> {
    let msgs: Vec<Message> = example.messages.iter().map(engine_message).collect();
    let full = render(chat, &msgs, false)?;
    // (byte offset, is the text up to here from an assistant turn)
    let mut cuts: Vec<(usize, bool)> = Vec::new();
    for (k, m) in msgs.iter().enumerate().filter(|(_, m)| m.role == "assistant") {
        let start = render(chat, &msgs[..k], true)?;
        let end = render(chat, &msgs[..=k], false)?;
        if !full.starts_with(&start) || !full.starts_with(&end) || end.len() < start.len() {
            return Err(TrainError::Input(format!(
                "the chat template does not render turn {k} ({}) as a prefix of the whole conversation; cannot mark the answer tokens",
                m.role
            )));
        }
        cuts.push((start.len(), false));
        cuts.push((end.len(), true));
    }
    cuts.push((full.len(), false));
    let (mut ids, mut targets, mut at) = (Vec::new(), Vec::new(), 0usize);
    for (cut, is_answer) in cuts {
        if cut <= at {
            continue;
        }
        let piece = &full[at..cut];
        let toks = if at == 0 { lm.encode_prompt_text(piece)? } else { lm.tokenizer.encode(piece, false)? };
        targets.extend(std::iter::repeat_n(is_answer, toks.len()));
        ids.extend(toks);
        at = cut;
    }
    ids.truncate(max_len);
    targets.truncate(max_len);
    if let Some(first) = targets.first_mut() {
        *first = false;
    }
    Ok(targets.contains(&true).then_some(SftTokens { ids, targets }))
}

/// Prompt ids and the chosen and rejected answer ids (each with the end-of-turn marker, as TRL
/// builds them for conversational data).
#[derive(Clone, Debug, PartialEq)]
pub struct PairTokens {
    pub prompt: Vec<u32>,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
}

pub fn pair_tokens(lm: &LanguageModel, chat: &ChatFormat, pair: &PreferencePair, max_len: usize) -> Result<PairTokens> {
    let prompt_msgs: Vec<Message> = pair.prompt.iter().map(engine_message).collect();
    let prompt_text = render(chat, &prompt_msgs, true)?;
    let prompt = lm.encode_prompt_text(&prompt_text)?;
    let answer = |text: &str| -> Result<Vec<u32>> {
        let mut msgs = prompt_msgs.clone();
        msgs.push(Message::new("assistant", text));
        let full = render(chat, &msgs, false)?;
        let rest = full
            .strip_prefix(&prompt_text)
            .ok_or_else(|| TrainError::Input("the chat template does not render the prompt as a prefix of prompt + answer".into()))?;
        Ok(lm.tokenizer.encode(rest, false)?)
    };
    let (mut chosen, mut rejected) = (answer(&pair.chosen)?, answer(&pair.rejected)?);
    // Like TRL: keep the prompt's end (the question) and cut answers to fit.
    let mut prompt = prompt;
    let longest = chosen.len().max(rejected.len());
    if prompt.len() + longest > max_len {
        let keep_prompt = prompt.len().min(max_len / 2).max(max_len.saturating_sub(longest));
        prompt.drain(..prompt.len() - keep_prompt);
        let room = max_len.saturating_sub(prompt.len()).max(1);
        chosen.truncate(room);
        rejected.truncate(room);
    }
    Ok(PairTokens { prompt, chosen, rejected })
}
