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
    for (g, (sum, toks)) in got.iter().zip(&want) {
        assert!((g.sum - sum).abs() < 1e-3, "sum {} vs TRL {}", g.sum, sum);
        for (a, b) in g.token_logps.iter().zip(toks) {
            assert!((*a as f64 - b).abs() < 1e-3, "token logp {a} vs TRL {b}");
        }
    }
    let one_by_one: Vec<_> = pairs.iter().map(|p| score(&lm.model, std::slice::from_ref(p), 1).unwrap().remove(0)).collect();
    for (a, b) in got.iter().zip(&one_by_one) {
        assert!((a.sum - b.sum).abs() < 1e-3, "batched {} vs single {}", a.sum, b.sum);
    }
}
