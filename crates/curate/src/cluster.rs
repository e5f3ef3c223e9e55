//! HDBSCAN on the reduced embeddings (the `hdbscan` crate), then a soft assignment of every
//! prompt: the paper keeps HDBSCAN's soft memberships so that no prompt is lost as noise. A
//! prompt's membership in each cluster is its inverse distance to the cluster's centroid,
//! normalized over clusters (hdbscan's distance-based membership with the centroid as the
//! exemplar); a noise prompt joins the cluster it is most a member of.

use crate::{CurateError, Result};
use hdbscan::{Hdbscan, HdbscanHyperParams};

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ClusterParams {
    pub min_cluster_size: usize,
    /// HDBSCAN's min_samples (density smoothing); the minimum cluster size when absent.
    pub min_samples: Option<usize>,
}

/// A prompt's clusters: HDBSCAN's label (-1: noise), the cluster it is assigned to, and its
/// membership there.
#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    pub hard: i32,
    pub cluster: usize,
    pub membership: f32,
}

/// Clusters `points` and assigns every one. Clusters are numbered 0.. in HDBSCAN's order.
pub fn cluster(points: &[Vec<f32>], params: &ClusterParams) -> Result<Vec<Assignment>> {
    let hp = HdbscanHyperParams::builder()
        .min_cluster_size(params.min_cluster_size)
        .min_samples(params.min_samples.unwrap_or(params.min_cluster_size))
        .build();
    let labels = Hdbscan::new(points, hp).cluster().map_err(|e| CurateError::Input(format!("HDBSCAN: {e:?}")))?;
    let n_clusters = labels.iter().copied().max().map_or(0, |m| (m + 1).max(0) as usize);
    if n_clusters == 0 {
        return Err(CurateError::Input(format!(
            "HDBSCAN found no cluster among {} prompts with a minimum cluster size of {}; lower it",
            points.len(),
            params.min_cluster_size
        )));
    }
    let centroids = centroids(points, &labels, n_clusters);
    Ok(points
        .iter()
        .zip(&labels)
        .map(|(p, &hard)| {
            let m = membership(p, &centroids);
            let cluster = if hard >= 0 { hard as usize } else { argmax(&m) };
            Assignment { hard, cluster, membership: m[cluster] }
        })
        .collect())
}

fn centroids(points: &[Vec<f32>], labels: &[i32], n_clusters: usize) -> Vec<Vec<f32>> {
    let dim = points[0].len();
    let mut sums = vec![vec![0.0f64; dim]; n_clusters];
    let mut counts = vec![0usize; n_clusters];
    for (p, &l) in points.iter().zip(labels) {
        if l >= 0 {
            counts[l as usize] += 1;
            for (s, &x) in sums[l as usize].iter_mut().zip(p) {
                *s += x as f64;
            }
        }
    }
    sums.into_iter().zip(counts).map(|(s, c)| s.into_iter().map(|x| (x / c as f64) as f32).collect()).collect()
}

/// Inverse distances to the centroids, summing to one.
pub fn membership(p: &[f32], centroids: &[Vec<f32>]) -> Vec<f32> {
    let inv: Vec<f64> = centroids
        .iter()
        .map(|c| {
            let d = p.iter().zip(c).map(|(a, b)| ((a - b) * (a - b)) as f64).sum::<f64>().sqrt();
            1.0 / d.max(1e-9)
        })
        .collect();
    let total: f64 = inv.iter().sum();
    inv.iter().map(|v| (v / total) as f32).collect()
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |best, (i, x)| if *x > v[best] { i } else { best })
}
