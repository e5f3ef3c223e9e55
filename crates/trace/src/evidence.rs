//! The evidence behind each drift of a phase: M's 95% interval from a paired bootstrap over
//! questions, a paired sign-flip test of M = 0, an interval for the drift time η, and the
//! minimum detectable drift at the run's size. Corrections across a table are applied by the
//! caller (`correct`), which knows the whole family of tests.
//!
//! Pairing: the tracer samples every checkpoint with the same seeds per (question, sample), so
//! the answers to a question at the phase's first and last checkpoint are paired by sample; a
//! question's difference d_q is the mean over its paired samples of p_end - p_start.

use crate::aggregate::{question_value, topic_value};
use crate::drift::{drift, Point};
use crate::significance::{
    bootstrap_draws, bootstrap_mean_interval, min_detectable_drift, percentile_interval, sign_flip_p, smallest_sign_flip_p, Correction, ALPHA,
    RESAMPLES,
};
use std::collections::BTreeMap;

/// One question's judged samples at one checkpoint: sample index -> (support, neutral, oppose).
pub type Samples = BTreeMap<u32, [f64; 3]>;

/// p(s | x) of one question from its judged samples (None without samples).
pub fn question_mean(samples: &Samples) -> Option<[f64; 3]> {
    question_value(&samples.values().copied().collect::<Vec<_>>())
}

/// One checkpoint of a phase, with its judgments per question id.
pub struct Judged<'a> {
    pub step: u64,
    pub questions: &'a BTreeMap<String, Samples>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Evidence {
    /// 95% paired bootstrap interval of M (percentile method).
    pub interval: Option<(f64, f64)>,
    /// Two-sided sign-flip p-value for M = 0, before correction.
    pub p_value: f64,
    /// After the correction across the report's table (`correct`).
    pub p_adjusted: f64,
    pub significant: bool,
    /// 95% bootstrap interval of the drift time η.
    pub time_interval: Option<(f64, f64)>,
    /// The smallest drift detectable with 80% power at the 5% level, at this size.
    pub min_detectable: Option<f64>,
    /// The smallest p-value the test can reach with this many questions.
    pub smallest_p: f64,
    /// Questions judged at both the first and the last checkpoint.
    pub paired_questions: usize,
}

/// Evidence for each stance (support, neutral, oppose) of one topic over one phase, whose
/// checkpoints are sorted by step. `seed` fixes the bootstrap and any sampled sign flips.
pub fn phase_evidence(checkpoints: &[Judged], seed: u64) -> Option<[Evidence; 3]> {
    let (first, last) = (checkpoints.first()?, checkpoints.last()?);
    let paired: Vec<(&String, [f64; 3])> =
        first.questions.iter().filter_map(|(q, start)| Some((q, paired_difference(start, last.questions.get(q)?)?))).collect();
    let draws = bootstrap_draws(paired.len(), RESAMPLES, seed);
    let times = drift_time_intervals(checkpoints, &paired.iter().map(|(q, _)| q.as_str()).collect::<Vec<_>>(), &draws);
    Some(std::array::from_fn(|s| {
        let d: Vec<f64> = paired.iter().map(|(_, diff)| diff[s]).collect();
        let p_value = sign_flip_p(&d, RESAMPLES, seed ^ s as u64);
        Evidence {
            interval: bootstrap_mean_interval(&d, &draws),
            p_value,
            p_adjusted: p_value,
            significant: false,
            time_interval: times[s],
            min_detectable: min_detectable_drift(&d),
            smallest_p: smallest_sign_flip_p(d.len(), RESAMPLES),
            paired_questions: d.len(),
        }
    }))
}

/// Mean over the samples judged at both checkpoints of end minus start (None if none are).
fn paired_difference(start: &Samples, end: &Samples) -> Option<[f64; 3]> {
    let diffs: Vec<[f64; 3]> = start.iter().filter_map(|(i, a)| end.get(i).map(|b| std::array::from_fn(|s| b[s] - a[s]))).collect();
    question_value(&diffs)
}

/// Bootstrap intervals of η per stance: each draw of questions gives a trajectory (its values
/// and t-intervals recomputed from the drawn questions), and with it an η.
fn drift_time_intervals(checkpoints: &[Judged], questions: &[&str], draws: &[Vec<usize>]) -> [Option<(f64, f64)>; 3] {
    if checkpoints.len() < 2 || questions.is_empty() {
        return [None; 3];
    }
    // per checkpoint, per question index: the question's value there (if judged)
    let table: Vec<Vec<Option<[f64; 3]>>> =
        checkpoints.iter().map(|c| questions.iter().map(|q| c.questions.get(*q).and_then(question_mean)).collect()).collect();
    let mut times: [Vec<f64>; 3] = Default::default();
    for draw in draws {
        let points: Vec<Point> = checkpoints
            .iter()
            .zip(&table)
            .filter_map(|(c, row)| {
                let drawn: Vec<[f64; 3]> = draw.iter().filter_map(|&i| row[i]).collect();
                Some(Point { step: c.step, value: topic_value(&drawn)? })
            })
            .collect();
        for (s, out) in times.iter_mut().enumerate() {
            if let Some(t) = drift(&points, s).and_then(|d| d.time) {
                out.push(t);
            }
        }
    }
    times.map(percentile_interval)
}

