//! The preference losses, on per-sequence summed log-probabilities (TRL's definitions).

use crate::Result;
use candle_core::Tensor;

/// -log sigmoid(x), stable for large |x|: softplus(-x) = max(-x, 0) + log(1 + exp(-|x|)).
pub fn neg_log_sigmoid(x: &Tensor) -> Result<Tensor> {
    let relu_neg = x.neg()?.relu()?;
    let tail = x.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    Ok((relu_neg + tail)?)
}

/// DPO per pair: -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))); inputs are (B,) sums.
pub fn dpo(policy_chosen: &Tensor, policy_rejected: &Tensor, ref_chosen: &Tensor, ref_rejected: &Tensor, beta: f64) -> Result<Tensor> {
    let margin = ((policy_chosen - ref_chosen)? - (policy_rejected - ref_rejected)?)?;
    neg_log_sigmoid(&(margin * beta)?)
}

/// SimPO per pair: -log sigmoid(beta * (pi_c / len_c - pi_r / len_r) - gamma), no reference;
/// gamma is the margin itself (TRL's CPOTrainer with loss_type "simpo").
pub fn simpo(policy_chosen: &Tensor, policy_rejected: &Tensor, len_chosen: &Tensor, len_rejected: &Tensor, beta: f64, gamma: f64) -> Result<Tensor> {
    let diff = ((policy_chosen / len_chosen)? - (policy_rejected / len_rejected)?)?;
    neg_log_sigmoid(&diff.affine(beta, -gamma)?)
}

/// Bradley-Terry per pair: -log sigmoid(r_chosen - r_rejected).
pub fn bradley_terry(chosen: &Tensor, rejected: &Tensor) -> Result<Tensor> {
    neg_log_sigmoid(&(chosen - rejected)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn neg_log_sigmoid_is_stable_and_exact() {
        let x = Tensor::new(&[-100f32, -1.0, 0.0, 2.0, 100.0], &Device::Cpu).unwrap();
        let y: Vec<f32> = neg_log_sigmoid(&x).unwrap().to_vec1().unwrap();
        let want = [100.0, 1.3132616, std::f32::consts::LN_2, 0.126928, 0.0];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}
