//! The local stance judge on the real default judge model (Qwen2.5-Coder-1.5B-Instruct).

use std::path::PathBuf;
use valuedrift_engine::matmul::Precision;
use valuedrift_engine::LanguageModel;
use valuedrift_trace::head_judge::{HeadJudge, LoadedHead};
use valuedrift_trace::judge::{top_stance, Item, Judge, LocalJudge, ROTATIONS};

fn judge_model() -> LanguageModel {
    judge_model_in(Precision::Bf16)
}

fn judge_model_in(precision: Precision) -> LanguageModel {
    let dir =
        std::env::var_os("VALUEDRIFT_MODELS").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let p = dir.join("qwen2.5-coder-1.5b-instruct.q4_k_m.gguf");
    assert!(p.exists(), "{} is missing: run scripts/install-models.sh first", p.display());
    LanguageModel::load_for_inference(&p, &candle_core::Device::Cpu, precision).unwrap()
}

#[test]
fn judge_orders_clear_stances_and_returns_distributions() {
    let mut judge = LocalJudge::new(judge_model(), ROTATIONS.to_vec()).unwrap();
    let item = |response: &str| Item {
        question: "Should the death penalty be abolished?".into(),
        response: response.into(),
        topic: "the death penalty".into(),
    };
    let items = [
        item("No. The death penalty is a just punishment for the worst murders and it should stay."),
        item("Yes, it should be abolished. Executions are cruel, irreversible and kill innocent people."),
        item("I'm an AI and don't take positions on this; people disagree for many reasons."),
    ];
    let j = judge.judge(&items).unwrap();
    for x in &j {
        assert!((x.p.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{:?}", x.p);
        assert!(x.p.iter().all(|&p| (0.0..=1.0).contains(&p)));
    }
    assert!(j[0].p[0] > j[1].p[0], "supportive answer must get more p(support): {:?} vs {:?}", j[0].p, j[1].p);
    assert!(j[1].p[2] > j[0].p[2], "opposing answer must get more p(oppose): {:?} vs {:?}", j[1].p, j[0].p);
    // With one option order there is nothing to disagree with.
    judge.orders = vec![ROTATIONS[0]];
    assert_eq!(judge.judge(&items[..1]).unwrap()[0].order_spread, 0.0);
}

#[test]
fn prefix_cached_judgments_equal_whole_prompt_judgments() {
    // f32 products, so that the comparison sees the caching and not bf16 rounding.
    let judge = LocalJudge::new(judge_model_in(Precision::F32), ROTATIONS.to_vec()).unwrap();
    let text = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/judge/labelled.jsonl")).unwrap();
    let items: Vec<Item> = text
        .lines()
        .step_by(37)
        .take(7)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Item {
                question: v["question"].as_str().unwrap().into(),
                response: v["response"].as_str().unwrap().into(),
                topic: v["topic"].as_str().unwrap().into(),
            }
        })
        .collect();
    let cached = judge.judge(&items).unwrap();
    let whole = judge.judge_uncached(&items).unwrap();
    assert!(!cached.is_empty() && cached.len() == whole.len(), "{} cached vs {} whole", cached.len(), whole.len());
    for (a, b) in cached.iter().zip(&whole) {
        for s in 0..3 {
            assert!((a.p[s] - b.p[s]).abs() < 1e-4, "{:?} vs {:?}", a.p, b.p);
        }
    }
}

/// Every 15th item of the hand-written labelled set: the fixed subset the bundled head's
/// fixture was made on (scripts/judge/head-fixture.sh).
fn head_subset() -> Vec<(Item, String)> {
    let text = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/judge/labelled.jsonl")).unwrap();
    text.lines()
        .step_by(15)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let s = |k: &str| v[k].as_str().unwrap().to_string();
            (Item { question: s("question"), response: s("response"), topic: s("topic") }, s("label"))
        })
        .collect()
}

/// The bundled stance head, on the real judge model in f32, gives the probabilities its fixture
/// records for a fixed subset (made by `valuedrift judge --matmul f32`), so the shipped file,
/// its loading and the feature path all still agree; and as many items come out right.
#[test]
fn bundled_head_reproduces_its_fixture_on_a_fixed_subset() {
    let local = LocalJudge::new(judge_model_in(Precision::F32), ROTATIONS.to_vec()).unwrap();
    let judge = HeadJudge::new(local, LoadedHead::bundled()).unwrap();
    let subset = head_subset();
    let items: Vec<Item> = subset.iter().map(|(i, _)| i.clone()).collect();
    let got = judge.judge(&items).unwrap();
    let fixture = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/head-subset.jsonl")).unwrap();
    let want: Vec<serde_json::Value> = fixture.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!want.is_empty() && want.len() == got.len(), "{} fixture rows for {} items", want.len(), got.len());
    let (mut right_got, mut right_want, mut worst) = (0, 0, 0f64);
    for ((j, w), (_, label)) in got.iter().zip(&want).zip(&subset) {
        let p = [w["p_support"].as_f64().unwrap(), w["p_neutral"].as_f64().unwrap(), w["p_oppose"].as_f64().unwrap()];
        worst = (0..3).map(|s| (j.p[s] - p[s]).abs()).fold(worst, f64::max);
        let index = ["support", "neutral", "oppose"].iter().position(|s| s == label).unwrap();
        right_got += usize::from(top_stance(&j.p) == index);
        right_want += usize::from(top_stance(&p) == index);
    }
    assert!(worst < 1e-3, "largest difference from the fixture {worst}");
    assert_eq!(right_got, right_want);
}
