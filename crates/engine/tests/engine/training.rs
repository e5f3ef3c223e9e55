//! Training primitives: gradients reach every weight, the DPO gradient and one SGD step match
//! TRL, AdamW and clipping match torch, and bf16 weights work.


use candle_core::{DType, Tensor, Var};
use crate::common::*;
use valuedrift_engine::optim::{clip_scale, grad_norm, sgd_step, AdamW, AdamWConfig};
use valuedrift_engine::score::{response_nll, token_logps};
use valuedrift_engine::{LanguageModel, Message, Mode};

fn every_weight_gets_a_gradient(lm: &LanguageModel) {
    let prompt = lm.prompt_ids(&[Message::user("Should cities ban cars from their centres?")]).unwrap();
    let response = lm.tokenizer.encode("Cities could try it gradually, with good public transport first.", false).unwrap();
    let loss = response_nll(&lm.model, &[(&prompt, &response)], Mode::Grad).unwrap();
    let grads = loss.backward().unwrap();
    let mut missing = Vec::new();
    for (name, var) in lm.model.params() {
        let nonzero = grads.get(var.as_tensor())
            .map(|g| g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0)
            .unwrap_or(false);
        if !nonzero {
            missing.push(name.clone());
        }
    }
    assert!(missing.is_empty(), "weights without gradient: {missing:?}");
}

#[test]
fn smollm2_every_weight_gets_a_gradient() {
    every_weight_gets_a_gradient(&load(SMOLLM2));
}

#[test]
fn gemma3_every_weight_gets_a_gradient() {
    every_weight_gets_a_gradient(&load(GEMMA3));
}

/// Mean DPO loss of policy log-prob sums against reference sums, per pair (chosen, rejected).
fn dpo_loss(policy: &Tensor, reference: &[f32], beta: f64) -> Tensor {
    let n = reference.len() / 2;
    let r = Tensor::from_slice(reference, (n, 2), policy.device()).unwrap();
    let d = (policy.reshape((n, 2)).unwrap() - r).unwrap();
    let margin = (d.narrow(1, 0, 1).unwrap() - d.narrow(1, 1, 1).unwrap()).unwrap();
    // -log sigmoid(x) = log(1 + exp(-x))
    ((margin * -beta).unwrap().exp().unwrap() + 1.0).unwrap().log().unwrap().mean_all().unwrap()
}

fn sequence_sums(lm: &LanguageModel, pairs: &[(Vec<u32>, Vec<u32>)], mode: Mode) -> Tensor {
    let refs: Vec<(&[u32], &[u32])> = pairs.iter().map(|(p, r)| (p.as_slice(), r.as_slice())).collect();
    let (logps, ranges) = token_logps(&lm.model, &refs, mode).unwrap();
    let sums: Vec<Tensor> = ranges.iter().map(|r| logps.narrow(0, r.start, r.len()).unwrap().sum_all().unwrap()).collect();
    Tensor::stack(&sums, 0).unwrap()
}

#[test]
fn dpo_gradient_and_sgd_step_match_trl() {
    let Some(fx) = shared_fixture("trl-dpo-reference.json") else { return };
    let lm = load(SMOLLM2);
    let mut pairs = Vec::new();
    for t in fx["triples"].as_array().unwrap() {
        for side in ["chosen", "rejected"] {
            pairs.push((ids(&t["prompt_ids"]), ids(&t[format!("{side}_ids")])));
        }
    }
    let beta = fx["beta"].as_f64().unwrap();
    let reference: Vec<f32> = sequence_sums(&lm, &pairs, Mode::Infer).to_vec1().unwrap();
    let loss = dpo_loss(&sequence_sums(&lm, &pairs, Mode::Grad), &reference, beta);
    let loss0 = loss.to_scalar::<f32>().unwrap() as f64;
    // The reference sums come from the fused inference path, the policy from the autograd path:
    // they agree to float rounding, so the loss equals ln 2 to well within 1e-4 relative.
    assert!((loss0 - std::f64::consts::LN_2).abs() / std::f64::consts::LN_2 < 1e-5, "DPO loss at init {loss0} must be ln 2");
    let grads = loss.backward().unwrap();
    let vars: Vec<Var> = lm.model.params().iter().map(|(_, v)| v.clone()).collect();
    let norm = grad_norm(&vars, &grads).unwrap();
    let want_norm = fx["sgd_step_grad_norm_l2"].as_f64().unwrap();
    assert!((norm - want_norm).abs() / want_norm < 1e-4, "grad norm {norm} vs TRL {want_norm}");
    sgd_step(&vars, &grads, fx["sgd_lr"].as_f64().unwrap()).unwrap();
    let after = dpo_loss(&sequence_sums(&lm, &pairs, Mode::Infer), &reference, beta).to_scalar::<f32>().unwrap() as f64;
    let want = fx["dpo_loss_after_1_sgd_step"].as_f64().unwrap();
    assert!((after - want).abs() / want < 1e-4, "loss after one SGD step {after} vs TRL {want}");
}