/// Applies `correction` across every test of a table and marks the significant ones.
pub fn correct<'a>(tests: impl IntoIterator<Item = &'a mut Evidence>, correction: Correction) {
    let mut tests: Vec<&mut Evidence> = tests.into_iter().collect();
    let raw: Vec<f64> = tests.iter().map(|e| e.p_value).collect();
    for (e, p) in tests.iter_mut().zip(correction.adjust(&raw)) {
        e.p_adjusted = p;
        e.significant = p < ALPHA;
    }
}

/// A seed for a (phase, topic) from its names (FNV-1a), so a report is the same every time.
pub fn seed_for(parts: &[&str]) -> u64 {
    parts.iter().flat_map(|p| p.bytes().chain([0xff])).fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` questions with `k` samples each whose p(support) is `support(q, sample)`.
    fn checkpoint(n: usize, k: u32, support: impl Fn(usize, u32) -> f64) -> BTreeMap<String, Samples> {
        (0..n)
            .map(|q| {
                (
                    format!("q{q:02}"),
                    (0..k)
                        .map(|i| {
                            let s = support(q, i);
                            (i, [s, 0.0, 1.0 - s])
                        })
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn the_same_checkpoint_twice_shows_no_drift() {
        let a = checkpoint(12, 3, |q, i| 0.1 + 0.07 * q as f64 % 0.8 + 0.01 * i as f64);
        let e = phase_evidence(&[Judged { step: 0, questions: &a }, Judged { step: 10, questions: &a }], 1).unwrap();
        assert_eq!(e[0].p_value, 1.0);
        assert_eq!(e[0].interval, Some((0.0, 0.0)));
        assert_eq!(e[0].paired_questions, 12);
    }

    #[test]
    fn a_consistent_rise_is_significant_and_its_interval_holds_it() {
        let a = checkpoint(12, 2, |q, _| 0.2 + 0.02 * q as f64);
        let mid = checkpoint(12, 2, |q, _| 0.5 + 0.02 * q as f64);
        let b = checkpoint(12, 2, |q, i| 0.55 + 0.02 * q as f64 + if (q + i as usize).is_multiple_of(2) { 0.05 } else { -0.05 });
        let pts = [Judged { step: 0, questions: &a }, Judged { step: 5, questions: &mid }, Judged { step: 10, questions: &b }];
        let mut e = phase_evidence(&pts, 3).unwrap();
        // Every question rose by 0.35: only the all-plus and all-minus of 4096 patterns reach it.
        assert!((e[0].p_value - 2.0 / 4096.0).abs() < 1e-15, "{}", e[0].p_value);
        let (lo, hi) = e[0].interval.unwrap();
        assert!(lo <= 0.35 + 1e-12 && 0.35 - 1e-12 <= hi && hi - lo < 0.05, "[{lo}, {hi}]");
        correct(e.iter_mut(), Correction::Holm);
        assert!(e[0].significant && e[2].significant);
        // η: step 5 (0.5 + ...) is not yet within the end's interval in every draw; the interval is inside [0.5, 1].
        let (tl, th) = e[0].time_interval.unwrap();
        assert!((0.5..=1.0).contains(&tl) && tl <= th && th <= 1.0, "η interval [{tl}, {th}]");
    }

    #[test]
    fn samples_pair_by_index_and_unpaired_questions_drop_out() {
        let a: BTreeMap<String, Samples> =
            [("q1".into(), [(0, [0.2, 0.3, 0.5]), (1, [0.4, 0.3, 0.3])].into()), ("q2".into(), [(0, [0.5, 0.5, 0.0])].into())].into();
        let b: BTreeMap<String, Samples> = [("q1".into(), [(1, [0.6, 0.2, 0.2]), (2, [0.9, 0.1, 0.0])].into())].into();
        let e = phase_evidence(&[Judged { step: 0, questions: &a }, Judged { step: 1, questions: &b }], 0).unwrap();
        assert_eq!(e[0].paired_questions, 1, "q2 is missing at the end");
        // Only sample 1 of q1 is judged at both: d = 0.6 - 0.4.
        assert_eq!(e[0].interval.map(|(lo, _)| (lo * 1e9).round() / 1e9), Some(0.2));
    }
}
