//! Scores a curation of prompts whose categories are known (the `label` field): how well the
//! clusters recover the categories and how many off-topic prompts the selection and the value
//! filter drop.

use std::collections::{BTreeMap, BTreeSet};

/// One labelled prompt's outcome.
pub struct Outcome<'a> {
    pub label: &'a str,
    pub cluster: usize,
    /// In a kept cluster and passed by the value filter.
    pub kept: bool,
}

#[derive(Debug, serde::Serialize)]
pub struct KnownScore {
    pub labelled: usize,
    pub categories: usize,
    /// Over the on-topic prompts: the share in their cluster's most common category.
    pub purity: f64,
    /// Categories that are the most common label of at least one cluster (off-topic counted).
    pub categories_recovered: usize,
    pub recovered: Vec<String>,
    /// Adjusted Rand index, on-topic prompts only, and with off-topic as one more category.
    pub ari_on_topic: f64,
    pub ari_all: f64,
    pub off_topic: usize,
    pub off_topic_dropped: f64,
    pub on_topic_kept: f64,
}

pub fn score(outcomes: &[Outcome], off_topic_label: &str) -> KnownScore {
    let on: Vec<&Outcome> = outcomes.iter().filter(|o| o.label != off_topic_label).collect();
    let off: Vec<&Outcome> = outcomes.iter().filter(|o| o.label == off_topic_label).collect();
    let categories: BTreeSet<&str> = on.iter().map(|o| o.label).collect();
    let recovered: Vec<String> = majority_labels(outcomes).into_iter().filter(|l| categories.contains(l.as_str())).collect();
    KnownScore {
        labelled: outcomes.len(),
        categories: categories.len(),
        purity: purity(&on),
        categories_recovered: recovered.len(),
        recovered,
        ari_on_topic: adjusted_rand(&on),
        ari_all: adjusted_rand(&outcomes.iter().collect::<Vec<_>>()),
        off_topic: off.len(),
        off_topic_dropped: share(&off, |o| !o.kept),
        on_topic_kept: share(&on, |o| o.kept),
    }
}

fn share(items: &[&Outcome], pred: impl Fn(&Outcome) -> bool) -> f64 {
    if items.is_empty() {
        return f64::NAN;
    }
    items.iter().filter(|o| pred(o)).count() as f64 / items.len() as f64
}

/// Counts per (cluster, label).
fn table<'a>(items: &[&Outcome<'a>]) -> BTreeMap<usize, BTreeMap<&'a str, usize>> {
    let mut t: BTreeMap<usize, BTreeMap<&str, usize>> = BTreeMap::new();
    for o in items {
        *t.entry(o.cluster).or_default().entry(o.label).or_default() += 1;
    }
    t
}

fn purity(items: &[&Outcome]) -> f64 {
    let best: usize = table(items).values().map(|row| row.values().copied().max().unwrap_or(0)).sum();
    best as f64 / items.len().max(1) as f64
}

/// The most common label of every cluster (ties: the first label alphabetically).
fn majority_labels(outcomes: &[Outcome]) -> BTreeSet<String> {
    let all: Vec<&Outcome> = outcomes.iter().collect();
    table(&all)
        .values()
        .filter_map(|row| {
            row.iter().fold(None, |best: Option<(&str, usize)>, (l, &n)| if best.is_none_or(|b| n > b.1) { Some((l, n)) } else { best })
        })
        .map(|(l, _)| l.to_string())
        .collect()
}

fn pairs(n: usize) -> f64 {
    (n * n.saturating_sub(1)) as f64 / 2.0
}

/// Hubert and Arabie's adjusted Rand index of the clusters against the labels.
pub fn adjusted_rand(items: &[&Outcome]) -> f64 {
    let t = table(items);
    let mut by_label: BTreeMap<&str, usize> = BTreeMap::new();
    let mut index = 0.0;
    for row in t.values() {
        for (l, &n) in row {
            index += pairs(n);
            *by_label.entry(l).or_default() += n;
        }
    }
    let sum_clusters: f64 = t.values().map(|row| pairs(row.values().sum())).sum();
    let sum_labels: f64 = by_label.values().map(|&n| pairs(n)).sum();
    let expected = sum_clusters * sum_labels / pairs(items.len());
    let max = (sum_clusters + sum_labels) / 2.0;
    if max == expected {
        return 1.0;
    }
    (index - expected) / (max - expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcomes<'a>(labels: &[&'a str], clusters: &[usize]) -> Vec<Outcome<'a>> {
        labels.iter().zip(clusters).map(|(&label, &cluster)| Outcome { label, cluster, kept: true }).collect()
    }

    #[test]
    fn adjusted_rand_matches_scikit_learn() {
        // sklearn.metrics.adjusted_rand_score([0,0,1,1], [0,0,1,2]) = 0.5714285714285715
        let o = outcomes(&["a", "a", "b", "b"], &[0, 0, 1, 2]);
        assert!((adjusted_rand(&o.iter().collect::<Vec<_>>()) - 0.5714285714285715).abs() < 1e-12);
        // adjusted_rand_score([0,0,0,1,1,1], [0,0,1,1,2,2]) = 0.24242424242424243
        let o = outcomes(&["a", "a", "a", "b", "b", "b"], &[0, 0, 1, 1, 2, 2]);
        assert!((adjusted_rand(&o.iter().collect::<Vec<_>>()) - 0.24242424242424243).abs() < 1e-12);
    }

    #[test]
    fn purity_and_recovery_count_majorities() {
        let o = outcomes(&["a", "a", "b", "b", "off", "off"], &[0, 0, 0, 1, 1, 2]);
        let s = score(&o, "off");
        assert!((s.purity - 3.0 / 4.0).abs() < 1e-12);
        // Cluster 1 ties b and off: b wins alphabetically; cluster 2 is off-topic.
        assert_eq!(s.recovered, ["a", "b"]);
        assert_eq!(s.off_topic, 2);
    }
}
