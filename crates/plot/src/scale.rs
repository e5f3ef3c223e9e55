//! Data-to-pixel mapping and "nice" axis ticks (steps of 1, 2 or 5 times a power of ten).

/// Linear map from a data interval onto a pixel interval (which may be reversed, as for y).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scale {
    domain: (f64, f64),
    pixels: (f64, f64),
}

impl Scale {
    pub fn new(domain: (f64, f64), pixels: (f64, f64)) -> Self {
        Scale { domain: non_degenerate(domain), pixels }
    }

    pub fn map(&self, v: f64) -> f64 {
        let (d0, d1) = self.domain;
        let (p0, p1) = self.pixels;
        p0 + (v - d0) / (d1 - d0) * (p1 - p0)
    }

    pub fn domain(&self) -> (f64, f64) {
        self.domain
    }
}

/// Widens an empty or inverted interval so that scales never divide by zero.
pub(crate) fn non_degenerate((lo, hi): (f64, f64)) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    if hi > lo {
        return (lo, hi);
    }
    let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
    (lo - pad, lo + pad)
}

/// A 1-2-5 step giving roughly `target` intervals over `span`; at least 1 when `integer`.
pub(crate) fn nice_step(span: f64, target: usize, integer: bool) -> f64 {
    let raw = span / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = match raw / magnitude {
        r if r < 1.5 => 1.0,
        r if r < 3.5 => 2.0,
        r if r < 7.5 => 5.0,
        _ => 10.0,
    } * magnitude;
    if integer {
        step.max(1.0)
    } else {
        step
    }
}

/// Expands `domain` outwards to multiples of its nice step (used for fitted y ranges).
pub(crate) fn nice_domain(domain: (f64, f64), target: usize) -> (f64, f64) {
    let (lo, hi) = non_degenerate(domain);
    let step = nice_step(hi - lo, target, false);
    ((lo / step).floor() * step, (hi / step).ceil() * step)
}

/// Tick values: the multiples of `step` inside `[lo, hi]`.
pub(crate) fn ticks((lo, hi): (f64, f64), step: f64) -> Vec<f64> {
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    // Computed from the index, not accumulated, so 0.1 * 3 prints as 0.3.
    (first..=last).map(|i| i as f64 * step + 0.0).collect()
}

/// Tick label with just enough decimals for `step`; thousands as "k", millions as "M",
/// and a typographic minus, as in print.
pub(crate) fn format_tick(v: f64, step: f64) -> String {
    plain_tick(v, step).replacen('-', "\u{2212}", 1)
}

fn plain_tick(v: f64, step: f64) -> String {
    let v = if v.abs() < step * 1e-6 { 0.0 } else { v };
    if step >= 1e6 && v != 0.0 {
        return format!("{}M", trim_float(v / 1e6));
    }
    if step >= 1e3 && v != 0.0 {
        return format!("{}k", trim_float(v / 1e3));
    }
    let decimals = (-step.log10() - 1e-9).ceil().max(0.0) as usize;
    format!("{v:.decimals$}")
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Smallest and largest finite value, if any.
pub(crate) fn min_max(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    let finite = values.into_iter().filter(|v| v.is_finite());
    finite.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_1_2_5() {
        assert_eq!(nice_step(1.0, 5, false), 0.2);
        assert_eq!(nice_step(600.0, 7, true), 100.0);
        assert_eq!(nice_step(0.5, 5, false), 0.1);
        assert_eq!(nice_step(3.0, 7, true), 1.0);
        assert_eq!(nice_step(37.0, 5, false), 5.0);
    }

    #[test]
    fn ticks_and_labels() {
        let t = ticks((0.0, 1.0), 0.2);
        let labels: Vec<_> = t.iter().map(|&v| format_tick(v, 0.2)).collect();
        assert_eq!(labels, ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        assert_eq!(format_tick(400.0, 100.0), "400");
        assert_eq!(format_tick(15000.0, 5000.0), "15k");
        assert_eq!(format_tick(-0.0, 0.05), "0.00");
        assert_eq!(format_tick(-0.1, 0.05), "\u{2212}0.10");
        let (lo, hi) = nice_domain((0.13, 0.67), 5);
        assert!((lo - 0.1).abs() < 1e-12 && (hi - 0.7).abs() < 1e-12);
    }

    #[test]
    fn degenerate_domains_are_widened() {
        assert_eq!(non_degenerate((3.0, 3.0)), (2.7, 3.3));
        assert_eq!(non_degenerate((0.0, 0.0)), (-1.0, 1.0));
        assert_eq!(non_degenerate((f64::NAN, 1.0)), (0.0, 1.0));
    }
}
