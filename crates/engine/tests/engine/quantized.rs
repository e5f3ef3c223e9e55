//! Int8 inference weights (`Precision::Q8`) against the f32 weights they were quantized from.

use crate::common::*;
use candle_core::{DType, Device, Tensor, D};
use valuedrift_engine::matmul::Precision;
use valuedrift_engine::{LanguageModel, Message, Mode};

/// log p of each next token of `ids` (the quantity scoring and judging read).
fn next_token_logps(lm: &LanguageModel, ids: &[u32]) -> Vec<f32> {
    let x = Tensor::from_vec(ids.to_vec(), (1, ids.len()), &Device::Cpu).unwrap();
    let logits = lm.model.forward_logits(&x, Mode::Infer).unwrap().squeeze(0).unwrap().to_dtype(DType::F32).unwrap();
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap().to_vec2::<f32>().unwrap();
    (1..ids.len()).map(|t| logp[t - 1][ids[t] as usize]).collect()
}

/// Loads `file` frozen in f32 and in int8 and compares memory and next-token log-probs.
fn check(file: &str, max_logp_diff: f32) {
    let path = model_path(file);
    let f32_model = LanguageModel::load_for_inference(&path, &Device::Cpu, Precision::F32).unwrap();
    let q8_model = LanguageModel::load_for_inference(&path, &Device::Cpu, Precision::Q8).unwrap();
    assert_eq!(q8_model.model.infer_precision(), Some(Precision::Q8));
    let (full, small) = (f32_model.model.weight_bytes() as f64, q8_model.model.weight_bytes() as f64);
    let params = f32_model.config().num_params() as f64;
    // About 1.1 bytes per parameter (int8 and a scale per 32), against 4.
    assert!(small / params < 1.3, "{file}: {:.2} bytes per parameter", small / params);
    assert!(full / params >= 4.0, "{file}: the f32 model holds {:.2} bytes per parameter", full / params);
    let (mut worst, mut total, mut count) = (0f32, 0f32, 0);
    for text in ["Should voting be compulsory?", "Is it wrong to eat meat? Give one reason."] {
        let mut ids = f32_model.prompt_ids(&[Message::user(text)]).unwrap();
        ids.extend(f32_model.tokenizer.encode("Many people think so, but others disagree strongly.", false).unwrap());
        let (a, b) = (next_token_logps(&f32_model, &ids), next_token_logps(&q8_model, &ids));
        worst = paired(&a, &b).map(|(x, y)| (x - y).abs()).fold(worst, f32::max);
        total += paired(&a, &b).map(|(x, y)| (x - y).abs()).sum::<f32>();
        count += a.len();
    }
    let mean = total / count as f32;
    eprintln!("{file}: int8 {:.0} MB vs f32 {:.0} MB; next-token log-prob difference: mean {mean:.4}, largest {worst:.4}", small / 1e6, full / 1e6);
    // Measured (docs/benchmarks.md; int8 weights computed as bf16): SmolLM2 mean 0.061, largest
    // 0.38 (bf16 alone: 0.026, 0.16); Gemma 3 mean 0.022, largest 0.13. The bounds leave room for
    // another CPU's rounding, not for a bug.
    assert!(mean <= 0.1 && worst <= max_logp_diff, "{file}: int8 log-probs differ from f32 by {mean} on average, up to {worst}");
    assert!(worst > 0.0, "{file}: int8 weights gave exactly the f32 log-probs: not quantized?");
}

#[test]
#[cfg_attr(not(build_cpu_packed_kernels), ignore = "int8 weights run on the packed kernels, which need AVX2 and FMA")]
fn smollm2_int8_weights_score_close_to_f32() {
    check(SMOLLM2, 0.6);
}

#[test]
#[cfg_attr(not(build_cpu_packed_kernels), ignore = "int8 weights run on the packed kernels, which need AVX2 and FMA")]
fn gemma3_int8_weights_score_close_to_f32() {
    check(GEMMA3, 0.3);
}
