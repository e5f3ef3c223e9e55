//! Judge validity that travels with a run: the judge that judged it is run on fixed samples of
//! the two bundled labelled sets (nothing is chosen by how the judge does on them) and its
//! figures are kept in the store beside the judgments, so the report says how far the instrument
//! can be trusted: on clean hand-written answers (data/judge/labelled.jsonl) and on answers the
//! bundled models really wrote (data/judge/real-samples.jsonl, labelled by hand).

use crate::judge::{expected_calibration_error, mean_label_probability, Item, Judge, Result, Validation};
use crate::Stance;
use std::collections::BTreeMap;

/// The bundled labelled sets, compiled in so that every run can be checked on the same items.
const LABELLED: &str = include_str!("../../../data/judge/labelled.jsonl");
const REAL_SAMPLES: &str = include_str!("../../../data/judge/real-samples.jsonl");

/// Which bundled labelled set a check ran on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelledSet {
    /// data/judge/labelled.jsonl: hand-written answers, 110 per stance.
    HandWritten,
    /// data/judge/real-samples.jsonl: the bundled models' own sampled answers, labelled by hand.
    RealSamples,
}

impl LabelledSet {
    pub const ALL: [LabelledSet; 2] = [LabelledSet::HandWritten, LabelledSet::RealSamples];

    /// The name the store keys checks by.
    pub fn name(self) -> &'static str {
        match self {
            LabelledSet::HandWritten => "hand-written",
            LabelledSet::RealSamples => "real-samples",
        }
    }

    pub fn file(self) -> &'static str {
        match self {
            LabelledSet::HandWritten => "data/judge/labelled.jsonl",
            LabelledSet::RealSamples => "data/judge/real-samples.jsonl",
        }
    }

    /// The same sample for every run: per category, `per_category` items. Hand-written: the first
    /// `per_category / 3` of each label in file order (the file lists a category label by label).
    /// Real samples: the first `per_category` in file order, labels as the models' answers fall.
    pub fn sample(self, per_category: usize) -> Vec<Labelled> {
        match self {
            LabelledSet::HandWritten => first_per_group(LABELLED, self.file(), per_category / 3, true),
            LabelledSet::RealSamples => first_per_group(REAL_SAMPLES, self.file(), per_category, false),
        }
    }
}

/// A judge check's size per category must give both sets whole samples: a multiple of 3 (one
/// third per label of the hand-written set) and at most the 12 answers per category of the real
/// samples. 0 turns the check off.
pub fn check_size(per_category: usize) -> std::result::Result<usize, String> {
    if !per_category.is_multiple_of(3) || per_category > 12 {
        return Err(format!("{per_category} items per category: expected 0, 3, 6, 9 or 12 (a third per stance of the hand-written set, at most the 12 real samples per category)"));
    }
    Ok(per_category)
}

fn hand_written() -> LabelledSet {
    LabelledSet::HandWritten
}

/// A response with the stance an annotator gave it.
#[derive(Clone, Debug)]
pub struct Labelled {
    pub item: Item,
    pub label: Stance,
    pub category: String,
}

/// The first `take` items of each category (of each (category, label) with `by_label`), in
/// file order.
fn first_per_group(text: &'static str, file: &str, take: usize, by_label: bool) -> Vec<Labelled> {
    let mut taken: BTreeMap<(String, &'static str), usize> = BTreeMap::new();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{file} is valid JSONL: {e}"));
        let field = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("{file}: a line lacks '{k}'")).to_string();
        let label = Stance::ALL.into_iter().find(|s| s.name() == field("label")).unwrap_or_else(|| panic!("{file}: labels are stance names"));
        let count = taken.entry((field("category"), if by_label { label.name() } else { "" })).or_default();
        if *count >= take {
            continue;
        }
        *count += 1;
        out.push(Labelled {
            item: Item { question: field("question"), response: field("response"), topic: field("topic") },
            label,
            category: field("category"),
        });
    }
    out
}

/// A judge's figures on a labelled sample.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JudgeCheck {
    /// The judge as the run names it (model file, or remote model and log-prob mode).
    pub judge: String,
    /// Checks kept before there were two sets ran on the hand-written one.
    #[serde(default = "hand_written")]
    pub set: LabelledSet,
    pub items: usize,
    pub per_category: usize,
    /// Three-way accuracy (most probable stance against the label) with its 95% Wilson interval.
    pub accuracy: f64,
    pub accuracy_low: f64,
    pub accuracy_high: f64,
    /// Support against oppose, on items labelled one of the two.
    pub polar_accuracy: f64,
    /// Expected calibration error of the most probable stance (10 bins).
    pub calibration_error: f64,
    /// Mean probability given to the labelled stance.
    pub mean_label_probability: f64,
    /// Three-way accuracy per category.
    pub by_category: BTreeMap<String, f64>,
}

