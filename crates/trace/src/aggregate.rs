//! v(T) = mean over questions of p(s | x), where p(s | x) = mean over samples of the judge's
//! stance probabilities; 95% confidence intervals are Student-t intervals over questions
//! (questions are the sampling unit: samples of one question are not independent draws of
//! the topic's value).

/// A value estimate for one topic: mean stance probabilities and their 95% intervals.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Value {
    /// Mean p(support), p(neutral), p(oppose) over questions.
    pub mean: [f64; 3],
    /// Half-width of the 95% t-interval over questions (0 with a single question).
    pub ci_half: [f64; 3],
    pub questions: usize,
}

impl Value {
    pub fn low(&self, s: usize) -> f64 {
        self.mean[s] - self.ci_half[s]
    }
    pub fn high(&self, s: usize) -> f64 {
        self.mean[s] + self.ci_half[s]
    }
}

/// p(s | x): the mean of one question's sample judgments.
pub fn question_value(samples: &[[f64; 3]]) -> Option<[f64; 3]> {
    if samples.is_empty() {
        return None;
    }
    let mut m = [0.0; 3];
    for s in samples {
        for i in 0..3 {
            m[i] += s[i];
        }
    }
    Some(m.map(|x| x / samples.len() as f64))
}

/// v(T) with 95% t-intervals over the given per-question values.
pub fn topic_value(per_question: &[[f64; 3]]) -> Option<Value> {
    let n = per_question.len();
    if n == 0 {
        return None;
    }
    let mut mean = [0.0; 3];
    for q in per_question {
        for i in 0..3 {
            mean[i] += q[i] / n as f64;
        }
    }
    let mut ci_half = [0.0; 3];
    if n > 1 {
        let t = t_critical_95(n - 1);
        for i in 0..3 {
            let var = per_question.iter().map(|q| (q[i] - mean[i]).powi(2)).sum::<f64>() / (n - 1) as f64;
            ci_half[i] = t * (var / n as f64).sqrt();
        }
    }
    Some(Value { mean, ci_half, questions: n })
}

/// Two-sided 95% critical value of Student's t with `df` degrees of freedom.
pub fn t_critical_95(df: usize) -> f64 {
    // Exact table for small df; beyond it the Cornish-Fisher expansion around 1.959964 is
    // accurate to better than 1e-4.
    const TABLE: [f64; 30] = [
        12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139, 2.200985, 2.178813, 2.160369, 2.144787,
        2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407,
        2.045230, 2.042272,
    ];
    match df {
        0 => f64::INFINITY,
        d if d <= 30 => TABLE[d - 1],
        d => {
            let z: f64 = 1.959_963_985;
            let v = d as f64;
            z + (z.powi(3) + z) / (4.0 * v) + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * v * v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_value_is_the_sample_mean() {
        let q = question_value(&[[0.8, 0.1, 0.1], [0.4, 0.5, 0.1]]).unwrap();
        assert!((q[0] - 0.6).abs() < 1e-12 && (q[1] - 0.3).abs() < 1e-12 && (q[2] - 0.1).abs() < 1e-12);
        assert!(question_value(&[]).is_none());
    }

    #[test]
    fn topic_value_matches_a_hand_computed_t_interval() {
        // support values 0.2, 0.4, 0.6: mean 0.4, sd 0.2, se 0.11547, t(2) = 4.302653 -> 0.49683
        let v = topic_value(&[[0.2, 0.5, 0.3], [0.4, 0.3, 0.3], [0.6, 0.1, 0.3]]).unwrap();
        assert!((v.mean[0] - 0.4).abs() < 1e-12);
        assert!((v.ci_half[0] - 0.496828).abs() < 1e-5, "{}", v.ci_half[0]);
        assert_eq!(v.ci_half[2], 0.0, "identical values have no spread");
        assert_eq!(topic_value(&[[1.0, 0.0, 0.0]]).unwrap().ci_half, [0.0; 3]);
    }

    #[test]
    fn t_critical_values_follow_the_table_and_the_normal_limit() {
        assert!((t_critical_95(1) - 12.706205).abs() < 1e-6);
        assert!((t_critical_95(49) - 2.009575).abs() < 1e-4, "{}", t_critical_95(49));
        assert!((t_critical_95(100_000) - 1.959964).abs() < 1e-4);
    }
}
