//! A stance head: multinomial logistic regression on the judge model's hidden state at its
//! answer position (`LocalJudge::features`), fitted on stance data labelled by construction.
//!
//! The option-word judge reads three fixed rows of the model's output layer from that hidden
//! state; the head learns its own three directions instead, so it can weigh what the model
//! represents about the answer rather than which option word it would say next. Features are
//! standardized with the training set's mean and spread; the weights carry an L2 penalty chosen
//! by leave-one-category-out log loss, and one temperature, fitted on the out-of-category
//! predictions, calibrates the probabilities.

use crate::Stance;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The file format's version, refused when it differs.
pub const FORMAT: u32 = 1;

/// Where a head's training items came from: a file, its SHA-256 and the items taken from it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingSource {
    pub file: String,
    pub sha256: String,
    pub items: usize,
}

/// How the head was chosen and how well it generalized across categories of its own data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    /// The L2 penalty chosen, and every candidate's leave-one-category-out log loss.
    pub l2: f64,
    pub l2_log_loss: Vec<(f64, f64)>,
    /// Leave-one-category-out accuracy on the training items (after calibration).
    pub loco_accuracy: f64,
    pub temperature: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StanceHead {
    pub format: u32,
    /// File name of the judge model whose hidden states the head reads, and its option orders.
    pub judge_model: String,
    pub orders: usize,
    /// The layers (0-based) whose answer-position states are concatenated into the features.
    pub layers: Vec<usize>,
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
    /// One row of weights per stance (Stance order) over the standardized features.
    pub weights: Vec<Vec<f32>>,
    pub bias: [f64; 3],
    pub temperature: f64,
    pub training: Vec<TrainingSource>,
    pub fit: FitReport,
}

/// A labelled feature vector and the category it belongs to (for leave-one-category-out).
pub struct Example<'a> {
    pub features: &'a [f32],
    pub label: Stance,
    pub category: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("{0}")]
    Input(String),
    #[error("stance head {path}: {detail}")]
    File { path: String, detail: String },
}

/// L2 penalties tried, strongest first.
pub const L2_GRID: [f64; 5] = [3.0, 1.0, 0.3, 0.1, 0.03];
const STEPS: usize = 400;
const LEARNING_RATE: f64 = 0.02;

impl StanceHead {
    /// p(support), p(neutral), p(oppose) for one feature vector.
    pub fn probabilities(&self, features: &[f32]) -> [f64; 3] {
        let z: Vec<f64> = features.iter().zip(&self.mean).zip(&self.scale).map(|((&x, &m), &s)| ((x - m) / s) as f64).collect();
        let logits = logits(&self.weights, &self.bias, &z);
        softmax(&logits.map(|l| l / self.temperature))
    }

    pub fn from_json(path: &str, text: &str) -> Result<Self, HeadError> {
        let head: StanceHead = serde_json::from_str(text).map_err(|e| HeadError::File { path: path.into(), detail: e.to_string() })?;
        let h = head.mean.len();
        let bad = |detail: String| Err(HeadError::File { path: path.into(), detail });
        if head.format != FORMAT {
            return bad(format!("format {} is not the supported {FORMAT}", head.format));
        }
        if head.scale.len() != h || head.weights.len() != 3 || head.weights.iter().any(|w| w.len() != h) {
            return bad(format!("weights do not match {h} features"));
        }
        if !head.temperature.is_finite() || head.temperature <= 0.0 {
            return bad(format!("temperature {} is not positive", head.temperature));
        }
        Ok(head)
    }
}

