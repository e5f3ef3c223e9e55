//! Value-gap preference sets (the paper's synthetic design): per prompt, one answer that supports
//! the category's topic and one that opposes it. A label setup turns them into preference pairs:
//! support-aligned (the supporting answer is chosen) or oppose-aligned (reversed).
//! Fields: `prompt`, `support`, `oppose`, and optionally `id`, `category`, `topic`.

use std::path::Path;

use crate::fields::{non_empty, optional_string, string, Row, RowResult};
use crate::{read, Loaded, Message, OnMalformed, PreferencePair, Result, Role};

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ValueGapItem {
    pub id: Option<String>,
    pub category: Option<String>,
    pub topic: Option<String>,
    pub prompt: String,
    pub support: String,
    pub oppose: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum LabelSetup {
    /// The supporting answer is chosen.
    Support,
    /// The opposing answer is chosen.
    Oppose,
}

fn parse(row: &Row) -> RowResult<ValueGapItem> {
    let text = |f: &str| -> RowResult<String> { Ok(non_empty(string(row, f)?, f)?.to_string()) };
    let opt = |f: &str| -> RowResult<Option<String>> { Ok(optional_string(row, f)?.map(str::to_string)) };
    Ok(ValueGapItem {
        id: opt("id")?,
        category: opt("category")?,
        topic: opt("topic")?,
        prompt: text("prompt")?,
        support: text("support")?,
        oppose: text("oppose")?,
    })
}

/// True when the first record has the value-gap fields.
pub fn is_value_gap(path: &Path) -> Result<bool> {
    let records = read::records(path)?;
    Ok(read::first_object(&records).is_some_and(|o| o.contains_key("prompt") && o.contains_key("support") && o.contains_key("oppose")))
}

pub fn load_value_gap(path: &Path, on_malformed: OnMalformed) -> Result<Loaded<ValueGapItem>> {
    read::collect(path, read::records(path)?, on_malformed, parse)
}

impl ValueGapItem {
    pub fn pair(&self, setup: LabelSetup) -> PreferencePair {
        let (chosen, rejected) = match setup {
            LabelSetup::Support => (&self.support, &self.oppose),
            LabelSetup::Oppose => (&self.oppose, &self.support),
        };
        PreferencePair { prompt: vec![Message::new(Role::User, &self.prompt)], chosen: chosen.clone(), rejected: rejected.clone() }
    }
}
