"""Reference figures for crates/trace/src/significance.rs, from scipy and statsmodels.

Writes crates/trace/tests/fixtures/significance.json: per-question difference vectors and, for
each, the sign-flip p-value (scipy.stats.permutation_test, exact where 2^n resamples fit), the
95% percentile bootstrap interval of the mean (scipy.stats.bootstrap, many resamples), and the
minimum detectable drift; Holm and Benjamini-Hochberg adjustments (statsmodels multipletests);
Student t quantiles (scipy.stats.t.ppf).

    python -m venv /tmp/ref && /tmp/ref/bin/pip install numpy scipy statsmodels
    /tmp/ref/bin/python scripts/reference/make_significance_fixture.py
"""
import json
import pathlib

import numpy as np
import scipy
import statsmodels
from scipy import stats
from statsmodels.stats.multitest import multipletests

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/trace/tests/fixtures/significance.json"
rng = np.random.default_rng(20261130)


def case(name, d):
    d = np.asarray(d, dtype=float)
    n = len(d)
    exact = 2 ** n <= 2 ** 20
    perm = stats.permutation_test(
        (d,), np.mean, permutation_type="samples", alternative="two-sided",
        n_resamples=2 ** n if exact else 200_000, random_state=1)
    boot = stats.bootstrap((d,), np.mean, method="percentile", n_resamples=200_000, random_state=2)
    mdd = (stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * d.std(ddof=1) / np.sqrt(n)
    return {
        "name": name, "d": d.tolist(), "p": float(perm.pvalue), "p_exact": bool(exact),
        "ci": [float(boot.confidence_interval.low), float(boot.confidence_interval.high)],
        "bootstrap_se": float(boot.standard_error), "mdd": float(mdd),
    }


# Per-question differences of stance probabilities: values in [-1, 1], drifts small and large.
cases = [
    case("five_rising", [0.12, 0.05, 0.20, 0.08, 0.15]),
    case("eight_mixed", rng.normal(0.03, 0.1, 8).clip(-1, 1)),
    case("twelve_strong", rng.normal(0.15, 0.1, 12).clip(-1, 1)),
    case("sixteen_null", rng.normal(0.0, 0.1, 16).clip(-1, 1)),
    case("twenty_weak", rng.normal(0.04, 0.12, 20).clip(-1, 1)),
    case("fifty_moderate", rng.normal(-0.05, 0.15, 50).clip(-1, 1)),
]

p = np.concatenate([[0.001, 0.01, 0.04, 0.03, 0.2, 0.5, 0.049, 0.0005], rng.uniform(0, 0.1, 12)])
corrections = {
    "p": p.tolist(),
    "holm": multipletests(p, method="holm")[1].tolist(),
    "bh": multipletests(p, method="fdr_bh")[1].tolist(),
}
t_quantiles = [
    {"p": q, "df": df, "t": float(stats.t.ppf(q, df))}
    for q in (0.8, 0.9, 0.975, 0.995, 0.025) for df in (1, 2, 3, 7, 19, 49, 200)
]

OUT.write_text(json.dumps({
    "made_by": f"scripts/reference/make_significance_fixture.py (numpy {np.__version__}, scipy {scipy.__version__}, "
               f"statsmodels {statsmodels.__version__})",
    "cases": cases, "corrections": corrections, "t_quantiles": t_quantiles,
}, indent=1) + "\n")
print(f"wrote {OUT}")
