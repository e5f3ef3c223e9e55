//! The salient n-grams of each cluster by class-based TF-IDF (as BERTopic describes clusters):
//! a term's weight in a cluster is its share of the cluster's terms times
//! log(1 + A / f), where A is the mean count of terms per cluster and f the term's count over
//! all clusters. Terms are lowercase words and word pairs after dropping common function words.

use std::collections::{BTreeMap, HashMap, HashSet};

/// Common English function words, dropped before n-grams are formed.
const STOP_WORDS: &str = "a about above after again against all am an and any are as at be because been before being below \
between both but by can could did do does doing down during each few for from further had has have having he her here hers \
herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on once only or \
other our ours ourselves out over own same she should so some such than that the their theirs them themselves then there \
these they this those through to too under until up very was we were what when where which while who whom why will with \
would you your yours yourself yourselves also may might must shall us let get got ok okay hi hello please tell think like \
make give write one two im dont";

fn stop_words() -> HashSet<&'static str> {
    STOP_WORDS.split_whitespace().collect()
}

/// A text's terms: the kept words and the pairs of neighbouring kept words.
pub fn terms(text: &str, stop: &HashSet<&str>) -> Vec<String> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .map(|w| w.trim_matches('\''))
        .filter(|w| w.chars().count() > 1 && !w.chars().all(|c| c.is_ascii_digit()) && !stop.contains(w))
        .collect();
    let mut out: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    out.extend(words.windows(2).map(|p| format!("{} {}", p[0], p[1])));
    out
}

/// The `top` highest-weighted terms of each cluster (ties broken alphabetically), for texts
/// grouped by cluster index.
pub fn top_terms(texts_by_cluster: &[Vec<&str>], top: usize) -> Vec<Vec<String>> {
    let stop = stop_words();
    let counts: Vec<HashMap<String, f64>> = texts_by_cluster
        .iter()
        .map(|texts| {
            let mut c = HashMap::new();
            for t in texts.iter().flat_map(|t| terms(t, &stop)) {
                *c.entry(t).or_insert(0.0) += 1.0;
            }
            c
        })
        .collect();
    let mut overall: BTreeMap<&str, f64> = BTreeMap::new();
    for c in &counts {
        for (t, n) in c {
            *overall.entry(t.as_str()).or_insert(0.0) += n;
        }
    }
    let mean_terms = overall.values().sum::<f64>() / counts.len().max(1) as f64;
    counts
        .iter()
        .map(|c| {
            let total: f64 = c.values().sum::<f64>().max(1.0);
            let mut w: Vec<(&str, f64)> = c.iter().map(|(t, n)| (t.as_str(), n / total * (1.0 + mean_terms / overall[t.as_str()]).ln())).collect();
            w.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
            w.into_iter().take(top).map(|(t, _)| t.to_string()).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clusters_own_words_outrank_words_every_cluster_uses() {
        let a = vec!["Should the death penalty be abolished?", "Is the death penalty ever just?"];
        let b = vec!["Should abortion be legal?", "Is abortion ever just?"];
        let top = top_terms(&[a, b], 3);
        assert_eq!(top[0], ["death", "death penalty", "penalty"]);
        assert_eq!(top[1][0], "abortion");
        assert!(top.iter().flatten().all(|t| t != "ever" && t != "just"), "{top:?}");
    }
}
