//! Sequence log-probs against TRL's numbers (../shared/fixtures/trl-dpo-reference.json) and
//! batched scoring against one-at-a-time scoring.

use crate::common::*;
use valuedrift_engine::score::score;
use valuedrift_engine::Message;

#[test]
fn smollm2_logps_match_trl() {
    let Some(fx) = shared_fixture("trl-dpo-reference.json") else { return };
    let lm = load(SMOLLM2);
    let mut pairs = Vec::new();
    let mut want = Vec::new();
    for t in fx["triples"].as_array().unwrap() {
        let prompt = lm.prompt_ids(&[Message::user(t["prompt"].as_str().unwrap())]).unwrap();
        assert_eq!(prompt, ids(&t["prompt_ids"]), "prompt tokens as TRL builds them");
        for side in ["chosen", "rejected"] {
            let text = format!("{}{}", t[side].as_str().unwrap(), lm.chat.end_of_turn());
            let resp = lm.tokenizer.encode(&text, false).unwrap();
            assert_eq!(resp, ids(&t[format!("{side}_ids")]), "{side} tokens as TRL counts them");
            pairs.push((prompt.clone(), resp));
            want.push((t[format!("{side}_logp")].as_f64().unwrap(), floats(&t[format!("{side}_token_logps")])));
        }
    }
    // A small token budget forces several batches, some with padding.
    let got = score(&lm.model, &pairs, 80).unwrap();
    for (g, (sum, toks)) in paired(&got, &want) {
        assert!((g.sum - sum).abs() < 1e-3, "sum {} vs TRL {}", g.sum, sum);
        for (a, b) in paired(&g.token_logps, toks) {
            assert!((*a as f64 - b).abs() < 1e-3, "token logp {a} vs TRL {b}");
        }
    }
    let one_by_one: Vec<_> = pairs.iter().map(|p| score(&lm.model, std::slice::from_ref(p), 1).unwrap().remove(0)).collect();
    for (a, b) in paired(&got, &one_by_one) {
        assert!((a.sum - b.sum).abs() < 1e-3, "batched {} vs single {}", a.sum, b.sum);
    }
}

/// The prefix-cached scorer (shared prefix once, each group's common part once, then each
/// prompt's tail) against whole prompts, on whichever device the tests run (the CUDA path uses
/// tensor KV contexts, the CPU host memory).
#[test]
fn prefix_cached_next_token_logps_equal_whole_prompts() {
    use valuedrift_engine::score::{next_token_logps, next_token_logps_grouped};
    let lm = load(SMOLLM2);
    let ask = |item: &str, order: &str| {
        lm.prompt_ids(&[Message::new("system", "You label opinions."), Message::user(&format!("Text: {item}\nStance ({order})?"))]).unwrap()
    };
    let items = ["Taxes should be higher for the rich.", "I have no view on this at all, honestly.", "Nuclear power is the cleanest option we have."];
    let groups: Vec<Vec<Vec<u32>>> =
        items.iter().map(|i| ["support, neutral or oppose", "oppose, support or neutral"].iter().map(|o| ask(i, o)).collect()).collect();
    let candidates: Vec<u32> = ["support", "neutral", "oppose"].iter().map(|w| lm.tokenizer.encode(w, false).unwrap()[0]).collect();
    let cached = next_token_logps_grouped(&lm.model, &groups, &candidates, 64).unwrap();
    let flat: Vec<Vec<u32>> = groups.iter().flatten().cloned().collect();
    let whole = next_token_logps(&lm.model, &flat, &candidates, 4096).unwrap();
    for (a, b) in paired(cached.iter().flatten().collect::<Vec<_>>(), &whole) {
        for (x, y) in paired(a, b) {
            assert!((x - y).abs() < 1e-3, "cached {a:?} vs whole {b:?}");
        }
    }
}
