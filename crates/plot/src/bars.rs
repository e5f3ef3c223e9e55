//! Bar charts: a histogram over numeric bins, and grouped bars per category.

use crate::scale::{min_max, nice_domain, nice_step, non_degenerate, ticks, Scale};
use crate::svg::{self, escape, px, text_width, truncate, Rect, Svg, Swatch, Ticks, TEXT, TICK_SIZE};
use crate::{HEIGHT, WIDTH};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// `(lo, hi, count)` per bin; bins may be empty (count 0).
    pub bins: Vec<(f64, f64, f64)>,
    pub color: String,
}

/// Renders the histogram as a standalone SVG document of [`WIDTH`] x [`HEIGHT`] pixels.
pub fn histogram_svg(h: &Histogram) -> String {
    let bins: Vec<(f64, f64, f64)> = h
        .bins
        .iter()
        .filter(|(lo, hi, n)| lo.is_finite() && hi.is_finite() && hi > lo && n.is_finite())
        .map(|&(lo, hi, n)| (lo, hi, n.max(0.0)))
        .collect();
    let x_domain = non_degenerate(min_max(bins.iter().flat_map(|b| [b.0, b.1])).unwrap_or((0.0, 1.0)));
    let integer_counts = bins.iter().all(|b| b.2.fract() == 0.0);
    let (y_domain, y_ticks) = count_axis(bins.iter().map(|b| b.2), integer_counts);

    let mut svg = Svg::new(WIDTH, HEIGHT);
    let top = svg::header(&mut svg, &h.title, None) + 20.0;
    let area = Rect { left: svg::plot_left(&y_ticks, &h.y_label), top, right: WIDTH - 28.0, bottom: svg::plot_bottom(HEIGHT, &h.x_label) };
    let sx = Scale::new(x_domain, (area.left, area.right));
    let sy = Scale::new(y_domain, (area.bottom, area.top));
    let x_step = nice_step(x_domain.1 - x_domain.0, 7, false);

    svg::y_axis(&mut svg, area, sy, &y_ticks, &h.y_label);
    svg::x_ticks(&mut svg, area, sx, &Ticks::new(ticks(x_domain, x_step), x_step));
    let fill = format!(r#"fill="{}" stroke="white" stroke-width="0.8""#, escape(&h.color));
    for &(lo, hi, n) in bins.iter().filter(|b| b.2 > 0.0) {
        let bar = Rect { left: sx.map(lo), right: sx.map(hi), top: sy.map(n).max(area.top), bottom: area.bottom };
        svg.rect(bar, &fill);
    }
    if bins.is_empty() {
        svg::no_data(&mut svg, area);
    }
    svg::axis_lines(&mut svg, area);
    svg::x_label(&mut svg, area, HEIGHT, &h.x_label);
    svg.finish()
}

/// Bars of one group member across all categories, e.g. the "support" share per category.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BarSeries {
    pub label: String,
    pub color: String,
    /// One value per category; NaN or a missing value draws no bar.
    pub values: Vec<f64>,
}

/// Grouped bars: per category, one bar for each series side by side.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BarGroups {
    pub title: String,
    pub subtitle: Option<String>,
    pub x_label: String,
    pub y_label: String,
    pub categories: Vec<String>,
    pub series: Vec<BarSeries>,
    /// Fixed y range, e.g. `Some((0.0, 1.0))` for shares; `None` fits from zero.
    pub y_range: Option<(f64, f64)>,
}

/// Category labels longer than this are cut, to keep rotated labels off the title.
const CATEGORY_MAX_CHARS: usize = 22;

