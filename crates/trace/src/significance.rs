//! Statistics that say whether a drift is real: a paired bootstrap interval for a mean
//! difference, a paired sign-flip (permutation) test, multiple-comparison corrections, and the
//! minimum detectable drift at a run's size.
//!
//! The sampling unit is the question: a drift's per-question differences d_q (end minus start,
//! paired by question and sample, the tracer's common random numbers) are the data; samples of
//! one question are not independent draws of the topic's value.
//!
//! Everything here is deterministic for a given seed (SplitMix64), so reports do not change
//! between runs of `valuedrift report`. scripts/reference/make_significance_fixture.py checks
//! these functions against scipy and statsmodels.

/// Resamples for bootstrap intervals and randomized sign-flip tests.
pub const RESAMPLES: usize = 10_000;
/// Sign-flip tests enumerate all 2^n flips up to this many questions, and sample beyond.
pub const EXACT_FLIPS_MAX: usize = 16;
/// Significance level of every test and interval here.
pub const ALPHA: f64 = 0.05;
/// Power at which the minimum detectable drift is computed.
pub const POWER: f64 = 0.8;

/// A small, fast, seedable generator (SplitMix64): reproducible across platforms and crate
/// versions, which the fixture comparison and stable reports need.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0), by Lemire's multiply-shift (bias below 2^-32 for n < 2^32).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

pub fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Sample standard deviation (n - 1); 0 for fewer than two values.
pub fn sd(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let m = mean(x);
    (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64).sqrt()
}

/// The q-quantile of sorted values with linear interpolation between order statistics (numpy's
/// default `percentile` method).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let (lo, frac) = (h.floor() as usize, h - h.floor());
    match sorted.get(lo + 1) {
        Some(next) => sorted[lo] + frac * (next - sorted[lo]),
        None => sorted[lo],
    }
}

/// Question indices drawn with replacement, `resamples` times: one draw serves every statistic
/// computed on the same questions (a drift's M and its η, every stance of a topic).
pub fn bootstrap_draws(n: usize, resamples: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = SplitMix64::new(seed);
    (0..resamples).map(|_| (0..n).map(|_| rng.below(n)).collect()).collect()
}

/// The 95% percentile interval of a statistic over bootstrap draws (None without data).
pub fn percentile_interval(mut stats: Vec<f64>) -> Option<(f64, f64)> {
    stats.retain(|s| s.is_finite());
    if stats.is_empty() {
        return None;
    }
    stats.sort_by(f64::total_cmp);
    Some((quantile_sorted(&stats, ALPHA / 2.0), quantile_sorted(&stats, 1.0 - ALPHA / 2.0)))
}

/// Paired bootstrap 95% interval for the mean of per-question differences.
pub fn bootstrap_mean_interval(d: &[f64], draws: &[Vec<usize>]) -> Option<(f64, f64)> {
    if d.is_empty() {
        return None;
    }
    percentile_interval(draws.iter().map(|idx| idx.iter().map(|&i| d[i]).sum::<f64>() / idx.len() as f64).collect())
}

/// Two-sided p-value of a paired sign-flip test of mean(d) = 0: under the null each difference
/// is as likely negative as positive, so the observed |mean| is ranked among the |means| of
/// every sign pattern (all 2^n up to `EXACT_FLIPS_MAX` questions, else `resamples` random ones,
/// counting the observed pattern: p = (1 + hits) / (1 + resamples)). 1 without data.
pub fn sign_flip_p(d: &[f64], resamples: usize, seed: u64) -> f64 {
    let n = d.len();
    if n == 0 {
        return 1.0;
    }
    let observed = d.iter().sum::<f64>().abs();
    // Ties within rounding count as extreme (scipy does the same), so that d = 0 gives p = 1.
    let bar = observed - 1e-12 * observed.max(1e-300);
    let flipped_sum = |signs: u64| d.iter().enumerate().map(|(i, v)| if signs >> (i % 64) & 1 == 1 { -v } else { *v }).sum::<f64>();
    if n <= EXACT_FLIPS_MAX {
        let hits = (0..1u64 << n).filter(|&s| flipped_sum(s).abs() >= bar).count();
        return hits as f64 / (1u64 << n) as f64;
    }
    let mut rng = SplitMix64::new(seed);
    let hits = (0..resamples)
        .filter(|_| {
            let sum: f64 = d.iter().map(|v| if rng.next_u64() >> 63 == 1 { -v } else { *v }).sum();
            sum.abs() >= bar
        })
        .count();
    (1 + hits) as f64 / (1 + resamples) as f64
}

/// The smallest p-value a sign-flip test on n questions can give: with few questions no drift,
/// however large, can be significant.
pub fn smallest_sign_flip_p(n: usize, resamples: usize) -> f64 {
    if n == 0 {
        1.0
    } else if n <= EXACT_FLIPS_MAX {
        2.0 / (1u64 << n) as f64
    } else {
        (2.0 / 2f64.powi(n as i32)).max(1.0 / (1 + resamples) as f64)
    }
}

