//! Probes (`Build::Probe`): the first layers of a model, loaded for reading hidden states.

use crate::common::*;
use candle_core::{Device, Tensor};
use valuedrift_engine::matmul::Precision;
use valuedrift_engine::score::answer_hidden_grouped;
use valuedrift_engine::{LanguageModel, Message};

/// Two items of two prompts each that share their beginnings, as a judge's option orders do.
fn prompt_groups(lm: &LanguageModel) -> Vec<Vec<Vec<u32>>> {
    let ask = |q: &str, a: &str| {
        let mut ids = lm.prompt_ids(&[Message::user(q)]).unwrap();
        ids.extend(lm.tokenizer.encode(a, false).unwrap());
        ids
    };
    vec![
        vec![ask("Should voting be compulsory?", "Yes, it should."), ask("Should voting be compulsory?", "No, it should not be.")],
        vec![ask("Is zoo keeping cruel?", "It depends on the zoo."), ask("Is zoo keeping cruel?", "Sometimes.")],
    ]
}

/// A probe of `depth` layers gives exactly the full model's hidden states at those layers, in
/// less memory, and refuses to give logits.
fn check(file: &str, precision: Precision) {
    let path = model_path(file);
    let full = LanguageModel::load_for_inference(&path, &Device::Cpu, precision).unwrap();
    let layers = full.config().num_layers;
    let depth = layers * 2 / 3;
    let probe = LanguageModel::load_probe(&path, &Device::Cpu, precision, depth).unwrap();
    assert_eq!(probe.config().num_layers, depth);
    assert!(!probe.model.has_output_head() && full.model.has_output_head());
    let read = [depth / 2, depth - 1];
    let groups = prompt_groups(&full);
    let a = answer_hidden_grouped(&full.model, &groups, 4096, &read).unwrap();
    let b = answer_hidden_grouped(&probe.model, &groups, 4096, &read).unwrap();
    assert_eq!(a.len(), 2);
    assert!(a.iter().flatten().all(|h| h.len() == 2 * full.config().hidden_size));
    assert_eq!(a, b, "{file} {precision:?}: the probe's hidden states differ from the full model's");
    let (full_bytes, probe_bytes) = (full.model.weight_bytes(), probe.model.weight_bytes());
    assert!(probe_bytes < full_bytes * 9 / 10, "{file}: probe {probe_bytes} bytes, full model {full_bytes}");
    let hidden = Tensor::zeros((1, full.config().hidden_size), candle_core::DType::F32, &Device::Cpu).unwrap();
    let refused = probe.model.logits(&hidden, valuedrift_engine::Mode::Infer).unwrap_err().to_string();
    assert!(refused.contains("no logits"), "{refused}");
    assert!(answer_hidden_grouped(&probe.model, &groups, 4096, &[depth]).is_err(), "a layer past the probe was read");
    for bad in [0, layers + 1] {
        let err = LanguageModel::load_probe(&path, &Device::Cpu, precision, bad).err().expect("an impossible depth was accepted").to_string();
        assert!(err.contains(&format!("a probe of {bad} layers")), "{err}");
    }
}

#[test]
#[cfg_attr(not(build_cpu_packed_kernels), ignore = "probes are frozen builds, which need the packed kernels (AVX2 and FMA)")]
fn smollm2_probe_reads_the_full_models_hidden_states() {
    check(SMOLLM2, Precision::F32);
    check(SMOLLM2, Precision::Q8);
}

#[test]
#[cfg_attr(not(build_cpu_packed_kernels), ignore = "probes are frozen builds, which need the packed kernels (AVX2 and FMA)")]
fn gemma3_probe_reads_the_full_models_hidden_states() {
    check(GEMMA3, Precision::Q8);
}
