//! Dimension reduction of sentence embeddings with UMAP: exact cosine nearest neighbours, the
//! fuzzy simplicial set of umap-rs, then a seeded layout (`layout`).

use crate::layout::{optimize, LayoutParams};
use crate::rng::{uniform, SplitMix64};
use ndarray::Array2;
use rayon::prelude::*;
use umap_rs::{GraphParams, ManifoldParams, Umap, UmapConfig};

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct UmapParams {
    pub n_neighbors: usize,
    pub n_components: usize,
    pub min_dist: f32,
    pub n_epochs: usize,
}

impl Default for UmapParams {
    /// The paper's 20 dimensions; neighbours and min_dist as BERTopic sets them for clustering.
    fn default() -> Self {
        UmapParams { n_neighbors: 15, n_components: 20, min_dist: 0.0, n_epochs: 500 }
    }
}

/// Each row's `k` nearest rows (itself first) by cosine distance, for unit-length rows.
pub fn cosine_knn(rows: &[Vec<f32>], k: usize) -> (Array2<u32>, Array2<f32>) {
    let n = rows.len();
    let lists: Vec<Vec<(u32, f32)>> = rows
        .par_iter()
        .enumerate()
        .map(|(i, a)| {
            let mut d: Vec<(u32, f32)> = rows.iter().enumerate().map(|(j, b)| (j as u32, if i == j { 0.0 } else { cosine_distance(a, b) })).collect();
            // Ties broken by index, so the graph does not depend on the sort.
            d.sort_by(|x, y| x.1.total_cmp(&y.1).then(x.0.cmp(&y.0)));
            d.truncate(k);
            d
        })
        .collect();
    let mut idx = Array2::<u32>::zeros((n, k));
    let mut dist = Array2::<f32>::zeros((n, k));
    for (i, list) in lists.iter().enumerate() {
        for (c, &(j, d)) in list.iter().enumerate() {
            idx[(i, c)] = j;
            dist[(i, c)] = d;
        }
    }
    (idx, dist)
}

fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    (1.0 - a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()).max(0.0)
}

/// The embeddings reduced to `params.n_components` dimensions, the same for the same seed.
pub fn umap(rows: &[Vec<f32>], params: &UmapParams, seed: u64) -> Vec<Vec<f32>> {
    let n = rows.len();
    let k = params.n_neighbors.min(n);
    let (idx, dist) = cosine_knn(rows, k);
    let config = UmapConfig {
        n_components: params.n_components,
        graph: GraphParams { n_neighbors: k, ..Default::default() },
        manifold: ManifoldParams { min_dist: params.min_dist, ..Default::default() },
        ..Default::default()
    };
    let dim = rows.first().map_or(0, Vec::len);
    let data = Array2::from_shape_fn((n, dim), |(i, j)| rows[i][j]);
    let manifold = Umap::new(config).learn_manifold(data.view(), idx.view(), dist.view());
    let (a, b) = manifold.curve_params();
    let mut rng = SplitMix64::new(seed);
    let init: Vec<Vec<f32>> = (0..n).map(|_| (0..params.n_components).map(|_| uniform(&mut rng, -10.0, 10.0)).collect()).collect();
    let layout = LayoutParams { a, b, n_epochs: params.n_epochs, ..LayoutParams::default() };
    optimize(manifold.graph(), init, &layout, &mut rng)
}
