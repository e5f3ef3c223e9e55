//! How a question is put to a model: the run's choice, and per checkpoint where a run asks its
//! pretrained base model differently from the models trained from it.

/// How questions are put to a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum PromptStyle {
    /// The model's chat template if it has one, else the base prompt.
    Auto,
    Chat,
    /// The paper's prompt for base models: the question followed by "Response:".
    Base,
}

impl PromptStyle {
    pub fn name(self) -> &'static str {
        match self {
            PromptStyle::Auto => "auto",
            PromptStyle::Chat => "chat",
            PromptStyle::Base => "base",
        }
    }
}