/// Wilson's 95% score interval for a proportion of `successes` in `n` trials (what an accuracy
/// on a labelled set can claim); (0, 1) without trials.
pub fn wilson_interval(successes: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z: f64 = 1.959_963_984_540_054;
    let (n, p) = (n as f64, successes as f64 / n as f64);
    let center = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// The exact McNemar test of paired right/wrong outcomes: two-sided binomial p-value of the
/// smaller of the discordant counts `b` and `c` under p = 1/2 (1 without discordant pairs).
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    let k = b.min(c);
    // P(X <= k) for X ~ Binomial(n, 1/2), summed in log space so large n does not overflow.
    let log_half_n = -(n as f64) * std::f64::consts::LN_2;
    let mut log_choose = 0.0;
    let mut tail = 0.0;
    for i in 0..=k {
        if i > 0 {
            log_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        tail += (log_choose + log_half_n).exp();
    }
    (2.0 * tail).min(1.0)
}

/// Cohen's kappa of a square confusion matrix between two raters: (p_o - p_e) / (1 - p_e).
pub fn cohen_kappa(confusion: &[[usize; 3]; 3]) -> f64 {
    let n = confusion.iter().flatten().sum::<usize>() as f64;
    if n == 0.0 {
        return f64::NAN;
    }
    let observed = (0..3).map(|i| confusion[i][i]).sum::<usize>() as f64 / n;
    let expected: f64 =
        (0..3).map(|i| confusion[i].iter().sum::<usize>() as f64 * (0..3).map(|r| confusion[r][i]).sum::<usize>() as f64 / (n * n)).sum();
    if expected >= 1.0 {
        return if observed >= 1.0 { 1.0 } else { 0.0 };
    }
    (observed - expected) / (1.0 - expected)
}

/// Which correction turns per-test p-values into ones that hold across a whole table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Correction {
    /// Holm's step-down: controls the family-wise error rate.
    Holm,
    /// Benjamini-Hochberg: controls the false discovery rate.
    Bh,
}

impl Correction {
    pub fn describe(self) -> &'static str {
        match self {
            Correction::Holm => "Holm (family-wise error rate 5%)",
            Correction::Bh => "Benjamini-Hochberg (false discovery rate 5%)",
        }
    }

    pub fn adjust(self, p: &[f64]) -> Vec<f64> {
        match self {
            Correction::Holm => holm(p),
            Correction::Bh => benjamini_hochberg(p),
        }
    }
}

/// Indices of p in ascending order of p (stable).
fn ascending(p: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    order
}

