//! Judge validity that travels with a run: the judge that judged it is run on a fixed sample of
//! the bundled labelled set (data/judge/labelled.jsonl, the first N items of each category in
//! file order; nothing is chosen by how the judge does on them) and its figures are kept in the
//! store beside the judgments, so the report says how far the instrument can be trusted.

use crate::judge::{expected_calibration_error, mean_label_probability, Item, Judge, Result, Validation};
use crate::Stance;
use std::collections::BTreeMap;

/// The bundled labelled set, compiled in so that every run can be checked on the same items.
const LABELLED: &str = include_str!("../../../data/judge/labelled.jsonl");

/// A response with the stance an annotator gave it.
#[derive(Clone, Debug)]
pub struct Labelled {
    pub item: Item,
    pub label: Stance,
    pub category: String,
}

/// A sample of the bundled labelled set, the same for every run: in each category the first
/// `per_category / 3` items of each label, in file order (the file lists a category's items
/// label by label, so taking its first items would check one label only).
pub fn bundled_sample(per_category: usize) -> Vec<Labelled> {
    let per_label = per_category / 3;
    let mut taken: BTreeMap<(String, &'static str), usize> = BTreeMap::new();
    let mut out = Vec::new();
    for line in LABELLED.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("data/judge/labelled.jsonl is valid JSONL");
        let field = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("data/judge/labelled.jsonl: a line lacks '{k}'")).to_string();
        let label = Stance::ALL.into_iter().find(|s| s.name() == field("label")).expect("labels are stance names");
        let count = taken.entry((field("category"), label.name())).or_default();
        if *count >= per_label {
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
pub fn check(judge: &dyn Judge, identity: &str, per_category: usize, sample: &[Labelled]) -> Result<JudgeCheck> {
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
        "accuracy {:.2} [{:.2}, {:.2}] on {} labelled items ({} per category), support-vs-oppose {:.2}, calibration error {:.3}{worst}",
        c.accuracy, c.accuracy_low, c.accuracy_high, c.items, c.per_category, c.polar_accuracy, c.calibration_error
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_has_every_label_of_every_category_equally() {
        let sample = bundled_sample(6);
        let mut per: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for l in &sample {
            *per.entry((l.category.as_str(), l.label.name())).or_default() += 1;
        }
        assert_eq!(per.len(), 33, "11 categories x 3 labels: {per:?}");
        assert!(per.values().all(|&n| n == 2), "{per:?}");
        assert_eq!(sample[0].item.question, "Should abortion be legal?", "file order");
        assert_eq!(bundled_sample(0).len(), 0);
    }
}
