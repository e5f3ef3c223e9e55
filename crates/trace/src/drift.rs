//! The paper's drift metrics for one stance over one training phase, given the value trajectory
//! at the phase's checkpoints (step 0 is the phase's starting model).
//!
//! - Drift magnitude M = v_end - v_start.
//! - Drift time η: the extremum is the maximum of the trajectory if M >= 0, else the minimum;
//!   η is the first step whose value lies inside the extremum's 95% interval, divided by the
//!   phase's total steps.
//!
//! Edge cases: a single checkpoint has M = 0 and no drift time (None); a flat trajectory
//! (every value equal) has M = 0 and η = 0, since the starting point already sits at the
//! extremum. Steps are measured from the phase's first checkpoint.

use crate::aggregate::Value;

/// One checkpoint of a phase: its training step and its value on one topic.
#[derive(Clone, Debug)]
pub struct Point {
    pub step: u64,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Drift {
    pub magnitude: f64,
    /// Fraction of the phase's steps to come within the extremum's 95% interval.
    pub time: Option<f64>,
    /// Step of the extremum.
    pub extremum_step: u64,
}

/// Drift of stance index `s` (0 support, 1 neutral, 2 oppose) over a phase's checkpoints,
/// which must be sorted by step. None for an empty phase.
pub fn drift(points: &[Point], s: usize) -> Option<Drift> {
    let (first, last) = (points.first()?, points.last()?);
    let magnitude = last.value.mean[s] - first.value.mean[s];
    let span = last.step.saturating_sub(first.step);
    // Ties go to the earliest checkpoint.
    let pick = |better: fn(f64, f64) -> bool| points.iter().fold(first, |best, p| if better(p.value.mean[s], best.value.mean[s]) { p } else { best });
    let extremum = if magnitude >= 0.0 { pick(|a, b| a > b) } else { pick(|a, b| a < b) };
    let time = if points.len() < 2 || span == 0 {
        None
    } else {
        let (lo, hi) = (extremum.value.low(s), extremum.value.high(s));
        let reached = points.iter().find(|p| (lo..=hi).contains(&p.value.mean[s])).unwrap_or(extremum);
        Some((reached.step - first.step) as f64 / span as f64)
    };
    Some(Drift { magnitude, time, extremum_step: extremum.step })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(step: u64, support: f64, ci: f64) -> Point {
        Point { step, value: Value { mean: [support, 0.0, 1.0 - support], ci_half: [ci, 0.0, ci], questions: 10 } }
    }

    #[test]
    fn rising_trajectory_reaches_the_maximums_interval_early() {
        // support: 0.2 -> 0.5 -> 0.68 -> 0.70 -> 0.66 over steps 0..400; max 0.70 +/- 0.05 at step 300.
        let pts = [point(0, 0.2, 0.05), point(100, 0.5, 0.05), point(200, 0.68, 0.05), point(300, 0.70, 0.05), point(400, 0.66, 0.05)];
        let d = drift(&pts, 0).unwrap();
        assert!((d.magnitude - 0.46).abs() < 1e-12);
        assert_eq!(d.extremum_step, 300);
        // First point inside [0.65, 0.75] is step 200: 200 / 400.
        assert_eq!(d.time, Some(0.5));
        // Oppose falls: extremum is the minimum (0.30 at step 300), first inside [0.25, 0.35] is step 200.
        let o = drift(&pts, 2).unwrap();
        assert!((o.magnitude + 0.46).abs() < 1e-12);
        assert_eq!((o.extremum_step, o.time), (300, Some(0.5)));
    }

    #[test]
    fn steps_count_from_the_phase_start() {
        // A preference phase starting at global step 1000.
        let pts = [point(1000, 0.5, 0.01), point(1050, 0.4, 0.01), point(1100, 0.3, 0.01), point(1200, 0.3, 0.01)];
        let d = drift(&pts, 0).unwrap();
        assert!((d.magnitude + 0.2).abs() < 1e-12);
        assert_eq!(d.time, Some(0.5), "step 1100 is half way through 1000..1200");
    }

    #[test]
    fn edge_cases_flat_and_single() {
        let flat = [point(0, 0.4, 0.0), point(10, 0.4, 0.0), point(20, 0.4, 0.0)];
        assert_eq!(drift(&flat, 0).unwrap(), Drift { magnitude: 0.0, time: Some(0.0), extremum_step: 0 });
        let single = [point(0, 0.4, 0.02)];
        assert_eq!(drift(&single, 0).unwrap().time, None);
        assert!(drift(&[], 0).is_none());
    }
}