/// Fits a head: standardizes, picks the L2 penalty by leave-one-category-out log loss, fits a
/// temperature on the out-of-category logits, then refits on every example.
pub fn fit(examples: &[Example], judge_model: &str, orders: usize, layers: &[usize], training: Vec<TrainingSource>) -> Result<StanceHead, HeadError> {
    let categories = distinct_categories(examples);
    if categories.len() < 2 {
        return Err(HeadError::Input("a head needs examples from at least two categories (it is chosen leaving one out)".into()));
    }
    let dims = examples[0].features.len();
    if dims == 0 || examples.iter().any(|e| e.features.len() != dims) {
        return Err(HeadError::Input("every example needs the same, non-zero number of features".into()));
    }
    if let Some(s) = Stance::ALL.iter().find(|s| !examples.iter().any(|e| e.label == **s)) {
        return Err(HeadError::Input(format!("no training example is labelled {}", s.name())));
    }
    let (mean, scale) = standardization(examples);
    let z: Vec<Vec<f64>> = examples.iter().map(|e| standardize(e.features, &mean, &scale)).collect();
    let labels: Vec<usize> = examples.iter().map(|e| e.label as usize).collect();
    let folds: Vec<Vec<usize>> = categories.iter().map(|c| (0..examples.len()).filter(|&i| examples[i].category == c.as_str()).collect()).collect();
    let mut l2_log_loss = Vec::new();
    let mut best: Option<(f64, f64, Vec<[f64; 3]>)> = None;
    for l2 in L2_GRID {
        let held_out = out_of_fold_logits(&z, &labels, &folds, l2);
        let loss = log_loss(&held_out, &labels, 1.0, class_weights(&labels));
        l2_log_loss.push((l2, loss));
        if best.as_ref().is_none_or(|b| loss < b.1) {
            best = Some((l2, loss, held_out));
        }
    }
    let (l2, _, held_out) = best.expect("a non-empty grid");
    let temperature = fit_temperature(&held_out, &labels);
    let loco_accuracy = held_out.iter().zip(&labels).filter(|(l, &y)| crate::judge::top_stance(l) == y).count() as f64 / labels.len() as f64;
    let (weights, bias) = fit_weights(&z, &labels, l2);
    Ok(StanceHead {
        format: FORMAT,
        judge_model: judge_model.into(),
        orders,
        layers: layers.to_vec(),
        mean,
        scale,
        weights: weights.iter().map(|w| w.iter().map(|&x| x as f32).collect()).collect(),
        bias,
        temperature,
        training,
        fit: FitReport { l2, l2_log_loss, loco_accuracy, temperature },
    })
}

fn distinct_categories(examples: &[Example]) -> Vec<String> {
    let mut c: Vec<String> = examples.iter().map(|e| e.category.to_string()).collect();
    c.sort();
    c.dedup();
    c
}

/// Per-feature mean and standard deviation (1 where a feature does not vary).
fn standardization(examples: &[Example]) -> (Vec<f32>, Vec<f32>) {
    let (n, dims) = (examples.len() as f64, examples[0].features.len());
    let mut mean = vec![0f64; dims];
    for e in examples {
        for (m, &x) in mean.iter_mut().zip(e.features) {
            *m += x as f64 / n;
        }
    }
    let mut var = vec![0f64; dims];
    for e in examples {
        for ((v, &x), m) in var.iter_mut().zip(e.features).zip(&mean) {
            *v += (x as f64 - m).powi(2) / n;
        }
    }
    let scale = var.iter().map(|&v| if v > 1e-12 { v.sqrt() as f32 } else { 1.0 }).collect();
    (mean.iter().map(|&m| m as f32).collect(), scale)
}

fn standardize(x: &[f32], mean: &[f32], scale: &[f32]) -> Vec<f64> {
    x.iter().zip(mean).zip(scale).map(|((&x, &m), &s)| ((x - m) / s) as f64).collect()
}

fn logits<W: AsRef<[T]>, T: Copy + Into<f64>>(weights: &[W], bias: &[f64; 3], z: &[f64]) -> [f64; 3] {
    let mut out = *bias;
    for (o, w) in out.iter_mut().zip(weights) {
        *o += w.as_ref().iter().zip(z).map(|(&w, &x)| w.into() * x).sum::<f64>();
    }
    out
}

fn softmax(l: &[f64; 3]) -> [f64; 3] {
    let max = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e = l.map(|x| (x - max).exp());
    let sum: f64 = e.iter().sum();
    e.map(|x| x / sum)
}

/// Each example's logits from a head fitted without its category.
fn out_of_fold_logits(z: &[Vec<f64>], labels: &[usize], folds: &[Vec<usize>], l2: f64) -> Vec<[f64; 3]> {
    let per_fold: Vec<Vec<(usize, [f64; 3])>> = folds
        .par_iter()
        .map(|fold| {
            let train: Vec<usize> = (0..z.len()).filter(|i| !fold.contains(i)).collect();
            let tz: Vec<Vec<f64>> = train.iter().map(|&i| z[i].clone()).collect();
            let tl: Vec<usize> = train.iter().map(|&i| labels[i]).collect();
            let (w, b) = fit_weights(&tz, &tl, l2);
            fold.iter().map(|&i| (i, logits(&w, &b, &z[i]))).collect()
        })
        .collect();
    let mut out = vec![[0.0; 3]; z.len()];
    for (i, l) in per_fold.into_iter().flatten() {
        out[i] = l;
    }
    out
}

