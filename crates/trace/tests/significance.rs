//! The drift statistics against scipy and statsmodels: fixture made by
//! scripts/reference/make_significance_fixture.py.

use valuedrift_trace::significance::*;

fn fixture() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/significance.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect(path)).expect("fixture parses")
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

#[test]
fn sign_flip_bootstrap_and_detectable_drift_match_scipy() {
    let f = fixture();
    let cases = f["cases"].as_array().unwrap();
    assert!(cases.len() >= 6, "fixture has its cases");
    for c in cases {
        let (name, d) = (c["name"].as_str().unwrap(), floats(&c["d"]));
        let p = sign_flip_p(&d, RESAMPLES, 7);
        let want = c["p"].as_f64().unwrap();
        // Exact enumeration agrees to rounding; sampled flips within about 3 Monte Carlo errors.
        let tol = if d.len() <= EXACT_FLIPS_MAX { 1e-9 } else { 3.0 * (want * (1.0 - want) / RESAMPLES as f64).sqrt() + 2e-3 };
        assert!((p - want).abs() <= tol, "{name}: sign-flip p {p} vs scipy {want}");

        let (lo, hi) = bootstrap_mean_interval(&d, &bootstrap_draws(d.len(), RESAMPLES, 11)).unwrap();
        let ci = floats(&c["ci"]);
        let se = c["bootstrap_se"].as_f64().unwrap();
        assert!(
            (lo - ci[0]).abs() < 0.15 * se && (hi - ci[1]).abs() < 0.15 * se,
            "{name}: bootstrap interval [{lo}, {hi}] vs scipy {ci:?} (se {se})"
        );

        let mdd = min_detectable_drift(&d).unwrap();
        assert!((mdd - c["mdd"].as_f64().unwrap()).abs() < 1e-9, "{name}: minimum detectable drift {mdd} vs {}", c["mdd"]);
    }
}

#[test]
fn holm_and_benjamini_hochberg_match_statsmodels() {
    let f = fixture();
    let p = floats(&f["corrections"]["p"]);
    for (correction, key) in [(Correction::Holm, "holm"), (Correction::Bh, "bh")] {
        let (got, want) = (correction.adjust(&p), floats(&f["corrections"][key]));
        assert!(!want.is_empty() && got.len() == want.len(), "{key}: {} values vs {}", got.len(), want.len());
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!((a - b).abs() < 1e-12, "{key} p[{i}]: {a} vs statsmodels {b}");
        }
    }
}

#[test]
fn t_quantiles_match_scipy() {
    let f = fixture();
    let rows = f["t_quantiles"].as_array().unwrap();
    assert!(rows.len() >= 20);
    for r in rows {
        let (p, df, want) = (r["p"].as_f64().unwrap(), r["df"].as_f64().unwrap(), r["t"].as_f64().unwrap());
        let got = t_quantile(p, df);
        assert!((got - want).abs() < 1e-7 * want.abs().max(1.0), "t({p}, df {df}) = {got} vs scipy {want}");
    }
}