/// Renders the grouped bars as a standalone SVG document of [`WIDTH`] x [`HEIGHT`] pixels.
pub fn bar_groups_svg(g: &BarGroups) -> String {
    let values = g.series.iter().flat_map(|s| s.values.iter().copied());
    let fixed = g.y_range.filter(|(lo, hi)| lo.is_finite() && hi.is_finite() && hi > lo);
    let (y_domain, y_ticks) = match fixed {
        Some(d) => (d, tick_set(d)),
        None => count_axis(values, false),
    };
    let labels: Vec<&str> = g.series.iter().map(|s| s.label.as_str()).collect();
    let categories: Vec<String> = g.categories.iter().map(|c| truncate(c, CATEGORY_MAX_CHARS)).collect();

    let mut svg = Svg::new(WIDTH, HEIGHT);
    let top = svg::header(&mut svg, &g.title, g.subtitle.as_deref()) + 20.0;
    let left = svg::plot_left(&y_ticks, &g.y_label);
    let right = WIDTH - svg::legend_width(&labels);
    let slot = (right - left) / categories.len().max(1) as f64;
    let widest = categories.iter().map(|c| text_width(c, TICK_SIZE)).fold(0.0, f64::max);
    let rotate = widest > slot - 6.0;
    // Rotated labels reach down by their width times sin(35°).
    let extra = if rotate { widest * 0.574 - TICK_SIZE * 0.5 } else { 0.0 };
    let area = Rect { left, top, right, bottom: svg::plot_bottom(HEIGHT, &g.x_label) - extra.max(0.0) };
    let sy = Scale::new(y_domain, (area.bottom, area.top));

    svg::y_axis(&mut svg, area, sy, &y_ticks, &g.y_label);
    draw_categories(&mut svg, area, &categories, rotate);
    let clip = svg::clip_path(&mut svg, area);
    svg.raw(&format!(r#"<g clip-path="url(#{clip})">"#));
    draw_bars(&mut svg, area, sy, &g.series, categories.len());
    svg.raw("</g>");
    if !g.series.iter().flat_map(|s| &s.values).any(|v| v.is_finite()) {
        svg::no_data(&mut svg, area);
    }
    svg::axis_lines(&mut svg, area);
    svg::x_label(&mut svg, area, HEIGHT, &g.x_label);
    let rows: Vec<(&str, &str)> = g.series.iter().map(|s| (s.label.as_str(), s.color.as_str())).collect();
    svg::legend(&mut svg, (area.right + 14.0, area.top + 8.0), &rows, Swatch::Block, None);
    svg.finish()
}

/// Category names under their slots; rotated by 35° when they would run into each other.
fn draw_categories(svg: &mut Svg, area: Rect, categories: &[String], rotate: bool) {
    let slot = area.width() / categories.len().max(1) as f64;
    for (i, name) in categories.iter().enumerate() {
        let x = area.left + (i as f64 + 0.5) * slot;
        let y = area.bottom + 6.0 + TICK_SIZE;
        let attrs = if rotate {
            format!(r#"font-size="{TICK_SIZE}" text-anchor="end" fill="{TEXT}" transform="rotate(-35 {} {})""#, px(x + 4.0), px(y - 4.0))
        } else {
            format!(r#"font-size="{TICK_SIZE}" text-anchor="middle" fill="{TEXT}""#)
        };
        let x = if rotate { x + 4.0 } else { x };
        svg.text(x, if rotate { y - 4.0 } else { y }, &attrs, name);
    }
}

fn draw_bars(svg: &mut Svg, area: Rect, sy: Scale, series: &[BarSeries], n_categories: usize) {
    let slot = area.width() / n_categories.max(1) as f64;
    let bar = slot * 0.8 / series.len().max(1) as f64;
    let base = sy.map(sy.domain().0.max(0.0));
    for (j, s) in series.iter().enumerate() {
        let fill = format!(r#"fill="{}""#, escape(&s.color));
        for (i, &v) in s.values.iter().take(n_categories).enumerate() {
            if !v.is_finite() {
                continue;
            }
            let left = area.left + i as f64 * slot + slot * 0.1 + j as f64 * bar;
            let y = sy.map(v);
            let r = Rect { left, right: left + bar - 1.0, top: y.min(base), bottom: y.max(base) };
            svg.rect(r, &fill);
        }
    }
}

/// A y axis from zero up to a nice bound above the largest value.
fn count_axis(values: impl Iterator<Item = f64>, integer: bool) -> ((f64, f64), Ticks) {
    let max = values.filter(|v| v.is_finite()).fold(0.0, f64::max);
    let domain = if max > 0.0 { nice_domain((0.0, max), 5) } else { (0.0, 1.0) };
    let step = nice_step(domain.1 - domain.0, 5, integer);
    (domain, Ticks::new(ticks(domain, step), step))
}

fn tick_set(domain: (f64, f64)) -> Ticks {
    let step = nice_step(domain.1 - domain.0, 5, false);
    Ticks::new(ticks(domain, step), step)
}