/// Mean cross-entropy of logits divided by `temperature`, each stance weighted by `weights`.
fn log_loss(logits: &[[f64; 3]], labels: &[usize], temperature: f64, weights: [f64; 3]) -> f64 {
    let total: f64 = labels.iter().map(|&y| weights[y]).sum();
    logits.iter().zip(labels).map(|(l, &y)| -weights[y] * softmax(&l.map(|x| x / temperature))[y].max(1e-300).ln()).sum::<f64>() / total
}

/// Weights that give each stance the same total weight, whatever its count.
fn class_weights(labels: &[usize]) -> [f64; 3] {
    let mut counts = [0usize; 3];
    labels.iter().for_each(|&y| counts[y] += 1);
    counts.map(|c| if c == 0 { 0.0 } else { labels.len() as f64 / (3.0 * c as f64) })
}

/// The temperature minimizing the log loss of held-out logits (golden-section search on a log
/// scale between 0.05 and 20). Unweighted: calibration is about the items as they come.
fn fit_temperature(logits: &[[f64; 3]], labels: &[usize]) -> f64 {
    let loss = |log_t: f64| log_loss(logits, labels, log_t.exp(), [1.0; 3]);
    let (mut a, mut b) = (0.05f64.ln(), 20f64.ln());
    let g = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..60 {
        let (c, d) = (b - g * (b - a), a + g * (b - a));
        if loss(c) < loss(d) {
            b = d;
        } else {
            a = c;
        }
    }
    ((a + b) / 2.0).exp()
}

/// Class-balanced multinomial logistic regression with an L2 penalty on the weights, by
/// full-batch Adam from zero: deterministic, and convex, so the start does not matter.
fn fit_weights(z: &[Vec<f64>], labels: &[usize], l2: f64) -> (Vec<Vec<f64>>, [f64; 3]) {
    let dims = z[0].len();
    let class_w = class_weights(labels);
    let total: f64 = labels.iter().map(|&y| class_w[y]).sum();
    let mut w = vec![vec![0f64; dims]; 3];
    let mut b = [0f64; 3];
    let mut adam = Adam::new(3 * dims + 3);
    for _ in 0..STEPS {
        let mut gw = vec![vec![0f64; dims]; 3];
        let mut gb = [0f64; 3];
        for (x, &y) in z.iter().zip(labels) {
            let p = softmax(&logits(&w, &b, x));
            for k in 0..3 {
                let d = class_w[y] * (p[k] - f64::from(u8::from(k == y))) / total;
                gb[k] += d;
                gw[k].iter_mut().zip(x).for_each(|(g, &xi)| *g += d * xi);
            }
        }
        for k in 0..3 {
            gw[k].iter_mut().zip(&w[k]).for_each(|(g, &wi)| *g += l2 * wi);
        }
        let grads: Vec<f64> = gw.iter().flatten().copied().chain(gb).collect();
        let steps = adam.step(&grads);
        for (k, row) in w.iter_mut().enumerate() {
            row.iter_mut().zip(&steps[k * dims..(k + 1) * dims]).for_each(|(wi, s)| *wi -= s);
        }
        b.iter_mut().zip(&steps[3 * dims..]).for_each(|(bi, s)| *bi -= s);
    }
    (w, b)
}

struct Adam {
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
}

impl Adam {
    fn new(n: usize) -> Self {
        Adam { m: vec![0.0; n], v: vec![0.0; n], t: 0 }
    }

