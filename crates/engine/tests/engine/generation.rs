//! Batched generation: greedy output equals transformers' token for token, and sampled output
//! does not depend on batch size or on which other prompts share the batch.

use crate::common::*;
use valuedrift_engine::generate::{generate, generate_with_store, Completion, Finish, Request, SamplingParams};
use valuedrift_engine::kv::KvStore;
use valuedrift_engine::LanguageModel;

fn run(lm: &LanguageModel, prompts: &[Vec<u32>], params: &SamplingParams, batch: usize) -> Vec<Completion> {
    run_with(lm, prompts, params, batch, KvStore::for_device(lm.model.device()))
}

fn run_with(lm: &LanguageModel, prompts: &[Vec<u32>], params: &SamplingParams, batch: usize, store: KvStore) -> Vec<Completion> {
    let requests: Vec<Request> = prompts.iter().enumerate().map(|(i, p)| Request { prompt: p.clone(), seed_key: i as u64 }).collect();
    let mut out: Vec<Option<Completion>> = vec![None; prompts.len()];
    generate_with_store(&lm.model, &requests, params, &lm.stop_ids(), batch, store, |c| {
        let i = c.request;
        out[i] = Some(c);
        Ok(())
    })
    .unwrap();
    out.into_iter().map(|c| c.expect("every request completes")).collect()
}

fn check_greedy(file: &str, fixture_name: &str) {
    let lm = load(file);
    let fx = fixture(&format!("reference/{fixture_name}.json"));
    let cases = fx["greedy"].as_array().unwrap();
    let prompts: Vec<Vec<u32>> = cases.iter().map(|c| ids(&c["prompt_ids"])).collect();
    let params = SamplingParams { temperature: 0.0, top_p: 1.0, max_new_tokens: 24, seed: 0 };
    // All prompts in one batch (different lengths), and a batch of 2 that refills its slots; with
    // the host cache and with the tensor cache that GPUs use.
    for (batch, store) in [(prompts.len(), KvStore::Host), (2, KvStore::Host), (prompts.len(), KvStore::Tensor), (2, KvStore::Tensor)] {
        for (c, case) in paired(&run_with(&lm, &prompts, &params, batch, store), cases) {
            let mut got = c.tokens.clone();
            if let Finish::Stop(id) = c.finish {
                got.push(id);
            }
            assert_eq!(got, ids(&case["output_ids"]), "greedy output of {:?} at batch {batch}, {store:?} cache", case["prompt"]);
        }
    }
    // Our prompt construction gives the same ids as transformers' chat template.
    if !matches!(lm.chat, valuedrift_engine::ChatFormat::Base) {
        for case in cases {
            let msgs = [valuedrift_engine::Message::user(case["prompt"].as_str().unwrap())];
            assert_eq!(lm.prompt_ids(&msgs).unwrap(), ids(&case["prompt_ids"]));
        }
    }
}

#[test]
fn smollm2_greedy_matches_transformers() {
    check_greedy(SMOLLM2, "smollm2");
}

#[test]
fn gemma3_greedy_matches_transformers() {
    check_greedy(GEMMA3, "gemma3");
}

#[test]
fn qwen2_greedy_matches_transformers() {
    check_greedy(QWEN2, "qwen2");
}

#[test]
fn sampling_is_reproducible_and_independent_of_batching() {
    let lm = load(SMOLLM2);
    let questions = [
        "Should voting be compulsory?",
        "Is it wrong to eat meat?",
        "Tell me a joke.",
        "What do you think about remote work? Answer in two sentences.",
        "Hi",
        "Why is the sky blue?",
    ];
    let prompts: Vec<Vec<u32>> = questions.iter().map(|q| lm.prompt_ids(&[valuedrift_engine::Message::user(q)]).unwrap()).collect();
    let params = SamplingParams { temperature: 0.7, top_p: 0.95, max_new_tokens: 20, seed: 7 };
    let wide = run(&lm, &prompts, &params, 6);
    let narrow = run(&lm, &prompts, &params, 2);
    let again = run(&lm, &prompts, &params, 6);
    for ((a, b), c) in paired(paired(&wide, &narrow), &again) {
        assert_eq!(a.tokens, c.tokens, "same seed, same batch: same output");
        assert_eq!(a.tokens, b.tokens, "batch size must not change a request's sample");
    }
    let other_seed = run(&lm, &prompts, &SamplingParams { seed: 8, ..params.clone() }, 6);
    assert!(paired(&wide, &other_seed).any(|(a, b)| a.tokens != b.tokens), "another seed gives other samples");
    for c in &wide {
        assert!(c.tokens.len() <= 20);
        assert!(matches!(c.finish, Finish::Stop(_)) || c.tokens.len() == 20);
    }
}

#[test]
fn prompt_longer_than_context_is_a_clear_error() {
    let lm = load(SMOLLM2);
    let requests = [Request { prompt: vec![1; 9000], seed_key: 0 }];
    let err = generate(&lm.model, &requests, &SamplingParams::default(), &[], 1, |_| Ok(())).unwrap_err();
    assert!(err.to_string().contains("exceeds the model's context"), "{err}");
}