/// Holm-adjusted p-values: the k-th smallest (from 0) times m - k, made monotone, capped at 1.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut adjusted = vec![0.0; m];
    let mut running = 0f64;
    for (k, &i) in ascending(p).iter().enumerate() {
        running = running.max(((m - k) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// Benjamini-Hochberg adjusted p-values: the k-th smallest (from 1) times m / k, made monotone
/// from the largest down, capped at 1.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut adjusted = vec![0.0; m];
    let mut running = 1f64;
    for (k, &i) in ascending(p).iter().enumerate().rev() {
        running = running.min(p[i] * m as f64 / (k + 1) as f64);
        adjusted[i] = running;
    }
    adjusted
}

/// The smallest true drift a paired test on these differences detects with 80% power at the
/// 5% level (two-sided, before correction): (t_{0.975, n-1} + t_{0.8, n-1}) · sd(d) / √n.
/// None with fewer than two questions.
pub fn min_detectable_drift(d: &[f64]) -> Option<f64> {
    let n = d.len();
    if n < 2 {
        return None;
    }
    let df = (n - 1) as f64;
    Some((t_quantile(1.0 - ALPHA / 2.0, df) + t_quantile(POWER, df)) * sd(d) / (n as f64).sqrt())
}

/// Quantile of Student's t with `df` degrees of freedom, for p in (0, 1): bisection on the CDF.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    assert!(p > 0.0 && p < 1.0 && df > 0.0, "t_quantile({p}, {df})");
    let (mut lo, mut hi) = (-1e3, 1e3);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Student's t CDF: 1 - I_x(df/2, 1/2) / 2 for t > 0 with x = df / (df + t²).
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let tail = 0.5 * regularized_incomplete_beta(df / (df + t * t), df / 2.0, 0.5);
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// I_x(a, b) by its continued fraction (modified Lentz), using the symmetry
/// I_x(a, b) = 1 - I_{1-x}(b, a) where the fraction converges slowly.
fn regularized_incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front = (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(x, a, b) / a
    } else {
        1.0 - front * beta_fraction(1.0 - x, b, a) / b
    }
}

fn beta_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (mut c, mut d) = (1.0, 1.0 - (a + b) * x / (a + 1.0));
    d = 1.0 / if d.abs() < TINY { TINY } else { d };
    let mut f = d;
    for m in 1..500 {
        let m = m as f64;
        for numerator in [m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)), -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0))]
        {
            d = 1.0 + numerator * d;
            d = 1.0 / if d.abs() < TINY { TINY } else { d };
            c = 1.0 + numerator / c;
            c = if c.abs() < TINY { TINY } else { c };
            f *= c * d;
        }
        if (c * d - 1.0).abs() < 1e-15 {
            break;
        }
    }
    f
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error below 1e-14).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let series = G[1..].iter().enumerate().fold(G[0], |acc, (i, g)| acc + g / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + series.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_flip_p_by_hand() {
        // Three positive differences: of the 8 sign patterns, only all-plus and all-minus reach
        // |sum| = 6, so p = 2/8.
        assert_eq!(sign_flip_p(&[1.0, 2.0, 3.0], RESAMPLES, 1), 0.25);
        // d = (1, -1): every pattern has |sum| 0 or 2; observed 0 -> all four are as extreme.
        assert_eq!(sign_flip_p(&[1.0, -1.0], RESAMPLES, 1), 1.0);
        assert_eq!(sign_flip_p(&[0.0; 6], RESAMPLES, 1), 1.0, "no drift at all is never significant");
        assert_eq!(smallest_sign_flip_p(4, RESAMPLES), 0.125);
    }

    #[test]
    fn corrections_by_hand() {
        let p = [0.01, 0.04, 0.03, 0.20];
        // Holm: sorted 0.01, 0.03, 0.04, 0.20 times 4, 3, 2, 1 -> 0.04, 0.09, 0.08 -> 0.09 (monotone), 0.20.
        let h = holm(&p);
        for (got, want) in h.iter().zip([0.04, 0.09, 0.09, 0.20]) {
            assert!((got - want).abs() < 1e-12, "{h:?}");
        }
        // BH: 0.01·4/1, 0.03·4/2, 0.04·4/3, 0.20·4/4 = 0.04, 0.06, 0.0533, 0.20 -> min from the top.
        let b = benjamini_hochberg(&p);
        for (got, want) in b.iter().zip([0.04, 0.04 * 4.0 / 3.0, 0.04 * 4.0 / 3.0, 0.20]) {
            assert!((got - want).abs() < 1e-12, "{b:?}");
        }
    }

    #[test]
    fn mcnemar_exact_by_hand() {
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert!((mcnemar_exact(0, 5) - 0.0625).abs() < 1e-15);
        assert!((mcnemar_exact(9, 1) - 22.0 / 1024.0).abs() < 1e-15);
        assert_eq!(mcnemar_exact(3, 3), 1.0);
        // scipy.stats.binomtest(10, 40, 0.5).pvalue
        assert!((mcnemar_exact(10, 30) - 0.0022214337732293643).abs() < 1e-12);
    }

    #[test]
    fn wilson_and_kappa_by_hand() {
        // 8 of 10: [0.4902, 0.9433] (statsmodels proportion_confint, method="wilson").
        let (lo, hi) = wilson_interval(8, 10);
        assert!((lo - 0.490_162).abs() < 1e-5 && (hi - 0.943_318).abs() < 1e-5, "{lo} {hi}");
        assert_eq!(wilson_interval(0, 0), (0.0, 1.0));
        // Two raters on 10 items: agree on 7; marginals rows (5, 3, 2), columns (4, 4, 2):
        // p_o 0.7, p_e (20 + 12 + 4) / 100 = 0.36, kappa 0.34 / 0.64 = 0.53125.
        let c = [[4, 1, 0], [0, 2, 1], [0, 1, 1]];
        assert!((cohen_kappa(&c) - 0.53125).abs() < 1e-12, "{}", cohen_kappa(&c));
        assert_eq!(cohen_kappa(&[[3, 0, 0], [0, 0, 0], [0, 0, 0]]), 1.0);
    }

    #[test]
    fn t_quantiles_match_the_table() {
        assert!((t_quantile(0.975, 1.0) - 12.706205).abs() < 1e-5);
        assert!((t_quantile(0.975, 9.0) - 2.262157).abs() < 1e-6);
        assert!((t_quantile(0.8, 4.0) - 0.940965).abs() < 1e-6);
        assert!((t_quantile(0.025, 30.0) + 2.042272).abs() < 1e-6);
    }

    #[test]
    fn bootstrap_interval_brackets_the_mean_and_is_reproducible() {
        let d: Vec<f64> = (0..20).map(|i| 0.1 + 0.05 * ((i * 7 % 11) as f64 - 5.0)).collect();
        let draws = bootstrap_draws(d.len(), 2000, 9);
        let (lo, hi) = bootstrap_mean_interval(&d, &draws).unwrap();
        assert!(lo < mean(&d) && mean(&d) < hi && lo > 0.0, "{lo} {hi}");
        assert_eq!(bootstrap_mean_interval(&d, &bootstrap_draws(d.len(), 2000, 9)), Some((lo, hi)));
        assert!(bootstrap_mean_interval(&[], &draws).is_none());
    }
}