/// Judges `sample` and summarizes how often the judge agrees with the labels.
pub fn check(judge: &dyn Judge, identity: &str, set: LabelledSet, per_category: usize) -> Result<JudgeCheck> {
    let sample = set.sample(per_category);
    if sample.is_empty() {
        return Err(crate::judge::JudgeError::Input(format!("no items of {} at {per_category} per category", set.file())));
    }
    let items: Vec<Item> = sample.iter().map(|l| l.item.clone()).collect();
    let judged = judge.judge(&items)?;
    let pairs: Vec<(Stance, [f64; 3])> = sample.iter().zip(&judged).map(|(l, j)| (l.label, j.p)).collect();
    let mut overall = Validation::default();
    let mut by_category: BTreeMap<String, Validation> = BTreeMap::new();
    for (l, (label, p)) in sample.iter().zip(&pairs) {
        overall.add(*label, p);
        by_category.entry(l.category.clone()).or_default().add(*label, p);
    }
    let (accuracy_low, accuracy_high) = overall.accuracy_interval();
    Ok(JudgeCheck {
        judge: identity.to_string(),
        set,
        items: sample.len(),
        per_category,
        accuracy: overall.accuracy(),
        accuracy_low,
        accuracy_high,
        polar_accuracy: overall.polar_accuracy(&pairs),
        calibration_error: expected_calibration_error(&pairs),
        mean_label_probability: mean_label_probability(&pairs),
        by_category: by_category.into_iter().map(|(c, v)| (c, v.accuracy())).collect(),
    })
}

/// One line for tables and logs, e.g. "accuracy 0.76 [0.65, 0.84] on 66 labelled items".
pub fn summary(c: &JudgeCheck) -> String {
    let worst = c.by_category.iter().min_by(|a, b| a.1.total_cmp(b.1)).map(|(k, v)| format!("; weakest category {k} {v:.2}")).unwrap_or_default();
    format!(
        "accuracy {:.2} [{:.2}, {:.2}] on {} items of {} ({} per category), support-vs-oppose {:.2}, calibration error {:.3}{worst}",
        c.accuracy,
        c.accuracy_low,
        c.accuracy_high,
        c.items,
        c.set.file(),
        c.per_category,
        c.polar_accuracy,
        c.calibration_error
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hand_written_sample_has_every_label_of_every_category_equally() {
        let sample = LabelledSet::HandWritten.sample(6);
        let mut per: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for l in &sample {
            *per.entry((l.category.as_str(), l.label.name())).or_default() += 1;
        }
        assert_eq!(per.len(), 33, "11 categories x 3 labels: {per:?}");
        assert!(per.values().all(|&n| n == 2), "{per:?}");
        assert_eq!(sample[0].item.question, "Should abortion be legal?", "file order");
        assert_eq!(LabelledSet::HandWritten.sample(0).len(), 0);
    }

    #[test]
    fn a_check_size_gives_both_sets_whole_samples() {
        for n in [0, 3, 6, 9, 12] {
            assert_eq!(check_size(n), Ok(n));
            assert_eq!(LabelledSet::RealSamples.sample(n).len(), 11 * n);
            assert_eq!(LabelledSet::HandWritten.sample(n).len(), 11 * n);
        }
        for n in [1, 2, 4, 15] {
            assert!(check_size(n).unwrap_err().contains("expected 0, 3, 6, 9 or 12"), "{n}");
        }
    }

    #[test]
    fn the_real_samples_cover_every_category_with_every_label_somewhere() {
        let all = LabelledSet::RealSamples.sample(usize::MAX);
        let categories: std::collections::BTreeSet<&str> = all.iter().map(|l| l.category.as_str()).collect();
        assert_eq!(categories.len(), 11, "{categories:?}");
        for s in Stance::ALL {
            assert!(all.iter().filter(|l| l.label == s).count() >= 5, "at least 5 {} items", s.name());
        }
        let sample = LabelledSet::RealSamples.sample(6);
        assert_eq!(sample.len(), 66);
        assert_eq!(sample[0].item.question, all[0].item.question, "file order");
    }
}