#[test]
fn adamw_and_clipping_match_torch() {
    let fx = fixture("reference/adamw.json");
    let shapes: Vec<Vec<usize>> = fx["shapes"].as_array().unwrap().iter()
        .map(|s| s.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()).collect();
    let vars: Vec<Var> = shapes.iter().zip(fx["init"].as_array().unwrap())
        .map(|(s, v)| Var::from_tensor(&Tensor::from_vec(floats(v).iter().map(|&x| x as f32).collect::<Vec<_>>(), s.as_slice(), &device()).unwrap()).unwrap())
        .collect();
    let betas = floats(&fx["betas"]);
    let cfg = AdamWConfig { lr: fx["lr"].as_f64().unwrap(), beta1: betas[0], beta2: betas[1], eps: fx["eps"].as_f64().unwrap(), weight_decay: fx["weight_decay"].as_f64().unwrap() };
    let mut opt = AdamW::new(vars.clone(), cfg).unwrap();
    for step in fx["steps"].as_array().unwrap() {
        // Gradients arrive through a real backward pass: loss = sum(w * g) has dloss/dw = g.
        let loss = vars.iter().zip(step["grads"].as_array().unwrap()).map(|(v, g)| {
            let g = Tensor::from_vec(floats(g).iter().map(|&x| x as f32).collect::<Vec<_>>(), v.shape(), &device()).unwrap();
            (v.as_tensor() * g).unwrap().sum_all().unwrap()
        }).reduce(|a, b| (a + b).unwrap()).unwrap();
        let grads = loss.backward().unwrap();
        let norm = grad_norm(&vars, &grads).unwrap();
        assert!((norm - step["norm"].as_f64().unwrap()).abs() < 1e-4);
        opt.step(&grads, clip_scale(norm, fx["max_norm"].as_f64())).unwrap();
        for (v, want) in vars.iter().zip(step["params_after"].as_array().unwrap()) {
            let got: Vec<f32> = v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            for (a, b) in got.iter().zip(floats(want)) {
                assert!((*a as f64 - b).abs() < 1e-6, "param {a} vs torch {b}");
            }
        }
    }
}

#[test]
fn bf16_weights_score_close_to_f32_and_train() {
    let f32_lm = load(SMOLLM2);
    let bf16_lm = LanguageModel::load(&model_path(SMOLLM2), &device(), DType::BF16).unwrap();
    let prompt = f32_lm.prompt_ids(&[Message::user("Is it fair to tax inheritance?")]).unwrap();
    let resp = f32_lm.tokenizer.encode("Many people think a modest inheritance tax is fair.<|im_end|>\n", false).unwrap();
    let pairs = vec![(prompt.clone(), resp.clone())];
    let a = valuedrift_engine::score::score(&f32_lm.model, &pairs, 512).unwrap()[0].mean;
    let b = valuedrift_engine::score::score(&bf16_lm.model, &pairs, 512).unwrap()[0].mean;
    assert!((a - b).abs() < 0.1 * a.abs(), "bf16 mean logp {b} too far from f32 {a}");
    let vars: Vec<Var> = bf16_lm.model.params().iter().map(|(_, v)| v.clone()).collect();
    let mut opt = AdamW::new(vars, AdamWConfig { lr: 1e-4, ..Default::default() }).unwrap();
    let nll = |m: &LanguageModel, mode| response_nll(&m.model, &[(&prompt, &resp)], mode).unwrap();
    let before = nll(&bf16_lm, Mode::Infer).to_dtype(DType::F32).unwrap().to_scalar::<f32>().unwrap();
    for _ in 0..3 {
        let grads = nll(&bf16_lm, Mode::Grad).backward().unwrap();
        opt.step(&grads, 1.0).unwrap();
    }
    let after = nll(&bf16_lm, Mode::Infer).to_dtype(DType::F32).unwrap().to_scalar::<f32>().unwrap();
    assert!(after < before, "three AdamW steps on one example lower its loss: {before} -> {after}");
}