    /// The update to subtract for these gradients.
    fn step(&mut self, grads: &[f64]) -> Vec<f64> {
        const B1: f64 = 0.9;
        const B2: f64 = 0.999;
        self.t += 1;
        let (c1, c2) = (1.0 - B1.powi(self.t), 1.0 - B2.powi(self.t));
        grads
            .iter()
            .zip(self.m.iter_mut().zip(self.v.iter_mut()))
            .map(|(&g, (m, v))| {
                *m = B1 * *m + (1.0 - B1) * g;
                *v = B2 * *v + (1.0 - B2) * g * g;
                LEARNING_RATE * (*m / c1) / ((*v / c2).sqrt() + 1e-8)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three stances along two feature directions, in four categories, with a feature that is
    /// pure noise: a head must separate them out of category and ignore the noise.
    fn separable() -> (Vec<Vec<f32>>, Vec<Stance>, Vec<String>) {
        let (mut xs, mut ys, mut cs) = (Vec::new(), Vec::new(), Vec::new());
        let mut noise = 0.37f32;
        for c in 0..4 {
            for i in 0..12 {
                let label = Stance::ALL[i % 3];
                let centre: [f32; 2] = match label {
                    Stance::Support => [2.0, 0.0],
                    Stance::Neutral => [0.0, 0.0],
                    Stance::Oppose => [-2.0, 0.0],
                };
                noise = (noise * 7.31 + 0.11).fract();
                let jitter = (i as f32 * 0.13).sin() * 0.3;
                xs.push(vec![centre[0] + jitter, centre[1] + c as f32 * 0.1, noise]);
                ys.push(label);
                cs.push(format!("c{c}"));
            }
        }
        (xs, ys, cs)
    }

    #[test]
    fn a_head_separates_separable_stances_out_of_category() {
        let (xs, ys, cs) = separable();
        let examples: Vec<Example> = xs.iter().zip(&ys).zip(&cs).map(|((x, &label), c)| Example { features: x, label, category: c }).collect();
        let head = fit(&examples, "m.gguf", 3, &[0], Vec::new()).unwrap();
        assert!(head.fit.loco_accuracy > 0.95, "{:?}", head.fit);
        assert_eq!(head.fit.l2_log_loss.len(), L2_GRID.len());
        for (x, y) in xs.iter().zip(&ys) {
            let p = head.probabilities(x);
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            assert_eq!(crate::judge::top_stance(&p), *y as usize, "{x:?}: {p:?}");
        }
        // The file round-trips to the same probabilities, and a damaged one is refused by name.
        let text = serde_json::to_string(&head).unwrap();
        let back = StanceHead::from_json("h.json", &text).unwrap();
        assert_eq!(back.probabilities(&xs[5]), head.probabilities(&xs[5]));
        let mut broken = head.clone();
        broken.weights[1].pop();
        let err = StanceHead::from_json("h.json", &serde_json::to_string(&broken).unwrap()).unwrap_err().to_string();
        assert!(err.contains("h.json") && err.contains("3 features"), "{err}");
    }

    #[test]
    fn fitting_refuses_what_cannot_be_chosen_or_learned() {
        let (xs, ys, _) = separable();
        let one_category: Vec<Example> = xs.iter().zip(&ys).map(|(x, &label)| Example { features: x, label, category: "c" }).collect();
        assert!(fit(&one_category, "m", 3, &[0], Vec::new()).unwrap_err().to_string().contains("two categories"));
        let no_oppose: Vec<Example> = xs
            .iter()
            .zip(&ys)
            .enumerate()
            .filter(|(_, (_, &l))| l != Stance::Oppose)
            .map(|(i, (x, &label))| Example { features: x, label, category: if i % 2 == 0 { "a" } else { "b" } })
            .collect();
        assert!(fit(&no_oppose, "m", 3, &[0], Vec::new()).unwrap_err().to_string().contains("oppose"));
    }

    #[test]
    fn temperature_undoes_a_scaled_overconfidence() {
        // Logits that say support over oppose by e^10 (neutral out of the question) but are
        // right 3 times in 4: the fitted temperature brings p(support) near 0.75.
        let logits: Vec<[f64; 3]> = (0..40).map(|_| [10.0, -60.0, 0.0]).collect();
        let labels: Vec<usize> = (0..40).map(|i| if i % 4 == 3 { 2 } else { 0 }).collect();
        let t = fit_temperature(&logits, &labels);
        let p = softmax(&logits[0].map(|l| l / t));
        assert!(t > 1.0 && (p[0] - 0.75).abs() < 0.03, "temperature {t}, p {p:?}");
    }
}
