//! Turning conversations into prompt text: the model's own Jinja chat template when it has one,
//! built-in ChatML and Gemma turn formats, and the paper's base-model prompt
//! (the question followed by "Response:") for models without a template.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Message { role: role.into(), content: content.into() }
    }
    pub fn user(content: &str) -> Self {
        Self::new("user", content)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ChatFormat {
    /// A Hugging Face Jinja chat template, with the model's special tokens.
    Template { source: String, bos_token: String, eos_token: String },
    /// `<|im_start|>role\n...<|im_end|>\n` without any default system turn.
    ChatMl,
    /// `<start_of_turn>user\n...<end_of_turn>\n<start_of_turn>model\n`.
    GemmaTurns,
    /// Base models: the user text followed by "\nResponse:" (the paper's prompt).
    Base,
}

/// The Gemma turn format as a Jinja template, written into saved Gemma checkpoints. As in Gemma's
/// own template, there is no system turn: a system message is prepended to the first user turn.
pub const GEMMA_TURNS_TEMPLATE: &str = concat!(
    "{{ bos_token }}",
    "{% if messages[0]['role'] == 'system' %}{% set prefix = messages[0]['content'] | trim ~ '\n\n' %}{% set turns = messages[1:] %}",
    "{% else %}{% set prefix = '' %}{% set turns = messages %}{% endif %}",
    "{% for m in turns %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}",
    "<start_of_turn>{{ role }}\n{{ prefix if loop.first else '' }}{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}",
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
);

impl ChatFormat {
    /// Renders the conversation; with `add_generation_prompt` the text ends where the
    /// assistant's answer begins.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        match self {
            ChatFormat::Template { source, bos_token, eos_token } => render_jinja(source, messages, add_generation_prompt, bos_token, eos_token),
            ChatFormat::ChatMl => {
                let mut s: String = messages.iter().map(|m| format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content)).collect();
                if add_generation_prompt {
                    s.push_str("<|im_start|>assistant\n");
                }
                Ok(s)
            }
            ChatFormat::GemmaTurns => render_jinja(GEMMA_TURNS_TEMPLATE, messages, add_generation_prompt, "", ""),
            ChatFormat::Base => {
                let mut s = String::new();
                for m in messages {
                    match m.role.as_str() {
                        "assistant" => s.push_str(&format!("\nResponse: {}\n\n", m.content)),
                        _ => s.push_str(&m.content),
                    }
                }
                if add_generation_prompt {
                    s.push_str("\nResponse:");
                }
                Ok(s)
            }
        }
    }

    /// The text that ends an assistant turn (counted as response tokens, as TRL does).
    pub fn end_of_turn(&self) -> &str {
        match self {
            ChatFormat::ChatMl => "<|im_end|>\n",
            ChatFormat::GemmaTurns => "<end_of_turn>\n",
            ChatFormat::Base => "",
            ChatFormat::Template { source, eos_token, .. } => {
                if source.contains("<|im_end|>") {
                    "<|im_end|>\n"
                } else if source.contains("<end_of_turn>") {
                    "<end_of_turn>\n"
                } else {
                    eos_token
                }
            }
        }
    }

    /// The Jinja source to save with a checkpoint, if the format has one.
    pub fn template_source(&self) -> Option<String> {
        match self {
            ChatFormat::Template { source, .. } => Some(source.clone()),
            ChatFormat::GemmaTurns => Some(GEMMA_TURNS_TEMPLATE.to_string()),
            ChatFormat::ChatMl => Some("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}".to_string()),
            ChatFormat::Base => None,
        }
    }
}

fn render_jinja(source: &str, messages: &[Message], add_generation_prompt: bool, bos: &str, eos: &str) -> Result<String> {
    let mut env = minijinja::Environment::new();
    minijinja_contrib::add_to_environment(&mut env);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
        Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
    });
    env.add_template("chat", source).map_err(|e| Error::ChatTemplate(format!("cannot parse: {e}")))?;
    let tmpl = env.get_template("chat").expect("just added");
    tmpl.render(minijinja::context! {
        messages => messages,
        add_generation_prompt => add_generation_prompt,
        bos_token => bos,
        eos_token => eos,
    })
    .map_err(|e| Error::ChatTemplate(format!("cannot render: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convo() -> Vec<Message> {
        vec![Message::new("system", "Be brief."), Message::user("Is it fair?"), Message::new("assistant", " It depends. "), Message::user("Why?")]
    }

    #[test]
    fn gemma_turns_fold_the_system_message_into_the_first_user_turn() {
        let text = ChatFormat::GemmaTurns.render(&convo(), true).unwrap();
        assert_eq!(text, "<start_of_turn>user\nBe brief.\n\nIs it fair?<end_of_turn>\n<start_of_turn>model\nIt depends.<end_of_turn>\n<start_of_turn>user\nWhy?<end_of_turn>\n<start_of_turn>model\n");
        let plain = ChatFormat::GemmaTurns.render(&[Message::user("Hi")], false).unwrap();
        assert_eq!(plain, "<start_of_turn>user\nHi<end_of_turn>\n");
    }

    #[test]
    fn chatml_and_base_prompts() {
        let text = ChatFormat::ChatMl.render(&convo()[1..2], true).unwrap();
        assert_eq!(text, "<|im_start|>user\nIs it fair?<|im_end|>\n<|im_start|>assistant\n");
        // The paper's base-model prompt: the question followed by "Response:".
        assert_eq!(ChatFormat::Base.render(&[Message::user("Is it fair?")], true).unwrap(), "Is it fair?\nResponse:");
    }

    #[test]
    fn built_in_formats_round_trip_through_their_saved_templates() {
        for f in [ChatFormat::ChatMl, ChatFormat::GemmaTurns] {
            let saved = ChatFormat::Template { source: f.template_source().unwrap(), bos_token: String::new(), eos_token: String::new() };
            assert_eq!(saved.render(&convo(), true).unwrap(), f.render(&convo(), true).unwrap());
        }
    }
}
