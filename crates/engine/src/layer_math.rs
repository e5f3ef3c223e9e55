//! Per-row math shared by the inference forward pass (`model`) and the hand-written training
//! pass (`decoder_grad`), kept in a leaf so that neither depends on the other for it.

/// cos and sin of the rotary angles (position × frequency), head_dim/2 per position, in f32 as
/// the model applies them.
pub(crate) fn rope_cos_sin(theta: f64, head_dim: usize, positions: impl Iterator<Item = usize>) -> (Vec<f32>, Vec<f32>) {
    let inv: Vec<f32> = (0..head_dim / 2).map(|i| (1.0 / theta.powf(2.0 * i as f64 / head_dim as f64)) as f32).collect();
    positions.flat_map(|p| inv.iter().map(move |&f| p as f32 * f)).map(|a| (a.cos(), a.sin())).unzip()
}

crate::multiversion! {
/// act(gate) * up for one row: SiLU (Llama, Qwen2) or tanh-approximated GELU (Gemma 3).
pub(crate) fn gated_activation(gate: &[f32], up: &[f32], gelu: bool, out: &mut [f32]) {
    use crate::simd::exp_fast;
    if gelu {
        const C: f32 = 0.797_884_6; // sqrt(2/pi)
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            let z = C * (g + 0.044_715 * g * g * g);
            // tanh(z) = 1 - 2 / (exp(2z) + 1)
            let tanh = 1.0 - 2.0 / (exp_fast(2.0 * z) + 1.0);
            *o = 0.5 * g * (1.0 + tanh) * u;
        }
    } else {
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            *o = g / (1.0 + exp_fast(-g)) * u;
        }
    }
}
}
