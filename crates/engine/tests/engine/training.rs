//! Training primitives: gradients reach every weight, the DPO gradient and one SGD step match
//! TRL, AdamW and clipping match torch, and bf16 weights work.

use crate::common::*;
use candle_core::{DType, Tensor, Var};
use valuedrift_engine::optim::{clip_scale, grad_norm, sgd_step, AdamW, AdamWConfig};
use valuedrift_engine::score::{response_nll, token_logps};
use valuedrift_engine::{LanguageModel, Message, Mode};

fn every_weight_gets_a_gradient(lm: &LanguageModel) {
    let prompt = lm.prompt_ids(&[Message::user("Should cities ban cars from their centres?")]).unwrap();
    let response = lm.tokenizer.encode("Cities could try it gradually, with good public transport first.", false).unwrap();
    let loss = response_nll(&lm.model, &[(&prompt, &response)], Mode::Grad).unwrap();
    let grads = valuedrift_engine::backward(&loss).unwrap();
    let mut missing = Vec::new();
    for (name, var) in lm.model.params() {
        let nonzero = grads.get(var.as_tensor()).map(|g| g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0).unwrap_or(false);
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
    let grads = valuedrift_engine::backward(&loss).unwrap();
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
    let shapes: Vec<Vec<usize>> =
        fx["shapes"].as_array().unwrap().iter().map(|s| s.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()).collect();
    let vars: Vec<Var> = paired(&shapes, fx["init"].as_array().unwrap())
        .map(|(s, v)| {
            Var::from_tensor(&Tensor::from_vec(floats(v).iter().map(|&x| x as f32).collect::<Vec<_>>(), s.as_slice(), &device()).unwrap()).unwrap()
        })
        .collect();
    let betas = floats(&fx["betas"]);
    let cfg = AdamWConfig {
        lr: fx["lr"].as_f64().unwrap(),
        beta1: betas[0],
        beta2: betas[1],
        eps: fx["eps"].as_f64().unwrap(),
        weight_decay: fx["weight_decay"].as_f64().unwrap(),
    };
    let mut opt = AdamW::new(vars.clone(), cfg).unwrap();
    for step in fx["steps"].as_array().unwrap() {
        // Gradients arrive through a real backward pass: loss = sum(w * g) has dloss/dw = g.
        let loss = paired(&vars, step["grads"].as_array().unwrap())
            .map(|(v, g)| {
                let g = Tensor::from_vec(floats(g).iter().map(|&x| x as f32).collect::<Vec<_>>(), v.shape(), &device()).unwrap();
                (v.as_tensor() * g).unwrap().sum_all().unwrap()
            })
            .reduce(|a, b| (a + b).unwrap())
            .unwrap();
        let grads = valuedrift_engine::backward(&loss).unwrap();
        let norm = grad_norm(&vars, &grads).unwrap();
        assert!((norm - step["norm"].as_f64().unwrap()).abs() < 1e-4);
        opt.step(&grads, clip_scale(norm, fx["max_norm"].as_f64())).unwrap();
        for (v, want) in paired(&vars, step["params_after"].as_array().unwrap()) {
            let got: Vec<f32> = v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            for (a, b) in paired(&got, floats(want)) {
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
        let grads = valuedrift_engine::backward(&nll(&bf16_lm, Mode::Grad)).unwrap();
        opt.step(&grads, 1.0).unwrap();
    }
    let after = nll(&bf16_lm, Mode::Infer).to_dtype(DType::F32).unwrap().to_scalar::<f32>().unwrap();
    assert!(after < before, "three AdamW steps on one example lower its loss: {before} -> {after}");
}

/// A loss over two rows of different lengths (the shorter one padded) that weights every
/// scored token differently, so each position's gradient matters.
fn weighted_logp_loss(model: &valuedrift_engine::Model, seqs: &[(Vec<u32>, Vec<bool>)]) -> Tensor {
    let refs: Vec<(&[u32], &[bool])> = seqs.iter().map(|(i, t)| (i.as_slice(), t.as_slice())).collect();
    let (logps, _) = valuedrift_engine::score::masked_token_logps(model, &refs, Mode::Grad).unwrap();
    let n = logps.dim(0).unwrap();
    let weights: Vec<f32> = (0..n).map(|i| 0.5 + (i % 7) as f32 / 7.0).collect();
    (logps * Tensor::from_vec(weights, n, &device()).unwrap()).unwrap().sum_all().unwrap().neg().unwrap()
}

/// Every weight's gradient from the hand-written decoder pass against candle's autograd graph
/// of the same model: relative L2 difference per weight.
fn hand_pass_matches_graph(model: &mut valuedrift_engine::Model, seqs: &[(Vec<u32>, Vec<bool>)], tol: f64) {
    let vars: Vec<(String, Var)> = model.params().to_vec();
    let mut run = |hand: bool| {
        model.set_hand_grad(hand);
        let loss = weighted_logp_loss(model, seqs);
        (loss.to_scalar::<f32>().unwrap(), valuedrift_engine::backward(&loss).unwrap())
    };
    let (graph_loss, graph) = run(false);
    let (hand_loss, hand) = run(true);
    assert!((graph_loss - hand_loss).abs() <= 1e-4 * graph_loss.abs(), "loss {hand_loss} vs graph {graph_loss}");
    for (name, v) in &vars {
        let (a, b) = (hand.get(v.as_tensor()).unwrap_or_else(|| panic!("{name}: no gradient")), graph.get(v.as_tensor()).unwrap());
        let diff = (a - b).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap().sqrt() as f64;
        let size = b.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap().sqrt() as f64;
        assert!(diff <= tol * size.max(1e-12), "{name}: relative gradient difference {}", diff / size);
    }
}

/// The packed kernels a hand-written-pass test needs: cargo reports the test as ignored on a
/// CPU without them (build.rs); here, a cap below AVX2 by VALUEDRIFT_KERNELS is an error that
/// says so (scripts/test.sh caps at AVX2, where these tests run).
fn require_kernels(p: valuedrift_engine::matmul::Precision) {
    assert!(
        valuedrift_engine::matmul::supported(p),
        "the hand-written pass at {p:?} needs its packed kernels, which are capped here (VALUEDRIFT_KERNELS below avx2)"
    );
}

/// Two chat rows of SmolLM2 with their answer tokens as targets.
fn two_answers(lm: &LanguageModel) -> Vec<(Vec<u32>, Vec<bool>)> {
    let seq = |text: &str, answer: &str| {
        let mut ids = lm.prompt_ids(&[Message::user(text)]).unwrap();
        let prompt = ids.len();
        ids.extend(lm.tokenizer.encode(answer, false).unwrap());
        let targets = (0..ids.len()).map(|j| j >= prompt).collect();
        (ids, targets)
    };
    vec![
        seq("Should voting be compulsory?", "Compulsory voting raises turnout, but some see it as coercive."),
        seq("Is nuclear power a good idea?", "It is low-carbon."),
    ]
}

#[test]
#[cfg_attr(not(build_cpu_packed_kernels), ignore = "the hand-written pass needs AVX2 and FMA, which this CPU lacks")]
fn hand_written_training_pass_matches_candle_graph_on_smollm2() {
    require_kernels(valuedrift_engine::matmul::Precision::F32);
    let mut lm = load(SMOLLM2);
    let seqs = two_answers(&lm);
    hand_pass_matches_graph(&mut lm.model, &seqs, 1e-4);
}

/// bf16 has 8 significant bits: rounding an operand to it has relative error at most
/// u = 2^-8. A product of two rounded operands, accumulated in f32, is off by at most 2u per
/// term; with independent rounding errors the relative L2 error of a whole matrix product is
/// well under that. A gradient passes through the products of every layer above it (forward and
/// backward), and independent errors add in quadrature: over SmolLM2's 30 layers, with the
/// forward input, the backward input and the weight-gradient product of each, the bound is
/// 2u·sqrt(3·30) = 0.074 relative L2, for each weight matrix and for all gradients together.
/// The norm weights' gradients are sums over every position of terms that largely cancel, which
/// amplifies the same errors by the sum's conditioning: they get twice the bound. Measured
/// (2026-11-30, Zen 4): matrices at most 0.048, norm weights at most 0.073.
#[test]
#[cfg_attr(not(build_cpu_packed_kernels), ignore = "the hand-written pass needs AVX2 and FMA, which this CPU lacks")]
fn bf16_hand_written_gradients_match_f32_within_bf16_precision() {
    use valuedrift_engine::matmul::Precision;
    require_kernels(Precision::Bf16);
    let mut lm = load(SMOLLM2);
    let seqs = two_answers(&lm);
    let vars: Vec<(String, Var)> = lm.model.params().to_vec();
    let mut run = |p: Precision| {
        assert!(lm.model.set_train_precision(Some(p)), "{p:?} kernels");
        let loss = weighted_logp_loss(&lm.model, &seqs);
        (loss.to_scalar::<f32>().unwrap() as f64, valuedrift_engine::backward(&loss).unwrap())
    };
    let (f32_loss, exact) = run(Precision::F32);
    let (bf16_loss, rounded) = run(Precision::Bf16);
    let u = 2f64.powi(-8);
    let bound = 2.0 * u * (3.0 * lm.config().num_layers as f64).sqrt();
    assert!((bf16_loss - f32_loss).abs() <= bound * f32_loss.abs(), "loss {bf16_loss} vs f32 {f32_loss}");
    let (mut total_diff, mut total_size, mut differing) = (0.0f64, 0.0f64, 0);
    let mut worst = [(0.0f64, String::new()), (0.0f64, String::new())];
    for (name, v) in &vars {
        let (a, b) = (rounded.get(v.as_tensor()).unwrap_or_else(|| panic!("{name}: no bf16 gradient")), exact.get(v.as_tensor()).unwrap());
        let diff = (a - b).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() as f64;
        let size = b.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() as f64;
        (total_diff, total_size) = (total_diff + diff, total_size + size);
        let relative = (diff / size.max(1e-30)).sqrt();
        let is_vector = v.as_tensor().rank() == 1;
        let allowed = if is_vector { 2.0 * bound } else { bound };
        assert!(relative <= allowed, "{name}: bf16 gradient off by {relative:.4} relative L2 (bound {allowed:.4})");
        differing += usize::from(relative > u / 64.0);
        let slot = &mut worst[usize::from(is_vector)];
        if relative > slot.0 {
            *slot = (relative, name.clone());
        }
    }
    let overall = (total_diff / total_size).sqrt();
    eprintln!(
        "bf16 vs f32 hand-written gradients, relative L2: all {overall:.4}, worst matrix {:.4} ({}), worst vector {:.4} ({}); bound {bound:.4}; loss {bf16_loss:.5} vs {f32_loss:.5}",
        worst[0].0, worst[0].1, worst[1].0, worst[1].1
    );
    assert!(overall <= bound, "all gradients together off by {overall:.4} (bound {bound:.4})");
    // The bf16 kernels really ran: most weights' gradients moved by more than float noise.
    assert!(differing * 2 > vars.len(), "only {differing} of {} gradients differ from f32: were the bf16 kernels used?", vars.len());
}

#[test]
#[cfg_attr(not(build_cpu_packed_kernels), ignore = "the hand-written pass needs AVX2 and FMA, which this CPU lacks")]
fn hand_written_training_pass_matches_candle_graph_with_biases_and_grouped_heads() {
    use valuedrift_engine::{Family, Model, ModelConfig};
    require_kernels(valuedrift_engine::matmul::Precision::F32);
    // A small Qwen2-shaped decoder (q/k/v biases, 4 query heads per key/value head, untied
    // head, pad id 0) with seeded weights: the shapes the SmolLM2 test does not cover.
    let cfg = ModelConfig {
        family: Family::Qwen2,
        vocab_size: 97,
        hidden_size: 64,
        intermediate_size: 96,
        num_layers: 2,
        num_heads: 8,
        num_kv_heads: 2,
        head_dim: 8,
        rms_norm_eps: 1e-6,
        rope_theta: 1e6,
        rope_local_theta: 1e6,
        max_position_embeddings: 128,
        tie_word_embeddings: false,
        attention_bias: true,
        sliding_window: None,
        sliding_layers: vec![false; 2],
        query_pre_attn_scalar: 8.0,
        bos_token_id: None,
        eos_token_ids: vec![1],
        pad_token_id: Some(0),
    };
    let mut state = 12345u64;
    let mut tensor = |shape: &[usize], scale: f32| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
            })
            .collect();
        Tensor::from_vec(v, shape, &device()).unwrap()
    };
    let (h, i, kv) = (64, 96, 16);
    let mut map = std::collections::HashMap::new();
    map.insert("model.embed_tokens.weight".to_string(), tensor(&[97, h], 1.0));
    map.insert("lm_head.weight".to_string(), tensor(&[97, h], 0.5));
    map.insert("model.norm.weight".to_string(), (tensor(&[h], 0.2) + 1.0).unwrap());
    for l in 0..2 {
        let p = format!("model.layers.{l}.");
        for (name, shape, scale) in [
            ("self_attn.q_proj.weight", vec![h, h], 0.4),
            ("self_attn.q_proj.bias", vec![h], 0.2),
            ("self_attn.k_proj.weight", vec![kv, h], 0.4),
            ("self_attn.k_proj.bias", vec![kv], 0.2),
            ("self_attn.v_proj.weight", vec![kv, h], 0.4),
            ("self_attn.v_proj.bias", vec![kv], 0.2),
            ("self_attn.o_proj.weight", vec![h, h], 0.3),
            ("mlp.gate_proj.weight", vec![i, h], 0.3),
            ("mlp.up_proj.weight", vec![i, h], 0.3),
            ("mlp.down_proj.weight", vec![h, i], 0.3),
        ] {
            map.insert(format!("{p}{name}"), tensor(&shape, scale));
        }
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            map.insert(format!("{p}{norm}.weight"), (tensor(&[h], 0.2) + 1.0).unwrap());
        }
    }
    let mut model =
        Model::from_tensors(cfg, &mut map, DType::F32, &device(), std::path::Path::new("seeded"), valuedrift_engine::Build::Trainable).unwrap();
    // Token 0 (the pad id) appears inside a row too: its embedding gets no input-side gradient.
    let seqs = vec![
        ((2..40).map(|t| (t * 7 % 97) as u32).chain([0, 5, 9]).collect::<Vec<_>>(), (0..41).map(|j| j > 3).collect::<Vec<_>>()),
        ((3..20).map(|t| (t * 11 % 97) as u32).collect(), (0..17).map(|j| j > 0).collect()),
    ];
    hand_pass_matches_graph(&mut model, &seqs, 1e-4);
}
