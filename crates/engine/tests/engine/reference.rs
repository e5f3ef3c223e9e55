//! The three model families against transformers (f32, same dequantized GGUF weights):
//! tokenizer ids, chat templates and logits at every position of fixed inputs.

use crate::common::*;
use candle_core::Tensor;
use valuedrift_engine::{LanguageModel, Message, Mode};

const LOGIT_TOLERANCE: f64 = 1e-3;

fn check_tokenizer(lm: &LanguageModel, fx: &serde_json::Value) {
    for case in fx["tokenizer"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(lm.tokenizer.encode(text, true).unwrap(), ids(&case["ids"]), "ids of {text:?}");
        let plain = ids(&case["ids_no_special"]);
        assert_eq!(lm.tokenizer.encode(text, false).unwrap(), plain, "ids (no special) of {text:?}");
        assert_eq!(lm.tokenizer.decode(&plain, false).unwrap(), case["decoded"].as_str().unwrap(), "decode of {text:?}");
    }
}

fn check_chat(lm: &LanguageModel, fx: &serde_json::Value) {
    let Some(cases) = fx["chat"].as_array() else { return };
    for case in cases {
        let messages: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
        assert_eq!(lm.chat.render(&messages, true).unwrap(), case["text"].as_str().unwrap(), "chat case {}", case["name"]);
    }
}

fn check_logits(lm: &LanguageModel, fx: &serde_json::Value) {
    for case in fx["logits"].as_array().unwrap() {
        let input = ids(&case["input_ids"]);
        let t = input.len();
        let x = Tensor::from_vec(input, (1, t), lm.model.device()).unwrap();
        let logits = lm.model.forward_logits(&x, Mode::Infer).unwrap().squeeze(0).unwrap();
        let logits: Vec<Vec<f32>> = logits.to_vec2().unwrap();
        let probe_ids = ids(&case["probe"]["probe_ids"]);
        let probe = case["probe"]["probe_logits"].as_array().unwrap();
        let mut worst: f64 = 0.0;
        for (p, row) in logits.iter().enumerate() {
            let argmax = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
            assert_eq!(argmax as u64, case["argmax"][p].as_u64().unwrap(), "argmax at position {p} of {:?}", case["text"]);
            let max = row.iter().copied().fold(f32::MIN, f32::max) as f64;
            let lse = max + row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
            worst = worst.max((lse - case["logsumexp"][p].as_f64().unwrap()).abs());
            for (id, want) in paired(probe_ids.iter(), floats(&probe[p])) {
                worst = worst.max((row[*id as usize] as f64 - want).abs());
            }
        }
        eprintln!("{}: max |logit diff| = {worst:.2e}", case["text"]);
        assert!(worst < LOGIT_TOLERANCE, "max |logit - transformers| = {worst} for {:?}", case["text"]);
    }
}

fn check_family(file: &str, fixture_name: &str) {
    let lm = load(file);
    let fx = fixture(&format!("reference/{fixture_name}.json"));
    check_tokenizer(&lm, &fx);
    check_chat(&lm, &fx);
    check_logits(&lm, &fx);
}

#[test]
fn smollm2_matches_transformers() {
    check_family(SMOLLM2, "smollm2");
}

#[test]
fn gemma3_matches_transformers() {
    check_family(GEMMA3, "gemma3");
}

#[test]
fn qwen2_matches_transformers() {
    check_family(QWEN2, "qwen2");
}

/// Saving as a Hugging Face directory and loading it back gives the same model, tokenizer and
/// chat format. (transformers loads these directories too: scripts/reference/check_saved_dirs.py,
/// results in docs/models.md.)
fn round_trip(file: &str) {
    let lm = load(file);
    let dir = std::env::temp_dir().join(format!("valuedrift-roundtrip-{}-{}", std::process::id(), file));
    lm.save_hf(&dir).unwrap();
    let back = LanguageModel::load(&dir, lm.model.device(), candle_core::DType::F32).unwrap();
    assert_eq!(back.config(), lm.config());
    let text = "<|im_start|>user\nIs 12345 prime?<|im_end|>\n Ünïcödé 你好";
    assert_eq!(back.tokenizer.encode(text, true).unwrap(), lm.tokenizer.encode(text, true).unwrap());
    let msgs = [Message::user("Should we tax sugar?")];
    assert_eq!(back.prompt_ids(&msgs).unwrap(), lm.prompt_ids(&msgs).unwrap());
    assert_eq!(back.stop_ids(), lm.stop_ids());
    let ids = Tensor::from_vec(lm.prompt_ids(&msgs).unwrap(), (1, ()), lm.model.device()).unwrap();
    let a = lm.model.forward_logits(&ids, Mode::Infer).unwrap();
    let b = back.model.forward_logits(&ids, Mode::Infer).unwrap();
    let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(diff, 0.0, "saved weights must be bit-identical");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn smollm2_saves_and_loads_back() {
    round_trip(SMOLLM2);
}

#[test]
fn gemma3_saves_and_loads_back() {
    round_trip(GEMMA3);
}
