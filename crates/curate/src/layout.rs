//! UMAP's layout step: stochastic gradient descent on the fuzzy graph's cross-entropy, as
//! umap-learn's `optimize_layout_euclidean` does it (edges sampled in proportion to their
//! weight, negative samples, gradients clipped at 4, a linearly decaying learning rate). It runs
//! in one thread with a seeded generator so that a seed gives one layout; umap-learn does the
//! same when given a `random_state`.

use crate::rng::SplitMix64;
use umap_rs::SparseMat;

#[derive(Clone, Debug)]
pub struct LayoutParams {
    pub a: f32,
    pub b: f32,
    pub n_epochs: usize,
    pub learning_rate: f32,
    pub negative_sample_rate: usize,
    pub repulsion_strength: f32,
}

impl Default for LayoutParams {
    fn default() -> Self {
        LayoutParams { a: 1.577, b: 0.895, n_epochs: 500, learning_rate: 1.0, negative_sample_rate: 5, repulsion_strength: 1.0 }
    }
}

struct Edge {
    head: usize,
    tail: usize,
    epochs_per_sample: f64,
}

/// The graph's edges with how often each is sampled: the heaviest every epoch, the others in
/// proportion to their weight; edges too light to be sampled once are dropped.
fn edges(graph: &SparseMat, n_epochs: usize) -> Vec<Edge> {
    let max = graph.data().iter().copied().fold(0.0f32, f32::max);
    let mut out = Vec::new();
    for (head, row) in graph.outer_iterator().enumerate() {
        for (tail, &w) in row.iter() {
            let samples = n_epochs as f64 * (w / max) as f64;
            if max > 0.0 && w >= max / n_epochs as f32 && samples > 0.0 {
                out.push(Edge { head, tail, epochs_per_sample: n_epochs as f64 / samples });
            }
        }
    }
    out
}

fn clip(v: f32) -> f32 {
    v.clamp(-4.0, 4.0)
}

fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Optimizes `embedding` (one row per vertex of `graph`) in place and returns it.
pub fn optimize(graph: &SparseMat, mut embedding: Vec<Vec<f32>>, p: &LayoutParams, rng: &mut SplitMix64) -> Vec<Vec<f32>> {
    let n = embedding.len();
    let edges = edges(graph, p.n_epochs);
    let per_negative: Vec<f64> = edges.iter().map(|e| e.epochs_per_sample / p.negative_sample_rate as f64).collect();
    let mut next_sample: Vec<f64> = edges.iter().map(|e| e.epochs_per_sample).collect();
    let mut next_negative = per_negative.clone();
    for epoch in 0..p.n_epochs {
        let alpha = p.learning_rate * (1.0 - epoch as f32 / p.n_epochs as f32);
        let now = epoch as f64;
        for (i, e) in edges.iter().enumerate() {
            if next_sample[i] > now {
                continue;
            }
            attract(&mut embedding, e.head, e.tail, p, alpha);
            next_sample[i] += e.epochs_per_sample;
            let negatives = ((now - next_negative[i]) / per_negative[i]).max(0.0) as usize;
            for _ in 0..negatives {
                let other = rng.below(n);
                if other != e.head {
                    repel(&mut embedding, e.head, other, p, alpha);
                }
            }
            next_negative[i] += negatives as f64 * per_negative[i];
        }
    }
    embedding
}

/// Pulls `head` and `tail` together along the gradient of the attractive term.
fn attract(emb: &mut [Vec<f32>], head: usize, tail: usize, p: &LayoutParams, alpha: f32) {
    let d2 = squared_distance(&emb[head], &emb[tail]);
    if d2 <= 0.0 {
        return;
    }
    let coeff = -2.0 * p.a * p.b * d2.powf(p.b - 1.0) / (p.a * d2.powf(p.b) + 1.0);
    for d in 0..emb[head].len() {
        let g = clip(coeff * (emb[head][d] - emb[tail][d])) * alpha;
        emb[head][d] += g;
        emb[tail][d] -= g;
    }
}

/// Pushes `head` away from a randomly drawn vertex along the repulsive term's gradient.
fn repel(emb: &mut [Vec<f32>], head: usize, other: usize, p: &LayoutParams, alpha: f32) {
    let d2 = squared_distance(&emb[head], &emb[other]);
    if d2 <= 0.0 {
        return;
    }
    let coeff = 2.0 * p.repulsion_strength * p.b / ((0.001 + d2) * (p.a * d2.powf(p.b) + 1.0));
    for d in 0..emb[head].len() {
        let g = clip(coeff * (emb[head][d] - emb[other][d])) * alpha;
        emb[head][d] += g;
    }
}
